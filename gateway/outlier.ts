/**
 * Passive health checking (DestinationRule `trafficPolicy.outlierDetection`) the way Envoy's
 * outlier detector does it, with Istio's settings:
 * - Every attempt's outcome is reported. With Envoy's default split_external_local_origin_errors
 *   = false, locally originated failures count as 5xx: connect failure and reset as 503,
 *   timeout as 504. Any 5xx bumps the consecutive-5xx counter; 502/503/504 (and local failures)
 *   bump the consecutive-gateway-error counter, other 5xx reset it; a non-5xx response resets both.
 * - Reaching `consecutive5xxErrors` (0 disables) or `consecutiveGatewayErrors` ejects the host at
 *   once, unless `maxEjectionPercent` of the cluster is already ejected. Envoy's check is
 *   `ejected% < max%` *before* this ejection, so with max% > 0 one host can always be ejected.
 * - Ejected hosts come back on the sweep (every `interval`) after `baseEjectionTime` x the number
 *   of times they were ejected, capped at max(300 s, baseEjectionTime) (Envoy's max_ejection_time);
 *   the multiplier decreases by one on each sweep that finds the host healthy.
 * - `minHealthPercent` is Envoy's panic threshold: below it, ejections are ignored (Istio default 0
 *   = never panic, so a fully ejected cluster answers 503 "no healthy upstream").
 */
import type { Endpoint, OutlierDetection } from '../config/snapshot.ts';
import { Circuit, UNLIMITED, type CircuitLimits } from './circuit.ts';
import type { Outcome } from './balancer.ts';

/** Envoy's default max_ejection_time. */
export const MAX_EJECTION_TIME_MS = 300_000;

export type EjectionReason = 'consecutive-5xx' | 'consecutive-gateway-errors' | 'health-check';

export interface EjectionEvent {
  readonly cluster: string;
  readonly address: string;
  readonly port: number;
  readonly action: 'eject' | 'uneject';
  readonly reason: EjectionReason;
  /** Times ejected so far (the multiplier of baseEjectionTime). */
  readonly ejections: number;
  /** For `eject`: how long this ejection lasts at least. */
  readonly durationMs?: number;
}

/** Mutable per-endpoint state, keyed by `address:port` inside its cluster. */
export class EndpointState {
  endpoint: Endpoint;
  /** Attempts started and not yet ended (LEAST_REQUEST reads this). */
  active = 0;
  consecutive5xx = 0;
  consecutiveGateway = 0;
  /** Skipped by pick() unless the cluster is in panic. */
  ejected = false;
  /** Marked down by the active health checker. */
  unhealthy = false;
  ejectedAt = 0;
  /** Multiplier for baseEjectionTime. */
  multiplier = 0;
  /** Ejections since start (for stats). */
  totalEjections = 0;
  ejectReason: EjectionReason = 'consecutive-5xx';

  constructor(
    readonly key: string,
    endpoint: Endpoint,
  ) {
    this.endpoint = endpoint;
  }

  get down(): boolean {
    return this.ejected || this.unhealthy;
  }
}

export function endpointKey(ep: Endpoint): string {
  return `${ep.address}:${ep.port}`;
}

export interface HostsDeps {
  readonly now: () => number;
  readonly timers: boolean;
  readonly emit: (e: EjectionEvent) => void;
}

/**
 * Everything the balancer keeps per cluster name: endpoint states, the round-robin cursor, the
 * circuit breaker and the outlier detector. Outlives config swaps.
 */
export class ClusterHosts {
  readonly states = new Map<string, EndpointState>();
  readonly circuit = new Circuit();
  /** Circuit-breaker thresholds of the newest Cluster object. */
  limits: CircuitLimits = UNLIMITED;
  cursor = 0;
  /** States currently down (ejected or unhealthy), among `states`. */
  downCount = 0;
  /** Ejections refused by maxEjectionPercent. */
  ejectionsOverflow = 0;
  od: OutlierDetection | undefined;
  /** The newest Cluster object seen; when it is collected the cluster is gone from config. */
  latest: WeakRef<object> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerInterval = 0;

  constructor(
    readonly name: string,
    private readonly deps: HostsDeps,
  ) {}

  /**
   * Brings the states in line with a new endpoint list and outlier settings; returns the states
   * aligned with `eps`. States of endpoints that left are dropped (attempts in flight keep their
   * own reference, so their accounting stays harmless).
   */
  reconcile(eps: readonly Endpoint[], od: OutlierDetection | undefined): EndpointState[] {
    const out: EndpointState[] = [];
    const keep = new Set<string>();
    for (const ep of eps) {
      const key = endpointKey(ep);
      let st = this.states.get(key);
      if (!st) {
        st = new EndpointState(key, ep);
        this.states.set(key, st);
      }
      st.endpoint = ep;
      keep.add(key);
      out.push(st);
    }
    for (const [key, st] of this.states) {
      if (!keep.has(key)) {
        if (st.down) this.downCount--;
        this.states.delete(key);
      }
    }
    this.od = od;
    if (!od) {
      for (const st of this.states.values()) this.clearEjection(st, false);
      this.recount();
    }
    this.arm();
    return out;
  }

