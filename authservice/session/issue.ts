/**
 * Starting a session after a successful login: a fresh random id every time (session fixation
 * defence), the record in the store, and the signed cookie value for the browser.
 */
import { randomBytes } from 'node:crypto';
import type { AuthserviceConfig } from '../config.ts';
import { signSessionCookie } from '../cookies.ts';
import type { CookieKeys } from '../cookies.ts';
import type { Identity } from '../identity.ts';
import type { SessionRecord, SessionStore } from './store.ts';

export interface NewSession {
  identity: Identity;
  idToken: string;
  refreshToken?: string;
  /** ID token expiry, seconds since the epoch. */
  idTokenExp: number;
}

export interface IssuedSession {
  sid: string;
  record: SessionRecord;
  /** Value for the session cookie. */
  cookie: string;
}

/** Store time-to-live for a record: its absolute expiry, shortened by the idle timeout. */
export function sessionTtlMs(config: AuthserviceConfig, record: SessionRecord, now = Date.now()): number {
  const remaining = record.expiresAt - now;
  return config.session.idleTimeoutSeconds > 0 ? Math.min(remaining, config.session.idleTimeoutSeconds * 1000) : remaining;
}

export async function issueSession(
  rt: { config: AuthserviceConfig; store: SessionStore; keys: CookieKeys },
  s: NewSession,
): Promise<IssuedSession> {
  const sid = randomBytes(32).toString('base64url');
  const now = Date.now();
  const record: SessionRecord = {
    sub: s.identity.sub,
    userid: s.identity.userid,
    groups: [...s.identity.groups],
    idToken: s.idToken,
    ...(s.refreshToken ? { refreshToken: s.refreshToken } : {}),
    idTokenExp: s.idTokenExp,
    createdAt: now,
    expiresAt: now + rt.config.session.maxAgeSeconds * 1000,
  };
  await rt.store.set(sid, record, sessionTtlMs(rt.config, record, now));
  const cookie = await signSessionCookie(rt.keys.session, { sid, sub: record.sub, exp: Math.floor(record.expiresAt / 1000) });
  return { sid, record, cookie };
}
