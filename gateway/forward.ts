/**
 * Forwards one request to an upstream cluster through pooled undici connections, with Istio's
 * retry policy and route timeout. The response is streamed back with backpressure; the request
 * body is buffered only when it is small and a retry may need to send it again.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Dispatcher } from 'undici';
import type { Cluster, Endpoint, RetryPolicy } from '../config/snapshot.ts';
import type { Balancer, Outcome, PickRequest } from './balancer.ts';
import { ERR, fromUpstreamError, isConnectFailure, type GatewayError } from './errors.ts';
import type { HeaderMap } from './headers.ts';
import type { UpstreamPools } from './pools.ts';

export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
export type DownstreamResponse = ServerResponse | Http2ServerResponse;

export interface ForwardResult {
  status: number;
  flag: string;
  upstream?: string;
  attempts: number;
  /** Response body bytes relayed to the client. */
  responseBytes: number;
  /** The cluster's name (`outbound|port|subset|host`). */
  cluster: string;
}

/** The request body as forward() will send it. */
export type RequestBody =
  /** No body at all. */
  | { readonly kind: 'none' }
  /** Fully read (small): can be sent again on retry. */
  | { readonly kind: 'buffered'; readonly data: Buffer }
  /**
   * Streamed from the client: one attempt only. `prefix` = chunks already read while sizing it;
   * `hook`: each chunk passes it first (wasm request body callbacks).
   */
  | { readonly kind: 'stream'; readonly prefix?: readonly Buffer[]; readonly hook?: BodyHook };

export interface ForwardOptions {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly cluster: Cluster;
  readonly method: string;
  /** Path and query to send upstream. */
  readonly path: string;
  readonly headers: HeaderMap;
  readonly body: RequestBody;
  readonly timeoutMs?: number;
  readonly retries: RetryPolicy;
  /**
   * Called with the response headers before they are written (header ops, CORS). Returning a
   * body hook holds the headers until the whole body has passed through it.
   */
  readonly onResponseHeaders?: (headers: HeaderMap, status: number) => BodyHook | void;
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  readonly pickRequest?: PickRequest;
  /** Answers with a gateway error; returns the body bytes written (counted as responseBytes). */
  readonly sendError: (err: GatewayError) => number | void;
}

/** A reply that replaces a held response (a body filter answered instead). */
export interface HookReply {
  readonly status: number;
  readonly headers: HeaderMap;
  readonly body: Buffer;
}

/** Sees a body on its way (wasm body callbacks): the request's before the upstream, the response's before the client. */
export interface BodyHook {
  /** One chunk (`end`: the last); returns what goes on (empty while a filter buffers), or a reply. */
  data(chunk: Buffer, end: boolean): Buffer | HookReply;
  /** The trailers (changed in place); returns data released at the trailers, or a reply. */
  trailers(trailers: Record<string, string>): Buffer | HookReply;
  /** Most bytes held with the headers before the response is answered 500 instead (Envoy's response_payload_too_large). */
  readonly limit: number;
  /** Response: the headers wait for the body's first release (a headers callback stopped). */
  readonly holdHeaders: boolean;
}

/** A response whose body passes a BodyHook. */
interface Held {
  readonly status: number;
  readonly headers: HeaderMap;
  readonly hook: BodyHook;
  /** Released bytes waiting for the headers (while `waiting`). */
  readonly chunks: Buffer[];
  size: number;
  /** data(…, end=true) was called. */
  ended: boolean;
  /** The headers are not written yet. */
  waiting: boolean;
}

/** A body filter answered while the request body streamed upstream (the reply rides on the error). */
class BodyReplyError extends Error {
  readonly code = 'PORTICO_BODY_FILTER_REPLY';
  constructor(readonly reply: HookReply) {
    super('answered by a body filter');
  }
}

const EMPTY_BODY: Buffer = Buffer.alloc(0);

/** Largest request body kept in memory so that a retry can resend it (Envoy buffers similarly). */
export const RETRY_BUFFER_LIMIT = 64 * 1024;

const BASE_BACKOFF_MS = 25;
const MAX_BACKOFF_MS = 250;

/** gRPC status names Envoy's retry_on understands, by code. */
const GRPC_RETRY_ON: Readonly<Record<string, string>> = { '1': 'cancelled', '4': 'deadline-exceeded', '8': 'resource-exhausted', '13': 'internal', '14': 'unavailable' };

