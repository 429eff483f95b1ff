import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemorySessionStore } from '../../authservice/session/memory.ts';
import type { SessionRecord } from '../../authservice/session/store.ts';

const rec = (userid: string): SessionRecord => ({ sub: `s-${userid}`, userid, groups: ['g'], idToken: 't', idTokenExp: 1, createdAt: 0, expiresAt: 10 ** 13 });

test('memory store: TTL, touch, LRU bound, isolation from callers', async () => {
  let now = 1000;
  const store = new MemorySessionStore({ maxEntries: 2, now: () => now });
  await store.set('a', rec('a'), 100);
  const got = await store.get('a');
  assert.equal(got?.userid, 'a');
  assert.throws(() => got!.groups.push('mutated'), TypeError, 'what get returns is frozen');
  assert.throws(() => Object.assign(got!, { userid: 'mallory' }), TypeError);
  assert.deepEqual((await store.get('a'))?.groups, ['g'], 'stored value not shared by reference');
  assert.equal(await store.get('a'), got, 'parsed once at set, not on every get (a check reads it on every request)');
  const mine = rec('m');
  await store.set('m', mine, 100);
  mine.groups.push('after');
  assert.deepEqual((await store.get('m'))?.groups, ['g'], "the caller's object is copied at set");
  now += 90;
  assert.equal(await store.touch('a', 100), true);
  now += 90;
  assert.ok(await store.get('a'), 'touch extended the TTL');
  now += 200;
  assert.equal(await store.get('a'), undefined, 'expired');
  assert.equal(await store.touch('a', 100), false);

  await store.set('x', rec('x'), 1000);
  await store.set('y', rec('y'), 1000);
  await store.get('x'); // x is now most recently used
  await store.set('z', rec('z'), 1000);
  assert.equal(store.size, 2);
  assert.ok(await store.get('x'));
  assert.equal(await store.get('y'), undefined, 'least recently used evicted');
});

test('memory store: claimOnce and lock', async () => {
  let now = 0;
  const store = new MemorySessionStore({ now: () => now });
  assert.equal(await store.claimOnce('k', 50), true);
  assert.equal(await store.claimOnce('k', 50), false);
  now += 60;
  assert.equal(await store.claimOnce('k', 50), true, 'claim expires');
  const release = await store.lock('l', 100);
  assert.ok(release);
  assert.equal(await store.lock('l', 100), undefined);
  await release();
  assert.ok(await store.lock('l', 100));
});
