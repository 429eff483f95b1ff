/**
 * Upstream connection pools (undici), one per endpoint origin and connection settings. Pools
 * outlive snapshot swaps: a reload that keeps an endpoint keeps its warm connections.
 */
import { createRequire } from 'node:module';
import type { Dispatcher, buildConnector } from 'undici';
import type * as Undici from 'undici';
import type { Cluster, Endpoint } from '../config/snapshot.ts';
import { CheckClient } from '../dataplane/filters/check-client.ts';

/**
 * undici's pools without the rest of undici. `import 'undici'` also loads fetch, WebSocket,
 * EventSource, the cache and mock agents: about 7 MB of RSS a gateway or sidecar never uses. The
 * deep paths are undici's own files (the package has no `exports` map); if a release moves them,
 * this falls back to the package entry. The request/stream API (`pool.request()`, used by
 * ext_authz and mirroring) is mixed into Dispatcher exactly as undici's index.js does.
 */
function loadUndici(): { Pool: typeof Undici.Pool; H2CClient: typeof Undici.H2CClient } {
  const require = createRequire(import.meta.url);
  try {
    const Pool = require('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
    const H2CClient = require('undici/lib/dispatcher/h2c-client.js') as typeof Undici.H2CClient;
    const DispatcherClass = require('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher;
    const api = require('undici/lib/api/index.js') as object;
    if (typeof Pool === 'function' && typeof H2CClient === 'function' && typeof DispatcherClass === 'function' && Pool.prototype instanceof DispatcherClass) {
      if (typeof (DispatcherClass.prototype as { request?: unknown }).request !== 'function') Object.assign(DispatcherClass.prototype, api);
      return { Pool, H2CClient };
    }
  } catch {
    // fall through to the package entry
  }
  const undici = require('undici') as typeof Undici;
  return { Pool: undici.Pool, H2CClient: undici.H2CClient };
}

const { Pool, H2CClient } = loadUndici();

/** undici's Pool without the rest of the package (see loadUndici), for other light clients. */
export const LightPool: typeof Undici.Pool = Pool;

type AnyPool = Dispatcher & { stats?: Undici.Pool['stats'] };

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

/**
 * What was last chosen for a (cluster, endpoint) pair, with the TLS settings it was chosen under:
 * snapshots are immutable, so a per-request lookup skips building a key.
 */
class ChosenPerEndpoint<T> {
  private map = new WeakMap<Cluster, WeakMap<Endpoint, { readonly tls: UpstreamTls | undefined; readonly value: T }>>();

  get(cluster: Cluster, endpoint: Endpoint, tls: UpstreamTls | undefined): T | undefined {
    const hit = this.map.get(cluster)?.get(endpoint);
    return hit !== undefined && hit.tls === tls ? hit.value : undefined;
  }

  set(cluster: Cluster, endpoint: Endpoint, tls: UpstreamTls | undefined, value: T): T {
    let byEndpoint = this.map.get(cluster);
    if (byEndpoint === undefined) this.map.set(cluster, (byEndpoint = new WeakMap()));
    byEndpoint.set(endpoint, { tls, value });
    return value;
  }

  clear(): void {
    this.map = new WeakMap();
  }
}

/** Most checks pipelined on one connection to an authorization server. */
const CHECK_PIPELINING = 16;

export class UpstreamPools {
  private readonly pools = new Map<string, AnyPool>();
  /** The HTTP/2 (h2c) clients among `pools`. */
  private readonly h2Pools = new WeakSet<Dispatcher>();
  /** The pool last chosen per (cluster, endpoint). */
  private readonly chosen = new ChosenPerEndpoint<Dispatcher>();
  /** Set by sidecars and mesh-aware gateways (gateway/mtls.ts meshUpstreamTls); absent = plaintext. */
  tlsPolicy: UpstreamTlsPolicy | undefined;
  /** ext_authz check clients by connection settings (dataplane/filters/check-client.ts). */
  private readonly checkClients = new Map<string, CheckClient>();
  private readonly chosenCheck = new ChosenPerEndpoint<CheckClient>();

  /**
   * The ext_authz check client for an HTTP/1.1 authorization server endpoint; undefined when the
   * cluster speaks HTTP/2 (checks then go through the undici pool from get()).
   */
  checkClient(cluster: Cluster, endpoint: Endpoint): CheckClient | undefined {
    const tls = this.tlsPolicy?.(cluster, endpoint);
    if (!tls && usesHttp2(cluster)) return undefined;
    const hit = this.chosenCheck.get(cluster, endpoint, tls);
    if (hit !== undefined) return hit;
    const cp = cluster.trafficPolicy.connectionPool;
    const options = {
      address: endpoint.address,
      port: endpoint.port,
      ...(tls ? { tls: tls.connect } : {}),
      connectTimeoutMs: cp?.tcp?.connectTimeoutMs ?? 10_000,
      idleTimeoutMs: cp?.http?.idleTimeoutMs ?? 60_000,
      maxConnections: cp?.tcp?.maxConnections ?? 1024,
      // Istio's maxRequestsPerConnection: 1 means no keep-alive, so no pipelining either.
      pipelining: cp?.http?.maxRequestsPerConnection === 1 ? 1 : CHECK_PIPELINING,
      maxRequestsPerConnection: cp?.http?.maxRequestsPerConnection ?? 0,
      maxBodyBytes: 1024 * 1024,
    };
    const key = `${endpoint.address}|${endpoint.port}|${tls?.key ?? ''}|${options.connectTimeoutMs}|${options.idleTimeoutMs}|${options.maxConnections}|${options.pipelining}|${options.maxRequestsPerConnection}`;
    let client = this.checkClients.get(key);
    if (!client) {
      client = new CheckClient(options);
      this.checkClients.set(key, client);
    }
    return this.chosenCheck.set(cluster, endpoint, tls, client);
  }

  get(cluster: Cluster, endpoint: Endpoint): Dispatcher {
    const tls = this.tlsPolicy?.(cluster, endpoint);
    return this.chosen.get(cluster, endpoint, tls) ?? this.chosen.set(cluster, endpoint, tls, this.create(cluster, endpoint, tls));
  }

  private create(cluster: Cluster, endpoint: Endpoint, tls: UpstreamTls | undefined): Dispatcher {
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
      this.h2Pools.add(pool);
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

  /** Whether `pool` (from get()) speaks HTTP/2 to its upstream. */
  speaksHttp2(pool: Dispatcher): boolean {
    return this.h2Pools.has(pool);
  }

  /** Per-origin stats for the admin `/clusters` page. */
  stats(): { origin: string; protocol: string; connected: number; pending: number; running: number }[] {
    const pools = [...this.pools.entries()].map(([key, p]) => {
      const [origin, protocol] = key.split('|');
      return { origin: origin!, protocol: protocol!, connected: p.stats?.connected ?? 0, pending: p.stats?.pending ?? 0, running: p.stats?.running ?? 0 };
    });
    const checks = [...this.checkClients.entries()].map(([key, c]) => {
      const [address, port, tls] = key.split('|');
      const host = address!.includes(':') ? `[${address}]` : address;
      return { origin: `${tls ? 'https' : 'http'}://${host}:${port}`, protocol: 'h1 (ext_authz)', ...c.stats(), pending: 0 };
    });
    return [...pools, ...checks];
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    this.chosen.clear();
    for (const c of this.checkClients.values()) c.close();
    this.checkClients.clear();
    this.chosenCheck.clear();
    await Promise.allSettled(all.map((p) => p.close()));
  }
}