/** undici's raw (pre-controller) dispatch handler; `false` from onHeaders/onData pauses. */
interface RawHandler {
  onConnect(abort: (err: Error) => void): void;
  onHeaders(statusCode: number, rawHeaders: (Buffer | string)[], resume: () => void, statusText: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: (Buffer | string)[] | Record<string, string | string[]> | null): void;
  onError(err: Error): void;
}

/** Response headers that a proxy must not relay (RFC 9110 §7.6.1), and that HTTP/2 forbids. */
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer', 'http2-settings']);

/** Flat raw `[name, value, ...]` → a lower-cased header map without hop-by-hop fields. */
export function rawResponseHeaders(raw: readonly (Buffer | string)[]): HeaderMap {
  const out: HeaderMap = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString().toLowerCase();
    if (RESPONSE_HOP_BY_HOP.has(name) || name.charCodeAt(0) === 58 /* : */) continue;
    const value = raw[i + 1]!.toString();
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = [prior, value];
  }
  return out;
}

/** HTTP/1.1 trailers come as a raw array, HTTP/2 ones as an object; undefined when there are none. */
function rawTrailers(t: (Buffer | string)[] | Record<string, string | string[]> | null): Record<string, string> | undefined {
  if (!t) return undefined;
  const out: Record<string, string> = {};
  let any = false;
  if (Array.isArray(t)) {
    for (let i = 0; i < t.length; i += 2) {
      out[t[i]!.toString().toLowerCase()] = t[i + 1]!.toString();
      any = true;
    }
  } else {
    for (const [k, v] of Object.entries(t)) {
      if (k.charCodeAt(0) === 58) continue;
      out[k] = Array.isArray(v) ? v.join(', ') : v;
      any = true;
    }
  }
  return any ? out : undefined;
}

/** Whether the client sends a body, judged from the headers (HTTP/2: the stream is not ended). */
export function requestHasBody(req: DownstreamRequest): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  if (cl !== undefined) return cl !== '0';
  const stream = (req as Http2ServerRequest).stream;
  if (stream !== undefined) return !stream.endAfterHeaders;
  return false;
}

/**
 * Decides how to send the body: buffered when small and declared by content-length and the route
 * may retry, streamed otherwise. Resolves once a buffered body has been read.
 */
export function prepareBody(req: DownstreamRequest, retries: RetryPolicy): Promise<RequestBody> | RequestBody {
  if (!requestHasBody(req)) return { kind: 'none' };
  const lengthHeader = req.headers['content-length'];
  const declared = lengthHeader === undefined ? undefined : Number(lengthHeader);
  if (retries.attempts <= 0 || (declared !== undefined && !(declared <= RETRY_BUFFER_LIMIT))) return { kind: 'stream' };
  // Small or of unknown length (chunked, HTTP/2, gRPC): read up to the limit. A body that turns
  // out larger is streamed on: what was read, then the rest (and is not retried).
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      size += c.length;
      if (size <= RETRY_BUFFER_LIMIT) return;
      req.off('data', onData);
      req.off('end', onEnd);
      req.pause();
      resolve({ kind: 'stream', prefix: chunks });
    };
    const onEnd = (): void => {
      req.off('aborted', onAborted);
      if (bodyTruncated(req)) reject(truncatedBodyError());
      else resolve({ kind: 'buffered', data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
    };
    const onAborted = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      reject(truncatedBodyError());
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('aborted', onAborted);
    req.once('error', reject);
  });
}

/**
 * Whether the client's body ended without the client finishing it: the connection or stream
 * was aborted, or (HTTP/2) the stream was reset, e.g. by nghttp2 for DATA longer or shorter
 * than `content-length` (RFC 9113 §8.1.1: malformed, a stream error). Node's HTTP/2
 * compatibility request still emits 'end' after such a reset, so 'end' alone proves nothing.
 */
export function bodyTruncated(req: DownstreamRequest): boolean {
  if (req.aborted) return true;
  const stream = (req as Http2ServerRequest).stream as Http2ServerRequest['stream'] | undefined;
  return stream !== undefined && !stream.readableEnded;
}

