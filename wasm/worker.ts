/**
 * Worker-thread side of a VM: instantiates the Engine, then serves calls from the channel
 * forever. Host services that need the main thread (shared data, queues, cluster names) are
 * answered by the main thread while it waits for this call (wasm/channel.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CALL, Channel, RESULT, RPC, RPC_DONE } from './channel.ts';
import { dispatchCall, type WorkerCall } from './calls.ts';
import { Engine, WasmVmError, type EngineSettings, type HostServices } from './engine.ts';

export interface WorkerInit {
  readonly sab: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly settings: EngineSettings;
}

export type { WorkerCall } from './calls.ts';

export type WorkerReply = { readonly ok: true; readonly value: unknown; readonly memory: number } | { readonly ok: false; readonly error: string; readonly phase: string };

export interface RpcRequest {
  readonly fn: keyof HostServices;
  readonly args: unknown[];
}

const init = workerData as WorkerInit;
const ch = new Channel(init.sab);

const services = new Proxy({} as HostServices, {
  get(_t, fn: string) {
    return (...args: unknown[]) => {
      ch.write({ fn: fn as keyof HostServices, args } satisfies RpcRequest);
      ch.set(RPC);
      while (ch.state === RPC) Atomics.wait(ch.ctrl, 0, RPC);
      if (ch.state !== RPC_DONE) throw new Error('VM channel out of step');
      const v = ch.read<{ value: unknown }>().value;
      Atomics.store(ch.ctrl, 0, CALL);
      return v;
    };
  },
});

let engine: Engine | undefined;
let startError: string | undefined;
try {
  engine = Engine.create(init.bytes, init.settings, services);
} catch (e) {
  startError = (e as Error).message;
}
parentPort?.postMessage({ ready: true });


for (;;) {
  // Wait on the value just compared: re-reading the state for Atomics.wait could read CALL
  // (written after the comparison) and then sleep on it with the notify already gone, leaving the
  // call unserved until the main thread's budget gives up on the VM.
  for (let st = ch.state; st !== CALL; st = ch.state) Atomics.wait(ch.ctrl, 0, st);
  ch.picked[0] = Channel.now();
  const call = ch.read<WorkerCall>();
  let reply: WorkerReply;
  if (!engine) {
    reply = { ok: false, error: startError ?? 'VM did not start', phase: 'start' };
  } else {
    try {
      reply = { ok: true, value: dispatchCall(engine, call), memory: engine.memoryBytes };
    } catch (err) {
      reply = { ok: false, error: (err as Error).message, phase: err instanceof WasmVmError ? err.phase : 'call' };
    }
  }
  ch.write(reply);
  ch.set(RESULT);
}
