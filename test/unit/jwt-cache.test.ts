/**
 * The verified-token cache of jwt_authn (gateway/jwt-authn.ts JwksCache): an entry never outlives
 * the token's exp nor 5 minutes, is per rule object, and tokens without exp are never cached.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JwtRule } from '../../config/snapshot.ts';
import { JwksCache } from '../../gateway/jwt-authn.ts';

const rule = (): JwtRule => ({ issuer: 'https://i.example', audiences: [], fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }], fromParams: [], fromCookies: [], forwardOriginalToken: false, outputClaimToHeaders: [] });

test('a cached token expires with its exp, and within 5 minutes at most', () => {
  const c = new JwksCache();
  const r = rule();
  c.remember(r, 'tok', { iss: 'https://i.example', sub: 'u', exp: 1_000 }, 900);
  assert.equal(c.cachedPayload(r, 'tok', 999)?.sub, 'u');
  assert.equal(c.cachedPayload(r, 'tok', 1_000), undefined, 'gone at exp');
  c.remember(r, 'long', { iss: 'https://i.example', sub: 'u', exp: 100_000 }, 1_000);
  assert.ok(c.cachedPayload(r, 'long', 1_299));
  assert.equal(c.cachedPayload(r, 'long', 1_300), undefined, 'at most 300 s');
});

test('cache entries belong to one rule object; tokens without exp are not cached; the cache is bounded', () => {
  const c = new JwksCache();
  const a = rule();
  const b = rule();
  c.remember(a, 'tok', { sub: 'u', exp: 2_000 }, 1_000);
  assert.equal(c.cachedPayload(b, 'tok', 1_000), undefined, 'a new snapshot\'s rule starts empty');
  c.remember(a, 'noexp', { sub: 'u' }, 1_000);
  assert.equal(c.cachedPayload(a, 'noexp', 1_000), undefined);
  for (let i = 0; i < 1_001; i++) c.remember(a, `t${i}`, { sub: 'u', exp: 2_000 }, 1_000);
  assert.equal(c.cachedPayload(a, 'tok', 1_000), undefined, 'oldest evicted');
  assert.ok(c.cachedPayload(a, 't1000', 1_000));
});