/** The error a truncated downstream body raises: undici then resets the upstream request. */
export function truncatedBodyError(): Error {
  return Object.assign(new Error('downstream request body was aborted or malformed'), { code: 'PORTICO_DOWNSTREAM_BODY_ABORTED' });
}

/**
 * The request body as a stream for undici: chunks already read (`prefix`), then the rest of
 * `req`. It errors, rather than ends, when the client's body was cut short or malformed, so
 * undici resets the upstream request instead of sending it as complete (a reset client stream
 * must never reach the upstream as a whole request).
 */
function streamBody(req: DownstreamRequest, prefix: readonly Buffer[] | undefined, hook?: BodyHook): Readable {
  // HTTP/1.1: node:http enforces content-length and chunked framing and errors the request when
  // the connection drops mid-body, which undici already turns into an upstream reset.
  if (!hook && (!prefix || prefix.length === 0) && (req as Http2ServerRequest).stream === undefined) return req as IncomingMessage;
  return new DownstreamBody(req, prefix, hook);
}

class DownstreamBody extends Readable {
  /** Request body bytes still expected (content-length), -1 when unknown. */
  private remaining: number;
  private ended = false;
  constructor(
    private readonly req: DownstreamRequest,
    prefix: readonly Buffer[] | undefined,
    private readonly hook?: BodyHook,
  ) {
    super();
    const cl = req.headers['content-length'];
    this.remaining = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
    if (prefix) for (const c of prefix) this.give(c);
    req.on('data', this.onData);
    req.once('end', this.onEnd);
    req.once('aborted', this.onAborted);
    req.once('error', this.onError);
    req.pause();
  }

  /** Pushes a chunk (through the hook); false when the stream should pause (or has failed). */
  private give(chunk: Buffer): boolean {
    if (!this.hook) return this.push(chunk);
    if (this.remaining > 0) this.remaining -= chunk.length;
    const end = this.remaining === 0;
    this.ended ||= end;
    return this.release(this.hook.data(chunk, end));
  }

  private release(r: Buffer | HookReply): boolean {
    if (!Buffer.isBuffer(r)) {
      this.destroy(new BodyReplyError(r));
      return false;
    }
    return r.length === 0 || this.push(r);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.give(chunk)) this.req.pause();
  };

  private readonly onEnd = (): void => {
    if (bodyTruncated(this.req)) return void this.destroy(truncatedBodyError());
    if (this.hook) {
      // Request trailers are seen by the hook (they are not forwarded upstream).
      const raw = this.req.trailers as Record<string, string | string[] | undefined>;
      const t: Record<string, string> = {};
      let any = false;
      for (const k in raw) {
        const v = raw[k];
        if (v === undefined) continue;
        t[k] = Array.isArray(v) ? v.join(', ') : v;
        any = true;
      }
      if (any) this.release(this.hook.trailers(t));
      else if (!this.ended) this.release(this.hook.data(EMPTY_BODY, true));
      if (this.destroyed) return;
    }
    this.push(null);
  };

  private readonly onAborted = (): void => {
    this.destroy(truncatedBodyError());
  };

  private readonly onError = (err: Error): void => {
    this.destroy(err);
  };

  override _read(): void {
    this.req.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const req = this.req;
    req.off('data', this.onData);
    req.off('end', this.onEnd);
    req.off('aborted', this.onAborted);
    req.off('error', this.onError);
    cb(err);
  }
}

function isRetriableStatus(status: number, headers: Record<string, string | string[] | undefined>, policy: RetryPolicy): boolean {
  const on = policy.retryOn;
  if (status >= 500 && on.includes('5xx')) return true;
  if ((status === 502 || status === 503 || status === 504) && on.includes('gateway-error')) return true;
  if (status === 409 && on.includes('retriable-4xx')) return true;
  if (policy.retriableStatusCodes.includes(status) && (on.includes('retriable-status-codes') || on.some((t) => /^\d+$/.test(t)))) return true;
  const grpc = headers['grpc-status'];
  if (typeof grpc === 'string' && grpc !== '0') {
    const name = GRPC_RETRY_ON[grpc];
    if (name && on.includes(name)) return true;
  }
  return false;
}

