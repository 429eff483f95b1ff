/**
 * A running plugin VM as the main thread sees it: one per plugin per process, reused by every
 * request. Both isolations give each callback a time budget (default 1 s):
 *
 * - `inline` (the default): the module runs on the main thread, metered (wasm/meter.ts): it
 *   checks a fuel counter at every loop iteration (and where calls alone could recur) and traps once the call's
 *   deadline has passed, so a plugin that loops costs one budget's stall and its VM is failed.
 *   A module the meter cannot decode runs in a worker instead (with a warning).
 * - `worker`: the module runs in a worker thread and each callback is a synchronous round trip
 *   over a SharedArrayBuffer (wasm/channel.ts): the main thread blocks in Atomics.wait for at
 *   most the budget, then terminates the worker (worker.terminate() interrupts running wasm).
 *   It costs two thread hand-offs per callback; it is kept for modules that cannot be metered.
 *
 * The VM applies what each call produced: logs to Portico's log, timers, HTTP calls to
 * clusters, metric values, and resumes/answers streams paused by the plugin.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { CALL, Channel, IDLE, RESULT, RPC, RPC_DONE } from './channel.ts';
import type { Engine, EngineSettings, HostServices, HttpCallRequest, LocalReplyData, MetricValue, Outcome, StreamCallbacks, StreamEvent } from './engine.ts';
import { WasmVmError } from './errors.ts';
import { dispatchCall, type WorkerCall } from './calls.ts';
import type { RpcRequest, WorkerReply } from './worker.ts';
import type { Pairs } from './pairs.ts';
import type { ResponseInfo, StreamInfo } from './properties.ts';
import { LOG_LEVEL_NAMES } from './abi.ts';
import { CallBudget } from './budget.ts';
import { MeterError } from './meter.ts';
import { limitMemory } from './memory-limit.ts';
import { dropWasiWarning } from './wasi-warning.ts';
import type { MeterAnswer, MeterJob } from './meter-worker.ts';

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
  /** Longest a single callback may run, in ms, from when the VM's thread starts it. Default 1000. */
  readonly callBudgetMs?: number;
}

/** What a stream waits for after the plugin paused it. */
export type Resumption = { kind: 'continue'; requestHeaders?: Pairs } | { kind: 'reply'; reply: LocalReplyData } | { kind: 'close' } | { kind: 'failed'; reason: string };

interface Backend {
  /** Worker VMs: stream ends wait to ride along with the next call (a round trip saved). */
  readonly deferDone: boolean;
  call(c: WorkerCall): unknown;
  readonly memory: number;
  kill(): void;
}

class InlineBackend implements Backend {
  readonly deferDone = false;
  constructor(
    private readonly engine: Engine,
    private readonly budget: CallBudget,
  ) {}
  get memory(): number {
    return this.engine.memoryBytes;
  }
  call(c: WorkerCall): unknown {
    const b = this.budget;
    b.begin();
    try {
      const value = dispatchCall(this.engine, c);
      if (b.exceeded) throw overBudget(c, b.ms);
      return value;
    } catch (e) {
      // The trap the meter raised past the deadline (or a WASI wait it refused) is the budget's.
      throw b.exceeded ? overBudget(c, b.ms) : e;
    } finally {
      b.end();
    }
  }

  kill(): void {}
}

