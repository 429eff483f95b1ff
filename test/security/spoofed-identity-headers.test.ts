/**
 * Threat: a client sends `kubeflow-userid: admin@…` itself. The check endpoint must never echo
 * client-sent identity headers: without a session it denies; with one it sets the real identity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, browseAndLogin, sessionFor, startAuthStack } from '../helpers/authservice-harness.ts';

const spoof = { 'kubeflow-userid': 'admin@example.com', 'kubeflow-groups': 'admins', accept: 'application/json' };

test('without a session, client identity headers are not echoed and the request is denied', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const r = await fetch(`${stack.authservice}/pipelines/`, { headers: spoof });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('kubeflow-userid'), null);
  assert.equal(r.headers.get('kubeflow-groups'), null);
  const browser = await fetch(`${stack.authservice}/pipelines/`, { headers: { ...spoof, accept: 'text/html' }, redirect: 'manual' });
  assert.equal(browser.status, 302);
  assert.equal(browser.headers.get('kubeflow-userid'), null);
});

test('with a session, the identity comes from the session, never from the request', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com', groups: ['ml-team'] });
  const r = await fetch(`${stack.authservice}/pipelines/`, { headers: { ...spoof, cookie } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('kubeflow-userid'), 'jason@example.com');
  assert.equal(r.headers.get('kubeflow-groups'), 'ml-team');
  // End to end through the gateway stand-in (which forwards the spoofed headers to the check on purpose).
  const b = new Browser();
  await browseAndLogin(b, `${stack.gateway.url}/`, stack.users[0]!);
  const page = await b.request(`${stack.gateway.url}/x`, { headers: spoof });
  assert.equal((JSON.parse(page.body) as { userid: string }).userid, stack.users[0]!.email);
});

test('skip-auth paths allow without any identity header, even when the client sent one', async (t) => {
  const stack = await startAuthStack(t, { env: { SKIP_AUTH_URLS: '/public/' } });
  if (!stack) return;
  const r = await fetch(`${stack.authservice}/public/logo.svg`, { headers: spoof });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('kubeflow-userid'), null);
});