/**
 * Errors before response headers. Connect failures follow `connect-failure`; resets follow
 * `reset`/`5xx`/`gateway-error` as in Envoy. Beyond Envoy: a reset of a bodyless GET/HEAD/OPTIONS
 * (nothing was consumed, replay is safe) also counts as a refused stream, so Istio's default
 * policy (`refused-stream`) retries a keep-alive connection an upstream closed under it.
 */
function isRetriableError(err: unknown, policy: RetryPolicy, safeMethod: boolean): boolean {
  const on = policy.retryOn;
  if (isConnectFailure(err)) return on.includes('connect-failure') || on.includes('5xx') || on.includes('gateway-error') || on.includes('reset');
  return on.includes('reset') || on.includes('5xx') || on.includes('gateway-error') || (safeMethod && on.includes('refused-stream'));
}

/** Envoy's backoff: random in [0, base * 2^attempt), capped (fully jittered). */
function backoff(retry: number): number {
  const cap = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** retry);
  return Math.floor(Math.random() * cap);
}

function outcomeOf(err: unknown): Outcome {
  if (isConnectFailure(err)) return { kind: 'connect-failure' };
  return { kind: 'reset' };
}

const PER_TRY_RETRY_ON = ['5xx', 'gateway-error', 'reset'];

/** `address:port` of an endpoint, made once per Endpoint object (snapshots are immutable). */
const endpointNames = new WeakMap<Endpoint, string>();
function endpointName(e: Endpoint): string {
  let name = endpointNames.get(e);
  if (name === undefined) {
    name = `${e.address}:${e.port}`;
    endpointNames.set(e, name);
  }
  return name;
}

/** Whether the client can no longer get this response (stream reset, connection closed). */
export function downstreamGone(res: DownstreamResponse): boolean {
  const stream = (res as Http2ServerResponse).stream as Http2ServerResponse['stream'] | undefined;
  if (stream !== undefined) return stream.destroyed || stream.closed;
  return (res as ServerResponse).destroyed || (res as ServerResponse).socket?.destroyed === true;
}

/** A raw `[name, value, ...]` header's value (first occurrence), case-insensitively. */
function findRaw(raw: readonly (Buffer | string)[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === name.length && n.toString().toLowerCase() === name) return raw[i + 1]!.toString();
  }
  return undefined;
}

/** Envoy's flag order (StreamInfo ResponseFlag enum order), for joining flags as Envoy prints them. */
const FLAG_ORDER = ['LH', 'UH', 'UT', 'LR', 'UR', 'UF', 'UC', 'UO', 'NR', 'DI', 'FI', 'RL', 'UAEX', 'RLSE', 'DC', 'URX', 'SI', 'IH', 'DPE', 'UMSDR', 'RFCF', 'NFCF', 'DT', 'UPE', 'NC', 'OM'];

/** Joins comma-separated Envoy flags in Envoy's order, `-` meaning none. */
export function joinFlags(a: string, b: string): string {
  if (a === '-' || a === '') return b === '' ? '-' : b;
  if (b === '-' || b === '') return a;
  const all = [...new Set([...a.split(','), ...b.split(',')])];
  const rank = (f: string): number => {
    const i = FLAG_ORDER.indexOf(f);
    return i < 0 ? FLAG_ORDER.length : i;
  };
  return all.sort((x, y) => rank(x) - rank(y)).join(',');
}

/** The Forwarding of a response, for the one shared `close` listener (no closure per request). */
const kForwarding = Symbol('portico.forwarding');
type TaggedResponse = DownstreamResponse & { [kForwarding]?: Forwarding };

function onResponseClose(this: TaggedResponse): void {
  this[kForwarding]?.downstreamClosed();
}

function onRouteTimeout(f: Forwarding): void {
  f.routeTimedOut();
}

function onPerTryTimeout(a: Attempt): void {
  a.perTryTimedOut();
}

function onBackoffDone(f: Forwarding): void {
  f.tryOnce();
}

function onDrain(this: TaggedResponse): void {
  this[kForwarding]?.current?.resumeUpstream?.();
}

/**
 * One request being forwarded: attempts, timers and the result. A class rather than closures so
 * a request costs a couple of objects, not a dozen functions (see docs/benchmarks.md).
 */
