/**
 * Threat: path confusion between the gateway and the authservice. If the gateway and the
 * authservice normalise a path differently, a request can be judged as one path (a
 * SKIP_AUTH_URLS prefix) and routed as another: before lib/path.ts the gateway merged `//` and
 * decoded `%2F` while the authservice did not, so `/public/..%2Fadmin` was `/admin` to one and under
 * `/public/` to the other.
 *
 * Portico's real gateway (Kubeflow's ext_authz EnvoyFilter) in front of Portico's real
 * authservice, in each MeshConfig `pathNormalization` mode (the authservice given the same mode via
 * PORTICO_PATH_NORMALIZATION): for every tricky path, the gateway's decision equals the
 * authservice's own decision on the raw path, an unauthenticated request only ever reaches the app
 * under `/public/`, and the path the app receives is the mode's normal form (Istio's table).
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { test } from 'node:test';
import { normalizePath, type PathNormalization } from '../../lib/path.ts';
import { rawRequest, startAuthStack } from '../helpers/authservice-harness.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

const TRICKS = [
  '/public/x',
  '/public/..%2Fadmin',
  '/public/..%2fadmin',
  '/public%2F..%2Fadmin',
  '/public/..%5Cadmin',
  '/public/%2e%2e/admin',
  '/public/.%2E/admin',
  '/public\\..\\admin',
  '/public//..//admin',
  '/public/x/..//..//admin',
  '//public/x',
  '/public//x',
  '/admin/..%2F..%2Fpublic/x',
  '/admin%2F..%2Fpublic/x',
  '/public/x?y=/admin',
];

function config(port: number, app: number, authservice: number, mode: PathNormalization): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    pathNormalization:
      normalization: ${mode}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: kubeflow-gateway, namespace: kubeflow}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: kubeflow}
spec:
  hosts: ["*"]
  gateways: [kubeflow/kubeflow-gateway]
  http:
  - route: [{destination: {host: app.kubeflow.svc.cluster.local, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: kubeflow}
spec:
  hosts: [app.kubeflow.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: authservice, namespace: istio-system}
spec:
  hosts: [authservice.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${authservice}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: authn-filter, namespace: istio-system}
spec:
  workloadSelector:
    labels: {istio: ingressgateway}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.ext_authz
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri:
              uri: http://authservice.istio-system.svc.cluster.local
              cluster: outbound|8080||authservice.istio-system.svc.cluster.local
              timeout: 10s
            authorization_request:
              allowed_headers:
                patterns: [{exact: cookie}, {exact: accept}]
            authorization_response:
              allowed_upstream_headers:
                patterns: [{exact: kubeflow-userid}]
`;
}

/** GET with the request target sent byte for byte (no client-side URL normalisation). */
function rawGet(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host: 'kf.example.com', accept: 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

function underPublic(path: string): boolean {
  const p = path.split('?')[0]!;
  return p === '/public' || p.startsWith('/public/');
}

for (const mode of ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
  test(`${mode}: gateway and authservice judge and route one path`, async (t) => {
    const stack = await startAuthStack(t, { env: { SKIP_AUTH_URLS: '/public/', PORTICO_PATH_NORMALIZATION: mode } });
    if (!stack) return;
    const app = await startEcho(t, 'app');
    const port = await freePort();
    await startGateway(t, config(port, app.port, Number(new URL(stack.authservice).port), mode));

    for (const path of TRICKS) {
      const direct: number = (await rawRequest(stack.authservice, path, { headers: { accept: 'application/json' } })).status;
      const before = app.seen.length;
      const via = await rawGet(port, path);
      const reached = app.seen.slice(before);
      assert.equal(via === 200, direct === 200, `${mode} ${path}: gateway says ${via}, authservice alone says ${direct}`);
      if (via !== 200) {
        assert.equal(reached.length, 0, `${mode} ${path}: denied, yet the app saw it`);
        continue;
      }
      assert.equal(reached.length, 1, `${mode} ${path}`);
      const seen = reached[0]!.url;
      assert.ok(underPublic(seen), `${mode} ${path}: reached the app unauthenticated as ${seen}`);
      const [p, q] = path.split('?');
      assert.equal(seen, normalizePath(p!, mode) + (q === undefined ? '' : `?${q}`), `${mode} ${path}: the app gets the routed path`);
    }
  });
}

test('the issue case, per mode: /public/..%2Fadmin is /admin only when %2F is decoded', async (t) => {
  for (const [mode, want] of [
    ['BASE', 200],
    ['DECODE_AND_MERGE_SLASHES', 401],
  ] as const) {
    const stack = await startAuthStack(t, { env: { SKIP_AUTH_URLS: '/public/', PORTICO_PATH_NORMALIZATION: mode } });
    if (!stack) return;
    const app = await startEcho(t, `app-${mode}`);
    const port = await freePort();
    await startGateway(t, config(port, app.port, Number(new URL(stack.authservice).port), mode));
    assert.equal(await rawGet(port, '/public/..%2Fadmin'), want, mode);
    if (want === 200) assert.equal(app.seen.at(-1)?.url, '/public/..%2Fadmin', 'BASE forwards %2F encoded, as Istio does');
    assert.equal(await rawGet(port, '/public//x'), 200);
    assert.equal(app.seen.at(-1)?.url, mode === 'BASE' ? '/public//x' : '/public/x', 'slashes merged only when the mesh says so');
  }
});
