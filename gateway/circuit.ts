/**
 * Circuit breaking per cluster, from DestinationRule `trafficPolicy.connectionPool`, with Envoy's
 * cluster circuit-breaker semantics (Istio maps the fields one to one):
 *   tcp.maxConnections           -> max_connections
 *   http.http1MaxPendingRequests -> max_pending_requests
 *   http.http2MaxRequests        -> max_requests (applies to HTTP/1.1 too, as Istio documents)
 * Istio leaves every threshold at 2^32-1 when the field is absent, so absent means unlimited.
 *
 * Upstream connections are HTTP/1.1 with one request per connection at a time, so with A requests
 * in flight and C allowed connections, max(0, A - C) of them are waiting for a connection: they
 * are Envoy's "pending" requests. A new request is admitted when A < max_requests and, when all
 * C connections are busy, the pending queue has room. See Envoy's "Circuit breaking" architecture
 * overview (arch_overview/upstream/circuit_breaking).
 */
import type { ConnectionPool } from '../config/snapshot.ts';

export interface CircuitLimits {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
}

export const UNLIMITED: CircuitLimits = Object.freeze({ maxConnections: Infinity, maxPendingRequests: Infinity, maxRequests: Infinity });

/** The limits a compiled connectionPool sets (all Infinity when it sets none). */
export function circuitLimits(cp: ConnectionPool | undefined): CircuitLimits {
  const c = cp?.tcp?.maxConnections;
  const p = cp?.http?.http1MaxPendingRequests;
  const r = cp?.http?.http2MaxRequests;
  if (c === undefined && p === undefined && r === undefined) return UNLIMITED;
  return Object.freeze({
    maxConnections: c && c > 0 ? c : Infinity,
    maxPendingRequests: p !== undefined && p >= 0 ? p : Infinity,
    maxRequests: r && r > 0 ? r : Infinity,
  });
}

/** Requests in flight to one cluster (by name, so the count survives config swaps). */
export class Circuit {
  /** Admitted requests that have not finished yet. */
  active = 0;
  /** Requests refused since start (Envoy's upstream_rq_pending_overflow + overflow of max_requests). */
  overflows = 0;

  /** Envoy's pending requests right now under `limits`. */
  pending(limits: CircuitLimits): number {
    return this.active > limits.maxConnections ? this.active - limits.maxConnections : 0;
  }

  /**
   * Admits one request, returning its release function (idempotent), or undefined when a limit
   * is reached (the caller answers 503 with flag UO).
   */
  admit(limits: CircuitLimits): (() => void) | undefined {
    const a = this.active;
    if (a >= limits.maxRequests || (a >= limits.maxConnections && a - limits.maxConnections >= limits.maxPendingRequests)) {
      this.overflows++;
      return undefined;
    }
    this.active = a + 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
    };
  }
}