class Forwarding {
  attempt = 0;
  finished = false;
  /** The attempt whose handler undici is (or was last) calling. */
  current: Attempt | undefined = undefined;
  perTryTimer: NodeJS.Timeout | undefined = undefined;
  routeTimer: NodeJS.Timeout | undefined = undefined;
  lastEndpoint: Endpoint | undefined = undefined;
  /** Endpoints tried so far; made on the first retry only. */
  tried: Set<Endpoint> | undefined = undefined;
  endAttempt: ((o: Outcome) => void) | undefined = undefined;
  responseBytes = 0;
  /** Response body bytes still expected (content-length), -1 when unknown. */
  bodyRemaining = -1;
  /** Envoy flags of the outcome besides the final one (`URX` after a relayed retriable status). */
  extraFlags = '';
  release: (() => void) | undefined = undefined;
  readonly maxAttempts: number;
  readonly replayable: boolean;
  /** Bodyless GET/HEAD/OPTIONS: a reset before the response counts as a refused stream. */
  readonly safeMethod: boolean;

  constructor(
    readonly opts: ForwardOptions,
    readonly onDone: (result: ForwardResult) => void,
  ) {
    this.replayable = opts.body.kind !== 'stream';
    this.safeMethod = opts.body.kind === 'none' && (opts.method === 'GET' || opts.method === 'HEAD' || opts.method === 'OPTIONS');
    this.maxAttempts = this.replayable ? 1 + Math.max(0, opts.retries.attempts) : 1;
  }

  start(): void {
    const { opts } = this;
    this.release = opts.balancer.admit(opts.cluster);
    if (!this.release) {
      this.fail(ERR.UPSTREAM_OVERFLOW);
      return;
    }
    const res = opts.res as TaggedResponse;
    if (downstreamGone(res)) {
      // The client reset the stream or closed while the request was being read or checked:
      // its 'close' has already fired, so nothing would ever abort an upstream request.
      this.finish(499, 'DC');
      return;
    }
    res[kForwarding] = this;
    // Not removed when done: it fires once more as the response closes and finds `finished`.
    res.on('close', onResponseClose);
    if (opts.timeoutMs && opts.timeoutMs > 0) this.routeTimer = setTimeout(onRouteTimeout, opts.timeoutMs, this);
    this.tryOnce();
  }

  report(o: Outcome): void {
    const end = this.endAttempt;
    this.endAttempt = undefined;
    end?.(o);
  }

  abortCurrent(err: Error): void {
    this.current?.abort?.(err);
  }

  finish(status: number, flag: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.routeTimer) clearTimeout(this.routeTimer);
    if (this.perTryTimer) clearTimeout(this.perTryTimer);
    this.release?.();
    this.onDone({
      status,
      flag: this.extraFlags === '' ? flag : joinFlags(flag, this.extraFlags),
      upstream: this.lastEndpoint === undefined ? undefined : endpointName(this.lastEndpoint),
      attempts: this.attempt,
      responseBytes: this.responseBytes,
      cluster: this.opts.cluster.name,
    });
  }

  fail(err: GatewayError): void {
    if (this.finished) return;
    const res = this.opts.res;
    if (!res.headersSent) {
      const written = this.opts.sendError(err);
      if (typeof written === 'number') this.responseBytes += written;
    } else res.destroy();
    this.finish(res.headersSent && res.statusCode ? res.statusCode : err.status, err.flag);
  }

  downstreamClosed(): void {
    if (this.finished) return;
    this.abortCurrent(new Error('downstream closed'));
    this.report({ kind: 'cancelled' });
    this.finish(499, 'DC');
  }

  routeTimedOut(): void {
    // Answer first: aborting calls onError synchronously, which must see `finished`.
    this.report({ kind: 'timeout' });
    this.fail(ERR.UPSTREAM_TIMEOUT);
    this.abortCurrent(Object.assign(new Error('route timeout'), { code: 'PORTICO_ROUTE_TIMEOUT' }));
  }

  retryOrFail(err: GatewayError, retriable: boolean): void {
    if (this.finished) return;
    if (retriable && this.attempt < this.maxAttempts && !this.opts.res.headersSent) {
      setTimeout(onBackoffDone, backoff(this.attempt - 1), this);
      return;
    }
    // Envoy keeps the cause and adds URX (`UF,URX` for connect failures on every attempt).
    this.fail(this.attempt > 1 && retriable ? { ...err, flag: joinFlags(err.flag, 'URX') } : err);
  }

  tryOnce(): void {
    if (this.finished) return;
    const { opts } = this;
    const { cluster } = opts;
    if (this.lastEndpoint !== undefined) (this.tried ??= new Set()).add(this.lastEndpoint);
    const picked = opts.balancer.pick(cluster, this.tried, opts.pickRequest);
    if (!picked) return this.fail(ERR.NO_HEALTHY_UPSTREAM);
    const endpoint = picked.endpoint;
    this.attempt++;
    this.lastEndpoint = endpoint;
    this.endAttempt = opts.balancer.start(cluster, endpoint);
    const pool = opts.pools.get(cluster, endpoint);
    const attempt = new Attempt(this, picked.setCookie, opts.pools.speaksHttp2(pool));
    this.current = attempt;
    const perTry = opts.retries.perTryTimeoutMs;
    if (perTry && perTry > 0) {
      if (this.perTryTimer) clearTimeout(this.perTryTimer);
      this.perTryTimer = setTimeout(onPerTryTimeout, perTry, attempt);
    }
    const body = opts.body.kind === 'buffered' ? opts.body.data : opts.body.kind === 'stream' ? streamBody(opts.req, opts.body.prefix, opts.body.hook) : null;
    pool.dispatch(
      {
        path: opts.path,
        method: opts.method as Dispatcher.HttpMethod,
        headers: opts.headers as Record<string, string | string[]>,
        body,
        idempotent: this.replayable,
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      attempt as unknown as Dispatcher.DispatchHandler,
    );
  }
}

