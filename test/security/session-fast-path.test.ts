/**
 * The in-gateway session fast path (issue 14.2), through Portico's own gateway with the Kubeflow
 * example (EnvoyFilter form) and Portico's authservice: a session the authservice marked reusable
 * (PORTICO_GATEWAY_SESSION_TTL) is answered by a gateway holding the cookie secret without asking
 * the authservice, and every security property of the check still holds: spoofed identity
 * headers are replaced, forged and expired cookies never ride on a cached session, a logout
 * through the gateway ends the session at once, a session ended elsewhere passes for at most the
 * TTL, and the authservice's own and skip-auth paths are always asked.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signSessionCookie } from '../../authservice/cookies.ts';
import { Browser, submitIdpLogin } from '../helpers/authservice-harness.ts';
import { startKubeflowStack, type KubeflowStack, type KubeflowStackOptions } from '../helpers/stack.ts';

const SPOOF = { 'kubeflow-userid': 'mallory@evil.example', Kubeflow_Userid: 'mallory@evil.example', 'kubeflow-groups': 'admins' };
const COOKIE = 'authservice_session';

interface Seen {
  status: number;
  user: string | undefined;
}

/** What the app (httpbin's echo behind the gateway) saw, as an API client asking. */
async function ask(stack: KubeflowStack, cookie: string | undefined, path = '/httpbin/headers', extra: Record<string, string> = {}): Promise<Seen> {
  const r = await fetch(`${stack.http}${path}`, { headers: { accept: 'application/json', ...(cookie ? { cookie } : {}), ...extra }, redirect: 'manual' });
  const text = await r.text();
  if (r.status !== 200) return { status: r.status, user: undefined };
  const headers = (JSON.parse(text) as { headers: Record<string, string> }).headers;
  const user = Object.entries(headers).find(([k]) => k.toLowerCase() === 'kubeflow-userid')?.[1];
  return { status: 200, user };
}

/** A browser login through the gateway; the session cookie as a Cookie header. */
async function login(stack: KubeflowStack): Promise<{ browser: Browser; cookie: string; value: string }> {
  const jason = stack.users.find((u) => u.email === 'jason@example.com')!;
  const browser = new Browser();
  const first = await browser.request(`${stack.http}/httpbin/headers`);
  assert.equal(first.status, 302, first.body);
  const page = await browser.navigate(new URL(first.headers.get('location')!));
  const landed = await submitIdpLogin(browser, page, jason.email, jason.password);
  assert.equal(landed.status, 200, landed.body.slice(0, 300));
  const value = browser.cookie(COOKIE);
  assert.ok(value, 'logged in');
  return { browser, cookie: `${COOKIE}=${value}`, value };
}

async function stackWith(t: Parameters<typeof startKubeflowStack>[0], fastPath: KubeflowStackOptions['fastPath'], env?: Record<string, string>): Promise<KubeflowStack> {
  const stack = await startKubeflowStack(t, { form: 'envoy-filter', idp: 'devidp', ...(fastPath ? { fastPath } : {}), ...(env ? { env } : {}) });
  assert.ok(stack, 'the dev IdP always starts');
  return stack;
}

/** Stops the authservice: from here on only the gateway's fast path can allow a request. */
async function stopAuthservice(stack: KubeflowStack): Promise<void> {
  await stack.authservice.close();
}

test('fast path on: a reused session is answered by the gateway itself, with the identity replacing spoofed headers', async (t) => {
  const stack = await stackWith(t, { ttl: 30 });
  const { cookie } = await login(stack);
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' }, 'the first request is checked by the authservice');
  await stopAuthservice(stack);
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' }, 'answered without the authservice');
  assert.deepEqual(await ask(stack, cookie, '/httpbin/headers', SPOOF), { status: 200, user: 'jason@example.com' }, 'client identity headers are replaced');
  assert.notEqual((await ask(stack, undefined)).status, 200, 'no cookie: the authservice must be asked (and is down)');
  assert.notEqual((await ask(stack, `${cookie}x`)).status, 200, 'a changed cookie is not the cached session');
});

