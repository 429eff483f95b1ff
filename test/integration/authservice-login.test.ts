/**
 * The whole browser login, as a browser does it: protected page → 302 to the IdP → login form →
 * callback → 302 back → allowed with identity headers. Through a stand-in ext_authz gateway.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, browseAndLogin, rawRequest, startAuthStack, submitIdpLogin } from '../helpers/authservice-harness.ts';
import type { AuthStack } from '../helpers/authservice-harness.ts';

async function fullLogin(t: import('node:test').TestContext, stack: AuthStack) {
  const browser = new Browser();
  const first = await browser.request(`${stack.gateway.url}/notebooks/?ns=kubeflow-user`);
  assert.equal(first.status, 302, 'unauthenticated navigation is redirected');
  const location = new URL(first.headers.get('location')!);
  assert.ok(location.href.startsWith(`${stack.issuer}/auth?`), `redirect goes to the IdP's authorization endpoint: ${location.href}`);
  assert.equal(location.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(location.searchParams.get('client_id'), stack.clientId);
  assert.equal(location.searchParams.get('redirect_uri'), `${stack.gateway.url}/authservice/oidc/callback`);
  assert.ok(location.searchParams.get('state') && location.searchParams.get('nonce'));
  const loginCookie = first.headers.getSetCookie().find((c) => c.startsWith('authservice_login_'));
  assert.ok(loginCookie && /HttpOnly/.test(loginCookie) && /Path=\/authservice\/oidc\/callback/.test(loginCookie) && /SameSite=Lax/.test(loginCookie));

  const page = await browser.navigate(location);
  const user = stack.users[0]!;
  const final = await submitIdpLogin(browser, page, user.email, user.password);
  assert.equal(final.status, 200, `expected the app after login, got ${final.status} at ${final.url}: ${final.body.slice(0, 300)}`);
  assert.equal(final.url, `${stack.gateway.url}/notebooks/?ns=kubeflow-user`, 'returns to the original URL');
  const app = JSON.parse(final.body) as { userid: string; groups: string };
  assert.equal(app.userid, user.email);
  const session = browser.jar.find((c) => c.name === 'authservice_session');
  assert.ok(session, 'session cookie set');
  assert.ok(!browser.jar.some((c) => c.name.startsWith('authservice_login_')), 'login-state cookie cleared after use');
  return { browser, user, app };
}

test('browser login through the dev IdP (Dex paths) ends on the original page with kubeflow-userid', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { browser, app } = await fullLogin(t, stack);
  assert.equal(app.groups, 'ml-team,admins');
  // XHR with the session is allowed too.
  const xhr = await browser.request(`${stack.gateway.url}/api/workgroup/env-info`, { headers: { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest' } });
  assert.equal(xhr.status, 200);
});

test('browser login through a real Dex binary', async (t) => {
  const stack = await startAuthStack(t, { idp: 'dex' });
  if (!stack) return;
  await fullLogin(t, stack);
});

test('several tabs logging in at once all succeed', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const browser = new Browser();
  const user = stack.users[0]!;
  // Open three tabs first (three pending logins, three state cookies), then finish them in reverse order.
  const pages = [];
  for (const path of ['/a', '/b?x=1', '/c']) pages.push({ path, page: await browser.navigate(`${stack.gateway.url}${path}`) });
  assert.equal(browser.jar.filter((c) => c.name.startsWith('authservice_login_')).length, 3);
  for (const { path, page } of pages.reverse()) {
    const final = await submitIdpLogin(browser, page, user.email, user.password);
    assert.equal(final.status, 200, `tab ${path}: ${final.status} ${final.body.slice(0, 200)}`);
    assert.equal(new URL(final.url).pathname + new URL(final.url).search, path);
  }
});

test('API requests without a session get 401 JSON, never a redirect', async (t) => {
  const stack = await startAuthStack(t, { env: { PORTICO_API_PATHS: '/api/' } });
  if (!stack) return;
  const browser = new Browser();
  for (const headers of <Record<string, string>[]>[
    { accept: 'application/json' },
    { 'x-requested-with': 'XMLHttpRequest', accept: '*/*' },
    { accept: 'text/html' }, // under PORTICO_API_PATHS
  ]) {
    const r = await browser.request(`${stack.gateway.url}/api/things`, { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.headers.get('location'), null);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.equal((JSON.parse(r.body) as { error: string }).error, 'PORTICO_ERR_AUTHN_REQUIRED');
  }
  const post = await browser.request(`${stack.gateway.url}/pipelines/run`, { method: 'POST', headers: { accept: 'text/html' } });
  assert.equal(post.status, 401, 'a redirect would lose the POST body');
});

test('GROUPS_ALLOWLIST: a user outside the allowed groups gets a 403 page at login', async (t) => {
  const stack = await startAuthStack(t, { env: { GROUPS_ALLOWLIST: 'ml-team' } });
  if (!stack) return;
  const ok = await browseAndLogin(new Browser(), `${stack.gateway.url}/`, stack.users[0]!);
  assert.equal(ok.status, 200);
  const denied = await browseAndLogin(new Browser(), `${stack.gateway.url}/`, stack.users[1]!);
  assert.equal(denied.status, 403);
  assert.match(denied.body, /Access denied/);
  assert.doesNotMatch(denied.body, /at .*\.ts:\d+/, 'no stack traces');
});