  /** True when so few hosts are healthy that ejections are ignored (Envoy panic mode). */
  panic(): boolean {
    if (this.downCount === 0) return false;
    const total = this.states.size;
    const minHealth = this.od?.minHealthPercent ?? 0;
    return total === 0 || (100 * (total - this.downCount)) / total < minHealth;
  }

  /** Records how one attempt on `st` ended. */
  record(st: EndpointState, o: Outcome): void {
    const od = this.od;
    if (!od) return;
    let status: number;
    switch (o.kind) {
      case 'response':
        status = o.status;
        break;
      case 'timeout':
        status = 504;
        break;
      case 'connect-failure':
      case 'reset':
        status = 503;
        break;
      default:
        return; // cancelled by the client: says nothing about the upstream
    }
    if (status < 500) {
      st.consecutive5xx = 0;
      st.consecutiveGateway = 0;
      return;
    }
    st.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) st.consecutiveGateway++;
    else st.consecutiveGateway = 0;
    const c5 = od.consecutive5xxErrors ?? 0;
    const cg = od.consecutiveGatewayErrors ?? 0;
    if (c5 > 0 && st.consecutive5xx >= c5) this.eject(st, 'consecutive-5xx');
    else if (cg > 0 && st.consecutiveGateway >= cg) this.eject(st, 'consecutive-gateway-errors');
  }

  /** Ejects `st` if maxEjectionPercent allows; counters restart either way (as Envoy does). */
  eject(st: EndpointState, reason: EjectionReason): boolean {
    st.consecutive5xx = 0;
    st.consecutiveGateway = 0;
    const od = this.od;
    if (!od || st.ejected) return false;
    const total = this.states.size;
    let ejected = 0;
    for (const s of this.states.values()) if (s.ejected) ejected++;
    if (total === 0 || (100 * ejected) / total >= od.maxEjectionPercent) {
      this.ejectionsOverflow++;
      return false;
    }
    if (!st.down) this.downCount++;
    st.ejected = true;
    st.ejectedAt = this.deps.now();
    st.multiplier++;
    st.totalEjections++;
    st.ejectReason = reason;
    this.deps.emit({
      cluster: this.name,
      address: st.endpoint.address,
      port: st.endpoint.port,
      action: 'eject',
      reason,
      ejections: st.multiplier,
      durationMs: this.ejectionTime(st),
    });
    return true;
  }

  /** How long the current ejection of `st` lasts. */
  ejectionTime(st: EndpointState): number {
    const base = this.od?.baseEjectionTimeMs ?? 30_000;
    return Math.min(base * st.multiplier, Math.max(MAX_EJECTION_TIME_MS, base));
  }

  /** One analysis sweep: returns hosts whose ejection time is over, relaxes multipliers. */
  sweep(): void {
    const now = this.deps.now();
    for (const st of this.states.values()) {
      if (st.ejected) {
        if (now - st.ejectedAt >= this.ejectionTime(st)) this.clearEjection(st, true);
      } else if (st.multiplier > 0) {
        st.multiplier--;
      }
    }
  }

  /** Marks `st` up or down from an active health check. */
  setUnhealthy(st: EndpointState, unhealthy: boolean): void {
    if (st.unhealthy === unhealthy) return;
    const wasDown = st.down;
    st.unhealthy = unhealthy;
    if (wasDown !== st.down) this.downCount += st.down ? 1 : -1;
    this.deps.emit({ cluster: this.name, address: st.endpoint.address, port: st.endpoint.port, action: unhealthy ? 'eject' : 'uneject', reason: 'health-check', ejections: st.multiplier });
  }

  private clearEjection(st: EndpointState, emit: boolean): void {
    if (!st.ejected) return;
    st.ejected = false;
    if (!st.down) this.downCount--;
    if (emit) this.deps.emit({ cluster: this.name, address: st.endpoint.address, port: st.endpoint.port, action: 'uneject', reason: st.ejectReason, ejections: st.multiplier });
  }

  private recount(): void {
    let n = 0;
    for (const st of this.states.values()) if (st.down) n++;
    this.downCount = n;
  }

  /** Keeps the sweep timer in step with the outlier settings (unref'd: never holds the process). */
  private arm(): void {
    const interval = this.od && this.deps.timers ? Math.max(1, this.od.intervalMs) : 0;
    if (interval === this.timerInterval) return;
    this.stop();
    if (interval > 0) {
      this.timer = setInterval(() => this.sweep(), interval);
      this.timer.unref();
      this.timerInterval = interval;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.timerInterval = 0;
  }

  /** Nothing in flight and no longer referenced by any live config. */
  idle(): boolean {
    if (this.circuit.active > 0) return false;
    for (const st of this.states.values()) if (st.active > 0) return false;
    return this.latest?.deref() === undefined;
  }
}
