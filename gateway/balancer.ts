/**
 * Endpoint selection per cluster: DestinationRule `trafficPolicy.loadBalancer` (ROUND_ROBIN,
 * RANDOM, LEAST_REQUEST, consistentHash on a ring), outlier ejection (outlier.ts) and circuit
 * breaking (circuit.ts).
 *
 * The Balancer lives for the whole process. Mutable state (cursors, in-flight counts, ejections,
 * circuit counters) is keyed by cluster name and endpoint `address:port`, so a config swap keeps
 * it; everything derivable from a frozen Cluster (policy, weights, hash ring, limits) is computed
 * once per Cluster object and cached in a WeakMap, so pick() does no allocation on its fast path.
 * State of clusters that left the config is dropped lazily, once their last Cluster object has
 * been garbage collected and nothing is in flight.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Endpoint, LoadBalancerPolicy } from '../config/snapshot.ts';
import { circuitLimits, type CircuitLimits } from './circuit.ts';
import { ClusterHosts, EndpointState, endpointKey, type EjectionEvent } from './outlier.ts';

export type { EjectionEvent } from './outlier.ts';

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

/** What consistent-hash policies may read from the request. */
export interface PickRequest {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly sourceIp: string;
  /** Raw query string without `?`. */
  readonly query: string;
}

export interface Picked {
  readonly endpoint: Endpoint;
  /** A `Set-Cookie` value to add to the response (consistent hash on a generated cookie). */
  readonly setCookie?: string;
}

/** How one attempt against one endpoint ended, for outlier detection. */
export type Outcome =
  | { readonly kind: 'response'; readonly status: number }
  | { readonly kind: 'connect-failure' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'cancelled' };

type ConsistentHash = Extract<LoadBalancerPolicy, { consistentHash: unknown }>['consistentHash'];

/** Envoy's ring_hash minimum_ring_size default (Istio passes minimumRingSize through). */
export const DEFAULT_RING_SIZE = 1024;
/** Upper bound on ring entries (Envoy's default maximum is 8M; we keep memory small). */
export const MAX_RING_SIZE = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Hashing and the ring

/** 32-bit FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A consistent-hash ring: sorted point hashes and the endpoint index owning each point. */
export interface Ring {
  readonly hashes: Uint32Array;
  readonly owners: Uint32Array;
}

/**
 * Builds a ring like Envoy's ring_hash: each host gets points in proportion to its weight, the
 * ring has at least `minRingSize` points, and point j of a host hashes `"<address:port>_<j>"`.
 * Unlike Envoy, the points per unit of weight are rounded up to a power of two, so adding or
 * removing a host usually leaves every other host's points untouched: only the keys that fall on
 * the new host's points move (Envoy shrinks every host's share and moves a few more).
 */
export function buildRing(keys: readonly string[], weights: readonly number[], minRingSize = DEFAULT_RING_SIZE): Ring {
  const n = keys.length;
  if (n === 0) return { hashes: new Uint32Array(0), owners: new Uint32Array(0) };
  let minW = Infinity;
  for (let i = 0; i < n; i++) minW = Math.min(minW, weights[i]! > 0 ? weights[i]! : 1);
  let units = 0;
  for (let i = 0; i < n; i++) units += (weights[i]! > 0 ? weights[i]! : 1) / minW;
  let perUnit = 2 ** Math.ceil(Math.log2(Math.max(1, Math.max(1, minRingSize) / units)));
  while (perUnit > 1 && perUnit * units > MAX_RING_SIZE) perUnit /= 2;
  const counts: number[] = [];
  let size = 0;
  for (let i = 0; i < n; i++) {
    const c = Math.max(1, Math.round(((weights[i]! > 0 ? weights[i]! : 1) / minW) * perUnit));
    counts.push(c);
    size += c;
  }
  // hash * 2^20 + owner fits a double exactly, so one numeric sort orders both.
  const packed = new Float64Array(size);
  let k = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < counts[i]!; j++) packed[k++] = hash32(`${keys[i]}_${j}`) * 1048576 + i;
  }
  packed.sort();
  const hashes = new Uint32Array(size);
  const owners = new Uint32Array(size);
  for (let p = 0; p < size; p++) {
    const v = packed[p]!;
    const owner = v % 1048576;
    owners[p] = owner;
    hashes[p] = (v - owner) / 1048576;
  }
  return { hashes, owners };
}