test('Authorization: Bearer <ID token from the issuer> is allowed; a forged one is not', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const browser = new Browser();
  await browseAndLogin(browser, `${stack.gateway.url}/`, stack.users[0]!);
  const sid = (await import('../../authservice/cookies.ts')).verifySessionCookie;
  const claims = await sid(stack.app.authservice.keys.session, browser.cookie('authservice_session'));
  const record = await stack.app.authservice.store.get(claims!.sid);
  const idToken = record!.idToken;
  const ok = await fetch(`${stack.authservice}/apis/v1/runs`, { headers: { authorization: `Bearer ${idToken}`, accept: 'application/json' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('kubeflow-userid'), stack.users[0]!.email);
  const [h, p] = idToken.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), email: 'admin@example.com' })).toString('base64url');
  const forged = await fetch(`${stack.authservice}/apis/v1/runs`, { headers: { authorization: `Bearer ${h}.${forgedPayload}.${idToken.split('.')[2]}`, accept: 'application/json' } });
  assert.equal(forged.status, 401);
  assert.equal(forged.headers.get('kubeflow-userid'), null);
});

test('refresh: an ID token about to expire is refreshed once even under concurrent checks', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const browser = new Browser();
  await browseAndLogin(browser, `${stack.gateway.url}/`, stack.users[0]!);
  const { verifySessionCookie } = await import('../../authservice/cookies.ts');
  const { store, keys } = stack.app.authservice;
  const claims = await verifySessionCookie(keys.session, browser.cookie('authservice_session'));
  const before = await store.get(claims!.sid);
  assert.ok(before?.refreshToken, 'offline_access gave a refresh token');
  // Age the session's ID token so it is inside the refresh window (default 60 s before expiry).
  await store.set(claims!.sid, { ...before, idTokenExp: Math.floor(Date.now() / 1000) + 5 }, 60_000);
  const check = () => fetch(`${stack.authservice}/x`, { headers: { cookie: `authservice_session=${browser.cookie('authservice_session')}`, accept: 'application/json' } });
  const results = await Promise.all(Array.from({ length: 8 }, check));
  assert.deepEqual(results.map((r) => r.status), Array(8).fill(200));
  const after = await store.get(claims!.sid);
  assert.ok(after, 'session survives');
  assert.notEqual(after.refreshToken, before.refreshToken, 'refresh token rotated');
  assert.ok(after.idTokenExp > Math.floor(Date.now() / 1000) + 600, 'new ID token stored');
  // The dev IdP rotates refresh tokens and rejects reuse (like Dex): had two refreshes raced, one
  // would have presented a used token, got invalid_grant and ended the session.
  assert.equal((await check()).status, 200);
});

test('logout: POST from the same origin ends the session and answers {afterLogoutURL}', async (t) => {
  const stack = await startAuthStack(t, { env: { AFTER_LOGOUT_URL: '/bye' } });
  if (!stack) return;
  const browser = new Browser();
  await browseAndLogin(browser, `${stack.gateway.url}/`, stack.users[0]!);
  const r = await browser.request(`${stack.gateway.url}/authservice/logout`, { method: 'POST', headers: { origin: stack.gateway.url, accept: 'application/json' } });
  assert.equal(r.status, 401, 'logout never answers 2xx (it would be "allow" on the check path)');
  assert.deepEqual(JSON.parse(r.body), { loggedOut: true, afterLogoutURL: '/bye' });
  assert.equal(browser.cookie('authservice_session'), undefined, 'cookie cleared');
  const after = await browser.request(`${stack.gateway.url}/`, { headers: { accept: 'application/json' } });
  assert.equal(after.status, 401);
});

test('a relative OIDC_AUTH_URL is resolved per request: x-forwarded-proto + x-forwarded-host, else Host, else REDIRECT_URL\'s origin', async (t) => {
  const stack = await startAuthStack(t, { env: { OIDC_AUTH_URL: '/dex/auth', REDIRECT_URL: 'https://kf.example.com/authservice/oidc/callback' } });
  if (!stack) return;
  const loginAt = async (headers: Record<string, string>) => {
    const r = await rawRequest(stack.authservice, '/app', { headers: { accept: 'text/html', ...headers } });
    assert.equal(r.status, 302, r.body);
    const u = new URL(String(r.headers.location));
    return { auth: `${u.origin}${u.pathname}`, cookie: String(r.headers['set-cookie']?.[0] ?? '') };
  };
  assert.equal((await loginAt({ 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf2.example.com', host: 'internal:8080' })).auth, 'https://kf2.example.com/dex/auth');
  assert.equal((await loginAt({ host: 'kf3.example.com' })).auth, 'http://kf3.example.com/dex/auth');
  // Same host as the absolute REDIRECT_URL, no x-forwarded-proto: its scheme, and a Secure login cookie.
  const same = await loginAt({ host: 'kf.example.com' });
  assert.equal(same.auth, 'https://kf.example.com/dex/auth');
  assert.match(same.cookie, /; Secure/);
  assert.equal((await loginAt({ host: 'not a host' })).auth, 'https://kf.example.com/dex/auth', 'no usable Host: the configured origin');
});
