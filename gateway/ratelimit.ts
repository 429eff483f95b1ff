/**
 * Envoy's local rate limit filter (`envoy.filters.http.local_ratelimit`) as Istio users configure
 * it with an EnvoyFilter: a token bucket per filter instance, `filter_enabled` (share of requests
 * checked) and `filter_enforced` (share of over-limit requests actually refused with 429).
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/local_rate_limit_filter
 *
 * Buckets outlive config swaps (keyed by filter id and bucket settings), so a reload does not
 * hand every client a fresh allowance.
 */
import type { LocalRateLimit, Snapshot } from '../config/snapshot.ts';
import { labelsMatch } from './policy.ts';

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly maxTokens: number,
    readonly tokensPerFill: number,
    readonly fillIntervalMs: number,
    now: number = performance.now(),
  ) {
    this.tokens = maxTokens;
    this.last = now;
  }

  /** Takes one token; false when the bucket is empty. */
  take(now: number = performance.now()): boolean {
    const fills = Math.floor((now - this.last) / this.fillIntervalMs);
    if (fills > 0) {
      this.tokens = Math.min(this.maxTokens, this.tokens + fills * this.tokensPerFill);
      this.last += fills * this.fillIntervalMs;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/** Where a request is, in Envoy's naming, for matching a limiter's scope. */
export interface RateLimitTarget {
  readonly port: number;
  /** Envoy virtual host names this request's vhost answers to (`host:port`, `*:port`). */
  readonly vhostNames: readonly string[];
  /** The VirtualService http[] rule name, if any. */
  readonly routeName?: string;
}

export interface CompiledRateLimit {
  readonly limit: LocalRateLimit;
  readonly bucket: TokenBucket;
  readonly applies: (t: RateLimitTarget) => boolean;
  readonly headers: Record<string, string>;
}

export class RateLimiters {
  private readonly buckets = new Map<string, TokenBucket>();

  /** The limiters for this proxy, with their (long-lived) buckets. */
  select(snapshot: Snapshot, who: { labels: Readonly<Record<string, string>>; namespace: string; context: 'GATEWAY' | 'SIDECAR_INBOUND' }): CompiledRateLimit[] {
    const out: CompiledRateLimit[] = [];
    const live = new Set<string>();
    for (const l of snapshot.localRateLimits) {
      if (!l.tokenBucket) continue; // only enables the filter; the buckets come from route/vhost entries
      if (l.context !== 'ANY' && l.context !== who.context) continue;
      if (!l.meshWide && l.namespace !== who.namespace) continue;
      if (!labelsMatch(l.selector, who.labels)) continue;
      const tb = l.tokenBucket;
      const key = `${l.id}|${tb.maxTokens}|${tb.tokensPerFill}|${tb.fillIntervalMs}`;
      live.add(key);
      let bucket = this.buckets.get(key);
      if (!bucket) {
        bucket = new TokenBucket(tb.maxTokens, tb.tokensPerFill, tb.fillIntervalMs);
        this.buckets.set(key, bucket);
      }
      const headers: Record<string, string> = {};
      for (const h of l.responseHeadersToAdd) headers[h.name] = h.value;
      out.push({ limit: l, bucket, applies: scopeMatcher(l), headers });
    }
    for (const k of this.buckets.keys()) if (!live.has(k)) this.buckets.delete(k);
    return out;
  }
}

function scopeMatcher(l: LocalRateLimit): (t: RateLimitTarget) => boolean {
  const s = l.scope;
  const portOk = (t: RateLimitTarget): boolean => s.portNumber === undefined || s.portNumber === t.port;
  if (s.kind === 'listener') return portOk;
  const vhost = s.vhost;
  const vhostOk = (t: RateLimitTarget): boolean => vhost === undefined || t.vhostNames.includes(vhost);
  if (s.kind === 'vhost') return (t) => portOk(t) && vhostOk(t);
  const route = s.route;
  return (t) => portOk(t) && vhostOk(t) && (route === undefined || route === t.routeName);
}

/**
 * Applies every matching limiter. Returns the headers of the limiter that refused the request,
 * or undefined to let it through.
 */
export function checkRateLimits(limiters: readonly CompiledRateLimit[], target: RateLimitTarget, random: () => number = Math.random): Record<string, string> | undefined {
  for (const rl of limiters) {
    if (!rl.applies(target)) continue;
    if (random() * 100 >= rl.limit.filterEnabled) continue;
    if (rl.bucket.take()) continue;
    if (random() * 100 < rl.limit.filterEnforced) return rl.headers;
  }
  return undefined;
}
