/**
 * Upstream connection pools (undici), one per endpoint origin and connection settings. Pools
 * outlive snapshot swaps: a reload that keeps an endpoint keeps its warm connections.
 */
import { Pool } from 'undici';
import type { Cluster, Endpoint } from '../config/snapshot.ts';

export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  get(cluster: Cluster, endpoint: Endpoint): Pool {
    const cp = cluster.trafficPolicy.connectionPool;
    const maxConnections = cp?.tcp?.maxConnections;
    const connectTimeout = cp?.tcp?.connectTimeoutMs ?? 10_000;
    const idle = cp?.http?.idleTimeoutMs ?? 60_000;
    // Istio: 0 (the default) means unlimited, 1 disables keep-alive; undici reads 0 as unlimited too.
    const maxRequestsPerClient = cp?.http?.maxRequestsPerConnection;
    // TCP keepalive probes start after tcpKeepalive.time (Node cannot set probes/interval per socket).
    const keepAliveDelay = cp?.tcp?.tcpKeepalive?.timeMs;
    const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
    const origin = `http://${host}:${endpoint.port}`;
    const key = `${origin}|${maxConnections ?? ''}|${connectTimeout}|${idle}|${maxRequestsPerClient ?? ''}|${keepAliveDelay ?? ''}`;
    let pool = this.pools.get(key);
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
        ...(keepAliveDelay !== undefined ? { connect: { keepAlive: true, keepAliveInitialDelay: keepAliveDelay } } : {}),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Per-origin stats for the admin `/clusters` page. */
  stats(): { origin: string; connected: number; pending: number; running: number }[] {
    return [...this.pools.entries()].map(([key, p]) => ({
      origin: key.split('|')[0]!,
      connected: p.stats.connected,
      pending: p.stats.pending,
      running: p.stats.running,
    }));
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(all.map((p) => p.close()));
  }
}
