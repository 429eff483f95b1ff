/**
 * The session cookie's verification, as a small pure module (node:crypto only: no Fastify, no
 * jose, no store), so that a gateway holding the same PORTICO_COOKIE_SECRET can verify the
 * authservice's cookie itself (issue 14.2's in-gateway fast path) with exactly the checks the
 * authservice makes.
 *
 * The cookie value is a compact JWS (RFC 7515), HS256, signed with a key derived from
 * PORTICO_COOKIE_SECRET by HMAC-SHA256 over `portico-authservice/session-cookie/v1` (domain
 * separated from the login-state key). What a valid cookie proves, and what it does not:
 *  - proves: the authservice issued it (HMAC, constant-time compare), it names session `sid`
 *    for OIDC subject `sub`, and it is before `exp` (the session's absolute expiry,
 *    SESSION_MAX_AGE) and not before `nbf` when present;
 *  - does NOT prove the session still exists: logout, an IdP-rejected refresh, the idle timeout
 *    and server-side deletion only remove the store record. A verifier that skips the store must
 *    bound how long a revoked session still passes (see docs/authservice.md).
 *  - the cookie carries no identity headers (user id, groups): those live in the store.
 * Accepted form only: header `{"alg":"HS256","typ":"portico-session+jwt"}` (no `crit`), canonical
 * base64url everywhere, `sid`/`sub` strings, numeric `exp`, at most 4096 characters.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE_TYP = 'portico-session+jwt';

export interface SessionCookieClaims {
  /** Session id: key into the session store. */
  sid: string;
  /** OIDC subject, cross-checked against the stored session. */
  sub: string;
  /** Absolute expiry, seconds since the epoch. */
  exp: number;
}

/** The session cookie's HMAC key (32 bytes) from PORTICO_COOKIE_SECRET's bytes. */
export function deriveSessionKey(secret: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', secret).update('portico-authservice/session-cookie/v1').digest());
}

/**
 * The value of cookie `name` in a Cookie header (the first occurrence, quotes removed), without
 * building a map of every cookie. Undefined when absent.
 */
export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const raw = Array.isArray(header) ? header.join('; ') : header;
  let from = 0;
  while (from < raw.length) {
    const at = raw.indexOf(name, from);
    if (at < 0) return undefined;
    // A match must start the header or follow `;` (plus spaces), and be followed by `=` (spaces allowed).
    let before = at - 1;
    while (before >= 0 && (raw.charCodeAt(before) === 32 || raw.charCodeAt(before) === 9)) before--;
    let eq = at + name.length;
    while (eq < raw.length && (raw.charCodeAt(eq) === 32 || raw.charCodeAt(eq) === 9)) eq++;
    if ((before < 0 || raw.charCodeAt(before) === 59) && raw.charCodeAt(eq) === 61) {
      let end = raw.indexOf(';', eq + 1);
      if (end < 0) end = raw.length;
      let value = raw.slice(eq + 1, end).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      return value;
    }
    from = at + name.length;
  }
  return undefined;
}

/**
 * Verifies a session cookie value; undefined for anything tampered, expired, not yet valid,
 * signed with another key, or not in the exact form the authservice writes. Synchronous: one
 * HMAC-SHA256 over the signing input and a constant-time compare, then two small JSON parses.
 */