/**
 * One attempt: undici's raw handler interface (headers arrive as flat name/value arrays, and
 * HTTP/2 trailers arrive intact; the newer controller-style wrapper drops them). A fresh small
 * object per attempt, so callbacks of an aborted attempt can never touch the next one.
 */
class Attempt implements RawHandler {
  /** Decided: retrying, timed out, or relaying this attempt's response. */
  settled = false;
  abort: ((err: Error) => void) | undefined = undefined;
  resumeUpstream: (() => void) | undefined = undefined;
  /** The response is chunked: its terminator follows the data, so pausing on data is safe. */
  chunked = false;
  /** Headers and released body waiting for the end of a hooked body. */
  held: Held | undefined = undefined;

  constructor(
    readonly f: Forwarding,
    readonly setCookie: string | undefined,
    /** Sent over HTTP/2 (undici's h2 client: no HTTP/1 parser to pause). */
    readonly h2: boolean,
  ) {}

  perTryTimedOut(): void {
    const f = this.f;
    if (this.settled || f.opts.res.headersSent) return;
    this.settled = true;
    this.abort?.(Object.assign(new Error('per-try timeout'), { code: 'PORTICO_PER_TRY_TIMEOUT' }));
    f.report({ kind: 'timeout' });
    const on = f.opts.retries.retryOn;
    f.retryOrFail(ERR.UPSTREAM_TIMEOUT, PER_TRY_RETRY_ON.some((t) => on.includes(t)));
  }

  onConnect(abort: (err: Error) => void): void {
    this.abort = abort;
    if (this.f.finished) abort(new Error('finished'));
  }

