/**
 * Endpoint selection per cluster. State (round-robin cursors) lives in a Balancer that outlives
 * snapshot swaps, keyed by cluster name, so a reload does not reset the rotation.
 */
import type { Cluster, Endpoint } from '../config/snapshot.ts';

/**
 * A DNS-resolved cluster with no registry endpoints (a plain hostname destination) has the
 * host itself as its one endpoint, as an Envoy STRICT_DNS cluster does.
 */
const dnsEndpoints = new WeakMap<Cluster, readonly Endpoint[]>();
function endpointsOf(cluster: Cluster): readonly Endpoint[] {
  if (cluster.endpoints.length > 0 || (cluster.resolution !== 'DNS' && cluster.resolution !== 'DNS_ROUND_ROBIN')) return cluster.endpoints;
  let eps = dnsEndpoints.get(cluster);
  if (!eps) {
    eps = Object.freeze([Object.freeze({ address: cluster.host, port: cluster.port, labels: {}, weight: 1 })]);
    dnsEndpoints.set(cluster, eps);
  }
  return eps;
}

export class Balancer {
  private readonly cursors = new Map<string, number>();

  /**
   * Picks an endpoint of `cluster`, preferring ones not in `tried` (retries go to another host
   * when there is one). Undefined when the cluster has no endpoints.
   */
  pick(cluster: Cluster, tried?: ReadonlySet<Endpoint>): Endpoint | undefined {
    const eps = endpointsOf(cluster);
    if (eps.length === 0) return undefined;
    if (eps.length === 1) return eps[0];
    let policy = 'ROUND_ROBIN';
    const lb = cluster.trafficPolicy.loadBalancer;
    if (lb && 'simple' in lb) policy = lb.simple;
    const start = policy === 'RANDOM' ? Math.floor(Math.random() * eps.length) : this.next(cluster.name, eps.length);
    if (!tried || tried.size === 0) return eps[start];
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[(start + i) % eps.length]!;
      if (!tried.has(ep)) return ep;
    }
    return eps[start];
  }

  private next(name: string, n: number): number {
    const i = this.cursors.get(name) ?? 0;
    this.cursors.set(name, (i + 1) % n);
    return i % n;
  }
}
