/**
 * The engine calls a VM host makes, as data: the same dispatcher serves the worker-thread VM
 * (worker.ts, over the shared-memory channel) and the inline VM (vm.ts). No side effects here,
 * so both can import it.
 */
import type { Engine } from './engine.ts';

export type WorkerCall =
  | { readonly op: 'start' }
  | { readonly op: 'requestHeaders'; readonly args: Parameters<Engine['requestHeaders']> }
  | { readonly op: 'requestBody'; readonly args: Parameters<Engine['requestBody']> }
  | { readonly op: 'responseHeaders'; readonly args: Parameters<Engine['responseHeaders']> }
  | { readonly op: 'responseBody'; readonly args: Parameters<Engine['responseBody']> }
  | { readonly op: 'trailers'; readonly args: Parameters<Engine['trailers']> }
  | { readonly op: 'streamDone'; readonly args: Parameters<Engine['streamDone']> }
  | { readonly op: 'tick' }
  | { readonly op: 'queueReady'; readonly args: Parameters<Engine['queueReady']> }
  | { readonly op: 'httpCallResponse'; readonly args: Parameters<Engine['httpCallResponse']> }
  | { readonly op: 'batch'; readonly calls: WorkerCall[] };


/** Runs one call (or a batch) on an engine. */
export function dispatchCall(e: Engine, c: WorkerCall): unknown {
  switch (c.op) {
    case 'start':
      return e.start();
    case 'requestHeaders':
      return e.requestHeaders(...c.args);
    case 'requestBody':
      return e.requestBody(...c.args);
    case 'responseHeaders':
      return e.responseHeaders(...c.args);
    case 'responseBody':
      return e.responseBody(...c.args);
    case 'trailers':
      return e.trailers(...c.args);
    case 'streamDone':
      return e.streamDone(...c.args);
    case 'tick':
      return e.tick();
    case 'queueReady':
      return e.queueReady(...c.args);
    case 'httpCallResponse':
      return e.httpCallResponse(...c.args);
    case 'batch':
      return c.calls.map((x) => dispatchCall(e, x));
  }
}
