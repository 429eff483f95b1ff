/**
 * A one-shot worker job: meters a module (wasm/meter.ts) off the main thread, since a large module
 * (a Go plugin is ~3 MB) takes 70-250 ms to rewrite. Answers { bytes } or { error, meter }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { meter, MeterError } from './meter.ts';

export interface MeterJob {
  readonly meter: Uint8Array;
}

export type MeterAnswer = { readonly bytes: Uint8Array } | { readonly error: string; readonly meter: boolean };

const job = workerData as MeterJob;
let answer: MeterAnswer;
try {
  answer = { bytes: meter(job.meter) };
} catch (e) {
  answer = { error: (e as Error).message, meter: e instanceof MeterError };
}
parentPort?.postMessage(answer);
