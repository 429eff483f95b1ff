/**
 * The seam between the request path and telemetry (metrics, tracing, access logs). The proxy
 * calls `begin` once per request and the returned observer at two points; everything else
 * (aggregation, export) happens off the request path in the telemetry modules.
 */
import type { DownstreamRequest } from '../forward.ts';
import type { HeaderMap } from '../headers.ts';
import type { RequestRecord } from '../proxy.ts';
import type { TcpConnectionMetrics } from './istio-metrics.ts';

export interface ListenerFacts {
  readonly bindPort: number;
  /** The port number as the Gateway declares it (Istio's span names use it). */
  readonly number?: number;
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
  /**
   * L4 (tcp/tls) proxying: the counters of one connection to `cluster` and endpoint `upstream`
   * (`address:port`), with Envoy response flags (`UF` when the upstream connect failed).
   */
  tcpConnection?(cluster: string, upstream: string | undefined, flags?: string): TcpConnectionMetrics;
}
