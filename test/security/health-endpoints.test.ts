/**
 * Threat: an app's /healthz, /readyz or /metrics let through without login because the check
 * port answered them as the authservice's own probes. Kubeflow's authn-filter forwards only
 * `authorization`, `cookie` and `x-auth-token`, so a check for an app's `/healthz` cannot be told
 * apart from a kubelet probe by its headers. The probes live on their own port
 * (READINESS_PROBE_PORT); on the check port every path is an app path.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rawRequest, startAuthStack } from '../helpers/authservice-harness.ts';

const PROBES = ['/healthz', '/readyz', '/metrics', '/healthz?x=1'];

test('on the check port, /healthz, /readyz and /metrics are protected app paths, with or without forwarded headers', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  const asKubeflowFilter = { host: 'kf.example.com', cookie: 'other=1' }; // what Kubeflow's filter as written lets through
  for (const path of PROBES) {
    for (const [what, headers] of Object.entries(<Record<string, Record<string, string>>>{ 'no headers (kubelet-like)': {}, "Kubeflow's filter": asKubeflowFilter, 'forwarded': { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf.example.com' } })) {
      const r = await rawRequest(stack.authservice, path, { headers });
      assert.ok(r.status === 302 || r.status === 401, `${path} (${what}): want a denial, got ${r.status}`);
      assert.equal(r.headers['kubeflow-userid'], undefined);
    }
  }
});

test('the probe port answers /healthz, /readyz and /metrics, and nothing else', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  assert.notEqual(stack.health, stack.authservice);
  const healthz = await fetch(`${stack.health}/healthz`);
  assert.equal(healthz.status, 200);
  assert.deepEqual(await healthz.json(), { status: 'ok' });
  const readyz = await fetch(`${stack.health}/readyz`);
  assert.equal(readyz.status, 200);
  assert.deepEqual(await readyz.json(), { status: 'ready', oidc: true, store: true });
  const metrics = await fetch(`${stack.health}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /portico_authservice_checks_total/);
  const other = await fetch(`${stack.health}/anything`);
  assert.equal(other.status, 404);
  await other.arrayBuffer();
  const post = await fetch(`${stack.health}/healthz`, { method: 'POST' });
  assert.equal(post.status, 405);
  await post.arrayBuffer();
});
