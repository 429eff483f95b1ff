/**
 * How Bookinfo services call each other: plain HTTP/1.1 with keep-alive, a 3 s deadline, the
 * trace/identity headers Istio asks applications to propagate, and optional HTTP_PROXY.
 *
 * With a proxy the request goes to the proxy in absolute-form (RFC 9112 §3.2.2):
 *   GET http://reviews:9080/reviews/0 HTTP/1.1
 *   Host: reviews:9080
 * which is exactly what a Portico sidecar's outbound listener (`HTTP_PROXY=http://127.0.0.1:15001`)
 * receives from the app. HTTPS targets through a proxy would need CONNECT and are refused.
 */
import { Agent, request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Headers Istio's Bookinfo productpage propagates (samples/bookinfo/src/productpage/productpage.py,
 * `headers_to_propagate`), plus B3 single-header `b3`. `x-datadog-*` is matched by prefix.
 */
export const PROPAGATED_HEADERS: readonly string[] = Object.freeze([
  'x-request-id',
  'x-ot-span-context',
  'traceparent',
  'tracestate',
  'x-cloud-trace-context',
  'grpc-trace-bin',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
  'b3',
  'sw8',
  'end-user',
  'user-agent',
  'cookie',
  'authorization',
  'jwt',
]);

const PROPAGATED = new Set(PROPAGATED_HEADERS);

/** Picks the headers to forward to the next hop from an incoming request's headers. */
export function propagatedHeaders(incoming: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    if (!PROPAGATED.has(name) && !name.startsWith('x-datadog-')) continue;
    out[name] = Array.isArray(value) ? value.join(name === 'cookie' ? '; ' : ', ') : value;
  }
  return out;
}

export interface UpstreamOptions {
  /**
   * Proxy URL (http://host:port). `undefined` reads HTTP_PROXY / http_proxy from the environment;
   * `null` or '' means connect directly.
   */
  httpProxy?: string | null;
  /** Comma-separated hosts that bypass the proxy (NO_PROXY syntax); `undefined` reads the env. */
  noProxy?: string;
  /** Whole-call deadline (connect + response + body). Default 3000 ms, as Bookinfo uses. */
  timeoutMs?: number;
  /** Largest response body accepted. Default 1 MiB. */
  maxBodyBytes?: number;
}

export interface UpstreamResponse {
  status: number;
  /** Parsed JSON, or undefined when the body was not JSON. */
  json: unknown;
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly code: 'timeout' | 'network' | 'too_large',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Validates an http:// base URL option, naming the option on failure; returns it without a trailing slash. */
export function baseUrl(value: string, option: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${option}: not a URL: '${value}'`);
  }
  if (url.protocol !== 'http:') throw new TypeError(`${option}: only http:// URLs are supported, got '${value}'`);
  if (url.search || url.hash) throw new TypeError(`${option}: base URL must not have a query or fragment: '${value}'`);
  return url.href.replace(/\/+$/, '');
}

/** Istio sample wiring: http://${X_HOSTNAME ?? name}${SERVICES_DOMAIN ? '.' + domain : ''}:${X_SERVICE_PORT ?? 9080}. */
export function urlFromEnv(service: 'details' | 'reviews' | 'ratings', env: NodeJS.ProcessEnv = process.env): string {
  const upper = service.toUpperCase();
  const host = env[`${upper}_HOSTNAME`] || service;
  const domain = env.SERVICES_DOMAIN ? `.${env.SERVICES_DOMAIN}` : '';
  const port = env[`${upper}_SERVICE_PORT`] || '9080';
  return baseUrl(`http://${host}${domain}:${port}`, `${upper}_HOSTNAME/${upper}_SERVICE_PORT`);
}

function bypassesProxy(hostname: string, noProxy: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  for (const raw of noProxy.split(',')) {
    const entry = raw.trim().toLowerCase().replace(/:\d+$/, '');
    if (!entry) continue;
    if (entry === '*') return true;
    const suffix = entry.startsWith('.') ? entry : `.${entry}`;
    if (host === entry.replace(/^\./, '') || host.endsWith(suffix)) return true;
  }
  return false;
}

/** A keep-alive HTTP client for one service's outbound calls. */
export class UpstreamClient {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 16 });
  readonly #proxy: URL | undefined;
  readonly #noProxy: string;
  readonly #timeoutMs: number;
  readonly #maxBody: number;

  constructor(opts: UpstreamOptions = {}) {
    const proxy = opts.httpProxy === undefined ? process.env.HTTP_PROXY || process.env.http_proxy : opts.httpProxy;
    if (proxy) {
      try {
        this.#proxy = new URL(proxy);
      } catch {
        throw new TypeError(`HTTP_PROXY: not a URL: '${proxy}'`);
      }
      if (this.#proxy.protocol !== 'http:') throw new TypeError(`HTTP_PROXY: only http:// proxies are supported, got '${proxy}'`);
    }
    this.#noProxy = opts.noProxy ?? process.env.NO_PROXY ?? process.env.no_proxy ?? '';
    this.#timeoutMs = opts.timeoutMs ?? 3000;
    this.#maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  }

  /** The proxy in use, for diagnostics. */
  get proxy(): string | undefined {
    return this.#proxy?.href;
  }

  /** GET `url` and parse JSON. Rejects with UpstreamError on network failure, timeout or an oversized body. */
  getJson(url: string, headers: Record<string, string>): Promise<UpstreamResponse> {
    const target = new URL(url);
    const viaProxy = this.#proxy !== undefined && !bypassesProxy(target.hostname, this.#noProxy);
    const connectTo = viaProxy ? this.#proxy! : target;
    const outHeaders: Record<string, string> = { ...headers, host: target.host, accept: 'application/json' };
    return new Promise<UpstreamResponse>((resolve, reject) => {
      let settled = false;
      const fail = (err: UpstreamError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(err);
      };
      const req = request(
        {
          agent: this.#agent,
          hostname: connectTo.hostname.replace(/^\[|\]$/g, ''),
          port: connectTo.port || 80,
          method: 'GET',
          // Absolute-form for a proxy, origin-form otherwise.
          path: viaProxy ? target.href : `${target.pathname}${target.search}`,
          headers: outHeaders,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > this.#maxBody) {
              fail(new UpstreamError(`${target.href}: response body exceeds ${this.#maxBody} bytes`, 'too_large'));
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', (err) => fail(new UpstreamError(`${target.href}: ${err.message}`, 'network', { cause: err })));
          res.on('end', () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            let json: unknown;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, json });
          });
        },
      );
      const timer = setTimeout(
        () => fail(new UpstreamError(`${target.href}: no response within ${this.#timeoutMs} ms`, 'timeout')),
        this.#timeoutMs,
      );
      req.on('error', (err) => fail(new UpstreamError(`${target.href}: ${err.message}`, 'network', { cause: err })));
      req.end();
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}
