/**
 * In-process session store: a bounded LRU (Map insertion order) with per-entry expiry. A record is
 * copied (through JSON) and deep-frozen when stored, and that frozen copy is what `get` returns:
 * callers can never mutate what is stored, and a check does not re-parse the record each time.
 */
import { isSessionRecord } from './store.ts';
import type { Release, SessionRecord, SessionStore } from './store.ts';

interface Entry {
  readonly value: SessionRecord;
  expiresAt: number;
}

/** A private, deeply frozen copy of a record (records are plain JSON data). */
function frozenCopy(record: SessionRecord): SessionRecord | undefined {
  const copy: unknown = JSON.parse(JSON.stringify(record));
  if (!isSessionRecord(copy)) return undefined;
  Object.freeze(copy.groups);
  return Object.freeze(copy);
}

export class MemorySessionStore implements SessionStore {
  readonly #entries = new Map<string, Entry>();
  readonly #claims = new Map<string, number>();
  readonly #locks = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    if (e.expiresAt <= this.#now()) {
      this.#entries.delete(id);
      return undefined;
    }
    this.#entries.delete(id); // refresh LRU position
    this.#entries.set(id, e);
    return e.value;
  }

  async set(id: string, record: SessionRecord, ttlMs: number): Promise<void> {
    this.#entries.delete(id);
    const value = frozenCopy(record);
    if (!value) throw new TypeError('not a session record');
    this.#entries.set(id, { value, expiresAt: this.#now() + ttlMs });
    this.#evict(this.#entries, this.#maxEntries);
  }

  async delete(id: string): Promise<void> {
    this.#entries.delete(id);
  }

  async touch(id: string, ttlMs: number): Promise<boolean> {
    const e = this.#entries.get(id);
    if (!e || e.expiresAt <= this.#now()) return false;
    e.expiresAt = this.#now() + ttlMs;
    return true;
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    const now = this.#now();
    const until = this.#claims.get(key);
    if (until !== undefined && until > now) return false;
    this.#claims.set(key, now + ttlMs);
    this.#sweep(this.#claims, this.#maxEntries);
    return true;
  }

  async lock(key: string, ttlMs: number): Promise<Release | undefined> {
    const now = this.#now();
    const until = this.#locks.get(key);
    if (until !== undefined && until > now) return undefined;
    const mine = now + ttlMs;
    this.#locks.set(key, mine);
    return async () => {
      if (this.#locks.get(key) === mine) this.#locks.delete(key);
    };
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#claims.clear();
    this.#locks.clear();
  }

  #evict(map: Map<string, Entry>, max: number): void {
    while (map.size > max) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  }

  #sweep(map: Map<string, number>, max: number): void {
    if (map.size <= max) return;
    const now = this.#now();
    for (const [k, until] of map) if (until <= now) map.delete(k);
    while (map.size > max) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  }
}
