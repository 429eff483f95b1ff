/**
 * Forwards one request to an upstream cluster through pooled undici connections, with Istio's
 * retry policy and route timeout. The response is streamed back with backpressure; the request
 * body is buffered only when it is small and a retry may need to send it again.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Dispatcher } from 'undici';
import type { Cluster, Endpoint, RetryPolicy } from '../config/snapshot.ts';
import type { Balancer, Outcome, PickRequest } from './balancer.ts';
import { ERR, fromUpstreamError, isConnectFailure, type GatewayError } from './errors.ts';
import { downstreamResponseHeaders, type HeaderMap } from './headers.ts';
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
  /** Streamed from the client: one attempt only. */
  | { readonly kind: 'stream' };

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
  const declared = Number(req.headers['content-length']);
  if (retries.attempts <= 0 || !Number.isFinite(declared) || declared > RETRY_BUFFER_LIMIT) return { kind: 'stream' };
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve({ kind: 'buffered', data: Buffer.concat(chunks) }));
    req.once('error', reject);
  });
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

function isRetriableError(err: unknown, policy: RetryPolicy): boolean {
  const on = policy.retryOn;
  if (isConnectFailure(err)) return on.includes('connect-failure') || on.includes('5xx') || on.includes('gateway-error') || on.includes('reset');
  return on.includes('reset') || on.includes('5xx') || on.includes('gateway-error') || on.includes('refused-stream');
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
  const maxAttempts = replayable ? 1 + Math.max(0, retries.attempts) : 1;
  const tried = new Set<Endpoint>();

  return new Promise<ForwardResult>((resolve) => {
    let attempt = 0;
    let finished = false;
    let current: Dispatcher.DispatchController | undefined;
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
      current?.abort(new Error('downstream closed'));
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
        current?.abort(Object.assign(new Error('route timeout'), { code: 'PORTICO_ROUTE_TIMEOUT' }));
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
          current?.abort(Object.assign(new Error('per-try timeout'), { code: 'PORTICO_PER_TRY_TIMEOUT' }));
          report({ kind: 'timeout' });
          retryOrFail(ERR.UPSTREAM_TIMEOUT, retries.retryOn.includes('5xx') || retries.retryOn.includes('gateway-error') || retries.retryOn.includes('reset'));
        }, perTry);
      }
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(controller) {
          current = controller;
          if (finished) controller.abort(new Error('finished'));
        },
        onResponseStart(controller, statusCode, headers) {
          if (settled || finished) return controller.abort(new Error('stale attempt'));
          if (statusCode < 200) return; // 1xx informational: wait for the final response
          report({ kind: 'response', status: statusCode });
          if (attempt < maxAttempts && isRetriableStatus(statusCode, headers, retries)) {
            settled = true;
            controller.abort(new Error('retrying'));
            retryOrFail({ ...ERR.UPSTREAM_CONNECT, status: statusCode }, true);
            return;
          }
          settled = true;
          if (perTryTimer) clearTimeout(perTryTimer);
          const out = downstreamResponseHeaders(headers);
          if (picked.setCookie) out['set-cookie'] = out['set-cookie'] ? ([] as string[]).concat(out['set-cookie'], picked.setCookie) : picked.setCookie;
          opts.onResponseHeaders?.(out, statusCode);
          try {
            res.writeHead(statusCode, out as Record<string, string | string[]>);
          } catch {
            controller.abort(new Error('invalid response headers'));
            fail(ERR.UPSTREAM_RESET);
          }
        },
        onResponseData(controller, chunk) {
          if (finished) return;
          responseBytes += chunk.length;
          if (!(res as ServerResponse).write(chunk)) {
            controller.pause();
            res.once('drain', () => controller.resume());
          }
        },
        onResponseEnd(_controller, trailers) {
          if (finished) return;
          if (trailers && Object.keys(trailers).length > 0) {
            try {
              (res as ServerResponse).addTrailers(trailers as Record<string, string>);
            } catch {
              // HTTP/1.1 responses without chunked encoding cannot carry trailers.
            }
          }
          const status = res.statusCode;
          res.end();
          finish(status, '-');
        },
        onResponseError(_controller, err) {
          if (finished) return;
          if (settled && !res.headersSent) return; // aborted on purpose (retry or per-try timeout)
          settled = true;
          report(outcomeOf(err));
          if (res.headersSent) {
            res.destroy(err);
            finish(res.statusCode, 'UR');
            return;
          }
          retryOrFail(fromUpstreamError(err, false), isRetriableError(err, retries));
        },
      };
      const body = opts.body.kind === 'buffered' ? opts.body.data : opts.body.kind === 'stream' ? (req as IncomingMessage) : null;
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
        handler,
      );
    };
    tryOnce();
  });
}
