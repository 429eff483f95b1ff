/**
 * Optional active health checking (off unless started): every `intervalMs`, a TCP connect to each
 * endpoint of each cluster that has outlierDetection; an endpoint that cannot be connected to
 * within `timeoutMs` on `unhealthyThreshold` consecutive rounds is marked UNHEALTHY (skipped by
 * pick() like an ejected one) until `healthyThreshold` consecutive connects succeed, like an Envoy
 * TCP health check with an empty payload. Registry endpoints only: DNS clusters are skipped.
 */
import { connect } from 'node:net';
import type { Cluster, Endpoint } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';

export interface HealthCheckOptions {
  /** Default 5000. */
  readonly intervalMs?: number;
  /** Default 1000. */
  readonly timeoutMs?: number;
  /** Failed rounds before an endpoint is marked down (default 2). */
  readonly unhealthyThreshold?: number;
  /** Successful rounds before it is up again (default 1). */
  readonly healthyThreshold?: number;
}

/** One TCP connect attempt; resolves true when the connection is established in time. */
export function tcpProbe(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: address, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export class HealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Consecutive results per `cluster|address:port`: > 0 successes, < 0 failures. */
  private readonly streaks = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly unhealthy: number;
  private readonly healthy: number;

  constructor(
    private readonly balancer: Balancer,
    /** The clusters of the current config (read on every round, so reloads are followed). */
    private readonly clusters: () => Iterable<Cluster>,
    opts: HealthCheckOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 5000;
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.unhealthy = Math.max(1, opts.unhealthyThreshold ?? 2);
    this.healthy = Math.max(1, opts.healthyThreshold ?? 1);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.round(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Probes every checked endpoint once (what the timer does); overlapping rounds are skipped. */
  round(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.probeAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async probeAll(): Promise<void> {
    const seen = new Set<string>();
    const probes: Promise<void>[] = [];
    for (const cluster of this.clusters()) {
      if (!cluster.trafficPolicy.outlierDetection || cluster.endpoints.length === 0) continue;
      for (const ep of cluster.endpoints) {
        const key = `${cluster.name}|${ep.address}:${ep.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        probes.push(tcpProbe(ep.address, ep.port, this.timeoutMs).then((ok) => this.result(cluster, ep, key, ok)));
      }
    }
    await Promise.all(probes);
    for (const key of this.streaks.keys()) if (!seen.has(key)) this.streaks.delete(key);
  }

  private result(cluster: Cluster, ep: Endpoint, key: string, ok: boolean): void {
    const prev = this.streaks.get(key) ?? 0;
    const streak = ok ? (prev > 0 ? prev + 1 : 1) : prev < 0 ? prev - 1 : -1;
    this.streaks.set(key, streak);
    if (streak === -this.unhealthy) this.balancer.setHealth(cluster, ep, false);
    else if (streak === this.healthy) this.balancer.setHealth(cluster, ep, true);
  }
}
