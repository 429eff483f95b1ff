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
  /** Streamed from the client: one attempt only. `prefix` = chunks already read while sizing it. */
  | { readonly kind: 'stream'; readonly prefix?: readonly Buffer[] };

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
  /** Called with the response headers before they are written (header ops, CORS). */
  readonly onResponseHeaders?: (headers: HeaderMap, status: number) => void;
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  readonly pickRequest?: PickRequest;
  readonly sendError: (err: GatewayError) => void;
}

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
    const onEnd = (): void => resolve({ kind: 'buffered', data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', reject);
  });
}

/** The request body as a stream: chunks already read (`prefix`), then the rest of `req`. */
function streamBody(req: DownstreamRequest, prefix: readonly Buffer[] | undefined): Readable {
  if (!prefix || prefix.length === 0) return req as IncomingMessage;
  return Readable.from(
    (async function* () {
      yield* prefix;
      for await (const chunk of req as AsyncIterable<Buffer>) yield chunk;
    })(),
    { objectMode: false },
  );
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
      flag,
      upstream: this.lastEndpoint === undefined ? undefined : endpointName(this.lastEndpoint),
      attempts: this.attempt,
      responseBytes: this.responseBytes,
      cluster: this.opts.cluster.name,
    });
  }

  fail(err: GatewayError): void {
    if (this.finished) return;
    const res = this.opts.res;
    if (!res.headersSent) this.opts.sendError(err);
    else res.destroy();
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
    this.fail(this.attempt > 1 && retriable ? { ...err, flag: 'URX' } : err);
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
    const attempt = new Attempt(this, picked.setCookie);
    this.current = attempt;
    const perTry = opts.retries.perTryTimeoutMs;
    if (perTry && perTry > 0) {
      if (this.perTryTimer) clearTimeout(this.perTryTimer);
      this.perTryTimer = setTimeout(onPerTryTimeout, perTry, attempt);
    }
    const body = opts.body.kind === 'buffered' ? opts.body.data : opts.body.kind === 'stream' ? streamBody(opts.req, opts.body.prefix) : null;
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

  constructor(
    readonly f: Forwarding,
    readonly setCookie: string | undefined,
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
    const headers = rawResponseHeaders(rawHeaders);
    f.report({ kind: 'response', status: statusCode });
    if (f.attempt < f.maxAttempts && isRetriableStatus(statusCode, headers, opts.retries)) {
      this.settled = true;
      this.abort?.(new Error('retrying'));
      f.retryOrFail({ ...ERR.UPSTREAM_CONNECT, status: statusCode }, true);
      return false;
    }
    this.settled = true;
    this.resumeUpstream = resume;
    if (f.perTryTimer) clearTimeout(f.perTryTimer);
    const cookie = this.setCookie;
    if (cookie !== undefined) headers['set-cookie'] = headers['set-cookie'] ? ([] as string[]).concat(headers['set-cookie'], cookie) : cookie;
    opts.onResponseHeaders?.(headers, statusCode);
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
    if (f.finished) return false;
    f.responseBytes += chunk.length;
    const res = f.opts.res as ServerResponse;
    if (res.write(chunk)) return true;
    res.once('drain', onDrain);
    return false;
  }

  onComplete(trailers: (Buffer | string)[] | Record<string, string | string[]> | null): void {
    const f = this.f;
    if (f.finished) return;
    const res = f.opts.res;
    const t = rawTrailers(trailers);
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
    if (this.settled && !res.headersSent) return; // aborted on purpose (retry or per-try timeout)
    this.settled = true;
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
