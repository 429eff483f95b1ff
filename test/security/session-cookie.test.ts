/**
 * Threat: forged session cookies. Tampered, expired, wrong-key, alg=none and orphaned cookies are
 * all "no session" (401 for API clients), never an error page and never an identity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveCookieKeys, signSessionCookie } from '../../authservice/cookies.ts';
import { sessionFor, startAuthStack } from '../helpers/authservice-harness.ts';

test('tampered, expired, wrong-key and unsigned session cookies are treated as no session', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { app, authservice } = stack;
  const { sid, cookie } = await sessionFor(app, { email: 'jason@example.com' });
  const check = async (c: string) => {
    const r = await fetch(`${authservice}/x`, { headers: { cookie: c, accept: 'application/json' } });
    return { status: r.status, user: r.headers.get('kubeflow-userid') };
  };
  assert.deepEqual(await check(cookie), { status: 200, user: 'jason@example.com' }, 'positive control');

  const value = cookie.slice(cookie.indexOf('=') + 1);
  const [h, p, s] = value.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  const reencode = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const name = app.authservice.config.session.cookieName;
  const forged: Record<string, string> = {
    'flipped signature': `${h}.${p}.${s.slice(0, -2)}${s.endsWith('A') ? 'BB' : 'AA'}`,
    'changed subject': `${h}.${reencode({ ...payload, sub: 'sub-admin@example.com' })}.${s}`,
    'extended expiry': `${h}.${reencode({ ...payload, exp: (payload.exp as number) + 86400 })}.${s}`,
    'alg none': `${reencode({ alg: 'none', typ: 'portico-session+jwt' })}.${p}.`,
    expired: await signSessionCookie(app.authservice.keys.session, { sid, sub: 'sub-jason@example.com', exp: Math.floor(Date.now() / 1000) - 10 }),
    'wrong key': await signSessionCookie(deriveCookieKeys(new TextEncoder().encode('another-secret-0123456789abcdef0123456789')).session, {
      sid,
      sub: 'sub-jason@example.com',
      exp: Math.floor(Date.now() / 1000) + 3600,
    }),
    'login-state key': await signSessionCookie(app.authservice.keys.login, { sid, sub: 'sub-jason@example.com', exp: Math.floor(Date.now() / 1000) + 3600 }),
    'right key, wrong subject for the sid': await signSessionCookie(app.authservice.keys.session, { sid, sub: 'sub-admin@example.com', exp: Math.floor(Date.now() / 1000) + 3600 }),
    'right key, unknown sid': await signSessionCookie(app.authservice.keys.session, { sid: 'nope', sub: 'sub-jason@example.com', exp: Math.floor(Date.now() / 1000) + 3600 }),
    garbage: 'not-a-jwt',
  };
  for (const [what, v] of Object.entries(forged)) {
    assert.deepEqual(await check(`${name}=${v}`), { status: 401, user: null }, what);
  }
});

test('a session cookie stops working once the session is deleted server side', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { sid, cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  await stack.app.authservice.store.delete(sid);
  const r = await fetch(`${stack.authservice}/x`, { headers: { cookie, accept: 'application/json' } });
  assert.equal(r.status, 401);
});

test('idle timeout: an unused session expires even though the cookie has not', async (t) => {
  const stack = await startAuthStack(t, { env: { PORTICO_SESSION_IDLE_TIMEOUT: '1' } });
  if (!stack) return;
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com' });
  const check = () => fetch(`${stack.authservice}/x`, { headers: { cookie, accept: 'application/json' } });
  assert.equal((await check()).status, 200);
  await new Promise((r) => setTimeout(r, 1300));
  assert.equal((await check()).status, 401);
});

test('the session cookie is HttpOnly, SameSite=Lax, Path=/, and Secure behind https', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { Browser, browseAndLogin } = await import('../helpers/authservice-harness.ts');
  const b = new Browser();
  const seen: string[] = [];
  const orig = b.store.bind(b);
  b.store = (url, header) => {
    seen.push(header);
    orig(url, header);
  };
  await browseAndLogin(b, `${stack.gateway.url}/`, stack.users[0]!);
  const session = seen.find((c) => c.startsWith('authservice_session='));
  assert.ok(session);
  assert.match(session, /HttpOnly/);
  assert.match(session, /SameSite=Lax/);
  assert.match(session, /Path=\//);
  assert.match(session, /Max-Age=86400/);
  assert.doesNotMatch(session, /Secure/, 'plain http test origin');
  // Behind https (x-forwarded-proto), login-state cookies are Secure (session cookies follow the same rule).
  const r = await fetch(`${stack.authservice}/`, { headers: { accept: 'text/html', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf.example.com' }, redirect: 'manual' });
  assert.match(r.headers.getSetCookie()[0] ?? '', /; Secure/);
});
