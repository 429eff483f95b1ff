/**
 * Threat: cross-site logout (CSRF) and logout-by-link. POST <prefix>/logout needs the session
 * cookie AND same-origin proof (Origin / Sec-Fetch-Site, or a header cross-site pages cannot send:
 * X-Requested-With, Authorization: Bearer). Also: logout never answers 2xx, because on the
 * ext_authz check path a 2xx is "allow" and the cookie-clearing answer would be lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest, sessionFor, startAuthStack } from '../helpers/authservice-harness.ts';

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
    'Basic credentials are not proof (browsers attach them cross-site)': { authorization: 'Basic dTpw' },
    'bearer but cross-site fetch metadata': { authorization: 'Bearer x', 'sec-fetch-site': 'cross-site' },
  };
  for (const [what, headers] of Object.entries(refused)) {
    const r = await logout(headers);
    assert.equal(r.status, 403, what);
    assert.match(await r.text(), /logout refused: /, what);
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

test('same-origin logout works by Origin, by Sec-Fetch-Site, and by custom header; never with a 2xx', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const site = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf.example.com' };
  for (const proof of <Record<string, string>[]>[
    { origin: 'https://kf.example.com' },
    { 'sec-fetch-site': 'same-origin' },
    { 'x-requested-with': 'XMLHttpRequest' },
    { authorization: 'Bearer anything' },
  ]) {
    const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
    const r = await fetch(`${stack.authservice}/authservice/logout`, { method: 'POST', headers: { cookie, ...site, ...proof, accept: 'application/json' } });
    assert.equal(r.status, 401, JSON.stringify(proof));
    assert.deepEqual(await r.json(), { loggedOut: true, afterLogoutURL: '/' });
    assert.match(r.headers.getSetCookie()[0] ?? '', /^authservice_session=; .*Max-Age=0/);
    const after = await fetch(`${stack.authservice}/x`, { headers: { cookie, accept: 'application/json' } });
    assert.equal(after.status, 401, 'session deleted server side, so even a kept cookie is dead');
  }
  // A browser form post (Accept: text/html) is sent to AFTER_LOGOUT_URL with 303 (POST → GET).
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  const r = await fetch(`${stack.authservice}/authservice/logout`, { method: 'POST', headers: { cookie, ...site, origin: 'https://kf.example.com', accept: 'text/html' }, redirect: 'manual' });
  assert.equal(r.status, 303);
  assert.equal(r.headers.get('location'), '/');
  assert.match(r.headers.getSetCookie()[0] ?? '', /^authservice_session=; .*Max-Age=0.*Secure/);
});

test('logout as a check request (the gateway asks the authservice about <prefix>/logout): the answer is never "allow"', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  // Exactly what Kubeflow's filter as shipped forwards: cookie and authorization, the original Host.
  for (const [what, headers] of Object.entries(<Record<string, Record<string, string>>>{
    'page (no Accept forwarded)': { host: 'kf.example.com' },
    'script (Authorization: Bearer)': { host: 'kf.example.com', authorization: 'Bearer x' },
    'no Host': {},
  })) {
    for (const withSession of [true, false]) {
      const cookie = withSession ? (await sessionFor(stack.app, { email: 'jason@example.com' })).cookie : '';
      for (const method of ['POST', 'GET', 'PUT', 'DELETE']) {
        const r = await rawRequest(stack.authservice, '/authservice/logout', { method, headers: { ...headers, ...(cookie ? { cookie } : {}) } });
        assert.ok(r.status < 200 || r.status >= 300, `${what}, ${method}, session=${withSession}: ${r.status}`);
      }
    }
  }
  // The callback path likewise: only GET/HEAD reach it, other methods are 405 (never a check "allow").
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  const post = await fetch(`${stack.authservice}/authservice/oidc/callback`, { method: 'POST', headers: { cookie }, redirect: 'manual' });
  await post.arrayBuffer();
  assert.equal(post.status, 405);
});

test('the refusal names the missing headers; without x-forwarded-proto an Origin of either scheme on this host is accepted', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  // rawRequest: fetch would replace the Host header, which is what the gateway sends as the original authority.
  const logout = (headers: Record<string, string>) => rawRequest(stack.authservice, '/authservice/logout', { method: 'POST', headers: { cookie, host: 'kf.example.com', accept: 'application/json', ...headers } });
  const bare = await logout({});
  assert.equal(bare.status, 403);
  const body = JSON.parse(bare.body) as { error: string; message: string };
  assert.equal(body.error, 'PORTICO_ERR_CSRF');
  for (const name of ['Origin', 'Sec-Fetch-Site', '"origin"', '"sec-fetch-site"', 'allowed_headers']) assert.ok(body.message.includes(name), `${name} in: ${body.message}`);

  const evil = await logout({ origin: 'https://evil.example' });
  assert.equal(evil.status, 403);
  assert.match((JSON.parse(evil.body) as { message: string }).message, /x-forwarded-proto was not received/);
  const sibling = await logout({ origin: 'https://evil.kf.example.com' });
  assert.equal(sibling.status, 403);

  const ok = await logout({ origin: 'https://kf.example.com' });
  assert.equal(ok.status, 401);
  assert.equal((JSON.parse(ok.body) as { loggedOut?: boolean }).loggedOut, true);
});

test('logout without a session is idempotent: the same logged-out answer, cookie cleared, nothing else happens', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const r = await fetch(`${stack.authservice}/authservice/logout`, { method: 'POST', headers: { 'sec-fetch-site': 'same-origin', accept: 'application/json' } });
  assert.equal(r.status, 401);
  assert.deepEqual(await r.json(), { loggedOut: true, afterLogoutURL: '/' });
  assert.match(r.headers.getSetCookie()[0] ?? '', /^authservice_session=; .*Max-Age=0/);
});
