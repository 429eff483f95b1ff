/**
 * Upstream connection pools (undici), one per endpoint origin and connection settings. Pools
 * outlive snapshot swaps: a reload that keeps an endpoint keeps its warm connections.
 */
import { H2CClient, Pool, type Dispatcher, type buildConnector } from 'undici';
import type { Cluster, Endpoint } from '../config/snapshot.ts';

/**
 * TLS origination for one endpoint (sidecar mTLS, gateway → sidecar ISTIO_MUTUAL): `key` names
 * the settings (pools are keyed by it, so plaintext and mTLS never share a connection) and
 * `connect` opens the TLS connection, reading the current certificate on every connect so a
 * rotation needs no new pool. See gateway/mtls.ts.
 */
export interface UpstreamTls {
  readonly key: string;
  readonly connect: buildConnector.connector;
}

/** Decides per (cluster, endpoint) whether to originate TLS; undefined = plaintext. */
export type UpstreamTlsPolicy = (cluster: Cluster, endpoint: Endpoint) => UpstreamTls | undefined;

/**
 * Whether to speak HTTP/2 (prior knowledge, h2c) to a cluster: its registry port protocol is
 * HTTP2/GRPC/GRPC-WEB, or the DestinationRule asks for `h2UpgradePolicy: UPGRADE` (Istio).
 */
export function usesHttp2(cluster: Cluster): boolean {
  const p = cluster.protocol.toUpperCase();
  if (p === 'HTTP2' || p === 'GRPC' || p === 'GRPC-WEB') return cluster.trafficPolicy.connectionPool?.http?.h2UpgradePolicy !== 'DO_NOT_UPGRADE';
  return cluster.trafficPolicy.connectionPool?.http?.h2UpgradePolicy === 'UPGRADE';
}

export class UpstreamPools {
  private readonly pools = new Map<string, Dispatcher & { stats?: Pool['stats'] }>();
  /** Set by sidecars and mesh-aware gateways (gateway/mtls.ts meshUpstreamTls); absent = plaintext. */
  tlsPolicy: UpstreamTlsPolicy | undefined;

  get(cluster: Cluster, endpoint: Endpoint): Dispatcher {
    const cp = cluster.trafficPolicy.connectionPool;
    const maxConnections = cp?.tcp?.maxConnections;
    const connectTimeout = cp?.tcp?.connectTimeoutMs ?? 10_000;
    const idle = cp?.http?.idleTimeoutMs ?? 60_000;
    // Istio: 0 (the default) means unlimited, 1 disables keep-alive; undici reads 0 as unlimited too.
    const maxRequestsPerClient = cp?.http?.maxRequestsPerConnection;
    // TCP keepalive probes start after tcpKeepalive.time (Node cannot set probes/interval per socket).
    const keepAliveDelay = cp?.tcp?.tcpKeepalive?.timeMs;
    const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
    // mTLS origination (sidecar ISTIO_MUTUAL): HTTP/1.1 over the mesh TLS connection.
    const tls = this.tlsPolicy?.(cluster, endpoint);
    const origin = `${tls ? 'https' : 'http'}://${host}:${endpoint.port}`;
    const h2 = !tls && usesHttp2(cluster);
    const key = `${origin}|${h2 ? 'h2c' : 'h1'}|${tls?.key ?? ''}|${maxConnections ?? ''}|${connectTimeout}|${idle}|${maxRequestsPerClient ?? ''}|${keepAliveDelay ?? ''}`;
    let pool = this.pools.get(key);
    if (!pool && h2) {
      // One multiplexed connection; http2MaxRequests bounds the streams (admit() enforces it).
      const streams = cp?.http?.http2MaxRequests ?? 1000;
      pool = new H2CClient(origin, {
        connectTimeout,
        keepAliveTimeout: idle,
        keepAliveMaxTimeout: Math.max(idle, 600_000),
        headersTimeout: 0,
        bodyTimeout: 0,
        maxConcurrentStreams: streams,
        pipelining: streams,
      });
      this.pools.set(key, pool);
    }
    if (!pool) {
      pool = new Pool(origin, {
        // Envoy's max_connections is per cluster; undici's limit is per endpoint pool, so a
        // cluster of N endpoints may open up to N x maxConnections. admit() enforces the
        // cluster-wide request limits (gateway/circuit.ts).
        connections: maxConnections ?? null,
        pipelining: 1,
        connectTimeout,
        keepAliveTimeout: idle,
        keepAliveMaxTimeout: Math.max(idle, 600_000),
        // Istio routes have no timeout unless one is configured; the route timer enforces it.
        headersTimeout: 0,
        bodyTimeout: 0,
        maxRequestsPerClient,
        ...(tls ? { connect: tls.connect } : keepAliveDelay !== undefined ? { connect: { keepAlive: true, keepAliveInitialDelay: keepAliveDelay } } : {}),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Per-origin stats for the admin `/clusters` page. */
  stats(): { origin: string; protocol: string; connected: number; pending: number; running: number }[] {
    return [...this.pools.entries()].map(([key, p]) => {
      const [origin, protocol] = key.split('|');
      return { origin: origin!, protocol: protocol!, connected: p.stats?.connected ?? 0, pending: p.stats?.pending ?? 0, running: p.stats?.running ?? 0 };
    });
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(all.map((p) => p.close()));
  }
}
