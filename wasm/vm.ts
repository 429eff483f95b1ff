/**
 * A running plugin VM as the main thread sees it: one per plugin per process, reused by every
 * request. By default the module runs in a worker thread and each callback is a synchronous
 * round trip over a SharedArrayBuffer (wasm/channel.ts): the main thread blocks in Atomics.wait
 * for at most the call budget, so a plugin that loops forever costs one budget's stall and its
 * VM is terminated (worker.terminate() interrupts running wasm); a synchronous WebAssembly call
 * on the main thread could not be interrupted at all. `isolation: 'inline'` runs the engine on
 * the main thread instead (no budget; for trusted plugins and for measuring the channel's cost).
 *
 * The VM applies what each call produced: logs to Portico's log, timers, HTTP calls to
 * clusters, metric values, and resumes/answers streams paused by the plugin.
 */
import { Worker } from 'node:worker_threads';
import { CALL, Channel, IDLE, RESULT, RPC, RPC_DONE } from './channel.ts';
import type { Engine, EngineSettings, HostServices, HttpCallRequest, LocalReplyData, MetricValue, Outcome, StreamCallbacks, StreamEvent } from './engine.ts';
import { WasmVmError } from './errors.ts';
import { dispatchCall, type WorkerCall } from './calls.ts';
import type { RpcRequest, WorkerReply } from './worker.ts';
import type { Pairs } from './pairs.ts';
import type { ResponseInfo, StreamInfo } from './properties.ts';
import { LOG_LEVEL_NAMES } from './abi.ts';

export interface HttpCallAnswer {
  readonly headers: Pairs;
  readonly body: Uint8Array;
}

/** What a VM needs from the process it runs in. */
export interface VmHost {
  readonly services: HostServices;
  /** Performs an HTTP call to a cluster; rejects on failure or timeout. */
  httpCall(req: HttpCallRequest): Promise<HttpCallAnswer>;
  log(level: (typeof LOG_LEVEL_NAMES)[number], plugin: string, message: string): void;
  metrics(plugin: string, values: readonly MetricValue[]): void;
  /** Called once when a VM fails (trap, exit, budget exceeded). */
  failed?(plugin: string, reason: string): void;
}

export interface VmOptions {
  readonly isolation?: 'worker' | 'inline';
  /** Longest a single callback may run, in ms (worker isolation), from when the VM's thread starts it. Default 1000. */
  readonly callBudgetMs?: number;
}

/** What a stream waits for after the plugin paused it. */
export type Resumption = { kind: 'continue'; requestHeaders?: Pairs } | { kind: 'reply'; reply: LocalReplyData } | { kind: 'close' } | { kind: 'failed'; reason: string };

interface Backend {
  call(c: WorkerCall): unknown;
  readonly memory: number;
  kill(): void;
}

class InlineBackend implements Backend {
  constructor(private readonly engine: Engine) {}
  get memory(): number {
    return this.engine.memoryBytes;
  }
  call(c: WorkerCall): unknown {
    return dispatchCall(this.engine, c);
  }

  kill(): void {}
}

class WorkerBackend implements Backend {
  memory = 0;
  constructor(
    private readonly worker: Worker,
    private readonly ch: Channel,
    private readonly services: HostServices,
    private readonly budgetMs: number,
  ) {}

  call(c: WorkerCall): unknown {
    const ch = this.ch;
    ch.write(c);
    ch.picked[0] = 0;
    ch.set(CALL);
    // The budget runs from when the worker picked the call up, so a worker thread the OS has not
    // scheduled yet is not mistaken for a looping plugin (up to 10 budgets of waiting for it).
    const sent = Channel.now();
    const hardStop = sent + 10 * this.budgetMs;
    for (;;) {
      const s = ch.state;
      if (s === RESULT) break;
      if (s === RPC) {
        const req = ch.read<RpcRequest>();
        const fn = this.services[req.fn] as (...a: unknown[]) => unknown;
        ch.write({ value: fn.apply(this.services, req.args) });
        ch.set(RPC_DONE);
        continue;
      }
      const picked = ch.picked[0]!;
      const now = Channel.now();
      const over = picked > 0 ? now - picked >= this.budgetMs : now >= hardStop;
      if (over) {
        this.kill();
        throw new WasmVmError(`callback ${c.op} exceeded its ${this.budgetMs} ms budget; VM terminated`, 'call');
      }
      // Not picked up yet: re-check every budget; picked up: wait out the rest of the budget.
      const left = picked > 0 ? picked + this.budgetMs - now : Math.min(this.budgetMs, hardStop - now);
      Atomics.wait(ch.ctrl, 0, s, left);
    }
    const reply = ch.read<WorkerReply>();
    Atomics.store(ch.ctrl, 0, IDLE);
    if (!reply.ok) throw new WasmVmError(reply.error, reply.phase === 'start' ? 'start' : reply.phase === 'configure' ? 'configure' : 'call');
    this.memory = reply.memory;
    return reply.value;
  }

