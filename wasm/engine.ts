/**
 * The proxy-wasm host proper: one instantiated module (a VM) with its root context and stream
 * contexts, and every host function the ABI defines (0.2.1, 0.2.0, 0.1.0).
 *
 * The engine is synchronous and knows nothing of threads: wasm/worker.ts runs it inside a
 * worker thread (so a plugin that loops can be stopped), and wasm/vm.ts can also run it inline.
 * Everything that must outlive or span VMs (shared data, shared queues, cluster names) is
 * reached through `HostServices`; everything a call produces besides its return value (logs,
 * HTTP calls to start, timer changes, metric values, stream events) is collected in the call's
 * `Outcome` and acted on by the caller.
 *
 * References: proxy-wasm spec abi-versions/v0.2.1/README.md; proxy-wasm-cpp-host src/exports.cc
 * (argument order, which context an HTTP call belongs to, `copyToPointerSize` writing 0/0 for
 * empty values); Envoy source/extensions/common/wasm/context.cc (properties, header maps).
 */
import { openSync } from 'node:fs';
import { WASI } from 'node:wasi';
import { ABI_VERSIONS, Action, BufferType, HOST_FUNCTIONS, HeaderMapType, MetricType, Result, type AbiVersion } from './abi.ts';
import { decodePairs, encodePairs, type Pairs } from './pairs.ts';
import { limitMemory } from './memory-limit.ts';
import { FUEL_EXPORT, METER_MODULE, REFUEL } from './meter.ts';
import type { CallBudget } from './budget.ts';
import { WasmVmError } from './errors.ts';
import { streamProperty, type NodeInfo, type ResponseInfo, type StreamInfo } from './properties.ts';

export interface HostServices {
  sharedGet(vmId: string, key: string): { value: Uint8Array; cas: number } | undefined;
  sharedSet(vmId: string, key: string, value: Uint8Array, cas: number): number;
  queueRegister(vmId: string, name: string): number;
  queueResolve(vmId: string, name: string): number | undefined;
  queueEnqueue(token: number, value: Uint8Array): number;
  /** The item, or a Result code (`Empty`, `NotFound`). */
  queueDequeue(token: number): Uint8Array | number;
  clusterKnown(name: string): boolean;
}

export interface EngineSettings {
  /** WasmPlugin `pluginName` (the root id SDKs dispatch on). */
  readonly rootId: string;
  readonly vmId: string;
  /** `ns.name` of the WasmPlugin, the `plugin_name` property. */
  readonly pluginName: string;
  readonly pluginConfig: Uint8Array;
  readonly vmConfig: Uint8Array;
  readonly env: Readonly<Record<string, string>>;
  /** Messages below this level are dropped inside the VM's host (no copy out). */
  readonly logLevel: number;
  readonly node: NodeInfo;
  /** Linear memory cap in bytes (the module's memory maximum is lowered to it). */
  readonly memoryLimitBytes: number;
}

export interface LocalReplyData {
  readonly status: number;
  readonly details: string;
  readonly body: Uint8Array;
  readonly headers: Pairs;
  readonly grpcStatus: number;
}

export interface HttpCallRequest {
  readonly token: number;
  readonly cluster: string;
  readonly headers: Pairs;
  readonly body: Uint8Array;
  readonly timeoutMs: number;
}

export interface MetricValue {
  readonly name: string;
  readonly type: number;
  readonly value: number;
}

/** Something that happened to a stream outside of its own callback (after an HTTP call answered). */
export type StreamEvent =
  | { readonly ctx: number; readonly kind: 'continue'; readonly requestHeaders?: Pairs }
  | { readonly ctx: number; readonly kind: 'reply'; readonly reply: LocalReplyData }
  | { readonly ctx: number; readonly kind: 'close' };

export interface Outcome {
  /** `continue`: go on; `stop`: the plugin paused the stream (StopIteration); `reply`: a local reply. */
  status: 'continue' | 'stop' | 'reply';
  /** The map the callback was about, when the plugin changed it. */
  headers?: Pairs;
  /** Body and trailer callbacks: the body buffer, when the plugin changed it. */
  body?: Uint8Array;
  /** Body and trailer callbacks: the stream's request or response headers (per direction), when changed. */
  streamHeaders?: Pairs;
  /** Trailer callbacks: the trailers, when changed. */
  trailers?: Pairs;
  /** Body callbacks: StopIterationNoBuffer (the host must not keep the chunk). */
  noBuffer?: boolean;
  reply?: LocalReplyData;
  logs?: [number, string][];
  httpCalls?: HttpCallRequest[];
  tickMs?: number;
  metrics?: MetricValue[];
  events?: StreamEvent[];
}

export { WasmVmError } from './errors.ts';

/** Host functions Portico does not implement: they answer Unimplemented. */
export const UNIMPLEMENTED = new Set<string>([
  'proxy_get_status',
  'proxy_grpc_call',
  'proxy_grpc_stream',
  'proxy_grpc_send',
  'proxy_grpc_cancel',
  'proxy_grpc_close',
  'proxy_call_foreign_function',
]);

/** Which stream callbacks beyond the headers a module exports (the host reads bodies only for these). */
export interface StreamCallbacks {
  readonly requestBody: boolean;
  readonly requestTrailers: boolean;
  readonly responseBody: boolean;
  readonly responseTrailers: boolean;
}

