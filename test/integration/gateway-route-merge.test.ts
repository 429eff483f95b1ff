/**
 * Istio's route semantics at a gateway: VirtualServices bound to one host are concatenated and
 * catch-all routes move last (pilot's SortVHostRoutes); each `match[]` entry is its own Envoy
 * route, so a rewrite is computed from the entry that fired.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { freePort } from '../helpers/net.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startEcho, type Echo } from '../helpers/upstream.ts';

/** One gateway, one backend Service per name, each served by its own echo upstream. */
async function setup(t: TestContext, names: string[], virtualServices: string): Promise<number> {
  const port = await freePort();
  const docs: string[] = [
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: kubeflow-gateway, namespace: kubeflow}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]`,
  ];
  for (const n of names) {
    const up = await startEcho(t, n);
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${n}, namespace: kubeflow}
spec:
  hosts: [${n}.kubeflow.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${up.port}}}]`);
  }
  await startGateway(t, `${docs.join('\n---\n')}\n---\n${virtualServices}`);
  return port;
}

async function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Echo> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'kubeflow.example.com', ...headers } });
  assert.equal(res.statusCode, 200, `${path}: ${res.statusCode}`);
  return (await res.body.json()) as Echo;
}

// The shapes Kubeflow ships: the central dashboard takes `/`, every app its own prefix, each in
// its own VirtualService bound to the same gateway and host.
const KUBEFLOW_VS = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: centraldashboard
  namespace: kubeflow
spec:
  gateways:
  - kubeflow-gateway
  hosts:
  - '*'
  http:
  - match:
    - uri:
        prefix: /
    rewrite:
      uri: /
    route:
    - destination:
        host: centraldashboard.kubeflow.svc.cluster.local
        port:
          number: 80
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: jupyter-web-app-jupyter-web-app
  namespace: kubeflow
spec:
  gateways:
  - kubeflow/kubeflow-gateway
  hosts:
  - '*'
  http:
  - headers:
      request:
        add:
          x-forwarded-prefix: /jupyter
    match:
    - uri:
        prefix: /jupyter/
    rewrite:
      uri: /
    route:
    - destination:
        host: jupyter-web-app-service.kubeflow.svc.cluster.local
        port:
          number: 80
`;

test('Kubeflow: the central dashboard\'s prefix / does not hide the apps\' VirtualServices', async (t) => {
  const port = await setup(t, ['centraldashboard', 'jupyter-web-app-service'], KUBEFLOW_VS);
  const app = await get(port, '/jupyter/api/namespaces');
  assert.equal(app.name, 'jupyter-web-app-service');
  assert.equal(app.url, '/api/namespaces', 'prefix /jupyter/ rewritten to /');
  assert.equal(app.headers['x-forwarded-prefix'], '/jupyter');
  assert.equal((await get(port, '/')).name, 'centraldashboard');
  assert.equal((await get(port, '/pipeline/')).name, 'centraldashboard');
});

test('a catch-all route written first in one VirtualService is still tried last (as Istio)', async (t) => {
  const port = await setup(
    t,
    ['a', 'b'],
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: one, namespace: kubeflow}
spec:
  gateways: [kubeflow-gateway]
  hosts: ["*"]
  http:
  - route: [{destination: {host: a}}]
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: b}}]
`,
  );
  assert.equal((await get(port, '/b/x')).name, 'b');
  assert.equal((await get(port, '/other')).name, 'a');
});

test('a catch-all with a header condition is not a catch-all: it keeps its place', async (t) => {
  const port = await setup(
    t,
    ['a', 'b'],
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: one, namespace: kubeflow}
spec:
  gateways: [kubeflow-gateway]
  hosts: ["*"]
  http:
  - match: [{uri: {prefix: /}, headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: a}}]
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: b}}]
`,
  );
  assert.equal((await get(port, '/x', { 'x-canary': '1' })).name, 'a');
  assert.equal((await get(port, '/x')).name, 'b');
});

test('rewrite.uri is applied for the match entry that fired (Envoy prefix_rewrite per route)', async (t) => {
  const port = await setup(
    t,
    ['a'],
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: rw, namespace: kubeflow}
spec:
  gateways: [kubeflow-gateway]
  hosts: ["*"]
  http:
  - match:
    - uri: {prefix: /a}
      headers: {x: {exact: "1"}}
    - uri: {prefix: /}
    - uri: {exact: /exact/path}
    rewrite: {uri: /rewritten}
    route: [{destination: {host: a}}]
`,
  );
  assert.equal((await get(port, '/a/foo', { x: '1' })).url, '/rewritten/foo', 'first entry: prefix /a replaced');
  assert.equal((await get(port, '/a/foo')).url, '/rewrittena/foo', 'second entry: prefix / replaced, as Envoy');
  assert.equal((await get(port, '/exact/path?q=1')).url, '/rewritten?q=1', 'exact match: the whole path replaced, query kept');
});

test('exportTo: a VirtualService not exported to the gateway\'s namespace is not served there', async (t) => {
  const port = await setup(
    t,
    ['a', 'b'],
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: kubeflow}
spec:
  exportTo: ["."]
  gateways: [kubeflow-gateway]
  hosts: ["*"]
  http:
  - match: [{uri: {prefix: /private}}]
    route: [{destination: {host: a}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shared, namespace: kubeflow}
spec:
  exportTo: [istio-system]
  gateways: [kubeflow-gateway]
  hosts: ["*"]
  http:
  - match: [{uri: {prefix: /shared}}]
    route: [{destination: {host: b}}]
`,
  );
  // The gateway runs in istio-system (its --namespace default), as Istio's ingress gateway does.
  const hidden = await request(`http://127.0.0.1:${port}/private/x`, { headers: { host: 'kubeflow.example.com' } });
  assert.equal(hidden.statusCode, 404);
  await hidden.body.text();
  assert.equal((await get(port, '/shared/x')).name, 'b');
});

test('delegate: a root rule hands its prefix to a delegate VirtualService, merged as Istio merges them', async (t) => {
  const port = await setup(
    t,
    ['a', 'b', 'c'],
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: kubeflow}
spec:
  gateways: [kubeflow-gateway]
  hosts: ["*"]
  http:
  - match: [{uri: {prefix: /productpage}}]
    rewrite: {uri: /pp}
    delegate: {name: productpage, namespace: team}
  - route: [{destination: {host: c}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: team}
spec:
  http:
  - match: [{uri: {prefix: /productpage/v1/}}]
    route: [{destination: {host: a.kubeflow.svc.cluster.local}}]
  - match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: b.kubeflow.svc.cluster.local}}]
  - route: [{destination: {host: b.kubeflow.svc.cluster.local}}]
`,
  );
  const v1 = await get(port, '/productpage/v1/x');
  assert.equal(v1.name, 'a', 'the delegate\'s narrower match');
  // The root's rewrite is inherited and, as Envoy's prefix_rewrite, replaces the merged route's
  // own matched prefix (/productpage/v1/).
  assert.equal(v1.url, '/ppx', 'the root\'s rewrite, inherited');
  assert.equal((await get(port, '/productpage/other')).name, 'b', 'the delegate rule without match takes the root\'s');
  assert.equal((await get(port, '/elsewhere')).name, 'c', 'a delegate match outside the root\'s prefix is left out');
});
