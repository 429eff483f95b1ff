/**
 * Threat: cross-site logout (CSRF) and logout-by-link. POST <prefix>/logout needs the session
 * cookie AND same-origin proof (Origin / Sec-Fetch-Site, or a custom header for old clients).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionFor, startAuthStack } from '../helpers/authservice-harness.ts';

test('cross-site POST without proof is refused and the session survives; GET never logs out', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  const site = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf.example.com' };
  const logout = (headers: Record<string, string>, method = 'POST') =>
    fetch(`${stack.authservice}/authservice/logout`, { method, headers: { cookie, ...site, ...headers }, redirect: 'manual' });
  const alive = async () => (await fetch(`${stack.authservice}/x`, { headers: { cookie, accept: 'application/json' } })).status === 200;

  const refused: Record<string, Record<string, string>> = {
    'foreign Origin': { origin: 'https://evil.example', accept: 'text/html' },
    'sibling subdomain Origin': { origin: 'https://evil.kf.example.com' },
    'http downgrade Origin': { origin: 'http://kf.example.com' },
    'Origin null': { origin: 'null' },
    'Sec-Fetch-Site cross-site': { 'sec-fetch-site': 'cross-site' },
    'Sec-Fetch-Site same-site': { 'sec-fetch-site': 'same-site' },
    'same Origin but cross-site fetch metadata': { origin: 'https://kf.example.com', 'sec-fetch-site': 'cross-site' },
    'custom header but foreign Origin': { origin: 'https://evil.example', 'x-requested-with': 'XMLHttpRequest' },
    'no proof at all (plain form post from an old browser)': { 'content-type': 'application/x-www-form-urlencoded' },
  };
  for (const [what, headers] of Object.entries(refused)) {
    const r = await logout(headers);
    assert.equal(r.status, 403, what);
    assert.equal(r.headers.getSetCookie().length, 0, `${what}: cookie untouched`);
    assert.ok(await alive(), `${what}: session survives`);
  }
  for (const method of ['GET', 'HEAD']) {
    const r = await logout({ accept: 'text/html' }, method);
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.get('allow'), 'POST');
    assert.ok(await alive(), `${method} does not log out`);
  }
  // Through the check path too (gateway sends <prefix>/logout as a check): same answers.
  const viaCheck = await fetch(`${stack.authservice}/authservice/logout`, { headers: { cookie, ...site, accept: 'text/html' } });
  assert.equal(viaCheck.status, 405);
  assert.ok(await alive());
});

test('same-origin logout works by Origin, by Sec-Fetch-Site, and by custom header', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const site = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf.example.com' };
  for (const proof of <Record<string, string>[]>[{ origin: 'https://kf.example.com' }, { 'sec-fetch-site': 'same-origin' }, { 'x-requested-with': 'XMLHttpRequest' }]) {
    const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
    const r = await fetch(`${stack.authservice}/authservice/logout`, { method: 'POST', headers: { cookie, ...site, ...proof, accept: 'application/json' } });
    assert.equal(r.status, 201, JSON.stringify(proof));
    assert.match(r.headers.getSetCookie()[0] ?? '', /^authservice_session=; .*Max-Age=0/);
    const after = await fetch(`${stack.authservice}/x`, { headers: { cookie, accept: 'application/json' } });
    assert.equal(after.status, 401, 'session deleted server side, so even a kept cookie is dead');
  }
  // A browser form post (Accept: text/html) is redirected to AFTER_LOGOUT_URL.
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  const r = await fetch(`${stack.authservice}/authservice/logout`, { method: 'POST', headers: { cookie, ...site, origin: 'https://kf.example.com', accept: 'text/html' }, redirect: 'manual' });
  assert.equal(r.status, 302);
  assert.equal(r.headers.get('location'), '/');
});

test('logout without a session cookie is 401', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const r = await fetch(`${stack.authservice}/authservice/logout`, { method: 'POST', headers: { 'sec-fetch-site': 'same-origin', accept: 'application/json' } });
  assert.equal(r.status, 401);
});
