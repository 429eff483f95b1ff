/**
 * Cookies: parsing and serialising, the signed session cookie and the encrypted per-login state
 * cookie. Keys are derived from PORTICO_COOKIE_SECRET with HMAC domain separation, so a login
 * cookie can never be replayed as a session cookie and vice versa.
 */
import { createHash, createHmac, webcrypto } from 'node:crypto';
import { EncryptJWT, SignJWT, jwtDecrypt } from 'jose';
import type { SameSite } from './config.ts';
import { deriveSessionKey, SESSION_COOKIE_TYP, verifySessionCookieValue } from '../lib/session-cookie.ts';
import type { SessionCookieClaims } from '../lib/session-cookie.ts';

export interface CookieKeys {
  session: Uint8Array;
  login: Uint8Array;
}

/** Derives the session-signing and login-encryption keys (32 bytes each) from the secret. */
export function deriveCookieKeys(secret: Uint8Array): CookieKeys {
  const derive = (purpose: string) => new Uint8Array(createHmac('sha256', secret).update(`portico-authservice/${purpose}/v1`).digest());
  return { session: deriveSessionKey(secret), login: derive('login-state-cookie') };
}

/** Parses a Cookie header. The first occurrence of a name wins (as browsers send the most specific first). */
export function parseCookies(header: string | string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const raw = Array.isArray(header) ? header.join('; ') : (header ?? '');
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

export interface CookieOptions {
  maxAge: number;
  path: string;
  secure: boolean;
  sameSite: SameSite;
  httpOnly?: boolean;
}

export function serializeCookie(name: string, value: string, o: CookieOptions): string {
  const parts = [`${name}=${value}`, `Path=${o.path}`, `Max-Age=${Math.max(0, Math.floor(o.maxAge))}`];
  if (o.maxAge <= 0) parts.push('Expires=Thu, 01 Jan 1970 00:00:00 GMT');
  if (o.httpOnly !== false) parts.push('HttpOnly');
  // Browsers drop SameSite=None cookies that are not Secure; we keep what was asked and let the docs warn.
  if (o.secure) parts.push('Secure');
  parts.push(`SameSite=${o.sameSite}`);
  return parts.join('; ');
}

export type { SessionCookieClaims } from '../lib/session-cookie.ts';
export { cookieValue } from '../lib/session-cookie.ts';

/**
 * The HMAC key as a WebCrypto key, imported once per key: handing jose raw bytes makes it import
 * the key on every verify, which profiling showed as about a third of a check's CPU.
 */
const hmacKeys = new WeakMap<Uint8Array, Promise<webcrypto.CryptoKey>>();
function hmacKey(key: Uint8Array): Promise<webcrypto.CryptoKey> {
  let k = hmacKeys.get(key);
  if (!k) {
    k = webcrypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    hmacKeys.set(key, k);
  }
  return k;
}

/** Signs the session cookie value (a compact HS256 JWT). */
export async function signSessionCookie(key: Uint8Array, claims: SessionCookieClaims): Promise<string> {
  return new SignJWT({ sid: claims.sid })
    .setProtectedHeader({ alg: 'HS256', typ: SESSION_COOKIE_TYP })
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(claims.exp)
    .sign(await hmacKey(key));
}

/** verifySessionCookieValue (session-cookie.ts, the pure module a gateway can share), as a promise. */
export async function verifySessionCookie(key: Uint8Array, value: string | undefined, nowSeconds: number = Date.now() / 1000): Promise<SessionCookieClaims | undefined> {
  return verifySessionCookieValue(key, value, nowSeconds);
}

/** What one login attempt must remember between the redirect to the IdP and the callback. */
export interface LoginState {
  state: string;
  nonce: string;
  codeVerifier: string;
  /** The exact redirect_uri sent in the authorization request. */
  redirectUri: string;
  /** Validated same-origin path to return to after login. */
  returnTo: string;
}

export const LOGIN_COOKIE_PREFIX = 'authservice_login_';
export const LOGIN_STATE_TTL_SECONDS = 600;
/**
 * At most this many login attempts are remembered at once (each one a ~560-byte state cookie,
 * all sent together to the callback): several tabs can log in at the same time, and abandoned
 * attempts can never push the callback's Cookie header past a server's limit (431). Starting
 * one more evicts the oldest.
 */
export const LOGIN_SLOTS = 4;
/**
 * Per attempt, beside its state cookie (on the callback path only), a tiny marker on `Path=/`
 * whose value is when the attempt started: attempts start on any path, so this is how a new
 * attempt sees the pending ones and evicts the oldest. Not a secret: a forged marker can only
 * make the browser drop its own attempts. Concurrent starts may overshoot LOGIN_SLOTS by the
 * number of racing requests; the next start trims back.
 */
export const LOGIN_MARKER_PREFIX = 'authservice_pending_';

/** The id of one attempt (names its two cookies), derived from its state. */
export function loginId(state: string): string {
  return createHash('sha256').update(state).digest('base64url').slice(0, 16);
}

/** Per-attempt cookie name: several tabs logging in at once each keep their own state. */
export function loginCookieName(id: string): string {
  return LOGIN_COOKIE_PREFIX + id;
}

export function loginMarkerName(id: string): string {
  return LOGIN_MARKER_PREFIX + id;
}

/** The ids of the pending attempts a request's cookies show, oldest first. */
export function pendingLogins(cookies: ReadonlyMap<string, string>): string[] {
  const out: { id: string; at: number }[] = [];
  for (const [name, value] of cookies) {
    if (!name.startsWith(LOGIN_MARKER_PREFIX)) continue;
    const at = Number(value);
    out.push({ id: name.slice(LOGIN_MARKER_PREFIX.length), at: Number.isFinite(at) ? at : 0 });
  }
  return out.sort((a, b) => a.at - b.at).map((e) => e.id);
}

/** Encrypts the login state (dir + A256GCM: confidential and tamper-evident). */
export async function sealLoginState(key: Uint8Array, s: LoginState): Promise<string> {
  return new EncryptJWT({ ...s })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', typ: 'portico-login+jwt' })
    .setIssuedAt()
    .setExpirationTime(`${LOGIN_STATE_TTL_SECONDS}s`)
    .encrypt(key);
}

export async function openLoginState(key: Uint8Array, value: string | undefined): Promise<LoginState | undefined> {
  if (!value || value.length > 8192) return undefined;
  try {
    const { payload } = await jwtDecrypt(value, key, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
      typ: 'portico-login+jwt',
      requiredClaims: ['exp'],
    });
    const { state, nonce, codeVerifier, redirectUri, returnTo } = payload;
    if ([state, nonce, codeVerifier, redirectUri, returnTo].some((v) => typeof v !== 'string')) return undefined;
    return { state, nonce, codeVerifier, redirectUri, returnTo } as LoginState;
  } catch {
    return undefined;
  }
}
