/**
 * Threat: `SKIP_AUTH_URLS=/dex` (Kubeflow's value) letting the bare `/dex` — which Kubeflow's Dex
 * route (`prefix: /dex/`) does not match — through unauthenticated to the next route, the central
 * dashboard's catch-all `prefix: /`. Through Portico's gateway with the Kubeflow example and
 * real Dex: Dex's own pages (`/dex/…`) pass without a session, `/dex`, `/dex?x=1`, `/dexter`
 * are checked like any other page.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rawRequest } from '../helpers/authservice-harness.ts';
import { startKubeflowStack } from '../helpers/stack.ts';

/** Kubeflow's centraldashboard VirtualService shape (catch-all), pointed at httpbin's echo. */
const CATCH_ALL = `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: centraldashboard
  namespace: kubeflow
spec:
  gateways:
  - kubeflow/kubeflow-gateway
  hosts:
  - "*"
  http:
  - match:
    - uri:
        prefix: /
    rewrite:
      uri: /anything/
    route:
    - destination:
        host: httpbin.kubeflow.svc.cluster.local
        port:
          number: 8000
`;

for (const [form, fastPath] of [['envoy-filter', undefined], ['istio-custom', undefined], ['envoy-filter', { ttl: 30 }]] as const) {
  test(`SKIP_AUTH_URLS=/dex (${form}${fastPath ? ', session fast path' : ''}): /dex/… reaches Dex without a session; the bare /dex does not reach the catch-all app`, async (t) => {
    const stack = await startKubeflowStack(t, { form, idp: 'dex', extraConfig: { 'centraldashboard.yaml': CATCH_ALL }, ...(fastPath ? { fastPath } : {}) });
    if (!stack) return;
    assert.equal(stack.env.SKIP_AUTH_URLS, '/dex');
    const page = { accept: 'text/html' };
    const discovery = await rawRequest(stack.http, '/dex/.well-known/openid-configuration');
    assert.equal(discovery.status, 200, 'Dex is reachable through the gateway without a session');
    assert.match(discovery.body, /"issuer"/);
    const app = await rawRequest(stack.http, '/notebooks/', { headers: page });
    assert.equal(app.status, 302, 'the catch-all app needs a login');
    for (const path of ['/dex', '/dex?x=1', '/dex?/dex/', '/dexter', '/dex/../notebooks']) {
      const r = await rawRequest(stack.http, path, { headers: page });
      assert.equal(r.status, 302, `${path} must be checked (got ${r.status}: ${r.body.slice(0, 120)})`);
      assert.match(String(r.headers.location), /\/dex\/auth\?/, `${path}: sent to the login`);
    }
  });
}
