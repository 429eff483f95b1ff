/**
 * Threat: session fixation. An attacker plants a session cookie in the victim's browser before
 * the victim logs in; login must issue a brand-new session id and end the planted one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifySessionCookie } from '../../authservice/cookies.ts';
import { Browser, browseAndLogin, startAuthStack } from '../helpers/authservice-harness.ts';

test('every login gets a fresh session id, even for the same user', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { keys } = stack.app.authservice;
  const sids = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const b = new Browser();
    await browseAndLogin(b, `${stack.gateway.url}/`, stack.users[0]!);
    sids.add((await verifySessionCookie(keys.session, b.cookie('authservice_session')))!.sid);
  }
  assert.equal(sids.size, 3);
  for (const sid of sids) assert.ok(sid.length >= 43, 'at least 256 bits of randomness');
});

test('a planted cookie whose session is valid is ended when the victim completes a login', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { keys, store } = stack.app.authservice;
  const first = new Browser();
  await browseAndLogin(first, `${stack.gateway.url}/`, stack.users[0]!);
  const oldCookie = first.cookie('authservice_session')!;
  const oldSid = (await verifySessionCookie(keys.session, oldCookie))!.sid;
  // Same browser logs in again (e.g. a second tab started a login): the old id must die.
  const page = await first.navigate(`${stack.gateway.url}/authservice/oidc/callback?code=x&state=y`); // 400, harmless
  assert.equal(page.status, 400);
  const loginStart = await fetch(`${stack.authservice}/`, { headers: { accept: 'text/html', 'x-forwarded-host': new URL(stack.gateway.url).host, 'x-forwarded-proto': 'http' }, redirect: 'manual' });
  const stateCookie = loginStart.headers.getSetCookie()[0]!;
  first.store(new URL(stack.gateway.url), stateCookie);
  const { submitIdpLogin } = await import('../helpers/authservice-harness.ts');
  const idpPage = await first.navigate(loginStart.headers.get('location')!);
  const done = await submitIdpLogin(first, idpPage, stack.users[0]!.email, stack.users[0]!.password);
  assert.equal(done.status, 200);
  const newSid = (await verifySessionCookie(keys.session, first.cookie('authservice_session')))!.sid;
  assert.notEqual(newSid, oldSid);
  assert.equal(await store.get(oldSid), undefined, 'old session deleted');
  const r = await fetch(`${stack.authservice}/x`, { headers: { cookie: `authservice_session=${oldCookie}`, accept: 'application/json' } });
  assert.equal(r.status, 401, 'old cookie no longer works');
});