  kill(): void {
    void this.worker.terminate();
  }
}

/**
 * The worker's entry: under tsx the source (worker-entry.mjs registers the loader); scripts/build.mjs
 * rewrites this line so the bundle starts its own built worker (dist/bin/commands/wasm-worker.js).
 */
const WORKER_URL = new URL('./worker-entry.mjs', import.meta.url);

/** Starts a VM: instantiate, proxy_on_vm_start, proxy_on_configure. Rejects with WasmVmError. */
export async function startVm(bytes: Uint8Array, settings: EngineSettings, host: VmHost, opts: VmOptions = {}): Promise<Vm> {
  let backend: Backend;
  if (opts.isolation === 'inline') {
    // Loaded only for inline VMs: worker VMs keep node:wasi out of the main thread.
    const { Engine } = await import('./engine.ts');
    backend = new InlineBackend(Engine.create(bytes, settings, host.services));
  } else {
    const ch = Channel.create();
    const worker = new Worker(WORKER_URL, { workerData: { sab: ch.sab, bytes, settings }, execArgv: [], stdout: false, stderr: false });
    worker.unref();
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', (e) => reject(new WasmVmError(`VM worker failed: ${e.message}`, 'start')));
      worker.once('exit', (code) => reject(new WasmVmError(`VM worker exited (${code}) before it was ready`, 'start')));
    });
    worker.on('error', () => undefined);
    backend = new WorkerBackend(worker, ch, host.services, opts.callBudgetMs ?? 1000);
  }
  const vm = new Vm(backend, settings.pluginName, host);
  try {
    vm.callbacks = (vm.exec({ op: 'start' }) as { callbacks: StreamCallbacks }).callbacks;
  } catch (e) {
    vm.kill();
    throw e;
  }
  return vm;
}

const NO_CALLBACKS: StreamCallbacks = { requestBody: false, requestTrailers: false, responseBody: false, responseTrailers: false };

export class Vm {
  /** The body and trailer callbacks the module exports (known once started). */
  callbacks: StreamCallbacks = NO_CALLBACKS;
  private failure: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly paused = new Map<number, (r: Resumption) => void>();
  /** streamDone calls deferred to ride along with the next call (or an idle flush). */
  private pendingDone: WorkerCall[] = [];
  private flushScheduled = false;

  constructor(
    private readonly backend: Backend,
    readonly plugin: string,
    private readonly host: VmHost,
  ) {}

  get failed(): string | undefined {
    return this.failure;
  }

  /** Linear memory of the VM in bytes (as of the last call). */
  get memoryBytes(): number {
    return this.backend.memory;
  }

  requestHeaders(info: StreamInfo, headers: Pairs, endOfStream: boolean): Outcome & { ctx: number } {
    return this.exec({ op: 'requestHeaders', args: [info, headers, endOfStream] }) as Outcome & { ctx: number };
  }

  requestBody(ctx: number, body: Uint8Array, endOfStream: boolean): Outcome {
    return this.exec({ op: 'requestBody', args: [ctx, body, endOfStream] }) as Outcome;
  }

  responseHeaders(ctx: number, info: ResponseInfo, headers: Pairs, endOfStream: boolean): Outcome {
    return this.exec({ op: 'responseHeaders', args: [ctx, info, headers, endOfStream] }) as Outcome;
  }

  responseBody(ctx: number, body: Uint8Array, endOfStream: boolean): Outcome {
    return this.exec({ op: 'responseBody', args: [ctx, body, endOfStream] }) as Outcome;
  }

  trailers(ctx: number, dir: 'request' | 'response', trailers: Pairs, held: Uint8Array): Outcome {
    return this.exec({ op: 'trailers', args: [ctx, dir, trailers, held] }) as Outcome;
  }