/** Position of the first ring point at or after `h` (wrapping). */
export function ringPosition(ring: Ring, h: number): number {
  const a = ring.hashes;
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < h) lo = mid + 1;
    else hi = mid;
  }
  return lo === a.length ? 0 : lo;
}

/** The value of cookie `name` in a Cookie header (quotes removed), or undefined. */
export function cookieValue(header: string | readonly string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string') {
    for (const h of header) {
      const v = cookieValue(h, name);
      if (v !== undefined) return v;
    }
    return undefined;
  }
  let from = 0;
  for (;;) {
    const i = header.indexOf(name, from);
    if (i < 0) return undefined;
    let j = i - 1;
    while (j >= 0 && (header.charCodeAt(j) === 32 || header.charCodeAt(j) === 9)) j--;
    const eq = i + name.length;
    if ((j < 0 || header.charCodeAt(j) === 59) && header.charCodeAt(eq) === 61) {
      let end = header.indexOf(';', eq + 1);
      if (end < 0) end = header.length;
      let v = header.slice(eq + 1, end).trim();
      if (v.length >= 2 && v.charCodeAt(0) === 34 && v.charCodeAt(v.length - 1) === 34) v = v.slice(1, -1);
      return v;
    }
    from = i + 1;
  }
}

/** The raw value of query parameter `name` (first occurrence), or undefined. */
export function queryValue(query: string, name: string): string | undefined {
  let from = 0;
  for (;;) {
    const i = query.indexOf(name, from);
    if (i < 0) return undefined;
    const eq = i + name.length;
    if ((i === 0 || query.charCodeAt(i - 1) === 38) && (eq === query.length || query.charCodeAt(eq) === 61 || query.charCodeAt(eq) === 38)) {
      if (query.charCodeAt(eq) !== 61) return '';
      const end = query.indexOf('&', eq + 1);
      return query.slice(eq + 1, end < 0 ? query.length : end);
    }
    from = i + 1;
  }
}

/**
 * `Set-Cookie` for a generated hash cookie, in Envoy's form
 * (`name="value"; Max-Age=N; Path=/p; HttpOnly`; a zero TTL makes a session cookie).
 */
export function hashCookie(name: string, value: string, ttlMs: number, path: string | undefined): string {
  const maxAge = Math.floor(ttlMs / 1000);
  return `${name}="${value}"${maxAge > 0 ? `; Max-Age=${maxAge}` : ''}${path ? `; Path=${path}` : ''}; HttpOnly`;
}

// ---------------------------------------------------------------------------------------------
// The balancer

const ROUND_ROBIN = 0;
const RANDOM = 1;
const LEAST_REQUEST = 2;
const HASH = 3;

/** Everything derived from one frozen Cluster object. */
interface Compiled {
  readonly eps: readonly Endpoint[];
  readonly states: readonly EndpointState[];
  readonly byEndpoint: ReadonlyMap<Endpoint, EndpointState>;
  /** Preallocated results, one per endpoint. */
  readonly picked: readonly Picked[];
  readonly hosts: ClusterHosts;
  readonly policy: number;
  /** Endpoint weights differ (weighted round robin / least request). */
  readonly weighted: boolean;
  readonly weights: Float64Array;
  /** Smooth weighted round-robin state. */
  readonly current: Float64Array;
  readonly hash?: ConsistentHash;
  readonly ring?: Ring;
  readonly limits: CircuitLimits;
}

export interface EndpointStats {
  readonly address: string;
  readonly port: number;
  readonly health: 'HEALTHY' | 'EJECTED' | 'UNHEALTHY';
  /** Attempts in flight. */
  readonly active: number;
  readonly consecutive5xx: number;
  readonly consecutiveGatewayErrors: number;
  /** Ejections since start. */
  readonly ejections: number;
  /** Current baseEjectionTime multiplier. */
  readonly ejectionMultiplier: number;
  /** Remaining ejection time, when ejected. */
  readonly ejectedForMs?: number;
}

