/**
 * The seam between the request path and telemetry (metrics, tracing, access logs). The proxy
 * calls `begin` once per request and the returned observer at two points; everything else
 * (aggregation, export) happens off the request path in the telemetry modules.
 */
import type { DownstreamRequest } from '../forward.ts';
import type { HeaderMap } from '../headers.ts';
import type { RequestRecord } from '../proxy.ts';

export interface ListenerFacts {
  readonly bindPort: number;
  readonly scheme: 'http' | 'https';
}

export interface RequestObserver {
  /**
   * The upstream request headers, after identity stripping, ext_authz and route header ops, just
   * before forwarding: add trace context here (traceparent, x-b3-*, ...).
   */
  upstreamHeaders?(headers: HeaderMap): void;
  /** The request finished (response sent, or the client went away). Called exactly once. */
  end(record: RequestRecord): void;
}

export interface Telemetry {
  /** Called first thing for every request. Must be cheap; may return a shared no-op observer. */
  begin(req: DownstreamRequest, listener: ListenerFacts): RequestObserver;
}
