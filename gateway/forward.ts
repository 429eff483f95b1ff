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

export function forward(opts: ForwardOptions): Promise<ForwardResult> {
  const { req, res, cluster, retries } = opts;
  const replayable = opts.body.kind !== 'stream';
  const safeMethod = opts.body.kind === 'none' && (opts.method === 'GET' || opts.method === 'HEAD' || opts.method === 'OPTIONS');
  const maxAttempts = replayable ? 1 + Math.max(0, retries.attempts) : 1;
  const tried = new Set<Endpoint>();

  return new Promise<ForwardResult>((resolve) => {
    let attempt = 0;
    let finished = false;
    /** Aborts the attempt in flight (undici's onConnect abort). */
    let abortCurrent: ((err: Error) => void) | undefined;
    let perTryTimer: NodeJS.Timeout | undefined;
    let routeTimer: NodeJS.Timeout | undefined;
    let lastUpstream: string | undefined;
    let endAttempt: ((o: Outcome) => void) | undefined;
    let responseBytes = 0;
    const release = opts.balancer.admit(cluster);

    const report = (o: Outcome): void => {
      const end = endAttempt;
      endAttempt = undefined;
      end?.(o);
    };
    const finish = (status: number, flag: string): void => {
      if (finished) return;
      finished = true;
      if (routeTimer) clearTimeout(routeTimer);
      if (perTryTimer) clearTimeout(perTryTimer);
      res.off('close', onDownstreamClose);
      release?.();
      resolve({ status, flag, upstream: lastUpstream, attempts: attempt, responseBytes });
    };
    const fail = (err: GatewayError): void => {
      if (finished) return;
      if (!res.headersSent) opts.sendError(err);
      else res.destroy();
      finish(res.headersSent && res.statusCode ? res.statusCode : err.status, err.flag);
    };
    const onDownstreamClose = (): void => {
      if (finished) return;
      abortCurrent?.(new Error('downstream closed'));
      report({ kind: 'cancelled' });
      finish(499, 'DC');
    };

    if (!release) {
      fail(ERR.UPSTREAM_OVERFLOW);
      return;
    }
    res.on('close', onDownstreamClose);

    if (opts.timeoutMs && opts.timeoutMs > 0) {
      routeTimer = setTimeout(() => {
        // Answer first: aborting calls onResponseError synchronously, which must see `finished`.
        report({ kind: 'timeout' });
        fail(ERR.UPSTREAM_TIMEOUT);
        abortCurrent?.(Object.assign(new Error('route timeout'), { code: 'PORTICO_ROUTE_TIMEOUT' }));
      }, opts.timeoutMs);
    }

    const retryOrFail = (err: GatewayError, retriable: boolean): void => {
      if (finished) return;
      if (retriable && attempt < maxAttempts && !res.headersSent) {
        setTimeout(tryOnce, backoff(attempt - 1));
        return;
      }
      fail(attempt > 1 && retriable ? { ...err, flag: 'URX' } : err);
    };

    const tryOnce = (): void => {
      if (finished) return;
      const picked = opts.balancer.pick(cluster, tried, opts.pickRequest);
      if (!picked) return fail(ERR.NO_HEALTHY_UPSTREAM);
      const endpoint = picked.endpoint;
      tried.add(endpoint);
      attempt++;
      lastUpstream = `${endpoint.address}:${endpoint.port}`;
      endAttempt = opts.balancer.start(cluster, endpoint);
      const pool = opts.pools.get(cluster, endpoint);
      let settled = false;
      const perTry = retries.perTryTimeoutMs;
      if (perTry && perTry > 0) {
        if (perTryTimer) clearTimeout(perTryTimer);
        perTryTimer = setTimeout(() => {
          if (settled || res.headersSent) return;
          settled = true;
          abortCurrent?.(Object.assign(new Error('per-try timeout'), { code: 'PORTICO_PER_TRY_TIMEOUT' }));
          report({ kind: 'timeout' });
          retryOrFail(ERR.UPSTREAM_TIMEOUT, retries.retryOn.includes('5xx') || retries.retryOn.includes('gateway-error') || retries.retryOn.includes('reset'));
        }, perTry);
      }
      // undici's raw handler interface: headers arrive as flat name/value arrays, and HTTP/2
      // trailers arrive intact (the newer controller-style wrapper drops them).
      let resumeUpstream: (() => void) | undefined;
      const handler: RawHandler = {
        onConnect(abort) {
          abortCurrent = abort;
          if (finished) abort(new Error('finished'));
        },
        onHeaders(statusCode, rawHeaders, resume) {
          if (settled || finished) {
            abortCurrent?.(new Error('stale attempt'));
            return false;
          }
          if (statusCode < 200) return true; // 1xx informational: wait for the final response
          const headers = rawResponseHeaders(rawHeaders);
          report({ kind: 'response', status: statusCode });
          if (attempt < maxAttempts && isRetriableStatus(statusCode, headers, retries)) {
            settled = true;
            abortCurrent?.(new Error('retrying'));
            retryOrFail({ ...ERR.UPSTREAM_CONNECT, status: statusCode }, true);
            return false;
          }
          settled = true;
          resumeUpstream = resume;
          if (perTryTimer) clearTimeout(perTryTimer);
          if (picked.setCookie) headers['set-cookie'] = headers['set-cookie'] ? ([] as string[]).concat(headers['set-cookie'], picked.setCookie) : picked.setCookie;
          opts.onResponseHeaders?.(headers, statusCode);
          try {
            res.writeHead(statusCode, headers as Record<string, string | string[]>);
          } catch {
            abortCurrent?.(new Error('invalid response headers'));
            fail(ERR.UPSTREAM_RESET);
            return false;
          }
          return true;
        },
        onData(chunk) {
          if (finished) return false;
          responseBytes += chunk.length;
          if ((res as ServerResponse).write(chunk)) return true;
          res.once('drain', () => resumeUpstream?.());
          return false;
        },
        onComplete(trailers) {
          if (finished) return;
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
          finish(status, '-');
        },
        onError(err) {
          if (finished) return;
          if (settled && !res.headersSent) return; // aborted on purpose (retry or per-try timeout)
          settled = true;
          report(outcomeOf(err));
          if (res.headersSent) {
            res.destroy(err);
            finish(res.statusCode, 'UR');
            return;
          }
          retryOrFail(fromUpstreamError(err, false), isRetriableError(err, retries, safeMethod));
        },
      };
      const body = opts.body.kind === 'buffered' ? opts.body.data : opts.body.kind === 'stream' ? streamBody(req, opts.body.prefix) : null;
      pool.dispatch(
        {
          path: opts.path,
          method: opts.method as Dispatcher.HttpMethod,
          headers: opts.headers as Record<string, string | string[]>,
          body,
          idempotent: replayable,
          headersTimeout: 0,
          bodyTimeout: 0,
        },
        handler as unknown as Dispatcher.DispatchHandler,
      );
    };
    tryOnce();
  });
}