export interface ClusterStats {
  readonly name: string;
  readonly outlierDetection: boolean;
  /** Too few healthy hosts: ejections ignored (minHealthPercent). */
  readonly panic: boolean;
  /** Requests admitted and in flight. */
  readonly active: number;
  /** Of those, waiting for a connection (Envoy's pending requests). */
  readonly pending: number;
  /** Requests refused by circuit breaking (503 UO). */
  readonly overflows: number;
  /** Ejections refused by maxEjectionPercent. */
  readonly ejectionsOverflow: number;
  /** Circuit-breaker thresholds (null = unlimited). */
  readonly limits: { readonly maxConnections: number | null; readonly maxPendingRequests: number | null; readonly maxRequests: number | null };
  readonly endpoints: readonly EndpointStats[];
}

export interface BalancerOptions {
  /** Clock in ms (default Date.now). */
  readonly now?: () => number;
  /** Uniform [0, 1) (default Math.random). */
  readonly random?: () => number;
  /** Run outlier sweeps on `interval` timers (default true); with false, call sweep(). */
  readonly timers?: boolean;
  /** Called on every ejection and return to service. */
  readonly onEjection?: (e: EjectionEvent) => void;
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

export class Balancer {
  private readonly clusters = new Map<string, ClusterHosts>();
  private readonly compiled = new WeakMap<Cluster, Compiled>();
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly timers: boolean;
  private lastCollect = -Infinity;
  /** Ejection hook (logging, metrics); may be set after construction. */
  onEjection: ((e: EjectionEvent) => void) | undefined;

  constructor(opts: BalancerOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.timers = opts.timers ?? true;
    this.onEjection = opts.onEjection;
  }

  /**
   * Picks an endpoint of `cluster`, preferring ones not in `tried` (retries go to another host
   * when there is one) and skipping ejected ones unless the cluster is in panic. Undefined when
   * the cluster has no endpoints or none is healthy (answer 503, flag UH).
   */
  pick(cluster: Cluster, tried?: ReadonlySet<Endpoint>, req?: PickRequest): Picked | undefined {
    const c = this.compile(cluster);
    const n = c.eps.length;
    if (n === 0) return undefined;
    const hosts = c.hosts;
    const skipDown = hosts.downCount > 0 && !hosts.panic();
    const avoid = tried !== undefined && tried.size > 0 ? tried : undefined;

    let h = -1;
    let setCookie: string | undefined;
    if (c.policy === HASH) {
      const key = hashKey(c.hash!, req);
      if (key !== undefined) h = hash32(key);
      else if (c.hash!.httpCookie?.ttlMs !== undefined) {
        const cookie = c.hash!.httpCookie;
        const value = randomBytes(8).toString('hex');
        setCookie = hashCookie(cookie.name, value, cookie.ttlMs!, cookie.path);
        h = hash32(value);
      }
    }

    if (!skipDown && !avoid && n === 1) return setCookie ? { endpoint: c.eps[0]!, setCookie } : c.picked[0];
    let i = this.choose(c, h, skipDown, avoid);
    if (i < 0 && avoid) i = this.choose(c, h, skipDown, undefined);
    if (i < 0) return undefined;
    return setCookie ? { endpoint: c.eps[i]!, setCookie } : c.picked[i];
  }

  /** An attempt starts on `endpoint`; call the returned function once with how it ended. */
  start(cluster: Cluster, endpoint: Endpoint): (outcome: Outcome) => void {
    const c = this.compile(cluster);
    const hosts = c.hosts;
    const st = c.byEndpoint.get(endpoint) ?? hosts.states.get(endpointKey(endpoint)) ?? new EndpointState(endpointKey(endpoint), endpoint);
    st.active++;
    let done = false;
    return (outcome) => {
      if (done) return;
      done = true;
      st.active--;
      hosts.record(st, outcome);
    };
  }

  /**
   * Circuit breaking (DestinationRule connectionPool): admits a request to `cluster`, returning
   * its release function, or undefined when the cluster is at its limit (answer 503, flag UO).
   */
  admit(cluster: Cluster): (() => void) | undefined {
    const c = this.compile(cluster);
    return c.hosts.circuit.admit(c.limits);
  }

  /** Runs one outlier sweep on every cluster now (what the interval timers do). */
  sweep(): void {
    for (const hosts of this.clusters.values()) if (hosts.od) hosts.sweep();
  }

