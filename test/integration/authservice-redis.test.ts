/**
 * Redis session store against a real redis-server: the store contract, and two authservice
 * replicas sharing sessions (login through one, honoured and logged out through the other).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRedisUrl } from '../../authservice/config.ts';
import { RedisSessionStore } from '../../authservice/session/redis.ts';
import type { SessionRecord } from '../../authservice/session/store.ts';
import { Browser, browseAndLogin, startAuthStack } from '../helpers/authservice-harness.ts';
import { startRedis } from '../helpers/redis.ts';

const rec: SessionRecord = { sub: 's', userid: 'u@example.com', groups: ['g'], idToken: 't', idTokenExp: 1, createdAt: 0, expiresAt: Date.now() + 60_000 };

test('redis store: set/get/touch/delete with TTL, claimOnce, lock', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const store = new RedisSessionStore(parseRedisUrl(redis.url), { keyPrefix: 'test:' });
  t.after(() => store.close());
  assert.equal(await store.ping(), true);
  await store.set('a', rec, 300);
  assert.deepEqual(await store.get('a'), rec);
  assert.equal(await store.touch('a', 5000), true);
  await new Promise((r) => setTimeout(r, 400));
  assert.ok(await store.get('a'), 'touch extended the TTL past the original 300 ms');
  await store.delete('a');
  assert.equal(await store.get('a'), undefined);
  assert.equal(await store.touch('a', 100), false);
  assert.equal(await store.claimOnce('c', 1000), true);
  assert.equal(await store.claimOnce('c', 1000), false);
  const release = await store.lock('l', 5000);
  assert.ok(release);
  assert.equal(await store.lock('l', 5000), undefined, 'second locker refused');
  await release();
  assert.ok(await store.lock('l', 5000), 'released lock can be taken again');
});

test('two authservice replicas sharing one Redis honour each other\'s sessions', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const env = { SESSION_STORE_TYPE: 'redis', REDIS_URL: redis.url };
  const a = await startAuthStack(t, { env });
  if (!a) return;
  const b = await startAuthStack(t, { env, shareIdpWith: a });
  if (!b) return;
  const browser = new Browser();
  const final = await browseAndLogin(browser, `${a.gateway.url}/`, a.users[0]!); // through replica a
  assert.equal(final.status, 200);
  const cookie = `authservice_session=${browser.cookie('authservice_session')}`;
  for (const replica of [a, b]) {
    const r = await fetch(`${replica.authservice}/x`, { headers: { cookie, accept: 'application/json' } });
    assert.equal(r.status, 200, replica.authservice);
    assert.equal(r.headers.get('kubeflow-userid'), a.users[0]!.email);
  }
  // Logout on one replica is seen by the other.
  const out = await fetch(`${a.authservice}/authservice/logout`, { method: 'POST', headers: { cookie, 'sec-fetch-site': 'same-origin', accept: 'application/json' } });
  assert.equal(out.status, 401);
  const r = await fetch(`${b.authservice}/x`, { headers: { cookie, accept: 'application/json' } });
  assert.equal(r.status, 401);
});

test('a replica with an unreachable Redis is not ready and denies (503), never allows', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const url = redis.url;
  await redis.stop();
  const stack = await startAuthStack(t, { env: { SESSION_STORE_TYPE: 'redis', REDIS_URL: url } });
  if (!stack) return;
  const ready = await fetch(`${stack.health}/readyz`); // the probe port
  assert.equal(ready.status, 503);
  const { signSessionCookie } = await import('../../authservice/cookies.ts');
  const value = await signSessionCookie(stack.app.authservice.keys.session, { sid: 'sid', sub: 'sub', exp: Math.floor(Date.now() / 1000) + 60 });
  const r = await fetch(`${stack.authservice}/x`, { headers: { cookie: `authservice_session=${value}`, accept: 'application/json' } });
  assert.equal(r.status, 503);
  assert.equal(r.headers.get('kubeflow-userid'), null);
  assert.equal(((await r.json()) as { error: string }).error, 'PORTICO_ERR_STORE');
});
