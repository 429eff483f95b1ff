/**
 * Threats: login CSRF (a callback with someone else's state), and replay of a used callback URL.
 * Both end on a clear 400 page ("login link expired or already used — start again"), no session.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, startAuthStack, submitIdpLogin } from '../helpers/authservice-harness.ts';

const EXPIRED = /expired or was already used/;

test('callback with a state no cookie vouches for is refused', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const b = new Browser();
  const r = await b.request(`${stack.gateway.url}/authservice/oidc/callback?code=abc&state=attacker-state`);
  assert.equal(r.status, 400);
  assert.match(r.body, EXPIRED);
  assert.match(r.headers.get('content-type') ?? '', /text\/html/);
  assert.doesNotMatch(r.body, /Error:|at .*\(.*:\d+:\d+\)/, 'no stack trace');
  assert.equal(b.cookie('authservice_session'), undefined);
});

test("state mismatch: the IdP's answer to another login attempt is refused", async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  // Attacker completes their own login up to the callback and captures the callback URL.
  const attacker = new Browser();
  const page = await attacker.navigate(`${stack.gateway.url}/`);
  const atCallback = await submitIdpLoginUntilCallback(attacker, page, stack.users[1]!);
  // Victim has a login in progress (its own state cookie) and is lured to the attacker's callback URL.
  const victim = new Browser();
  await victim.navigate(`${stack.gateway.url}/`);
  const r = await victim.request(atCallback);
  assert.equal(r.status, 400);
  assert.match(r.body, EXPIRED);
  assert.equal(victim.cookie('authservice_session'), undefined, 'victim not logged in as the attacker');
});

test('replaying a used callback URL gives the 400 page, with or without the old state cookie', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const b = new Browser();
  const page = await b.navigate(`${stack.gateway.url}/`);
  const stateCookies = () => b.jar.filter((c) => c.name.startsWith('authservice_login_')).map((c) => ({ ...c }));
  const saved = stateCookies();
  assert.equal(saved.length, 1);
  const callbackUrl = await submitIdpLoginUntilCallback(b, page, stack.users[0]!);
  const ok = await b.navigate(callbackUrl);
  assert.equal(ok.status, 200, 'first use logs in');
  const again = await b.request(callbackUrl);
  assert.equal(again.status, 400, 'replay without the (cleared) state cookie');
  assert.match(again.body, EXPIRED);
  // An attacker who also kept the state cookie: the state was consumed at first use.
  const thief = new Browser();
  thief.jar.push(...saved);
  const stolen = await thief.request(callbackUrl);
  assert.equal(stolen.status, 400);
  assert.match(stolen.body, EXPIRED);
  assert.equal(thief.cookie('authservice_session'), undefined);
});

test('an error from the IdP (access_denied) is a clear 400 page', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const r = await new Browser().request(`${stack.gateway.url}/authservice/oidc/callback?error=access_denied&error_description=%3Cscript%3E&state=x`);
  assert.equal(r.status, 400);
  assert.match(r.body, /access_denied/);
  assert.doesNotMatch(r.body, /<script>/);
});

/** Logs in at the IdP but stops at the redirect back to the callback; returns the callback URL. */
async function submitIdpLoginUntilCallback(b: Browser, page: Awaited<ReturnType<Browser['navigate']>>, user: { email: string; password: string }): Promise<string> {
  const form = /<form[^>]*action="([^"]*)"/i.exec(page.body);
  assert.ok(form, 'login form');
  let r = await b.request(new URL(form[1]!.replace(/&amp;/g, '&'), page.url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login: user.email, password: user.password }).toString(),
  });
  for (let i = 0; i < 5 && r.status >= 300 && r.status < 400; i++) {
    const next = new URL(r.headers.get('location')!, r.url);
    if (next.pathname === '/authservice/oidc/callback') return next.href;
    r = await b.request(next);
  }
  // Real Dex may show an approval page first.
  const approved = await submitIdpLogin(b, r, user.email, user.password);
  throw new Error(`did not reach the callback: ${approved.status} ${approved.url}`);
}