/** A body buffer during its callback (HttpRequestBody / HttpResponseBody). */
interface BodyBuffer {
  data: Uint8Array;
  end: boolean;
  dirty: boolean;
}

interface Stream {
  readonly id: number;
  request: Pairs;
  requestDirty: boolean;
  response: Pairs | undefined;
  responseDirty: boolean;
  requestBody: BodyBuffer | undefined;
  responseBody: BodyBuffer | undefined;
  requestTrailers: Pairs | undefined;
  requestTrailersDirty: boolean;
  responseTrailers: Pairs | undefined;
  responseTrailersDirty: boolean;
  readonly info: StreamInfo;
  respInfo: ResponseInfo | undefined;
  /** set_property values (Envoy's filter state). */
  filterState: Map<string, Uint8Array> | undefined;
  /** True while a callback of this stream runs. */
  inCallback: boolean;
}

interface Metric {
  readonly name: string;
  readonly type: number;
  value: number;
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();
const encoder = new TextEncoder();
const ROOT = 1;

type Fn = (...args: number[]) => number;
type Exports = Record<string, WebAssembly.ExportValue>;

export class Engine {
  readonly abi: AbiVersion;
  private readonly instance: WebAssembly.Instance;
  private readonly memory: WebAssembly.Memory;
  private readonly exportsFns: Exports;
  private readonly alloc: Fn;
  private buf: ArrayBuffer | undefined;
  private u8 = EMPTY;
  private dv = new DataView(new ArrayBuffer(0));
  private readonly streams = new Map<number, Stream>();
  private nextCtx = ROOT + 1;
  private effective = ROOT;
  private out: Outcome = { status: 'continue' };
  private failed: string | undefined;
  private nextToken = 1;
  private readonly metrics: Metric[] = [];
  private readonly metricIds = new Map<string, number>();
  private metricsDirty = false;
  /** During proxy_on_http_call_response: the answer's headers and body. */
  private callResponse: { headers: Pairs; body: Uint8Array; trailers: Pairs } | undefined;
  private readonly on: {
    requestHeaders?: Fn; requestBody?: Fn; requestTrailers?: Fn; responseHeaders?: Fn; responseBody?: Fn; responseTrailers?: Fn;
    contextCreate?: Fn; done?: Fn; log?: Fn; delete?: Fn;
    tick?: Fn; queueReady?: Fn; httpCallResponse?: Fn;
  };

