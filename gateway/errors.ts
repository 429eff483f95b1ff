/**
 * The gateway's error registry: every response the gateway makes itself (rather than relaying
 * from an upstream) comes from here, with a stable code, an HTTP status and the Envoy response
 * flag that goes to the access log (flags are logged, not sent to clients).
 * Library errors (undici, node:net) are translated in exactly one place: `fromUpstreamError`.
 */
import { defineErrors } from '../lib/errors.ts';

export interface GatewayError {
  readonly code: string;
  readonly status: number;
  /** Envoy response flag (`NR`, `UH`, `UF`, `UT`, ...). */
  readonly flag: string;
  readonly message: string;
}

const def = (code: string, status: number, flag: string, message: string) => ({ code, status, flag, message });

const gatewayErrors = defineErrors('GatewayError', {
  NO_ROUTE: def('PORTICO_ERR_NO_ROUTE', 404, 'NR', 'no route matched this request'),
  NO_CLUSTER: def('PORTICO_ERR_NO_CLUSTER', 503, 'NC', 'route names an upstream cluster that does not exist'),
  NO_HEALTHY_UPSTREAM: def('PORTICO_ERR_NO_HEALTHY_UPSTREAM', 503, 'UH', 'no healthy upstream'),
  UPSTREAM_CONNECT: def('PORTICO_ERR_UPSTREAM_CONNECT', 503, 'UF', 'upstream connect error or disconnect/reset before headers'),
  UPSTREAM_RESET: def('PORTICO_ERR_UPSTREAM_RESET', 502, 'UR', 'upstream reset the connection'),
  UPSTREAM_TIMEOUT: def('PORTICO_ERR_UPSTREAM_TIMEOUT', 504, 'UT', 'upstream request timeout'),
  UPSTREAM_OVERFLOW: def('PORTICO_ERR_UPSTREAM_OVERFLOW', 503, 'UO', 'upstream connection pool overflow'),
  RETRY_EXHAUSTED: def('PORTICO_ERR_RETRY_LIMIT', 503, 'URX', 'upstream retry limit exceeded'),
  BAD_REQUEST: def('PORTICO_ERR_BAD_REQUEST', 400, 'DPE', 'bad request'),
  BAD_PATH: def('PORTICO_ERR_BAD_PATH', 400, 'DPE', 'request path cannot be normalised'),
  MISDIRECTED: def('PORTICO_ERR_MISDIRECTED', 421, 'NR', 'this connection cannot serve the requested host; open a new one'),
  REQUEST_TIMEOUT: def('PORTICO_ERR_REQUEST_TIMEOUT', 408, 'DPE', 'request timeout'),
  HEADERS_TOO_LARGE: def('PORTICO_ERR_HEADERS_TOO_LARGE', 431, 'DPE', 'request header fields too large'),
  DOWNSTREAM_DISCONNECT: def('PORTICO_ERR_DOWNSTREAM_DISCONNECT', 499, 'DC', 'downstream closed the connection'),
  FAULT_ABORT: def('PORTICO_ERR_FAULT_ABORT', 500, 'FI', 'fault filter abort'),
  RATE_LIMITED: def('PORTICO_ERR_RATE_LIMITED', 429, 'RL', 'local rate limited'),
  AUTHZ_DENIED: def('PORTICO_ERR_AUTHZ_DENIED', 403, 'UAEX', 'denied by external authorization'),
  AUTHZ_ERROR: def('PORTICO_ERR_AUTHZ_ERROR', 403, 'UAEX', 'external authorization service unavailable'),
  RBAC_DENIED: def('PORTICO_ERR_RBAC_DENIED', 403, 'RBAC', 'RBAC: access denied'),
});

/** The gateway's own answers, by key; frozen, compared by identity (`err === ERR.NO_ROUTE`). */
export const ERR: { readonly [K in keyof typeof gatewayErrors.defs]: GatewayError } = gatewayErrors.defs;

interface ErrorWithCode {
  code?: unknown;
  name?: unknown;
  cause?: unknown;
}

/** Translates an undici/node error raised while talking to an upstream. */
export function fromUpstreamError(err: unknown, headersSent: boolean): GatewayError {
  const e = (err ?? {}) as ErrorWithCode;
  const code = typeof e.code === 'string' ? e.code : '';
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return ERR.UPSTREAM_CONNECT;
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return ERR.UPSTREAM_TIMEOUT;
    default:
      if (e.cause && e.cause !== err) return fromUpstreamError(e.cause, headersSent);
      return headersSent ? ERR.UPSTREAM_RESET : ERR.UPSTREAM_CONNECT;
  }
}

/** True for errors where the request never reached the upstream (safe to retry as connect-failure). */
export function isConnectFailure(err: unknown): boolean {
  const e = (err ?? {}) as ErrorWithCode;
  const code = typeof e.code === 'string' ? e.code : '';
  if (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ENETUNREACH') return true;
  if (e.cause && e.cause !== err) return isConnectFailure(e.cause);
  return false;
}