  /** The stream ended: on_done/on_log/on_delete run with the next call, or within 20 ms. */
  streamDone(ctx: number, info?: ResponseInfo): void {
    this.paused.delete(ctx);
    if (this.failure) return;
    this.pendingDone.push({ op: 'streamDone', args: [ctx, info] });
    // Stream ends ride along with the next call; when none comes soon, a timer sends them (a
    // separate round trip per request would cost as much as the request's own callbacks).
    // Small batches: SDKs keep a context per open stream, and some walk them all per call
    // (proxy-runtime logs context_map.keys() on every context creation).
    if (this.pendingDone.length >= 8) {
      try {
        this.exec({ op: 'batch', calls: [] });
      } catch {
        // recorded in this.failure
      }
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setTimeout(() => {
        this.flushScheduled = false;
        if (this.pendingDone.length && !this.failure) {
          try {
            this.exec({ op: 'batch', calls: [] });
          } catch {
            // recorded in this.failure; the next request applies the failure strategy
          }
        }
      }, 20).unref();
    }
  }

  /** Waits for a paused stream to be resumed (or answered) by the plugin. */
  waitResume(ctx: number, timeoutMs: number): Promise<Resumption> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.paused.delete(ctx);
        resolve({ kind: 'reply', reply: { status: 504, details: 'wasm_paused_timeout', body: new Uint8Array(0), headers: [], grpcStatus: -1 } });
      }, timeoutMs);
      this.paused.set(ctx, (r) => {
        clearTimeout(t);
        this.paused.delete(ctx);
        resolve(r);
      });
    });
  }

  /** Stops the VM for good (snapshot swapped, plugin removed, or failure). */
  kill(): void {
    this.failure ??= 'stopped';
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.pendingDone = [];
    this.backend.kill();
  }

  /** Runs one call (plus deferred stream ends) and applies its side effects. Throws WasmVmError. */
  exec(c: WorkerCall): unknown {
    if (this.failure) throw new WasmVmError(`VM failed: ${this.failure}`, 'call');
    let call = c;
    let batched = false;
    if (this.pendingDone.length) {
      call = { op: 'batch', calls: [...this.pendingDone, ...(c.op === 'batch' ? c.calls : [c])] };
      batched = c.op !== 'batch';
      this.pendingDone = [];
    }
    let value: unknown;
    try {
      value = this.backend.call(call);
    } catch (e) {
      this.fail(e instanceof WasmVmError ? e.message : String(e));
      throw e;
    }
    if (call.op === 'batch') {
      const list = value as Outcome[];
      for (const o of list) this.apply(o);
      return batched ? list[list.length - 1] : list;
    }
    this.apply(value as Outcome);
    return value;
  }

  private fail(reason: string): void {
    if (this.failure) return;
    this.kill();
    this.failure = reason;
    this.host.log('error', this.plugin, `wasm VM failed: ${reason}`);
    this.host.failed?.(this.plugin, reason);
    for (const [, resume] of this.paused) resume({ kind: 'failed', reason });
    this.paused.clear();
  }

  private apply(o: Outcome): void {
    if (o.logs) for (const [level, msg] of o.logs) this.host.log(LOG_LEVEL_NAMES[level] ?? 'info', this.plugin, msg);
    if (o.metrics) this.host.metrics(this.plugin, o.metrics);
    if (o.tickMs !== undefined) this.setTick(o.tickMs);
    if (o.httpCalls) for (const req of o.httpCalls) this.startHttpCall(req);
    if (o.events) for (const e of o.events) this.deliver(e);
  }

  private setTick(ms: number): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (ms > 0) {
      this.timer = setInterval(() => this.safe({ op: 'tick' }), ms);
      this.timer.unref();
    }
  }

  private safe(c: WorkerCall): void {
    if (this.failure) return;
    try {
      this.exec(c);
    } catch {
      // recorded by fail()
    }
  }

  private startHttpCall(req: HttpCallRequest): void {
    this.host.httpCall(req).then(
      (a) => this.safe({ op: 'httpCallResponse', args: [req.token, a.headers, a.body, []] }),
      // Envoy reports a failed call (reset, timeout, no healthy upstream) with zero headers.
      () => this.safe({ op: 'httpCallResponse', args: [req.token, [], new Uint8Array(0), []] }),
    );
  }

  private deliver(e: StreamEvent): void {
    const resume = this.paused.get(e.ctx);
    if (!resume) return;
    if (e.kind === 'continue') resume({ kind: 'continue', requestHeaders: e.requestHeaders });
    else if (e.kind === 'reply') resume({ kind: 'reply', reply: e.reply });
    else resume({ kind: 'close' });
  }

  /** Queue-ready notification from the shared queues. */
  queueReady(token: number): void {
    this.safe({ op: 'queueReady', args: [token] });
  }
}
