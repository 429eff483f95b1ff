/**
 * The in-gateway session fast path of ext_authz (issue 14.2), in the model of Envoy's OAuth2
 * filter and Envoy Gateway's OIDC, where the proxy verifies its own signed session cookie.
 *
 * A gateway started with the authservice's cookie secret (`--authservice-cookie-secret-file`)
 * keeps, per ext_authz filter, the allow answers the authservice marked reusable
 * (SESSION_CACHE_HEADER, lib/session-cookie.ts): session id → identity headers, until the
 * directive's TTL runs out (never past the cookie's `exp`). A later request of that session is
 * answered here without the check round trip when its session cookie verifies exactly as the
 * authservice verifies it (HMAC-SHA256 compared in constant time, `exp`, `nbf`, the exact form)
 * and names the same `sid` and `sub`.
 *
 * What changes, and the bound (docs/authservice.md, "The gateway's session fast path"):
 *  - a session ended elsewhere (logout through another gateway, deletion from the store, an
 *    IdP-refused refresh, a group allowlist change) still passes this gateway for at most the TTL
 *    (PORTICO_GATEWAY_SESSION_TTL at the authservice, ≤ 300 s);
 *  - a logout through this gateway takes effect at once: requests on the `bypass` paths (the
 *    authservice's logout and callback, SKIP_AUTH_URLS) always go to the authservice and drop the
 *    session's entry first, and so does any denial the authservice gives for the session;
 *  - the gateway holds the cookie key, so it could mint session cookies (it already sees every
 *    cookie that passes it).
 * Nothing here runs unless the gateway was given the key.
 */
import { deriveSessionKey, parseSessionCacheDirective, cookieValue, setBounded, VerifiedSessionCookies, type SessionCookieClaims } from '../../lib/session-cookie.ts';

type Headers = readonly (readonly [string, string | string[]])[];

interface Entry {
  readonly sub: string;
  /** Milliseconds since the epoch. */
  readonly until: number;
  readonly headers: Headers;
}

/** What the filter learned from the authservice's directive: the cookie to look at and the paths to leave alone. */
interface Learned {
  readonly cookie: string;
  readonly exact: ReadonlySet<string>;
  readonly dirs: readonly string[];
  /** The TTL of the directive `raw` (seconds). */
  readonly ttl: number;
  readonly raw: string;
}

/** One ext_authz filter's sessions. */
export class FilterSessions {
  private learned: Learned | undefined;
  private readonly entries = new Map<string, Entry>();
  /** Cookie values whose signature verified, and their claims (bounded like `entries`). */
  private readonly verified: VerifiedSessionCookies;

  constructor(
    key: Uint8Array,
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {
    this.verified = new VerifiedSessionCookies(key, maxEntries);
  }

  get size(): number {
    return this.entries.size;
  }

  private bypassed(l: Learned, path: string): boolean {
    if (l.exact.has(path)) return true;
    for (const d of l.dirs) if (path.startsWith(d)) return true;
    return false;
  }

  /** The verified session cookie of a request, when the filter knows which cookie to read. */
  claims(cookieHeader: string | string[] | undefined): SessionCookieClaims | undefined {
    const l = this.learned;
    if (!l || cookieHeader === undefined) return undefined;
    return this.verified.claims(cookieValue(cookieHeader, l.cookie), this.now() / 1000);
  }

  /**
   * Drops the request's session when it goes to a bypass path (the logout), whether or not this
   * filter checks that path: a CUSTOM policy commonly leaves the authservice's own paths out.
   */
  forget(path: string, cookieHeader: string | string[] | undefined): void {
    const l = this.learned;
    if (!l || cookieHeader === undefined || this.entries.size === 0 || !this.bypassed(l, path)) return;
    const claims = this.claims(cookieHeader);
    if (claims) this.entries.delete(claims.sid);
  }

  /**
   * The cached identity headers for this request, or undefined to ask the authservice. On a bypass
   * path the session's entry is dropped first (a logout through this gateway ends it here at once).
   */
  lookup(path: string, cookieHeader: string | string[] | undefined): Headers | undefined {
    const l = this.learned;
    if (!l || cookieHeader === undefined || this.entries.size === 0) return undefined;
    const claims = this.claims(cookieHeader);
    if (!claims) return undefined;
    if (this.bypassed(l, path)) {
      this.entries.delete(claims.sid);
      return undefined;
    }
    const e = this.entries.get(claims.sid);
    if (!e) return undefined;
    if (e.sub !== claims.sub || e.until <= this.now()) {
      this.entries.delete(claims.sid);
      return undefined;
    }
    return e.headers;
  }

  /**
   * After the authservice answered: an allow carrying a directive is remembered for the request's
   * session; a denial drops the session's entry.
   */
  record(path: string, cookieHeader: string | string[] | undefined, allowed: boolean, directive: string | undefined, headers: Headers): void {
    let ttl: number | undefined;
    if (directive !== undefined) {
      if (this.learned?.raw !== directive) {
        const d = parseSessionCacheDirective(directive);
        if (d) this.learned = { cookie: d.cookie, exact: new Set(d.bypass.filter((p) => !p.endsWith('/'))), dirs: d.bypass.filter((p) => p.endsWith('/')), ttl: d.ttl, raw: directive };
      }
      if (this.learned?.raw === directive) ttl = this.learned.ttl;
    }
    const l = this.learned;
    if (!l) return;
    const claims = this.claims(cookieHeader);
    if (!claims) return;
    if (!allowed) {
      this.entries.delete(claims.sid);
      return;
    }
    if (ttl === undefined || this.bypassed(l, path)) return;
    const until = Math.min(this.now() + ttl * 1000, claims.exp * 1000);
    setBounded(this.entries, claims.sid, { sub: claims.sub, until, headers }, this.maxEntries);
  }
}

export interface SessionFastPathOptions {
  /** Sessions remembered per filter (default 10,000; the oldest entry goes first). */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

/** The process's fast path: one FilterSessions per ext_authz filter, kept across snapshots. */
export class SessionFastPath {
  private readonly key: Uint8Array;
  private readonly filters = new Map<string, FilterSessions>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  /** `secret`: the authservice's PORTICO_COOKIE_SECRET, as bytes. */
  constructor(secret: Uint8Array, opts: SessionFastPathOptions = {}) {
    this.key = deriveSessionKey(secret);
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** The sessions of the filter checking at `cluster` + `pathPrefix`. */
  filter(cluster: string, pathPrefix: string): FilterSessions {
    const id = `${cluster}\u0000${pathPrefix}`;
    let f = this.filters.get(id);
    if (!f) this.filters.set(id, (f = new FilterSessions(this.key, this.maxEntries, this.now)));
    return f;
  }
}
