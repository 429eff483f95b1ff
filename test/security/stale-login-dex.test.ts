/**
 * Threats and mishaps at the callback, against real Dex v2.13 (which answers `invalid_request`,
 * not `invalid_grant`, for a bad code, and has no PKCE): an unknown or expired code, a code
 * replayed to another replica, and a code injected into someone else's login (the ID token's
 * nonce is not the victim's). Each is refused with the 400 "start again" page and no session —
 * not the 502 "temporarily unavailable" page that tells people to wait for an outage to pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, rawRequest, startAuthStack } from '../helpers/authservice-harness.ts';
import type { BrowserResponse } from '../helpers/authservice-harness.ts';

const START_AGAIN = /expired or was already used/;

/** Logs in at Dex from the page showing its login form; stops at the redirect back to the callback. */
async function loginUntilCallback(b: Browser, page: BrowserResponse, user: { email: string; password: string }): Promise<string> {
  const form = /<form[^>]*action="([^"]*)"/i.exec(page.body);
  assert.ok(form, `login form at ${page.url}: ${page.body.slice(0, 200)}`);
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
  throw new Error(`did not reach the callback: ${r.status} ${r.url}`);
}

function assertStartAgain(r: { status: number; body: string }, what: string): void {
  assert.equal(r.status, 400, `${what}: want the 400 start-again page, got ${r.status}: ${r.body.slice(0, 200)}`);
  assert.match(r.body, START_AGAIN, what);
  assert.match(r.body, /Start again/, what);
}

test('real Dex: an unknown or expired code at the callback gives the 400 start-again page', async (t) => {
  const stack = await startAuthStack(t, { idp: 'dex' });
  if (!stack) return;
  const b = new Browser();
  const first = await b.request(`${stack.gateway.url}/notebooks/`);
  assert.equal(first.status, 302);
  const state = new URL(first.headers.get('location')!).searchParams.get('state');
  assert.ok(state);
  // The state cookie vouches for this state; Dex no longer (or never) knew the code.
  const r = await b.request(`${stack.gateway.url}/authservice/oidc/callback?code=expired-or-unknown-code&state=${encodeURIComponent(state)}`);
  assertStartAgain(r, 'unknown code');
  assert.equal(b.cookie('authservice_session'), undefined);
});

test('real Dex: a used code replayed to another replica gives the 400 start-again page', async (t) => {
  const one = await startAuthStack(t, { idp: 'dex' });
  if (!one) return;
  // A second replica with its own in-memory store: its replay guard has not seen the state.
  const two = await startAuthStack(t, { shareIdpWith: one });
  assert.ok(two);
  const b = new Browser();
  const page = await b.navigate(`${one.gateway.url}/notebooks/`);
  const stateCookies = b.jar.filter((c) => c.name.startsWith('authservice_login_')).map((c) => `${c.name}=${c.value}`);
  assert.equal(stateCookies.length, 1);
  const callback = await loginUntilCallback(b, page, one.users[0]!);
  const ok = await b.navigate(callback);
  assert.equal(ok.status, 200, 'first use logs in');

  const u = new URL(callback);
  const replay = await rawRequest(two.authservice, `${u.pathname}${u.search}`, {
    headers: { cookie: stateCookies.join('; '), accept: 'text/html', host: u.host, 'x-forwarded-proto': 'http', 'x-forwarded-host': u.host },
  });
  assertStartAgain(replay, 'replayed code');
  assert.ok(!String(replay.headers['set-cookie'] ?? '').includes('authservice_session=ey'), 'no session from a replay');
});

test("real Dex: a code injected into someone else's login (nonce mismatch) gives the 400 page and no session", async (t) => {
  const stack = await startAuthStack(t, { idp: 'dex' });
  if (!stack) return;
  // The attacker logs in and keeps the code Dex sends back, without delivering it.
  const attacker = new Browser();
  const attackerPage = await attacker.navigate(`${stack.gateway.url}/`);
  const attackerCallback = new URL(await loginUntilCallback(attacker, attackerPage, stack.users[0]!));
  const code = attackerCallback.searchParams.get('code');
  assert.ok(code);
  // The victim has a login in progress; the attacker's code is put under the victim's own state.
  const victim = new Browser();
  const first = await victim.request(`${stack.gateway.url}/pipelines/`);
  assert.equal(first.status, 302);
  const state = new URL(first.headers.get('location')!).searchParams.get('state')!;
  const r = await victim.request(`${stack.gateway.url}/authservice/oidc/callback?code=${encodeURIComponent(code)}&state=${encodeURIComponent(state)}`);
  assertStartAgain(r, 'injected code');
  assert.equal(victim.cookie('authservice_session'), undefined, 'the victim is not logged in as the attacker');
});
