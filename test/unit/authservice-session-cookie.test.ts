/**
 * lib/session-cookie.ts: the pure verification a gateway can share (no server deps),
 * and its Cookie header lookup.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { deriveCookieKeys, parseCookies, signSessionCookie } from '../../authservice/cookies.ts';
import { cookieValue, deriveSessionKey, verifySessionCookieValue } from '../../lib/session-cookie.ts';

test('session-cookie.ts imports only node:crypto, so the gateway can import it without Fastify', () => {
  const src = readFileSync(new URL('../../lib/session-cookie.ts', import.meta.url), 'utf8');
  const imports = [...src.matchAll(/^import\s.*from\s+'([^']+)'/gm)].map((m) => m[1]);
  assert.deepEqual(imports, ['node:crypto']);
});

test('the pure verifier accepts what the authservice signs, with the key derived the same way', async () => {
  const secret = new TextEncoder().encode('a-cookie-secret-of-at-least-32-bytes-0123456789');
  assert.deepEqual(deriveSessionKey(secret), deriveCookieKeys(secret).session);
  const exp = Math.floor(Date.now() / 1000) + 60;
  const value = await signSessionCookie(deriveSessionKey(secret), { sid: 's1', sub: 'u1', exp });
  assert.deepEqual(verifySessionCookieValue(deriveSessionKey(secret), value), { sid: 's1', sub: 'u1', exp });
  assert.equal(verifySessionCookieValue(deriveSessionKey(secret), value, exp + 1), undefined, 'expired');
  assert.equal(verifySessionCookieValue(deriveSessionKey(new TextEncoder().encode('another-secret-of-at-least-32-bytes-xxxxxxxx')), value), undefined, 'other key');
});

test('cookieValue finds exactly the named cookie, first occurrence, like parseCookies', () => {
  const cases: [string | string[] | undefined, string | undefined][] = [
    [undefined, undefined],
    ['', undefined],
    ['authservice_session=abc', 'abc'],
    ['a=1; authservice_session=abc; b=2', 'abc'],
    ['xauthservice_session=evil; authservice_session=good', 'good'],
    ['authservice_session_old=evil', undefined],
    ['a=authservice_session=evil', undefined],
    ['authservice_session="q"', 'q'],
    ['authservice_session=first; authservice_session=second', 'first'],
    [['a=1', 'authservice_session=arr'], 'arr'],
    ['a=1;authservice_session=tight', 'tight'],
    ['authservice_session=', ''],
  ];
  for (const [header, want] of cases) {
    assert.equal(cookieValue(header, 'authservice_session'), want, JSON.stringify(header));
    if (header !== undefined) assert.equal(parseCookies(header).get('authservice_session'), want === '' ? '' : want, `parseCookies agrees: ${JSON.stringify(header)}`);
  }
});