class WorkerBackend implements Backend {
  readonly deferDone = true;
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
        throw overBudget(c, this.budgetMs);
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

function overBudget(c: WorkerCall, ms: number): WasmVmError {
  return new WasmVmError(`callback ${c.op} exceeded its ${ms} ms budget; VM stopped`, 'call');
}

/**
 * The worker's entry: under tsx the source (worker-entry.mjs registers the loader); scripts/build.mjs
 * rewrites this line so the bundle starts its own built worker (dist/bin/commands/wasm-worker.js).
 */
const WORKER_URL = new URL('./worker-entry.mjs', import.meta.url);

/** Starts a VM: instantiate, proxy_on_vm_start, proxy_on_configure. Rejects with WasmVmError. */
export async function startVm(bytes: Uint8Array, settings: EngineSettings, host: VmHost, opts: VmOptions = {}): Promise<Vm> {
  const budgetMs = opts.callBudgetMs ?? 1000;
  let backend: Backend | undefined;
  if (opts.isolation !== 'worker') backend = await startInline(bytes, settings, host, budgetMs);
  backend ??= await startWorker(bytes, settings, host, budgetMs);
  const vm = new Vm(backend, settings.pluginName, host);
  try {
    vm.callbacks = (vm.exec({ op: 'start' }) as { callbacks: StreamCallbacks }).callbacks;
  } catch (e) {
    vm.kill();
    throw e;
  }
  return vm;
}

/** An inline VM, or undefined when the module cannot be metered (it then runs in a worker). */
async function startInline(bytes: Uint8Array, settings: EngineSettings, host: VmHost, budgetMs: number): Promise<Backend | undefined> {
  // Loaded only for inline VMs: worker VMs keep node:wasi out of the main thread.
  dropWasiWarning();
  const { Engine } = await import('./engine.ts');
  let module: WebAssembly.Module;
  try {
    module = await compileMetered(bytes, settings.memoryLimitBytes);
  } catch (e) {
    if (!(e instanceof MeterError)) throw e;
    host.log('warn', settings.pluginName, `wasm module cannot be metered (${e.message}); running its VM in a worker thread`);
    return undefined;
  }
  const budget = new CallBudget(budgetMs);
  // The module's own initialisation (_initialize/_start) gets ten budgets: runtimes set up there.
  budget.begin(10 * budgetMs);
  try {
    return new InlineBackend(new Engine(module, settings, host.services, budget), budget);
  } catch (e) {
    if (budget.exceeded) throw new WasmVmError(`module initialisation exceeded its ${10 * budgetMs} ms budget`, 'start');
    throw e;
  } finally {
    budget.end();
  }
}

/**
 * Metered, memory-capped modules compiled for inline VMs, by module digest and memory limit: a
 * fresh VM of the same module (FAIL_RELOAD, a new snapshot) reuses the compiled code. Bounded;
 * the oldest entry goes first.
 */
const compiled = new Map<string, Promise<WebAssembly.Module>>();
const COMPILED_MAX = 16;

function compileMetered(bytes: Uint8Array, memoryLimitBytes: number): Promise<WebAssembly.Module> {
  const key = `${createHash('sha256').update(bytes).digest('hex')}:${memoryLimitBytes}`;
  let p = compiled.get(key);
  if (p) {
    compiled.delete(key);
    compiled.set(key, p);
    return p;
  }
  p = (async () => {
    let capped: Uint8Array;
    try {
      capped = limitMemory(bytes, memoryLimitBytes);
    } catch (e) {
      throw new WasmVmError(`invalid module: ${(e as Error).message}`, 'start');
    }
    const metered = await meterOffThread(capped);
    try {
      return await WebAssembly.compile(metered);
    } catch (e) {
      throw new WasmVmError(`invalid module: ${(e as Error).message}`, 'start');
    }
  })();
  p.catch(() => compiled.delete(key));
  compiled.set(key, p);
  if (compiled.size > COMPILED_MAX) compiled.delete(compiled.keys().next().value!);
  return p;
}

/** Runs wasm/meter.ts in a one-shot worker thread (a large module takes 70-250 ms to rewrite). */
function meterOffThread(bytes: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData: { meter: bytes } satisfies MeterJob, execArgv: [], stdout: false, stderr: false });
    worker.once('message', (a: MeterAnswer) => {
      void worker.terminate();
      if ('bytes' in a) resolve(a.bytes);
      else reject(a.meter ? new MeterError(a.error) : new WasmVmError(`invalid module: ${a.error}`, 'start'));
    });
    worker.once('error', (e) => reject(new WasmVmError(`metering worker failed: ${e.message}`, 'start')));
    worker.once('exit', (code) => reject(new WasmVmError(`metering worker exited (${code})`, 'start')));
  });
}

async function startWorker(bytes: Uint8Array, settings: EngineSettings, host: VmHost, budgetMs: number): Promise<Backend> {
  const ch = Channel.create();
  const worker = new Worker(WORKER_URL, { workerData: { sab: ch.sab, bytes, settings }, execArgv: [], stdout: false, stderr: false });
  worker.unref();
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', (e) => reject(new WasmVmError(`VM worker failed: ${e.message}`, 'start')));
    worker.once('exit', (code) => reject(new WasmVmError(`VM worker exited (${code}) before it was ready`, 'start')));
  });
  worker.on('error', () => undefined);
  return new WorkerBackend(worker, ch, host.services, budgetMs);
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
    if (!this.backend.deferDone) {
      // Inline: a call costs no more alone than batched, and the SDK's context ends at once.
      this.safe({ op: 'streamDone', args: [ctx, info] });
      return;
    }
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
