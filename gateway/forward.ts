/**
 * Forwards one request to an upstream cluster through pooled undici connections, with Istio's
 * retry policy and route timeout. The response is streamed back with backpressure; nothing is
 * buffered unless a retry needs the request body again.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Dispatcher } from 'undici';
import type { Cluster, Endpoint, RetryPolicy } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';
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
}

export interface ForwardOptions {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly cluster: Cluster;
  readonly method: string;
  /** Path and query to send upstream. */
  readonly path: string;
  readonly headers: HeaderMap;
  readonly timeoutMs?: number;
  readonly retries: RetryPolicy;
  /** Called with the response headers before they are written (header ops, CORS). */
  readonly onResponseHeaders?: (headers: HeaderMap, status: number) => void;
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  readonly sendError: (err: GatewayError) => void;
}

const BASE_BACKOFF_MS = 25;
const MAX_BACKOFF_MS = 250;

function hasBody(req: DownstreamRequest, method: string): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  if (cl !== undefined && cl !== '0') return true;
  // HTTP/2 requests may carry a body with neither header; only bodyless methods are assumed empty.
  if ((req as Http2ServerRequest).stream !== undefined) return !(method === 'GET' || method === 'HEAD' || method === 'DELETE' || method === 'OPTIONS');
  return false;
}

function isRetriableStatus(status: number, policy: RetryPolicy): boolean {
  const on = policy.retryOn;
  if (status >= 500 && on.includes('5xx')) return true;
  if ((status === 502 || status === 503 || status === 504) && on.includes('gateway-error')) return true;
  if (status === 409 && on.includes('retriable-4xx')) return true;
  if (policy.retriableStatusCodes.includes(status) && (on.includes('retriable-status-codes') || on.some((t) => /^\d+$/.test(t)))) return true;
  return false;
}

function isRetriableError(err: unknown, policy: RetryPolicy): boolean {
  const on = policy.retryOn;
  if (isConnectFailure(err)) return on.includes('connect-failure') || on.includes('5xx') || on.includes('gateway-error') || on.includes('reset');
  // Resets before response headers.
  return on.includes('reset') || on.includes('5xx') || on.includes('gateway-error');
}

/** Envoy's backoff: random in [0, base * 2^attempt), capped. */
function backoff(attempt: number): number {
  const cap = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** attempt);
  return Math.floor(Math.random() * cap);
}

export function forward(opts: ForwardOptions): Promise<ForwardResult> {
  const { req, res, cluster, retries } = opts;
  const withBody = hasBody(req, opts.method);
  // A streamed body can be sent once: retries apply only to bodyless requests for now.
  const maxAttempts = withBody ? 1 : 1 + Math.max(0, retries.attempts);
  const tried = new Set<Endpoint>();

  return new Promise<ForwardResult>((resolve) => {
    let attempt = 0;
    let finished = false;
    let current: Dispatcher.DispatchController | undefined;
    let perTryTimer: NodeJS.Timeout | undefined;
    let routeTimer: NodeJS.Timeout | undefined;
    let lastUpstream: string | undefined;

    const finish = (status: number, flag: string): void => {
      if (finished) return;
      finished = true;
      if (routeTimer) clearTimeout(routeTimer);
      if (perTryTimer) clearTimeout(perTryTimer);
      res.off('close', onDownstreamClose);
      resolve({ status, flag, upstream: lastUpstream, attempts: attempt });
    };
    const fail = (err: GatewayError): void => {
      if (finished) return;
      if (!res.headersSent) opts.sendError(err);
      else res.destroy();
      finish(res.headersSent ? res.statusCode : err.status, err.flag);
    };
    const onDownstreamClose = (): void => {
      if (finished) return;
      current?.abort(new Error('downstream closed'));
      finish(499, 'DC');
    };
    res.on('close', onDownstreamClose);

    if (opts.timeoutMs && opts.timeoutMs > 0) {
      routeTimer = setTimeout(() => {
        current?.abort(Object.assign(new Error('route timeout'), { code: 'PORTICO_ROUTE_TIMEOUT' }));
        fail(ERR.UPSTREAM_TIMEOUT);
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
      const endpoint = opts.balancer.pick(cluster, tried);
      if (!endpoint) return fail(ERR.NO_HEALTHY_UPSTREAM);
      tried.add(endpoint);
      attempt++;
      lastUpstream = `${endpoint.address}:${endpoint.port}`;
      const pool = opts.pools.get(cluster, endpoint);
      let settled = false;
      const perTry = retries.perTryTimeoutMs;
      if (perTry && perTry > 0) {
        if (perTryTimer) clearTimeout(perTryTimer);
        perTryTimer = setTimeout(() => {
          if (settled || res.headersSent) return;
          settled = true;
          current?.abort(Object.assign(new Error('per-try timeout'), { code: 'PORTICO_PER_TRY_TIMEOUT' }));
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
          if (attempt < maxAttempts && isRetriableStatus(statusCode, retries)) {
            settled = true;
            controller.abort(new Error('retrying'));
            retryOrFail({ ...ERR.UPSTREAM_CONNECT, status: statusCode }, true);
            return;
          }
          settled = true;
          if (perTryTimer) clearTimeout(perTryTimer);
          const out = downstreamResponseHeaders(headers);
          opts.onResponseHeaders?.(out, statusCode);
          try {
            res.writeHead(statusCode, out as Record<string, string | string[]>);
          } catch {
            controller.abort(new Error('invalid response headers'));
            fail(ERR.UPSTREAM_RESET);
            return;
          }
        },
        onResponseData(controller, chunk) {
          if (finished) return;
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
          if (settled && !res.headersSent && !finished) {
            // Aborted on purpose (retry or per-try timeout): already handled.
            return;
          }
          if (finished) return;
          settled = true;
          if (res.headersSent) {
            res.destroy(err);
            finish(res.statusCode, 'UR');
            return;
          }
          retryOrFail(fromUpstreamError(err, false), isRetriableError(err, retries));
        },
      };
      pool.dispatch(
        {
          origin: undefined,
          path: opts.path,
          method: opts.method as Dispatcher.HttpMethod,
          headers: opts.headers as Record<string, string | string[]>,
          body: withBody ? (req as IncomingMessage) : null,
          idempotent: !withBody,
          headersTimeout: 0,
          bodyTimeout: 0,
        },
        handler,
      );
    };
    tryOnce();
  });
}
