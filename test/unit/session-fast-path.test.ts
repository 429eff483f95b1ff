/**
 * dataplane/filters/session-cache.ts and the directive in lib/session-cookie.ts: what the gateway
 * remembers of the authservice's answers, and for how long.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { FilterSessions } from '../../dataplane/filters/session-cache.ts';
import { deriveSessionKey, formatSessionCacheDirective, parseSessionCacheDirective, SESSION_COOKIE_TYP } from '../../lib/session-cookie.ts';

const SECRET = new TextEncoder().encode('unit-test-cookie-secret-0123456789abcdef');
const KEY = deriveSessionKey(SECRET);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
function cookie(sid: string, exp: number, sub = `sub-${sid}`): string {
  const input = `${b64({ alg: 'HS256', typ: SESSION_COOKIE_TYP })}.${b64({ sid, sub, exp })}`;
  return `s=${input}.${createHmac('sha256', KEY).update(input).digest('base64url')}`;
}
const directive = (ttl: number) => formatSessionCacheDirective({ ttl, cookie: 's', bypass: ['/logout', '/public/'] });
const ID = [['kubeflow-userid', 'u']] as const;

test('the directive round-trips; anything else is no directive', () => {
  assert.deepEqual(parseSessionCacheDirective(directive(5)), { ttl: 5, cookie: 's', bypass: ['/logout', '/public/'] });
  for (const bad of ['', 'ttl=5', '{"ttl":0,"cookie":"s","bypass":[]}', '{"ttl":5,"cookie":"","bypass":[]}', '{"ttl":5,"cookie":"s","bypass":["x"]}', '{"ttl":"5","cookie":"s","bypass":[]}']) {
    assert.equal(parseSessionCacheDirective(bad), undefined, bad);
  }
});

test('entries live for the TTL, never past the cookie expiry, and the oldest goes first beyond the bound', () => {
  let now = 1_000_000_000_000;
  const f = new FilterSessions(KEY, 2, () => now);
  const exp = now / 1000 + 3600;
  assert.equal(f.lookup('/a', cookie('one', exp)), undefined, 'nothing learned yet');
  f.record('/a', cookie('one', exp), true, directive(10), ID);
  assert.deepEqual(f.lookup('/b', cookie('one', exp)), ID);
  assert.equal(f.lookup('/logout', cookie('one', exp)), undefined, 'exact bypass');
  assert.equal(f.lookup('/b', cookie('one', exp)), undefined, 'the bypass dropped the entry');
  f.record('/a', cookie('one', exp), true, directive(10), ID);
  assert.equal(f.lookup('/public/x', cookie('one', exp)), undefined, 'directory bypass');
  f.record('/a', cookie('one', exp), true, directive(10), ID);
  now += 10_001;
  assert.equal(f.lookup('/b', cookie('one', exp)), undefined, 'past the TTL');

  const soon = now / 1000 + 2;
  f.record('/a', cookie('two', soon), true, directive(10), ID);
  now += 2_001;
  assert.equal(f.lookup('/b', cookie('two', soon)), undefined, 'the cookie expired before the TTL');

  const later = now / 1000 + 3600;
  for (const sid of ['a', 'b', 'c']) f.record('/x', cookie(sid, later), true, directive(60), ID);
  assert.equal(f.size, 2);
  assert.equal(f.lookup('/y', cookie('a', later)), undefined, 'the oldest was evicted');
  assert.deepEqual(f.lookup('/y', cookie('c', later)), ID);

  f.record('/x', cookie('c', later), false, undefined, []);
  assert.equal(f.lookup('/y', cookie('c', later)), undefined, 'a denial drops the session');
  f.record('/x', cookie('b', later), true, undefined, ID);
  assert.deepEqual(f.lookup('/y', cookie('b', later)), ID, 'an allow without a directive keeps the old entry');
});