  /**
   * Marks an endpoint of `cluster` down or up from outside (active health checking); down
   * endpoints are skipped like ejected ones. Unknown endpoint: no effect.
   */
  setHealth(cluster: Cluster, endpoint: Endpoint, healthy: boolean): void {
    const c = this.compile(cluster);
    const st = c.byEndpoint.get(endpoint) ?? c.hosts.states.get(endpointKey(endpoint));
    if (st) c.hosts.setUnhealthy(st, !healthy);
  }

  /** The endpoints pick() chooses from for `cluster` (a DNS cluster's host when it has none). */
  endpoints(cluster: Cluster): readonly Endpoint[] {
    return endpointsOf(cluster);
  }

  /** Per cluster, per endpoint state for the admin `/clusters` page. */
  stats(): ClusterStats[] {
    const now = this.now();
    const out: ClusterStats[] = [];
    for (const hosts of [...this.clusters.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const l = hosts.limits;
      out.push({
        name: hosts.name,
        outlierDetection: hosts.od !== undefined,
        panic: hosts.panic(),
        active: hosts.circuit.active,
        pending: hosts.circuit.pending(l),
        overflows: hosts.circuit.overflows,
        ejectionsOverflow: hosts.ejectionsOverflow,
        limits: { maxConnections: finite(l.maxConnections), maxPendingRequests: finite(l.maxPendingRequests), maxRequests: finite(l.maxRequests) },
        endpoints: [...hosts.states.values()].map((st) => ({
          address: st.endpoint.address,
          port: st.endpoint.port,
          health: st.ejected ? 'EJECTED' : st.unhealthy ? 'UNHEALTHY' : 'HEALTHY',
          active: st.active,
          consecutive5xx: st.consecutive5xx,
          consecutiveGatewayErrors: st.consecutiveGateway,
          ejections: st.totalEjections,
          ejectionMultiplier: st.multiplier,
          ...(st.ejected ? { ejectedForMs: Math.max(0, st.ejectedAt + hosts.ejectionTime(st) - now) } : {}),
        })),
      });
    }
    return out;
  }

  /** Stops the sweep timers (they are unref'd, so this is only needed for a tidy shutdown). */
  close(): void {
    for (const hosts of this.clusters.values()) hosts.stop();
  }

  private compile(cluster: Cluster): Compiled {
    const cached = this.compiled.get(cluster);
    if (cached) return cached;
    this.collect();
    const eps = endpointsOf(cluster);
    let hosts = this.clusters.get(cluster.name);
    if (!hosts) {
      hosts = new ClusterHosts(cluster.name, { now: this.now, timers: this.timers, emit: (e) => this.onEjection?.(e) });
      this.clusters.set(cluster.name, hosts);
    }
    hosts.latest = new WeakRef(cluster);
    const tp = cluster.trafficPolicy;
    const states = hosts.reconcile(eps, tp.outlierDetection);
    const limits = circuitLimits(tp.connectionPool);
    hosts.limits = limits;
    const byEndpoint = new Map<Endpoint, EndpointState>();
    eps.forEach((ep, i) => byEndpoint.set(ep, states[i]!));
    const weights = Float64Array.from(eps, (e) => (e.weight > 0 ? e.weight : 1));
    const weighted = weights.some((w) => w !== weights[0]);
    const lb = tp.loadBalancer;
    let policy = ROUND_ROBIN;
    let hash: ConsistentHash | undefined;
    let ring: Ring | undefined;
    if (lb && 'consistentHash' in lb) {
      policy = HASH;
      hash = lb.consistentHash;
      ring = buildRing(
        eps.map((e) => endpointKey(e)),
        [...weights],
        hash.minimumRingSize ?? DEFAULT_RING_SIZE,
      );
    } else if (lb && 'simple' in lb) {
      if (lb.simple === 'RANDOM') policy = RANDOM;
      else if (lb.simple === 'LEAST_REQUEST' || lb.simple === 'LEAST_CONN') policy = LEAST_REQUEST;
    }
    const c: Compiled = {
      eps,
      states,
      byEndpoint,
      picked: eps.map((endpoint) => Object.freeze({ endpoint })),
      hosts,
      policy,
      weighted,
      weights,
      current: new Float64Array(eps.length),
      hash,
      ring,
      limits,
    };
    this.compiled.set(cluster, c);
    return c;
  }

  /** Drops state of clusters gone from config (their Cluster objects collected, nothing in flight). */
  private collect(): void {
    // At most once a second: after a reload every cluster compiles once, and this loop is O(clusters).
    const now = this.now();
    if (now - this.lastCollect < 1000) return;
    this.lastCollect = now;
    for (const [name, hosts] of this.clusters) {
      if (hosts.idle()) {
        hosts.stop();
        this.clusters.delete(name);
      }
    }
  }

  private usable(c: Compiled, i: number, skipDown: boolean, avoid: ReadonlySet<Endpoint> | undefined): boolean {
    return !(skipDown && c.states[i]!.down) && !(avoid !== undefined && avoid.has(c.eps[i]!));
  }

  /** Index of the k-th usable endpoint. */
  private kth(c: Compiled, k: number, skipDown: boolean, avoid: ReadonlySet<Endpoint> | undefined): number {
    if (!skipDown && !avoid) return k;
    for (let i = 0; i < c.eps.length; i++) if (this.usable(c, i, skipDown, avoid) && k-- === 0) return i;
    return -1;
  }

  /** Chooses an endpoint index among the usable ones by the cluster's policy; -1 if none. */
  private choose(c: Compiled, h: number, skipDown: boolean, avoid: ReadonlySet<Endpoint> | undefined): number {
    const n = c.eps.length;
    let m = n;
    if (skipDown || avoid) {
      m = 0;
      for (let i = 0; i < n; i++) if (this.usable(c, i, skipDown, avoid)) m++;
      if (m === 0) return -1;
    }
    switch (c.policy) {
      case HASH: {
        if (h < 0) return this.kth(c, Math.floor(this.random() * m), skipDown, avoid); // no key: Envoy picks at random
        const ring = c.ring!;
        const len = ring.owners.length;
        let p = ringPosition(ring, h);
        for (let s = 0; s < len; s++) {
          const owner = ring.owners[p]!;
          if (this.usable(c, owner, skipDown, avoid)) return owner;
          p = p + 1 === len ? 0 : p + 1;
        }
        return -1;
      }
      case RANDOM:
        return this.kth(c, Math.floor(this.random() * m), skipDown, avoid);
      case LEAST_REQUEST: {
        // Power of two choices (Envoy's default choice_count 2); weights scale the load.
        if (m === 1) return this.kth(c, 0, skipDown, avoid);
        const ka = Math.floor(this.random() * m);
        let kb = Math.floor(this.random() * (m - 1));
        if (kb >= ka) kb++;
        const a = this.kth(c, ka, skipDown, avoid);
        const b = this.kth(c, kb, skipDown, avoid);
        const la = c.states[a]!.active / c.weights[a]!;
        const lb = c.states[b]!.active / c.weights[b]!;
        return lb < la ? b : a;
      }
      default: {
        if (c.weighted) {
          // Smooth weighted round robin: the same long-run shares as Envoy's EDF schedule.
          let best = -1;
          let total = 0;
          const cur = c.current;
          for (let i = 0; i < n; i++) {
            if (!this.usable(c, i, skipDown, avoid)) continue;
            cur[i] += c.weights[i]!;
            total += c.weights[i]!;
            if (best < 0 || cur[i]! > cur[best]!) best = i;
          }
          cur[best] -= total;
          return best;
        }
        const hosts = c.hosts;
        const k = hosts.cursor % m;
        hosts.cursor = (hosts.cursor + 1) % 0x40000000;
        return this.kth(c, k, skipDown, avoid);
      }
    }
  }
}

/** The consistent-hash key of a request, or undefined when the request does not carry it. */
function hashKey(ch: ConsistentHash, req: PickRequest | undefined): string | undefined {
  if (!req) return undefined;
  if (ch.httpHeaderName !== undefined) {
    const v = req.headers[ch.httpHeaderName];
    return typeof v === 'string' ? v : v?.[0];
  }
  if (ch.httpCookie !== undefined) return cookieValue(req.headers['cookie'], ch.httpCookie.name);
  if (ch.useSourceIp) return req.sourceIp || undefined;
  if (ch.httpQueryParameterName !== undefined) return queryValue(req.query, ch.httpQueryParameterName);
  return undefined;
}
