/**
 * Bootstrap-token authentication: proxies send `Authorization: Bearer <token>` (RFC 6750 2.1).
 * Compared in constant time over SHA-256 digests, so neither the content nor the length of the
 * configured token leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The token of a `Bearer` Authorization header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return BEARER.exec(header)?.[1];
}

export function tokenMatches(presented: string | undefined, expected: string): boolean {
  const a = createHash('sha256').update(presented ?? '').digest();
  const b = createHash('sha256').update(expected).digest();
  // Compare first, every time, so the timing does not depend on whether a token was presented.
  const same = timingSafeEqual(a, b);
  return same && presented !== undefined && presented.length > 0 && expected.length > 0;
}

/** Reasons a token is refused at startup (the token itself is never printed). */
export function checkTokenText(token: string, where: string): string {
  const t = token.trim();
  if (t.length === 0) throw new Error(`${where}: bootstrap token is empty`);
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(t)) {
    throw new Error(`${where}: bootstrap token must be one line of token characters (A-Z a-z 0-9 - . _ ~ + / and trailing =), as RFC 6750 allows`);
  }
  return t;
}
