/**
 * Envoy's downstream request limits, applied the same way on HTTP/1.1, h2 over TLS and h2c:
 * `max_request_headers_kb` (default 60 KiB; counted as Envoy counts a header map: the bytes of
 * every name and value, the request line's method and path included) and
 * `common_http_protocol_options.max_headers_count` (default 100). Over either, the request is
 * answered 431 (RFC 6585 §5) and never forwarded.
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto (HttpProtocolOptions)
 */
import type { DownstreamRequest } from './forward.ts';

/** Envoy's default `max_request_headers_kb`. */
export const DEFAULT_MAX_REQUEST_HEADERS_KB = 60;
/** Envoy's upper bound for `max_request_headers_kb`. */
export const MAX_REQUEST_HEADERS_KB_LIMIT = 8192;
/** Envoy's default `max_headers_count`. */
export const DEFAULT_MAX_HEADERS_COUNT = 100;
/** Portico's default request headers timeout (Envoy's `request_headers_timeout` is off by default). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 65_000;

export interface RequestLimits {
  /** Largest header section, in bytes (`max_request_headers_kb` × 1024). */
  readonly maxHeaderBytes: number;
  /** Most header fields (pseudo-headers other than :authority not counted). */
  readonly maxHeaders: number;
  /** A client must finish sending request headers within this (slowloris); also the TLS handshake. */
  readonly headersTimeoutMs: number;
  /** A client must finish sending the whole request within this; 0 = no limit (Envoy's default). */
  readonly requestTimeoutMs: number;
  /** Idle keep-alive connections (HTTP/1.1) and idle HTTP/2 sessions are closed after this. */
  readonly keepAliveTimeoutMs: number;
}

export interface RequestLimitOptions {
  readonly maxRequestHeadersKb?: number;
  readonly maxHeadersCount?: number;
  readonly headersTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly keepAliveTimeoutMs?: number;
}

/** Resolves options to limits; throws a message naming the option when a value is out of range. */
export function resolveLimits(o: RequestLimitOptions = {}): RequestLimits {
  const kb = o.maxRequestHeadersKb ?? DEFAULT_MAX_REQUEST_HEADERS_KB;
  if (!Number.isInteger(kb) || kb < 1 || kb > MAX_REQUEST_HEADERS_KB_LIMIT) throw new Error(`max request headers: ${kb} KiB is not an integer in 1..${MAX_REQUEST_HEADERS_KB_LIMIT} (Envoy's max_request_headers_kb range)`);
  const count = o.maxHeadersCount ?? DEFAULT_MAX_HEADERS_COUNT;
  if (!Number.isInteger(count) || count < 1) throw new Error(`max headers count: ${count} is not a positive integer`);
  const ms = (name: string, v: number | undefined, dflt: number): number => {
    const x = v ?? dflt;
    if (!Number.isInteger(x) || x < 0) throw new Error(`${name}: ${x} ms is not a non-negative integer`);
    return x;
  };
  return {
    maxHeaderBytes: kb * 1024,
    maxHeaders: count,
    headersTimeoutMs: ms('request headers timeout', o.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS),
    requestTimeoutMs: ms('request timeout', o.requestTimeoutMs, 0),
    keepAliveTimeoutMs: ms('keep-alive timeout', o.keepAliveTimeoutMs, DEFAULT_KEEPALIVE_TIMEOUT_MS),
  };
}

/**
 * What node:http's parser is allowed to read (`maxHeaderSize`): the limit plus HTTP/1.1 framing
 * (`: ` and CRLF per field, the request line), so the exact Envoy-style count below decides.
 */
export function http1ParserHeaderBytes(l: RequestLimits): number {
  return l.maxHeaderBytes + 4 * (l.maxHeaders + 1) + 64;
}

/**
 * Why the request's headers exceed the limits, or undefined when they fit. One pass over
 * rawHeaders (names and values are latin1 strings: length = bytes).
 */
export function headerLimitViolation(req: DownstreamRequest, l: RequestLimits): string | undefined {
  const raw = req.rawHeaders;
  let count = 0;
  let bytes = req.httpVersionMajor === 2 ? 0 : (req.method?.length ?? 0) + (req.url?.length ?? 0);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Pseudo-headers are not fields, except :authority, which is HTTP/1.1's Host: the same
    // request counts the same on every protocol.
    if (name.charCodeAt(0) !== 58 /* : */ || name === ':authority') count++;
    bytes += name.length + raw[i + 1]!.length;
  }
  if (count > l.maxHeaders) return `${count} header fields, more than the ${l.maxHeaders} allowed`;
  if (bytes > l.maxHeaderBytes) return `${bytes} bytes of headers, more than the ${l.maxHeaderBytes} allowed`;
  return undefined;
}

/**
 * The gateway's limit flags (`--max-request-headers-kb`, `--max-headers-count`,
 * `--request-headers-timeout-ms`, `--request-timeout-ms`), checked as the listeners will use them.
 */
export function limitOptionsFromFlags(args: Readonly<Record<string, unknown>>): RequestLimitOptions {
  const num = (flag: string): number | undefined => {
    const v = args[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new Error(`--${flag}: '${String(v)}' is not a non-negative integer`);
    return n;
  };
  const opts: RequestLimitOptions = {
    maxRequestHeadersKb: num('max-request-headers-kb'),
    maxHeadersCount: num('max-headers-count'),
    headersTimeoutMs: num('request-headers-timeout-ms'),
    requestTimeoutMs: num('request-timeout-ms'),
  };
  resolveLimits(opts); // throws naming the setting when out of range
  return opts;
}