export function verifySessionCookieValue(key: Uint8Array, value: string | undefined, nowSeconds: number = Date.now() / 1000): SessionCookieClaims | undefined {
  if (!value || value.length > 4096) return undefined;
  const dot1 = value.indexOf('.');
  const dot2 = value.indexOf('.', dot1 + 1);
  if (dot1 <= 0 || dot2 <= dot1 + 1 || value.indexOf('.', dot2 + 1) !== -1) return undefined;
  const signature = Buffer.from(value.slice(dot2 + 1), 'base64url');
  // Reject non-canonical encodings (base64url decoding is lenient) so one token has one form.
  if (signature.length !== 32 || signature.toString('base64url') !== value.slice(dot2 + 1)) return undefined;
  const expected = createHmac('sha256', key).update(value.slice(0, dot2)).digest();
  if (!timingSafeEqual(signature, expected)) return undefined;
  try {
    const header = JSON.parse(Buffer.from(value.slice(0, dot1), 'base64url').toString('utf8')) as Record<string, unknown>;
    if (header.alg !== 'HS256' || header.typ !== SESSION_COOKIE_TYP || header.crit !== undefined) return undefined;
    const payload = JSON.parse(Buffer.from(value.slice(dot1 + 1, dot2), 'base64url').toString('utf8')) as Record<string, unknown>;
    if (typeof payload.sid !== 'string' || typeof payload.sub !== 'string' || typeof payload.exp !== 'number') return undefined;
    if (payload.exp <= nowSeconds) return undefined;
    if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > nowSeconds)) return undefined;
    return { sid: payload.sid, sub: payload.sub, exp: payload.exp };
  } catch {
    return undefined;
  }
}

/**
 * verifySessionCookieValue with a bounded memory of the values that verified: a value seen before
 * is not verified again (the HMAC was 9% of a gateway fast-path request's CPU and 12% of an
 * authservice check's). Only a byte-for-byte copy of a value the key signed finds an entry, its
 * `exp` is still checked on every use, and forged values are never remembered.
 */
export class VerifiedSessionCookies {
  private readonly verified = new Map<string, SessionCookieClaims>();

  constructor(
    private readonly key: Uint8Array,
    private readonly maxEntries: number,
  ) {}

  claims(value: string | undefined, nowSeconds: number = Date.now() / 1000): SessionCookieClaims | undefined {
    if (!value) return undefined;
    const known = this.verified.get(value);
    if (known) return known.exp > nowSeconds ? known : undefined;
    const claims = verifySessionCookieValue(this.key, value, nowSeconds);
    if (claims) setBounded(this.verified, value, claims, this.maxEntries);
    return claims;
  }
}

/** Sets `key` last in `map` (a Map's order is its eviction order), dropping the oldest entry past `max`. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}

/**
 * The in-gateway session fast path (issue 14.2; the model of Envoy's OAuth2 filter: the proxy
 * verifies the session cookie itself). On an allow decided by a session, an authservice with
 * PORTICO_GATEWAY_SESSION_TTL > 0 adds this header to its check answer. A gateway that holds the
 * same cookie key may then answer checks carrying that session cookie itself, with the identity
 * headers of this answer, for `ttl` seconds (never past the cookie's own `exp`), except on the
 * `bypass` paths (the authservice's own endpoints and SKIP_AUTH_URLS, whose answers differ).
 * The header belongs to the ext_authz hop: the gateway consumes it and never forwards it.
 */
export const SESSION_CACHE_HEADER = 'x-portico-session-cache';

export interface SessionCacheDirective {
  /** Seconds the gateway may reuse this answer for the session. */
  readonly ttl: number;
  /** The session cookie's name. */
  readonly cookie: string;
  /** Exact paths, and directories (ending in `/`: everything below, not the bare name), that always go to the authservice. */
  readonly bypass: readonly string[];
}

export function formatSessionCacheDirective(d: SessionCacheDirective): string {
  return JSON.stringify({ ttl: d.ttl, cookie: d.cookie, bypass: d.bypass });
}

/** The directive, or undefined when the value is not one (a gateway then simply does not cache). */
export function parseSessionCacheDirective(value: string | string[] | undefined): SessionCacheDirective | undefined {
  if (typeof value !== 'string' || value.length > 8192) return undefined;
  try {
    const v = JSON.parse(value) as Record<string, unknown>;
    if (typeof v.ttl !== 'number' || !Number.isFinite(v.ttl) || v.ttl <= 0) return undefined;
    if (typeof v.cookie !== 'string' || v.cookie === '') return undefined;
    if (!Array.isArray(v.bypass) || !v.bypass.every((p): p is string => typeof p === 'string' && p.startsWith('/'))) return undefined;
    return { ttl: v.ttl, cookie: v.cookie, bypass: v.bypass };
  } catch {
    return undefined;
  }
}
