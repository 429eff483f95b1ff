/**
 * Redis session store (ioredis): one node, Sentinel or Cluster, chosen by the RedisTarget the
 * config parsed. Keys: `<prefix>s:<id>` sessions, `<prefix>c:<key>` one-time claims,
 * `<prefix>l:<key>` locks. Session ids and claim keys are already random/hashed, so every key of
 * one kind hashes to arbitrary cluster slots; each command touches one key, so Cluster is fine.
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import type { RedisTarget } from '../config.ts';
import { isSessionRecord } from './store.ts';
import type { Release, SessionRecord, SessionStore } from './store.ts';

// Compare-and-delete, so a lock that expired and was re-taken by another replica is not released by us.
const RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

export interface RedisStoreOptions {
  keyPrefix?: string;
  /** Called on connection errors (already without secrets); ioredis keeps reconnecting. */
  onError?: (err: Error) => void;
}

/** Creates the ioredis client for a target. Exported for tests and the readiness probe. */
export function createRedisClient(target: RedisTarget, onError?: (err: Error) => void): Redis | Cluster {
  const common: RedisOptions = {
    lazyConnect: false,
    // Commands issued in one event-loop turn leave in one write (ioredis auto-pipelining): the
    // gateway pipelines a turn's checks, so their session reads arrive and go out together.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    connectTimeout: 5000,
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
  };
  let client: Redis | Cluster;
  if (target.mode === 'cluster') {
    client = new Cluster(target.nodes, { redisOptions: common, enableOfflineQueue: true, enableAutoPipelining: true });
  } else if (target.mode === 'sentinel') {
    client = new Redis({
      ...common,
      sentinels: target.sentinels,
      name: target.name,
      db: target.db,
      ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
      ...(target.tls ? { enableTLSForSentinelMode: true } : {}),
    });
  } else {
    client = new Redis({ ...common, host: target.host, port: target.port, db: target.db });
  }
  // Without a listener ioredis prints unhandled 'error' events; errors surface on commands anyway.
  client.on('error', (err: Error) => onError?.(err));
  return client;
}

export class RedisSessionStore implements SessionStore {
  readonly #client: Redis | Cluster;
  readonly #prefix: string;
  readonly #owned: boolean;

  /** Pass a target to let the store own its client, or a client to share one (not closed by us). */
  constructor(targetOrClient: RedisTarget | Redis | Cluster, options: RedisStoreOptions = {}) {
    this.#prefix = options.keyPrefix ?? 'portico:authservice:';
    if (targetOrClient instanceof Redis || targetOrClient instanceof Cluster) {
      this.#client = targetOrClient;
      this.#owned = false;
    } else {
      this.#client = createRedisClient(targetOrClient, options.onError);
      this.#owned = true;
    }
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const raw = await this.#client.get(`${this.#prefix}s:${id}`);
    if (raw === null) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return undefined;
    }
    return isSessionRecord(parsed) ? parsed : undefined;
  }

  async set(id: string, record: SessionRecord, ttlMs: number): Promise<void> {
    await this.#client.set(`${this.#prefix}s:${id}`, JSON.stringify(record), 'PX', Math.max(1, Math.ceil(ttlMs)));
  }

  async delete(id: string): Promise<void> {
    await this.#client.del(`${this.#prefix}s:${id}`);
  }

  async touch(id: string, ttlMs: number): Promise<boolean> {
    return (await this.#client.pexpire(`${this.#prefix}s:${id}`, Math.max(1, Math.ceil(ttlMs)))) === 1;
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    const ok = await this.#client.set(`${this.#prefix}c:${key}`, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
    return ok === 'OK';
  }

  async lock(key: string, ttlMs: number): Promise<Release | undefined> {
    const token = randomBytes(16).toString('base64url');
    const k = `${this.#prefix}l:${key}`;
    const ok = await this.#client.set(k, token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
    if (ok !== 'OK') return undefined;
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      await this.#client.eval(RELEASE_LUA, 1, k, token);
    };
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.#client.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (!this.#owned) return;
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }
}
