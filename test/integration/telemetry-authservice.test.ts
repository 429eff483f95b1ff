/**
 * The authservice's own metrics at /metrics: a real login through the dev IdP counts one login
 * and timed session-store calls; a replayed callback counts a failure with its reason; checks
 * are counted by result; /metrics is not served to forwarded (public) check requests.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Browser, browseAndLogin, startAuthStack } from '../helpers/authservice-harness.ts';
import { parseProm } from './telemetry-helper.ts';

test('authservice /metrics counts logins, failures by reason, checks and store latency', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const browser = new Browser();
  const user = stack.users[0]!;
  const page = await browseAndLogin(browser, `${stack.gateway.url}/app`, user);
  assert.equal(page.status, 200);

  // A forged callback (no login-state cookie) is a login failure with a stable reason.
  const bad = await fetch(`${stack.gateway.url}/authservice/oidc/callback?state=abc&code=def`, { redirect: 'manual', headers: { accept: 'application/json' } });
  await bad.text();
  assert.equal(bad.status, 400);

  const res = await fetch(`${stack.health}/metrics`); // the probe port, never the check port
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const samples = parseProm(await res.text());
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  assert.equal(value('portico_authservice_logins_total'), 1);
  assert.equal(value('portico_authservice_login_failures_total', { reason: 'login_state' }), 1);
  assert.ok((value('portico_authservice_checks_total', { result: 'allow' }) ?? 0) >= 1);
  assert.ok((value('portico_authservice_checks_total', { result: 'deny' }) ?? 0) >= 1, 'the first unauthenticated request was denied');
  assert.ok((value('portico_authservice_session_store_duration_seconds_count', { operation: 'set' }) ?? 0) >= 1);
  assert.equal(value('portico_authservice_session_store_errors_total', { operation: 'get' }), 0);

  // Through the gateway (a check request) /metrics is an ordinary protected path; so is the check port itself.
  const onCheckPort = await fetch(`${stack.authservice}/metrics`, { redirect: 'manual' });
  await onCheckPort.text();
  assert.notEqual(onCheckPort.status, 200, 'the check port never serves the numbers');
  const viaGateway = await fetch(`${stack.gateway.url}/metrics`, { redirect: 'manual' });
  await viaGateway.text();
  assert.equal(viaGateway.status, 302, 'anonymous /metrics through the gateway goes to login, not to the numbers');
});
