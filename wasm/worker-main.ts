/**
 * Entry of a VM's worker thread (and of the one-shot metering job, wasm/meter-worker.ts). Built by scripts/build.mjs into dist/bin/commands/wasm-worker.js
 * (what the installed CLI starts, no TypeScript loader); under tsx, wasm/worker-entry.mjs
 * registers the loader and imports this file.
 *
 * The WASI warning is dropped before worker.ts (and with it node:wasi) is imported.
 */
import { dropWasiWarning } from './wasi-warning.ts';

dropWasiWarning();
const { workerData } = await import('node:worker_threads');
if (workerData && typeof workerData === 'object' && 'meter' in workerData) await import('./meter-worker.ts');
else await import('./worker.ts');
