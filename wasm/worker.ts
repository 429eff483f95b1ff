/**
 * Worker-thread side of a VM: instantiates the Engine, then serves calls from the channel
 * forever. Host services that need the main thread (shared data, queues, cluster names) are
 * answered by the main thread while it waits for this call (wasm/channel.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CALL, Channel, RESULT, RPC, RPC_DONE } from './channel.ts';
import { Engine, WasmVmError, type EngineSettings, type HostServices } from './engine.ts';

export interface WorkerInit {
  readonly sab: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly settings: EngineSettings;
}

export type WorkerCall =
  | { readonly op: 'start' }
  | { readonly op: 'requestHeaders'; readonly args: Parameters<Engine['requestHeaders']> }
  | { readonly op: 'requestBody'; readonly args: Parameters<Engine['requestBody']> }
  | { readonly op: 'responseHeaders'; readonly args: Parameters<Engine['responseHeaders']> }
  | { readonly op: 'streamDone'; readonly args: Parameters<Engine['streamDone']> }
  | { readonly op: 'tick' }
  | { readonly op: 'queueReady'; readonly args: Parameters<Engine['queueReady']> }
  | { readonly op: 'httpCallResponse'; readonly args: Parameters<Engine['httpCallResponse']> }
  | { readonly op: 'batch'; readonly calls: WorkerCall[] };

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

function dispatch(e: Engine, c: WorkerCall): unknown {
  switch (c.op) {
    case 'start':
      return e.start();
    case 'requestHeaders':
      return e.requestHeaders(...c.args);
    case 'requestBody':
      return e.requestBody(...c.args);
    case 'responseHeaders':
      return e.responseHeaders(...c.args);
    case 'streamDone':
      return e.streamDone(...c.args);
    case 'tick':
      return e.tick();
    case 'queueReady':
      return e.queueReady(...c.args);
    case 'httpCallResponse':
      return e.httpCallResponse(...c.args);
    case 'batch':
      return c.calls.map((x) => dispatch(e, x));
  }
}

for (;;) {
  while (ch.state !== CALL) Atomics.wait(ch.ctrl, 0, ch.state);
  ch.picked[0] = Channel.now();
  const call = ch.read<WorkerCall>();
  let reply: WorkerReply;
  if (!engine) {
    reply = { ok: false, error: startError ?? 'VM did not start', phase: 'start' };
  } else {
    try {
      reply = { ok: true, value: dispatch(engine, call), memory: engine.memoryBytes };
    } catch (err) {
      reply = { ok: false, error: (err as Error).message, phase: err instanceof WasmVmError ? err.phase : 'call' };
    }
  }
  ch.write(reply);
  ch.set(RESULT);
}