  onHeaders(statusCode: number, rawHeaders: (Buffer | string)[], resume: () => void): boolean {
    const f = this.f;
    if (this.settled || f.finished) {
      this.abort?.(new Error('stale attempt'));
      return false;
    }
    if (statusCode < 200) return true; // 1xx informational: wait for the final response
    const { opts } = f;
    if (downstreamGone(opts.res)) {
      this.abort?.(new Error('downstream closed'));
      return false;
    }
    const headers = rawResponseHeaders(rawHeaders);
    f.report({ kind: 'response', status: statusCode });
    if (isRetriableStatus(statusCode, headers, opts.retries)) {
      if (f.attempt < f.maxAttempts) {
        this.settled = true;
        this.abort?.(new Error('retrying'));
        f.retryOrFail({ ...ERR.UPSTREAM_CONNECT, status: statusCode }, true);
        return false;
      }
      // Envoy's router: the retry policy would have retried, but the limit was reached.
      if (f.maxAttempts > 1) f.extraFlags = 'URX';
    }
    const te = findRaw(rawHeaders, 'transfer-encoding');
    const cl = te === undefined ? findRaw(rawHeaders, 'content-length') : undefined;
    f.bodyRemaining = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
    // HTTP/2 upstreams (no undici h1 parser) frame every body, so they count as chunked here.
    this.chunked = te !== undefined || this.h2;
    this.settled = true;
    this.resumeUpstream = resume;
    if (f.perTryTimer) clearTimeout(f.perTryTimer);
    const cookie = this.setCookie;
    if (cookie !== undefined) headers['set-cookie'] = headers['set-cookie'] ? ([] as string[]).concat(headers['set-cookie'], cookie) : cookie;
    const hook = opts.onResponseHeaders?.(headers, statusCode);
    if (hook) {
      this.held = { status: statusCode, headers, hook, chunks: [], size: 0, ended: false, waiting: hook.holdHeaders };
      if (hook.holdHeaders) return true;
    }
    try {
      opts.res.writeHead(statusCode, headers as Record<string, string | string[]>);
    } catch {
      this.abort?.(new Error('invalid response headers'));
      f.fail(ERR.UPSTREAM_RESET);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    const f = this.f;
    const res = f.opts.res as ServerResponse;
    if (f.finished || downstreamGone(res)) {
      // Never leave undici's parser paused for a response nobody reads: abort (destroys the
      // upstream connection). A parser paused when the upstream's FIN arrives trips undici's
      // `assert(!this.paused)` in Parser.finish and kills the process (nodejs/undici#5360).
      this.abort?.(new Error('downstream closed'));
      return false;
    }
    if (f.bodyRemaining > 0) f.bodyRemaining -= chunk.length;
    let out = chunk;
    const held = this.held;
    if (held) {
      const end = f.bodyRemaining === 0;
      held.ended ||= end;
      const r = held.hook.data(chunk, end);
      if (held.waiting || !Buffer.isBuffer(r)) {
        if (this.holdOrReply(r) && held.waiting && held.size > 0 && !end) this.flushHeld(held, false);
        return true;
      }
      if (r.length === 0) return true;
      out = r;
    }
    f.responseBytes += out.length;
    if (res.write(out)) return true;
    // Pausing is backpressure, but not on the last bytes of a body: the upstream may close right
    // after them (`connection: close`), and undici 7 asserts on a FIN while paused (#5360). The
    // last chunk is already in memory; it just waits in the response's buffer.
    if (f.bodyRemaining === 0 || (f.bodyRemaining < 0 && !this.chunked)) return true;
    res.once('drain', onDrain);
    return false;
  }

  /**
   * Keeps (headers waiting) or writes released bytes of a hooked response, or answers with the
   * hook's reply (headers already sent: the stream is reset, as Envoy). False once answered.
   */
  private holdOrReply(r: Buffer | HookReply): boolean {
    const held = this.held!;
    const f = this.f;
    if (!Buffer.isBuffer(r)) {
      if (!held.waiting) {
        this.held = undefined;
        this.abort?.(new Error('answered by a body filter'));
        f.opts.res.destroy();
        f.finish(r.status, 'UR');
        return false;
      }
      this.answerHeld(r);
      return false;
    }
    if (r.length === 0) return true;
    if (!held.waiting) {
      f.responseBytes += r.length;
      (f.opts.res as ServerResponse).write(r);
      return true;
    }
    held.chunks.push(r);
    held.size += r.length;
    if (held.size > held.hook.limit) {
      // Envoy answers a response its filters buffered beyond the limit with 500 (response_payload_too_large).
      this.answerHeld({ status: 500, headers: { 'content-type': 'text/plain' }, body: Buffer.from('Internal Server Error') });
      return false;
    }
    return !f.finished;
  }

  private answerHeld(r: HookReply): void {
    const f = this.f;
    this.held = undefined;
    this.abort?.(new Error('answered by a body filter'));
    const res = f.opts.res;
    const headers: HeaderMap = { ...r.headers, 'content-length': String(r.body.length) };
    res.writeHead(r.status, headers as Record<string, string | string[]>);
    res.end(r.body);
    f.responseBytes += r.body.length;
    f.finish(r.status, '-');
  }

  /**
   * Writes the waiting headers and what was released so far. At the end of the body (`whole`)
   * the content-length is set to the bytes released (the filters may have changed the body);
   * before it, the headers go as the filters left them (Envoy's behaviour).
   */
  private flushHeld(held: Held, whole: boolean, trailers?: boolean): boolean {
    const f = this.f;
    const res = f.opts.res as ServerResponse;
    const headers = held.headers;
    // With trailers an HTTP/1.1 response must be chunked.
    if (trailers) delete headers['content-length'];
    else if (whole) headers['content-length'] = String(held.size);
    held.waiting = false;
    try {
      res.writeHead(held.status, headers as Record<string, string | string[]>);
    } catch {
      f.fail(ERR.UPSTREAM_RESET);
      return false;
    }
    for (const c of held.chunks) res.write(c);
    f.responseBytes += held.size;
    held.chunks.length = 0;
    return true;
  }

  /** The end of a hooked response: trailers and the last data through the hook, then what is still held. */
  private releaseHeld(t: Record<string, string> | undefined): void {
    const held = this.held!;
    const f = this.f;
    if (t && !this.holdOrReply(held.hook.trailers(t))) return;
    if (!held.ended && !this.holdOrReply(held.hook.data(EMPTY_BODY, true))) return;
    this.held = undefined;
    const res = f.opts.res as ServerResponse;
    if (held.waiting && !this.flushHeld(held, true, t !== undefined)) return;
    if (t) {
      try {
        res.addTrailers(t);
      } catch {
        // HTTP/1.1 responses without chunked encoding cannot carry trailers.
      }
    }
    res.end();
    f.finish(held.status, '-');
  }

  onComplete(trailers: (Buffer | string)[] | Record<string, string | string[]> | null): void {
    const f = this.f;
    if (f.finished) return;
    const res = f.opts.res;
    const t = rawTrailers(trailers);
    if (this.held) return this.releaseHeld(t);
    if (t) {
      try {
        (res as ServerResponse).addTrailers(t);
      } catch {
        // HTTP/1.1 responses without chunked encoding cannot carry trailers.
      }
    }
    const status = res.statusCode;
    res.end();
    f.finish(status, '-');
  }

  onError(err: Error): void {
    const f = this.f;
    if (f.finished) return;
    const res = f.opts.res;
    if (err instanceof BodyReplyError) {
      // A request body filter answered while the body streamed upstream.
      f.report({ kind: 'cancelled' });
      if (res.headersSent) {
        res.destroy();
        f.finish(res.statusCode, 'UR');
      } else {
        this.settled = true;
        this.answerHeld(err.reply);
      }
      return;
    }
    if (this.held?.waiting) {
      // The upstream failed while its response headers waited for a body filter: nothing was sent yet.
      this.held = undefined;
      f.report(outcomeOf(err));
      f.fail(ERR.UPSTREAM_RESET);
      return;
    }
    if (this.settled && !res.headersSent) return; // aborted on purpose (retry or per-try timeout)
    this.settled = true;
    if ((err as { code?: unknown }).code === 'PORTICO_DOWNSTREAM_BODY_ABORTED' || downstreamGone(res)) {
      // The client's body was cut short or malformed (undici has reset the upstream request):
      // nothing to answer and nothing to retry. RFC 9113 §8.1.1 malformed → DPE, else DC.
      f.report({ kind: 'cancelled' });
      if (!downstreamGone(res)) res.destroy();
      const rst = (res as Http2ServerResponse).stream?.rstCode;
      if (rst === 1) f.finish(400, 'DPE');
      else f.finish(499, 'DC');
      return;
    }
    f.report(outcomeOf(err));
    if (res.headersSent) {
      res.destroy(err);
      f.finish(res.statusCode, 'UR');
      return;
    }
    f.retryOrFail(fromUpstreamError(err, false), isRetriableError(err, f.opts.retries, f.safeMethod));
  }
}

/**
 * Forwards the request and calls `onDone` once with the outcome (after the response ended, the
 * gateway answered with an error, or the client went away). The callback form used on the hot
 * path: no Promise per request.
 */
export function forwardRequest(opts: ForwardOptions, onDone: (result: ForwardResult) => void): void {
  new Forwarding(opts, onDone).start();
}

/** forwardRequest() as a Promise. */
export function forward(opts: ForwardOptions): Promise<ForwardResult> {
  return new Promise((resolve) => forwardRequest(opts, resolve));
}