  /**
   * `budget` is given for modules metered by wasm/meter.ts (inline VMs): it serves their refuel
   * import and bounds WASI sleeps by the running call's deadline.
   */
  constructor(
    module: WebAssembly.Module,
    private readonly settings: EngineSettings,
    private readonly services: HostServices,
    private readonly budget?: CallBudget,
  ) {
    const exportNames = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
    const version = ABI_VERSIONS.find((v) => exportNames.has(v));
    if (!version) throw new WasmVmError(`module exports none of ${ABI_VERSIONS.join(', ')}: not a proxy-wasm module`, 'start');
    this.abi = version.slice('proxy_abi_version_'.length).replace(/_/g, '.') as AbiVersion;

    // stdin is /dev/null: a plugin reading it gets end of file instead of blocking its thread.
    const wasi = new WASI({ version: 'preview1', args: [settings.pluginName], env: { ...settings.env }, returnOnExit: true, stdin: devNull() });
    const wasiImports = (wasi.getImportObject() as { wasi_snapshot_preview1: Record<string, WebAssembly.ImportValue> }).wasi_snapshot_preview1;
    const wasiOverride: Record<string, WebAssembly.ImportValue> = { ...wasiImports, fd_write: this.fdWrite(wasiImports.fd_write as Fn) };
    if (budget) wasiOverride.poll_oneoff = this.pollOneoff(wasiImports.poll_oneoff as Fn, budget);
    const env = this.hostFunctions();
    const imports: WebAssembly.Imports = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.kind !== 'function') {
        throw new WasmVmError(`module imports ${imp.kind} ${imp.module}.${imp.name}; only functions can be provided`, 'start');
      }
      const table = (imports[imp.module] ??= {});
      if (imp.module === 'wasi_snapshot_preview1' || imp.module === 'wasi_unstable') {
        // wasi_unstable is the pre-snapshot name some SDKs import (AssemblyScript's proc_exit);
        // the calls these plugins use have the same signatures in both.
        table[imp.name] = wasiOverride[imp.name] ?? (() => 52 /* ENOSYS */);
      } else if (imp.module === 'env') {
        table[imp.name] = env[imp.name] ?? (() => Result.Unimplemented);
      } else if (budget && imp.module === METER_MODULE && imp.name === REFUEL) {
        table[imp.name] = budget.refuel;
      } else {
        table[imp.name] = () => Result.Unimplemented;
      }
    }
    try {
      this.instance = new WebAssembly.Instance(module, imports);
    } catch (e) {
      throw new WasmVmError(`instantiation failed: ${(e as Error).message}`, 'start');
    }
    this.exportsFns = this.instance.exports;
    if (budget) {
      const fuel = this.exportsFns[FUEL_EXPORT];
      if (!(fuel instanceof WebAssembly.Global)) throw new WasmVmError('metered module lacks its fuel global', 'start');
      budget.fuel = fuel;
    }
    const mem = this.exportsFns.memory;
    if (!(mem instanceof WebAssembly.Memory)) throw new WasmVmError('module exports no memory', 'start');
    this.memory = mem;
    const alloc = this.exportsFns.proxy_on_memory_allocate ?? this.exportsFns.malloc;
    if (typeof alloc !== 'function') throw new WasmVmError('module exports neither proxy_on_memory_allocate nor malloc', 'start');
    this.alloc = alloc as Fn;
    const fn = (name: string): Fn | undefined => {
      const f = this.exportsFns[name];
      return typeof f === 'function' ? (f as Fn) : undefined;
    };
    this.on = {
      requestHeaders: fn('proxy_on_request_headers'),
      requestBody: fn('proxy_on_request_body'),
      requestTrailers: fn('proxy_on_request_trailers'),
      responseHeaders: fn('proxy_on_response_headers'),
      responseBody: fn('proxy_on_response_body'),
      responseTrailers: fn('proxy_on_response_trailers'),
      contextCreate: fn('proxy_on_context_create'),
      done: fn('proxy_on_done'),
      log: fn('proxy_on_log'),
      delete: fn('proxy_on_delete'),
      tick: fn('proxy_on_tick'),
      queueReady: fn('proxy_on_queue_ready'),
      httpCallResponse: fn('proxy_on_http_call_response'),
    };
    // Reactors (Go c-shared, Rust cdylib with WASI) export _initialize; commands export _start.
    this.guard('start', () => {
      if (typeof this.exportsFns._start === 'function') wasi.start(this.instance);
      else wasi.initialize(this.instance);
    });
  }

  /** Builds a module with its memory capped, then the engine (worker VMs: not metered). */
  static create(bytes: Uint8Array, settings: EngineSettings, services: HostServices): Engine {
    let module: WebAssembly.Module;
    try {
      module = new WebAssembly.Module(limitMemory(bytes, settings.memoryLimitBytes));
    } catch (e) {
      throw new WasmVmError(`invalid module: ${(e as Error).message}`, 'start');
    }
    return new Engine(module, settings, services);
  }

  get isFailed(): string | undefined {
    return this.failed;
  }

  /** Linear memory in bytes now. */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** The body and trailer callbacks this module exports. */
  get callbacks(): StreamCallbacks {
    const on = this.on;
    return { requestBody: !!on.requestBody, requestTrailers: !!on.requestTrailers, responseBody: !!on.responseBody, responseTrailers: !!on.responseTrailers };
  }

  /** proxy_on_context_create(root), proxy_on_vm_start, proxy_on_configure; false from either fails the VM. */
  start(): Outcome & { callbacks: StreamCallbacks } {
    const o = this.run('configure', ROOT, () => {
      this.on.contextCreate?.(ROOT, 0);
      const vmStart = this.exportsFns.proxy_on_vm_start as Fn | undefined;
      if (vmStart && vmStart(ROOT, this.settings.vmConfig.length) === 0) throw new WasmVmError('proxy_on_vm_start returned false', 'configure');
      const configure = this.exportsFns.proxy_on_configure as Fn | undefined;
      if (configure && configure(ROOT, this.settings.pluginConfig.length) === 0) {
        throw new WasmVmError('proxy_on_configure returned false', 'configure');
      }
    });
    return Object.assign(o, { callbacks: this.callbacks });
  }

  /** A new stream: proxy_on_context_create then proxy_on_request_headers. */
  requestHeaders(info: StreamInfo, headers: Pairs, endOfStream: boolean): Outcome & { ctx: number } {
    const id = this.nextCtx++;
    const s: Stream = {
      id, request: headers, requestDirty: false, response: undefined, responseDirty: false, requestBody: undefined, responseBody: undefined,
      requestTrailers: undefined, requestTrailersDirty: false, responseTrailers: undefined, responseTrailersDirty: false,
      info, respInfo: undefined, filterState: undefined, inCallback: false,
    };
    this.streams.set(id, s);
    // The hot callbacks enter and leave by hand: a closure per call (run's) costs more than the
    // plugin's own work for small plugins.
    this.enter('call', id, s);
    try {
      this.on.contextCreate?.(id, ROOT);
      this.headersCallback(this.on.requestHeaders, id, headers, endOfStream);
    } catch (e) {
      throw this.abort('call', e, s);
    }
    const o = this.leave(s);
    if (s.requestDirty) o.headers = s.request;
    s.requestDirty = false;
    return Object.assign(o, { ctx: id });
  }

  /**
   * proxy_on_request_body with `body` as the HttpRequestBody buffer (what the host holds for this
   * stream: the data buffered by earlier StopIterationAndBuffer answers plus the new chunk).
   */
  requestBody(ctx: number, body: Uint8Array, endOfStream: boolean): Outcome {
    return this.bodyCall(ctx, 'request', body, endOfStream);
  }

  /** proxy_on_response_body, as requestBody. */
  responseBody(ctx: number, body: Uint8Array, endOfStream: boolean): Outcome {
    return this.bodyCall(ctx, 'response', body, endOfStream);
  }

  /**
   * proxy_on_request_trailers / proxy_on_response_trailers. `held` is the body the plugin still
   * buffers: as in Envoy, the trailers callback can read and replace it (the body buffer).
   */
  trailers(ctx: number, dir: 'request' | 'response', trailers: Pairs, held: Uint8Array): Outcome {
    const s = this.streams.get(ctx);
    if (!s) return { status: 'continue' };
    const fn = dir === 'request' ? this.on.requestTrailers : this.on.responseTrailers;
    const buf: BodyBuffer = { data: held, end: true, dirty: false };
    if (dir === 'request') {
      s.requestTrailers = trailers;
      s.requestBody = buf;
    } else {
      s.responseTrailers = trailers;
      s.responseBody = buf;
    }
    const o = this.run('call', ctx, () => {
      const r = fn?.(ctx, countPairs(trailers)) ?? Action.Continue;
      if (r !== Action.Continue && this.out.status === 'continue') this.out.status = 'stop';
    }, s);
    if (buf.dirty) o.body = buf.data;
    if (dir === 'request') s.requestBody = undefined;
    else s.responseBody = undefined;
    if (dir === 'request' && s.requestTrailersDirty) o.trailers = s.requestTrailers;
    if (dir === 'response' && s.responseTrailersDirty) o.trailers = s.responseTrailers;
    this.changedHeaders(s, dir, o);
    return o;
  }

  private bodyCall(ctx: number, dir: 'request' | 'response', body: Uint8Array, endOfStream: boolean): Outcome {
    const s = this.streams.get(ctx);
    if (!s) return { status: 'continue' };
    const buf: BodyBuffer = { data: body, end: endOfStream, dirty: false };
    if (dir === 'request') s.requestBody = buf;
    else s.responseBody = buf;
    const fn = dir === 'request' ? this.on.requestBody : this.on.responseBody;
    const o = this.run('call', ctx, () => {
      // FilterDataStatus: Continue 0, StopIterationAndBuffer 1, StopIterationAndWatermark 2, StopIterationNoBuffer 3.
      const r = fn?.(ctx, body.length, endOfStream ? 1 : 0) ?? Action.Continue;
      if (r !== Action.Continue && this.out.status === 'continue') this.out.status = 'stop';
      if (r === 3) this.out.noBuffer = true;
    }, s);
    if (buf.dirty) o.body = buf.data;
    this.changedHeaders(s, dir, o);
    // The buffer belongs to this callback only (Envoy's is the filter manager's, between calls).
    if (dir === 'request') s.requestBody = undefined;
    else s.responseBody = undefined;
    return o;
  }

  /** Header changes made in a body or trailer callback (the host applies them while it still holds the headers). */
  private changedHeaders(s: Stream, dir: 'request' | 'response', o: Outcome): void {
    if (dir === 'request' && s.requestDirty) o.streamHeaders = s.request;
    if (dir === 'response' && s.responseDirty && s.response) o.streamHeaders = s.response;
    if (dir === 'request') s.requestDirty = false;
    else s.responseDirty = false;
  }

  responseHeaders(ctx: number, info: ResponseInfo, headers: Pairs, endOfStream: boolean): Outcome {
    const s = this.streams.get(ctx);
    if (!s) return { status: 'continue' };
    s.response = headers;
    s.respInfo = info;
    this.enter('call', ctx, s);
    try {
      this.headersCallback(this.on.responseHeaders, ctx, headers, endOfStream);
    } catch (e) {
      throw this.abort('call', e, s);
    }
    const o = this.leave(s);
    if (s.responseDirty) o.headers = s.response;
    s.responseDirty = false;
    return o;
  }

  /** The stream is over: proxy_on_done, proxy_on_log, proxy_on_delete. */
  streamDone(ctx: number, info?: ResponseInfo): Outcome {
    const s = this.streams.get(ctx);
    if (!s) return { status: 'continue' };
    if (info) s.respInfo = info;
    this.enter('call', ctx, s);
    try {
      this.on.done?.(ctx);
      this.on.log?.(ctx);
      this.on.delete?.(ctx);
    } catch (e) {
      this.streams.delete(ctx);
      throw this.abort('call', e, s);
    }
    this.streams.delete(ctx);
    return this.leave(s);
  }

  tick(): Outcome {
    return this.run('call', ROOT, () => this.on.tick?.(ROOT));
  }

  queueReady(token: number): Outcome {
    return this.run('call', ROOT, () => this.on.queueReady?.(ROOT, token));
  }

  /** An HTTP call answered (status 0 headers for a failed call, as Envoy reports a reset). */
  httpCallResponse(token: number, headers: Pairs, body: Uint8Array, trailers: Pairs): Outcome {
    this.callResponse = { headers, body, trailers };
    try {
      return this.run('call', ROOT, () => this.on.httpCallResponse?.(ROOT, token, countPairs(headers), body.length, countPairs(trailers)));
    } finally {
      this.callResponse = undefined;
    }
  }

  // --- calling into the module ------------------------------------------------------------

  private run(phase: 'configure' | 'call', ctx: number, body: () => void, stream?: Stream): Outcome {
    this.enter(phase, ctx, stream);
    try {
      body();
    } catch (e) {
      throw this.abort(phase, e, stream);
    }
    return this.leave(stream);
  }

  /** proxy_on_request_headers / proxy_on_response_headers (0.1.0 has no end_of_stream). */
  private headersCallback(fn: Fn | undefined, ctx: number, headers: Pairs, endOfStream: boolean): void {
    if (!fn) return;
    const r = this.abi === '0.1.0' ? fn(ctx, countPairs(headers)) : fn(ctx, countPairs(headers), endOfStream ? 1 : 0);
    if (r !== Action.Continue && this.out.status === 'continue') this.out.status = 'stop';
  }

  /** Starts a callback into the module (fails at once when the VM failed earlier). */
  private enter(phase: 'configure' | 'call', ctx: number, stream: Stream | undefined): void {
    if (this.failed) throw new WasmVmError(`VM failed earlier: ${this.failed}`, phase);
    this.out = { status: 'continue' };
    this.effective = ctx;
    if (stream) stream.inCallback = true;
  }

  /** Ends a callback that returned: its outcome, with the metric values when they changed. */
  private leave(stream: Stream | undefined): Outcome {
    if (stream) stream.inCallback = false;
    this.effective = ROOT;
    if (this.metricsDirty) {
      this.out.metrics = this.metrics.map((m) => ({ name: m.name, type: m.type, value: m.value }));
      this.metricsDirty = false;
    }
    return this.out;
  }

  /** Ends a callback that threw: the VM is failed; returns the error to throw. */
  private abort(phase: 'start' | 'configure' | 'call', e: unknown, stream?: Stream): WasmVmError {
    if (stream) stream.inCallback = false;
    this.effective = ROOT;
    const msg = e instanceof WasmVmError ? e.message : describeTrap(e);
    this.failed = msg;
    return e instanceof WasmVmError ? e : new WasmVmError(msg, phase);
  }

  private guard(phase: 'start' | 'configure' | 'call', body: () => void): void {
    try {
      body();
    } catch (e) {
      throw this.abort(phase, e);
    }
  }

  // --- memory helpers -----------------------------------------------------------------------

  private view(): void {
    const b = this.memory.buffer;
    if (b !== this.buf) {
      this.buf = b;
      this.u8 = new Uint8Array(b);
      this.dv = new DataView(b);
    }
  }

  private bytes(ptr: number, size: number): Uint8Array {
    this.view();
    const p = ptr >>> 0;
    const n = size >>> 0;
    if (p + n > this.u8.length) throw new WasmVmError(`host call read out of bounds (${p}+${n})`, 'call');
    return this.u8.subarray(p, p + n);
  }

  private str(ptr: number, size: number): string {
    return size === 0 ? '' : utf8.decode(this.bytes(ptr, size));
  }

  private setU32(ptr: number, v: number): void {
    this.view();
    this.dv.setUint32(ptr >>> 0, v >>> 0, true);
  }

  private setU64(ptr: number, v: bigint): void {
    this.view();
    this.dv.setBigUint64(ptr >>> 0, v, true);
  }

  /** Copies data into module memory it allocates, writing pointer and size (0/0 when empty). */
  private give(data: Uint8Array, ptrPtr: number, sizePtr: number): number {
    let p = 0;
    if (data.length > 0) {
      p = this.alloc(data.length) >>> 0;
      if (p === 0) return Result.InvalidMemoryAccess;
      this.view(); // allocation may have grown memory
      this.u8.set(data, p);
    }
    this.setU32(ptrPtr, p);
    this.setU32(sizePtr, data.length);
    return Result.Ok;
  }

  private giveString(s: string, ptrPtr: number, sizePtr: number): number {
    return this.give(encoder.encode(s), ptrPtr, sizePtr);
  }

  // --- host functions -------------------------------------------------------------------------

  private stream(): Stream | undefined {
    return this.streams.get(this.effective);
  }

  /** The header map a host call names; undefined when it does not exist now (BadArgument). */
  private pairsOf(type: number): Pairs | undefined {
    switch (type) {
      case HeaderMapType.RequestHeaders:
        return this.stream()?.request;
      case HeaderMapType.ResponseHeaders:
        return this.stream()?.response;
      case HeaderMapType.HttpCallResponseHeaders:
        return this.callResponse?.headers;
      case HeaderMapType.HttpCallResponseTrailers:
        return this.callResponse?.trailers;
      case HeaderMapType.RequestTrailers: {
        const s = this.stream();
        return s ? (s.requestTrailers ?? []) : undefined;
      }
      case HeaderMapType.ResponseTrailers: {
        const s = this.stream();
        return s ? (s.responseTrailers ?? []) : undefined;
      }
      default:
        return undefined;
    }
  }

  /** Replaces a header map pairsOf found (an HTTP call's answer is read-only: ignored). */
  private setPairs(type: number, p: Pairs): void {
    const s = this.stream();
    if (!s) return;
    switch (type) {
      case HeaderMapType.RequestHeaders:
        s.request = p;
        s.requestDirty = true;
        return;
      case HeaderMapType.ResponseHeaders:
        s.response = p;
        s.responseDirty = true;
        return;
      case HeaderMapType.RequestTrailers:
        s.requestTrailers = p;
        s.requestTrailersDirty = true;
        return;
      case HeaderMapType.ResponseTrailers:
        s.responseTrailers = p;
        s.responseTrailersDirty = true;
        return;
    }
  }

  private buffer(type: number): { data: Uint8Array; end: boolean; set?: (d: Uint8Array) => void } | undefined {
    switch (type) {
      case BufferType.PluginConfiguration:
        return { data: this.settings.pluginConfig, end: true };
      case BufferType.VmConfiguration:
        return { data: this.settings.vmConfig, end: true };
      case BufferType.HttpCallResponseBody:
        return this.callResponse ? { data: this.callResponse.body, end: true } : undefined;
      case BufferType.HttpRequestBody:
      case BufferType.HttpResponseBody: {
        const b = type === BufferType.HttpRequestBody ? this.stream()?.requestBody : this.stream()?.responseBody;
        if (!b) return undefined;
        return { data: b.data, end: b.end, set: (d) => { b.data = d; b.dirty = true; } };
      }
      default:
        return undefined;
    }
  }

  private event(e: StreamEvent): void {
    (this.out.events ??= []).push(e);
  }

  /**
   * WASI poll_oneoff for metered VMs: a clock wait that would end past the running call's
   * deadline is not slept; the call is ended as over budget instead (the module traps at its next
   * fuel check). Subscription layout (WASI preview 1): 48 bytes each, tag at 8, clock id at 16,
   * timeout (ns) at 24, flags at 40 (bit 0: absolute time).
   */
  private pollOneoff(original: Fn, budget: CallBudget): Fn {
    return (inPtr, outPtr, nsubs, neventsPtr) => {
      this.view();
      let soonest = Infinity;
      for (let i = 0; i < nsubs >>> 0; i++) {
        const base = (inPtr >>> 0) + i * 48;
        if (this.u8[base + 8] !== 0) {
          soonest = 0; // an fd subscription: stdin is /dev/null, ready at once
          break;
        }
        const clock = this.dv.getUint32(base + 16, true);
        const timeout = this.dv.getBigUint64(base + 24, true);
        const abs = (this.dv.getUint16(base + 40, true) & 1) === 1;
        const now = clock === 0 ? BigInt(Date.now()) * 1_000_000n : process.hrtime.bigint();
        const rel = abs ? timeout - now : timeout;
        soonest = Math.min(soonest, Number(rel) / 1e6);
      }
      if (soonest > budget.remainingMs()) {
        budget.exhaust();
        return 58; // ENOTSUP
      }
      return original(inPtr, outPtr, nsubs, neventsPtr);
    };
  }

  private fdWrite(original: Fn): Fn {
    // WASI stdout/stderr go to Portico's log (info/error), as Envoy forwards them.
    return (fd, iovs, iovsLen, nwrittenPtr) => {
      if (fd !== 1 && fd !== 2) return original(fd, iovs, iovsLen, nwrittenPtr);
      this.view();
      let text = '';
      let total = 0;
      for (let i = 0; i < iovsLen; i++) {
        const base = this.dv.getUint32((iovs >>> 0) + i * 8, true);
        const len = this.dv.getUint32((iovs >>> 0) + i * 8 + 4, true);
        text += utf8.decode(this.u8.subarray(base, base + len));
        total += len;
      }
      const level = fd === 1 ? 2 : 4;
      if (level >= this.settings.logLevel && text.trim()) (this.out.logs ??= []).push([level, text.trimEnd()]);
      this.setU32(nwrittenPtr, total);
      return 0;
    };
  }

  private hostFunctions(): Record<string, Fn> {
    const R = Result;
    const h: Record<string, Fn> = {
      proxy_log: (level, ptr, size) => {
        if (level >= this.settings.logLevel) (this.out.logs ??= []).push([level, this.str(ptr, size)]);
        return R.Ok;
      },
      proxy_get_log_level: (ptr) => {
        this.setU32(ptr, this.settings.logLevel);
        return R.Ok;
      },
      proxy_get_current_time_nanoseconds: (ptr) => {
        this.setU64(ptr, BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)));
        return R.Ok;
      },
      proxy_set_tick_period_milliseconds: (ms) => {
        this.out.tickMs = ms >>> 0;
        return R.Ok;
      },
      proxy_get_configuration: (ptrPtr, sizePtr) => this.give(this.settings.pluginConfig, ptrPtr, sizePtr),
      proxy_get_property: (pathPtr, pathSize, ptrPtr, sizePtr) => {
        const path = this.str(pathPtr, pathSize).split('\0');
        const s = this.stream();
        const own = s?.filterState?.get(path.join('.'));
        const value = own ?? this.property(path, s);
        if (value === undefined) return R.NotFound;
        return this.give(value, ptrPtr, sizePtr);
      },
      proxy_set_property: (pathPtr, pathSize, valPtr, valSize) => {
        const s = this.stream();
        if (!s) return R.NotFound;
        (s.filterState ??= new Map()).set(this.str(pathPtr, pathSize).split('\0').join('.'), this.bytes(valPtr, valSize).slice());
        return R.Ok;
      },
      proxy_continue_stream: (type) => this.continueStream(type),
      proxy_continue_request: () => this.continueStream(0),
      proxy_continue_response: () => this.continueStream(1),
      proxy_close_stream: () => {
        const s = this.stream();
        if (!s) return R.NotFound;
        if (s.inCallback) this.out.reply = { status: 503, details: 'wasm_close_stream', body: EMPTY, headers: [], grpcStatus: -1 };
        if (s.inCallback) this.out.status = 'reply';
        else this.event({ ctx: s.id, kind: 'close' });
        return R.Ok;
      },
      proxy_send_local_response: (status, dPtr, dSize, bPtr, bSize, hPtr, hSize, grpc) => {
        const s = this.stream();
        if (!s) return R.NotFound;
        const reply: LocalReplyData = {
          status: status >>> 0,
          details: this.str(dPtr, dSize),
          body: this.bytes(bPtr, bSize).slice(),
          headers: hSize > 0 ? decodePairs(this.bytes(hPtr, hSize)) : [],
          grpcStatus: grpc | 0,
        };
        if (s.inCallback) {
          this.out.reply = reply;
          this.out.status = 'reply';
        } else {
          this.event({ ctx: s.id, kind: 'reply', reply });
        }
        return R.Ok;
      },
      proxy_clear_route_cache: () => R.Ok,
      proxy_get_shared_data: (kPtr, kSize, ptrPtr, sizePtr, casPtr) => {
        const v = this.services.sharedGet(this.settings.vmId, this.str(kPtr, kSize));
        if (!v) return R.NotFound;
        const r = this.give(v.value, ptrPtr, sizePtr);
        this.setU32(casPtr, v.cas);
        return r;
      },
      proxy_set_shared_data: (kPtr, kSize, vPtr, vSize, cas) =>
        this.services.sharedSet(this.settings.vmId, this.str(kPtr, kSize), this.bytes(vPtr, vSize).slice(), cas >>> 0),
      proxy_register_shared_queue: (nPtr, nSize, tokenPtr) => {
        this.setU32(tokenPtr, this.services.queueRegister(this.settings.vmId, this.str(nPtr, nSize)));
        return R.Ok;
      },
      proxy_resolve_shared_queue: (vPtr, vSize, nPtr, nSize, tokenPtr) => {
        const vm = this.str(vPtr, vSize) || this.settings.vmId;
        const t = this.services.queueResolve(vm, this.str(nPtr, nSize));
        if (t === undefined) return R.NotFound;
        this.setU32(tokenPtr, t);
        return R.Ok;
      },
      proxy_enqueue_shared_queue: (token, vPtr, vSize) => this.services.queueEnqueue(token >>> 0, this.bytes(vPtr, vSize).slice()),
      proxy_dequeue_shared_queue: (token, ptrPtr, sizePtr) => {
        const v = this.services.queueDequeue(token >>> 0);
        if (typeof v === 'number') return v;
        return this.give(v, ptrPtr, sizePtr);
      },
      proxy_get_header_map_value: (type, kPtr, kSize, ptrPtr, sizePtr) => {
        const pairs = this.pairsOf(type);
        if (!pairs) return R.BadArgument;
        const key = this.str(kPtr, kSize).toLowerCase();
        for (let i = 0; i < pairs.length; i++) {
          if (pairs[i][0] === key) return this.giveString(pairs[i][1], ptrPtr, sizePtr);
        }
        return R.NotFound;
      },
      proxy_add_header_map_value: (type, kPtr, kSize, vPtr, vSize) => {
        const pairs = this.pairsOf(type);
        if (!pairs) return R.BadArgument;
        const next = pairs.slice();
        next.push([this.str(kPtr, kSize).toLowerCase(), this.str(vPtr, vSize)]);
        this.setPairs(type, next);
        return R.Ok;
      },
      proxy_replace_header_map_value: (type, kPtr, kSize, vPtr, vSize) => {
        const pairs = this.pairsOf(type);
        if (!pairs) return R.BadArgument;
        const key = this.str(kPtr, kSize).toLowerCase();
        const next = pairs.filter((p) => p[0] !== key);
        next.push([key, this.str(vPtr, vSize)]);
        this.setPairs(type, next);
        return R.Ok;
      },
      proxy_remove_header_map_value: (type, kPtr, kSize) => {
        const pairs = this.pairsOf(type);
        if (!pairs) return R.BadArgument;
        const key = this.str(kPtr, kSize).toLowerCase();
        this.setPairs(type, pairs.filter((p) => p[0] !== key));
        return R.Ok;
      },
      proxy_get_header_map_pairs: (type, ptrPtr, sizePtr) => {
        const pairs = this.pairsOf(type);
        if (!pairs) return R.BadArgument;
        return this.give(encodePairs(pairs), ptrPtr, sizePtr);
      },
      proxy_set_header_map_pairs: (type, ptr, size) => {
        if (!this.pairsOf(type)) return R.BadArgument;
        this.setPairs(type, decodePairs(this.bytes(ptr, size)).map(([k, v]) => [k.toLowerCase(), v]));
        return R.Ok;
      },
      proxy_get_header_map_size: (type, sizePtr) => {
        const pairs = this.pairsOf(type);
        if (!pairs) return R.BadArgument;
        let n = 0;
        for (const [k, v] of pairs) n += Buffer.byteLength(k) + Buffer.byteLength(v);
        this.setU32(sizePtr, n);
        return R.Ok;
      },
      proxy_get_buffer_bytes: (type, start, length, ptrPtr, sizePtr) => {
        const b = this.buffer(type);
        if (!b) return R.NotFound;
        const s = Math.min(start >>> 0, b.data.length);
        const e = Math.min(s + (length >>> 0), b.data.length);
        return this.give(b.data.subarray(s, e), ptrPtr, sizePtr);
      },
      proxy_get_buffer_status: (type, lengthPtr, flagsPtr) => {
        const b = this.buffer(type);
        if (!b) return R.NotFound;
        this.setU32(lengthPtr, b.data.length);
        this.setU32(flagsPtr, b.end ? 1 : 0);
        return R.Ok;
      },
      proxy_set_buffer_bytes: (type, start, length, dPtr, dSize) => {
        const b = this.buffer(type);
        if (!b || !b.set) return R.BadArgument;
        // As Envoy's Buffer::copyFrom (source/extensions/common/wasm/context.cc): start 0 drops
        // `length` bytes from the front and prepends the data; start at or past the end appends;
        // anything in between is BadArgument.
        const st = start >>> 0;
        const d = this.bytes(dPtr, dSize);
        const old = b.data;
        if (st === 0) {
          const drop = Math.min(length >>> 0, old.length);
          const next = new Uint8Array(old.length - drop + d.length);
          next.set(d, 0);
          next.set(old.subarray(drop), d.length);
          b.set(next);
        } else if (st >= old.length) {
          const next = new Uint8Array(old.length + d.length);
          next.set(old, 0);
          next.set(d, old.length);
          b.set(next);
        } else return R.BadArgument;
        return R.Ok;
      },
      proxy_http_call: (uPtr, uSize, hPtr, hSize, bPtr, bSize, _tPtr, _tSize, timeout, tokenPtr) => {
        const cluster = this.str(uPtr, uSize);
        const headers = hSize > 0 ? decodePairs(this.bytes(hPtr, hSize)) : [];
        // Envoy refuses a call without these, or to a cluster it does not know (BadArgument).
        const has = (n: string): boolean => headers.some((p) => p[0] === n);
        if (!has(':method') || !has(':path') || !has(':authority')) return R.BadArgument;
        if (!this.services.clusterKnown(cluster)) return R.BadArgument;
        const token = this.nextToken++;
        (this.out.httpCalls ??= []).push({ token, cluster, headers, body: this.bytes(bPtr, bSize).slice(), timeoutMs: timeout >>> 0 });
        this.setU32(tokenPtr, token);
        return R.Ok;
      },
      proxy_define_metric: (type, nPtr, nSize, idPtr) => {
        if (type > MetricType.Histogram) return R.BadArgument;
        const name = this.str(nPtr, nSize);
        let id = this.metricIds.get(name);
        if (id === undefined) {
          id = this.metrics.length + 1;
          this.metrics.push({ name, type, value: 0 });
          this.metricIds.set(name, id);
          this.metricsDirty = true;
        }
        this.setU32(idPtr, id);
        return R.Ok;
      },
      proxy_increment_metric: (id, offset) => {
        const m = this.metrics[(id >>> 0) - 1];
        if (!m) return R.NotFound;
        if (m.type === MetricType.Histogram) return R.BadArgument;
        m.value += Number(offset as unknown as bigint);
        this.metricsDirty = true;
        return R.Ok;
      },
      proxy_record_metric: (id, value) => {
        const m = this.metrics[(id >>> 0) - 1];
        if (!m) return R.NotFound;
        const v = Number(value as unknown as bigint);
        if (m.type === MetricType.Counter) return R.BadArgument;
        // A histogram is exposed as the sum of its observations.
        m.value = m.type === MetricType.Histogram ? m.value + v : v;
        this.metricsDirty = true;
        return R.Ok;
      },
      proxy_get_metric: (id, ptr) => {
        const m = this.metrics[(id >>> 0) - 1];
        if (!m) return R.NotFound;
        this.setU64(ptr, BigInt(Math.max(0, Math.trunc(m.value))));
        return R.Ok;
      },
      proxy_set_effective_context: (id) => {
        if (id !== ROOT && !this.streams.has(id)) return R.BadArgument;
        this.effective = id;
        return R.Ok;
      },
      proxy_done: () => R.Ok,
    };
    for (const name of UNIMPLEMENTED) h[name] = () => R.Unimplemented;
    for (const name of HOST_FUNCTIONS) if (!h[name]) throw new Error(`host function ${name} has no binding`);
    return h;
  }

  private continueStream(type: number): number {
    const s = this.stream();
    if (!s) return Result.NotFound;
    if (s.inCallback) return Result.Ok; // continuing from inside its own callback: the return value decides
    if (type === 0) this.event({ ctx: s.id, kind: 'continue', requestHeaders: s.requestDirty ? s.request : undefined });
    else this.event({ ctx: s.id, kind: 'continue' });
    return Result.Ok;
  }

  private property(path: string[], s: Stream | undefined): Uint8Array | undefined {
    const st = this.settings;
    switch (path[0]) {
      case 'plugin_name':
        return encoder.encode(st.pluginName);
      case 'plugin_root_id':
        return encoder.encode(st.rootId);
      case 'plugin_vm_id':
        return encoder.encode(st.vmId);
      case 'node': {
        if (path[1] === 'id') return encoder.encode(st.node.id);
        if (path[1] === 'cluster') return encoder.encode(st.node.cluster);
        if (path[1] === 'metadata' && path.length === 3) {
          const v = st.node.metadata[path[2]];
          return v === undefined ? undefined : encoder.encode(v);
        }
        if (path[1] === 'metadata' && path.length === 2) return encodePairs(Object.entries(st.node.metadata));
        return undefined;
      }
      default:
        return s ? streamProperty(path, s.info, s.respInfo, s.request, s.response) : undefined;
    }
  }
}

function countPairs(p: Pairs): number {
  return p.length;
}

let devNullFd: number | undefined;
function devNull(): number {
  devNullFd ??= openSync('/dev/null', 'r');
  return devNullFd;
}

function describeTrap(e: unknown): string {
  if (e instanceof WebAssembly.RuntimeError) return `trap: ${e.message}`;
  if (e instanceof Error) {
    // node:wasi with returnOnExit unwinds proc_exit by throwing; its message names the code.
    return /exit/i.test(e.message) ? `WASI exit: ${e.message}` : `${e.name}: ${e.message}`;
  }
  return `thrown: ${String(e)}`;
}

/** For docs and tests: which host functions answer Unimplemented. */
export function abiCoverage(): { implemented: string[]; unimplemented: string[] } {
  const implemented = HOST_FUNCTIONS.filter((n) => !UNIMPLEMENTED.has(n));
  return { implemented: [...implemented], unimplemented: [...UNIMPLEMENTED] };
}
