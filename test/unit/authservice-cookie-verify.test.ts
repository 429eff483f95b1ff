/**
 * The session cookie verifier (synchronous HMAC over the compact JWS): accepts exactly what
 * signSessionCookie writes and nothing else.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { signSessionCookie, verifySessionCookie } from '../../authservice/cookies.ts';
import { setBounded, VerifiedSessionCookies } from '../../lib/session-cookie.ts';

const key = new Uint8Array(32).fill(7);
const other = new Uint8Array(32).fill(8);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const sign = (k: Uint8Array, h: unknown, p: unknown) => {
  const input = `${b64(h)}.${b64(p)}`;
  return `${input}.${createHmac('sha256', k).update(input).digest('base64url')}`;
};
const future = Math.floor(Date.now() / 1000) + 3600;
const header = { alg: 'HS256', typ: 'portico-session+jwt' };
const claims = { sid: 's1', sub: 'jason', exp: future };

test('round trip with jose-signed cookies', async () => {
  const cookie = await signSessionCookie(key, { sid: 's1', sub: 'jason', exp: future });
  assert.deepEqual(await verifySessionCookie(key, cookie), { sid: 's1', sub: 'jason', exp: future });
  assert.equal(await verifySessionCookie(other, cookie), undefined, 'another key');
});

test('rejects everything signSessionCookie would not write', async () => {
  assert.ok(await verifySessionCookie(key, sign(key, header, claims)));
  const bad: [string, string][] = [
    ['alg none', sign(key, { alg: 'none', typ: header.typ }, claims)],
    ['other alg', sign(key, { alg: 'HS512', typ: header.typ }, claims)],
    ['other typ', sign(key, { alg: 'HS256', typ: 'JWT' }, claims)],
    ['crit', sign(key, { ...header, crit: ['exp'] }, claims)],
    ['expired', sign(key, header, { ...claims, exp: Math.floor(Date.now() / 1000) - 1 })],
    ['not yet valid', sign(key, header, { ...claims, nbf: future })],
    ['sid missing', sign(key, header, { sub: 'jason', exp: future })],
    ['exp as string', sign(key, header, { ...claims, exp: String(future) })],
    ['four segments', `${sign(key, header, claims)}.x`],
    ['empty signature', `${b64(header)}.${b64(claims)}.`],
    ['garbage', 'not-a-jwt'],
  ];
  for (const [why, value] of bad) assert.equal(await verifySessionCookie(key, value), undefined, why);
  // A non-canonical encoding of the right signature (last char's unused bits flipped) is refused.
  const good = sign(key, header, claims);
  const last = good.at(-1)!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
  const variant = good.slice(0, -1) + twin;
  if (Buffer.from(variant.split('.')[2]!, 'base64url').equals(Buffer.from(good.split('.')[2]!, 'base64url'))) {
    assert.equal(await verifySessionCookie(key, variant), undefined, 'non-canonical base64url');
  }
});

test('the verified-value memo: forged values never remembered, exp checked on every use, bounded', () => {
  const soon = Math.floor(Date.now() / 1000) + 10;
  const v = new VerifiedSessionCookies(key, 2);
  const good = sign(key, header, { sid: 's1', sub: 'jason', exp: soon });
  assert.equal(v.claims(good)?.sid, 's1');
  assert.equal(v.claims(good, soon + 1), undefined, 'expired although remembered');
  const forged = sign(other, header, { sid: 's1', sub: 'admin', exp: future });
  assert.equal(v.claims(forged), undefined);
  assert.equal(v.claims(forged), undefined, 'a forged value is verified (and refused) every time');
  // A tampered copy of a remembered value is not found in the memo.
  assert.equal(v.claims(good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A')), undefined);
  const bound = new VerifiedSessionCookies(key, 2);
  const map = new Map<string, number>();
  for (let i = 0; i < 5; i++) setBounded(map, `k${i}`, i, 2);
  assert.deepEqual([...map.keys()], ['k3', 'k4']);
  assert.equal(bound.claims(sign(key, header, claims))?.sub, 'jason');
});