test('fast path off (the gateway lacks the key, or the authservice does not mark sessions reusable): every request asks the authservice', async (t) => {
  for (const fastPath of [{ ttl: 30, gatewayKey: false }, { gatewayKey: true }] as const) {
    await t.test(JSON.stringify(fastPath), async (t) => {
      const stack = await stackWith(t, fastPath);
      const { cookie } = await login(stack);
      assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' });
      await stopAuthservice(stack);
      assert.notEqual((await ask(stack, cookie)).status, 200, 'with the authservice down nothing is allowed');
    });
  }
});

test('forged, expired and other-key cookies never ride on a cached session', async (t) => {
  const stack = await stackWith(t, { ttl: 30 });
  const { cookie, value } = await login(stack);
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' });
  const [h, p, s] = value.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as { sid: string; sub: string; exp: number };
  const reencode = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const keys = stack.authservice.authservice.keys;
  const now = Math.floor(Date.now() / 1000);
  const forged: Record<string, string> = {
    'flipped signature': `${h}.${p}.${s.slice(0, -2)}${s.endsWith('A') ? 'BB' : 'AA'}`,
    'changed subject': `${h}.${reencode({ ...claims, sub: 'sub-admin@example.com' })}.${s}`,
    'extended expiry': `${h}.${reencode({ ...claims, exp: claims.exp + 86400 })}.${s}`,
    'alg none': `${reencode({ alg: 'none', typ: 'portico-session+jwt' })}.${p}.`,
    'expired, right key, same session': await signSessionCookie(keys.session, { sid: claims.sid, sub: claims.sub, exp: now - 10 }),
    'login-state key, same session': await signSessionCookie(keys.login, { sid: claims.sid, sub: claims.sub, exp: now + 3600 }),
    'right key, same sid, another subject': await signSessionCookie(keys.session, { sid: claims.sid, sub: 'sub-admin@example.com', exp: now + 3600 }),
  };
  for (const [what, v] of Object.entries(forged)) {
    assert.deepEqual(await ask(stack, `${COOKIE}=${v}`), { status: 401, user: undefined }, what);
  }
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' }, 'the genuine cookie still works');
});

test('a logout through the gateway ends the session at once, cached or not', async (t) => {
  const stack = await stackWith(t, { ttl: 300 });
  const { browser, cookie } = await login(stack);
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' });
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' }, 'cached now');
  const out = await browser.request(`${stack.http}/authservice/logout`, {
    method: 'POST',
    headers: { accept: 'application/json', origin: stack.http, 'sec-fetch-site': 'same-origin' },
  });
  assert.equal(out.status, 401, out.body);
  assert.equal((JSON.parse(out.body) as { loggedOut?: boolean }).loggedOut, true, 'the logout reached the authservice');
  assert.deepEqual(await ask(stack, cookie), { status: 401, user: undefined }, 'the old cookie no longer passes');
});

test('a session ended elsewhere passes this gateway for at most the TTL', async (t) => {
  let offset = 0;
  const stack = await stackWith(t, { ttl: 20, now: () => Date.now() + offset });
  const { cookie, value } = await login(stack);
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' });
  const { sid } = JSON.parse(Buffer.from(value.split('.')[1]!, 'base64url').toString()) as { sid: string };
  await stack.authservice.authservice.store.delete(sid); // another replica's logout, an admin's revocation
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' }, 'within the TTL the gateway still answers (the documented bound)');
  offset = 19_000;
  assert.equal((await ask(stack, cookie)).status, 200, 'still within the 20 s');
  offset = 20_001;
  assert.deepEqual(await ask(stack, cookie), { status: 401, user: undefined }, 'past the TTL the authservice is asked and refuses');
});

test('skip-auth paths are always asked: the cached identity is not added where the authservice adds none', async (t) => {
  const stack = await stackWith(t, { ttl: 30 }, { SKIP_AUTH_URLS: '/dex,/httpbin/anything/public' });
  const { cookie } = await login(stack);
  assert.deepEqual(await ask(stack, cookie), { status: 200, user: 'jason@example.com' });
  assert.deepEqual(await ask(stack, cookie, '/httpbin/anything/public/page'), { status: 200, user: undefined }, 'the authservice answers skip paths without identity');
  assert.deepEqual(await ask(stack, cookie, '/httpbin/anything/private'), { status: 200, user: 'jason@example.com' });
});
