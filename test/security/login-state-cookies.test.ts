/**
 * Threat: a user locked out by their own abandoned logins. Each login attempt leaves a ~560-byte
 * state cookie on the callback path for 10 minutes; unbounded, about 28 of them (an expired
 * page's images, polls and reloads) push the callback's Cookie header past the server's limit
 * and every login ends in 431. Bounded: at most LOGIN_SLOTS attempts are remembered (the oldest
 * evicted), and a page's sub-resources get 401 without starting a login at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LOGIN_SLOTS } from '../../authservice/cookies.ts';
import { Browser, startAuthStack, submitIdpLogin } from '../helpers/authservice-harness.ts';

const loginCookies = (b: Browser) => b.jar.filter((c) => c.name.startsWith('authservice_login_'));

test('40 abandoned logins leave at most LOGIN_SLOTS state cookies, and the next login still works (no 431)', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const b = new Browser();
  for (let i = 0; i < 40; i++) {
    const r = await b.request(`${stack.gateway.url}/notebooks/?reload=${i}`);
    assert.equal(r.status, 302);
  }
  assert.ok(loginCookies(b).length <= LOGIN_SLOTS, `${loginCookies(b).length} state cookies`);
  const header = b.cookieHeader(new URL(`${stack.gateway.url}/authservice/oidc/callback`));
  assert.ok(header.length < 4 * 1024, `callback Cookie header is ${header.length} bytes`);
  const user = stack.users[0]!;
  const page = await b.navigate(`${stack.gateway.url}/pipelines/`);
  const done = await submitIdpLogin(b, page, user.email, user.password);
  assert.equal(done.status, 200, `login after many abandoned attempts: ${done.status} ${done.body.slice(0, 200)}`);
  assert.equal((JSON.parse(done.body) as { userid: string }).userid, user.email);
});

test('the newest LOGIN_SLOTS attempts complete; an evicted one gets the start-again page', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const b = new Browser();
  const pages = [];
  for (let i = 0; i <= LOGIN_SLOTS; i++) pages.push(await b.navigate(`${stack.gateway.url}/tab${i}`));
  const user = stack.users[0]!;
  // The first attempt was evicted by the (LOGIN_SLOTS+1)th.
  const evicted = await submitIdpLogin(b, pages[0]!, user.email, user.password);
  assert.equal(evicted.status, 400);
  assert.match(evicted.body, /expired or was already used/);
  assert.equal(b.cookie('authservice_session'), undefined);
  const newest = await submitIdpLogin(b, pages[LOGIN_SLOTS]!, user.email, user.password);
  assert.equal(newest.status, 200);
  assert.equal(newest.url, `${stack.gateway.url}/tab${LOGIN_SLOTS}`);
});

test("a page's sub-resources get 401 and start no login", async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const cases: Record<string, string>[] = [
    { accept: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8' },
    { accept: 'text/css,*/*;q=0.1' },
    { accept: '*/*', 'sec-fetch-dest': 'script' },
    { accept: '*/*', 'sec-fetch-dest': 'empty' },
    { accept: 'text/html', 'sec-fetch-dest': 'image' },
  ];
  for (const headers of cases) {
    const b = new Browser();
    const r = await b.request(`${stack.gateway.url}/static/app.js`, { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="portico"');
    assert.deepEqual(r.headers.getSetCookie(), [], `no login-state cookie for ${JSON.stringify(headers)}`);
  }
  // Navigations (a page, a frame) still go to the login.
  const navigations: Record<string, string>[] = [{ accept: 'text/html,application/xhtml+xml', 'sec-fetch-dest': 'document' }, { accept: 'text/html', 'sec-fetch-dest': 'iframe' }, { accept: '*/*' }];
  for (const headers of navigations) {
    const r = await new Browser().request(`${stack.gateway.url}/notebooks/`, { headers });
    assert.equal(r.status, 302, JSON.stringify(headers));
  }
});
