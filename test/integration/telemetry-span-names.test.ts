/**
 * Span names and labels as Istio gives them (pilot's getRouteOperation): `host:port/path` for an
 * exact uri, `host:port/prefix*` for a prefix, `<VirtualService>:<port><path>` when a route
 * splits over several destinations; which `match[]` entry fired decides the name. A fault-aborted
 * request is labelled (metrics) and named (span) with the route's cluster, not "unknown". The
 * Jaeger API's `processes[].tags` carry `hostname` and `ip`, as Jaeger clients report them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';
import { parseProm } from './telemetry-helper.ts';

interface JaegerTrace {
  spans: { operationName: string; processID: string; tags: { key: string; value: unknown }[] }[];
  processes: Record<string, { serviceName: string; tags: { key: string; type: string; value: unknown }[] }>;
}

test('span names follow getRouteOperation; fault aborts carry the route cluster; Jaeger processes carry ip', async (t) => {
  const v1 = await startEcho(t, 'productpage-v1');
  const v2 = await startEcho(t, 'productpage-v2');
  const port = await freePort();
  const tel = createTelemetry({ tracing: { sampling: 100 }, ip: '10.1.2.3' });
  t.after(() => tel.close());
  const runtime = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}, {uri: {prefix: /static}}, {uri: {regex: "/api/v[0-9]+/.*"}}]
    route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}, subset: v1}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}, subset: v1}, weight: 50}
    - {destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}, subset: v2}, weight: 50}
  - match: [{uri: {prefix: /ratings}}]
    fault: {abort: {percentage: {value: 100}, httpStatus: 555}}
    route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}, subset: v2}}]
  - route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: productpage.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: ${v1.port}}, labels: {app: productpage, version: v1}, serviceAccount: bookinfo-productpage}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v2, namespace: default}
spec: {address: 127.0.0.1, ports: {http: ${v2.port}}, labels: {app: productpage, version: v2}, serviceAccount: bookinfo-productpage}
`,
    { telemetry: tel },
  );
  tel.attach(runtime);
  const { port: sp } = await tel.listen(0);

  const host = 'productpage.default.svc.cluster.local:9080';
  const cases: [string, string, number][] = [
    ['/productpage', `${host}/productpage`, 200],
    ['/static/app.css', `${host}/static*`, 200],
    ['/api/v1/products', `${host}/api/v[0-9]+/.*`, 200],
    ['/split/x', `bookinfo:${port}/split*`, 200],
    ['/ratings/1', `${host}/ratings*`, 555],
    ['/other', `${host}/*`, 200],
  ];
  for (const [path, , status] of cases) {
    const r = await request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'bookinfo.example.com' } });
    await r.body.text();
    assert.equal(r.statusCode, status, path);
  }

  const ops = (await (await request(`http://127.0.0.1:${sp}/api/services/istio-ingressgateway.istio-system/operations`)).body.json()) as { data: string[] };
  assert.deepEqual(ops.data.sort(), cases.map(([, op]) => op).sort());

  const traces = (await (await request(`http://127.0.0.1:${sp}/api/traces?service=istio-ingressgateway.istio-system`)).body.json()) as { data: JaegerTrace[] };
  const t0 = traces.data[0]!;
  const proc = t0.processes[t0.spans[0]!.processID]!;
  assert.deepEqual(proc.tags.find((x) => x.key === 'ip'), { key: 'ip', type: 'string', value: '10.1.2.3' });
  assert.ok(proc.tags.some((x) => x.key === 'hostname' && typeof x.value === 'string' && x.value.length > 0), JSON.stringify(proc.tags));

  // The aborted request: its span names the route's cluster, its metrics the route's destination.
  const aborted = traces.data.flatMap((d) => d.spans).find((s) => s.tags.some((x) => x.key === 'http.status_code' && x.value === 555))!;
  assert.equal(aborted.tags.find((x) => x.key === 'upstream_cluster')?.value, 'outbound|9080|v2|productpage.default.svc.cluster.local');
  const metrics = parseProm(await (await request(`http://127.0.0.1:${sp}/stats/prometheus`)).body.text());
  const fi = metrics.filter((s) => s.name === 'istio_requests_total' && s.labels.response_flags === 'FI');
  assert.equal(fi.length, 1);
  assert.equal(fi[0]!.labels.destination_service, 'productpage.default.svc.cluster.local');
  assert.equal(fi[0]!.labels.destination_service_name, 'productpage');
  assert.equal(fi[0]!.labels.destination_version, 'v2', 'the subset picked');
  assert.equal(fi[0]!.labels.response_code, '555');
});
