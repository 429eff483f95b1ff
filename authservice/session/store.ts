/**
 * The session store: where tokens live (server side; the browser only holds a signed id).
 * Implementations: memory.ts (one process) and redis.ts (shared by replicas).
 */

/** One logged-in browser session. Tokens never leave the store. */
export interface SessionRecord {
  /** OIDC `sub`, cross-checked against the cookie. */
  sub: string;
  /** Value for USERID_HEADER, prefix not yet applied. */
  userid: string;
  groups: string[];
  idToken: string;
  refreshToken?: string;
  /** ID token expiry, seconds since the epoch. */
  idTokenExp: number;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Absolute expiry (SESSION_MAX_AGE), milliseconds since the epoch. */
  expiresAt: number;
}

/** Releases a lock taken with `lock()`; safe to call more than once. */
export type Release = () => Promise<void>;

export interface SessionStore {
  get(id: string): Promise<SessionRecord | undefined>;
  /** Stores `record` under `id` for `ttlMs` (replacing any previous value). */
  set(id: string, record: SessionRecord, ttlMs: number): Promise<void>;
  delete(id: string): Promise<void>;
  /** Extends the time to live of an existing session; false when it no longer exists. */
  touch(id: string, ttlMs: number): Promise<boolean>;
  /** Records `key` once; false when it was already recorded within `ttlMs` (replay detection). */
  claimOnce(key: string, ttlMs: number): Promise<boolean>;
  /** Takes a short exclusive lock across replicas; undefined when someone else holds it. */
  lock(key: string, ttlMs: number): Promise<Release | undefined>;
  /** True when the store can serve requests (for /readyz). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Type guard for records read back from an untyped store. */
export function isSessionRecord(v: unknown): v is SessionRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.sub === 'string' &&
    typeof r.userid === 'string' &&
    Array.isArray(r.groups) &&
    r.groups.every((g) => typeof g === 'string') &&
    typeof r.idToken === 'string' &&
    (r.refreshToken === undefined || typeof r.refreshToken === 'string') &&
    typeof r.idTokenExp === 'number' &&
    typeof r.createdAt === 'number' &&
    typeof r.expiresAt === 'number'
  );
}
