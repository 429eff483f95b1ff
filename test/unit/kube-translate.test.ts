/**
 * kube/translate.ts and kube/source.ts's build, without an API server: API objects compile to the
 * same snapshot as the same YAML from files (Istio kinds, and Services + EndpointSlices + Pods as
 * the registry), and an invalid object is left out and reported while the rest compiles.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { buildSnapshotFromText } from '../../config/index.ts';
import type { KubeObject } from '../../kube/reflector.ts';
import { buildFromResources, loadObjects } from '../../kube/source.ts';
import { formatKubeIssue } from '../../kube/translate.ts';

const ISTIO_YAML = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web.shop.svc.cluster.local, port: {number: 80}}, weight: 75}, {destination: {host: web.shop.svc.cluster.local, port: {number: 80}}, weight: 25}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  endpoints: [{address: 10.244.0.10, ports: {http: 8080}}]
`;

/** What the API server returns for those documents (server-set metadata included). */
function asApiObjects(yaml: string): KubeObject[] {
  return parseAllDocuments(yaml).map((d, i) => {
    const o = d.toJS() as KubeObject;
    o.metadata = { ...o.metadata, uid: `uid-${i}`, resourceVersion: String(100 + i), generation: 1, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } };
    (o as Record<string, unknown>).status = {};
    return o;
  });
}

/** A snapshot without the `source` file:line refs (which say where each object came from). */
function withoutSources(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutSources);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'source' && k !== 'version' && k !== 'sources').map(([k, x]) => [k, withoutSources(x)]));
  }
  return v;
}

test('API objects and the same YAML from a file compile to the same snapshot', async () => {
  const fromFile = await buildSnapshotFromText(ISTIO_YAML, 'shop.yaml');
  assert.ok(fromFile.ok, JSON.stringify(!fromFile.ok && fromFile.issues));
  const dir = mkdtempSync(join(tmpdir(), 'portico-kube-unit-'));
  try {
    const b = await buildFromResources(loadObjects({ istio: asApiObjects(ISTIO_YAML), services: [], slices: [], pods: new Map() }), { secretsDir: dir });
    assert.equal(b.rejected.size, 0, [...b.rejected.values()].flat().map(formatKubeIssue).join('\n'));
    assert.ok(b.snapshot);
    assert.deepEqual(withoutSources(b.snapshot), withoutSources(fromFile.snapshot));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const REGISTRY_YAML = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http-web, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http-web, port: 8080}]
endpoints:
- {addresses: [10.244.0.10], conditions: {ready: true}, targetRef: {kind: Pod, name: web-1, namespace: shop}}
- {addresses: [10.244.0.11], conditions: {ready: false, serving: true, terminating: true}, targetRef: {kind: Pod, name: web-2, namespace: shop}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web, version: v1}}
spec: {serviceAccountName: web-sa}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web, version: v2}}
spec: {serviceAccountName: web-sa}
`;

test('Services, EndpointSlices and Pods from the API compile to the same registry as the same YAML from a file', async () => {
  const yaml = `${ISTIO_YAML.slice(0, ISTIO_YAML.indexOf('---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry'))}---\n${REGISTRY_YAML}`;
  const fromFile = await buildSnapshotFromText(yaml, 'shop.yaml');
  assert.ok(fromFile.ok, JSON.stringify(!fromFile.ok && fromFile.issues));
  const objs = asApiObjects(yaml);
  // What the API server returns has much more in a Pod; only labels and the service account matter.
  for (const o of objs) if (o.kind === 'Pod') (o.spec as Record<string, unknown>).containers = [{ name: 'c', image: 'x' }];
  const pods = new Map(objs.filter((o) => o.kind === 'Pod').map((o) => [`${o.metadata.namespace}/${o.metadata.name}`, o]));
  const dir = mkdtempSync(join(tmpdir(), 'portico-kube-unit-'));
  try {
    const b = await buildFromResources(
      loadObjects({
        istio: objs.filter((o) => String(o.apiVersion).includes('istio.io')),
        services: objs.filter((o) => o.kind === 'Service'),
        slices: objs.filter((o) => o.kind === 'EndpointSlice'),
        pods,
      }),
      { secretsDir: dir },
    );
    assert.equal(b.rejected.size, 0, [...b.rejected.values()].flat().map(formatKubeIssue).join('\n'));
    assert.ok(b.snapshot);
    assert.deepEqual(withoutSources(b.snapshot), withoutSources(fromFile.snapshot));
    const eps = JSON.stringify(b.snapshot.clusters);
    assert.ok(eps.includes('10.244.0.10') && eps.includes('web-sa'), 'the ready endpoint with its pod\'s service account');
    assert.ok(!eps.includes('10.244.0.11'), 'the terminating endpoint gets no new requests');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an invalid object is left out and reported as Kind/ns/name: path: message; the rest compiles', async () => {
  const objs = asApiObjects(ISTIO_YAML);
  const bad = asApiObjects(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: shop}
spec:
  hosts: [broken.example.com]
  gateways: [edge]
  http:
  - route: [{destination: {host: web.shop.svc.cluster.local}, weight: -1}]
`);
  const dir = mkdtempSync(join(tmpdir(), 'portico-kube-unit-'));
  try {
    const b = await buildFromResources(loadObjects({ istio: [...objs, ...bad], services: [], slices: [], pods: new Map() }), { secretsDir: dir });
    assert.ok(b.snapshot, 'the rest still compiles');
    assert.deepEqual([...b.rejected.keys()], ['VirtualService/shop/broken']);
    const lines = b.rejected.get('VirtualService/shop/broken')!.map(formatKubeIssue);
    assert.match(lines[0], /^VirtualService\/shop\/broken: spec\.http\[0\]\.route\[0\]\.weight: /);
    const hosts = JSON.stringify(b.snapshot.gateways);
    assert.ok(hosts.includes('shop.example.com'));
    assert.ok(!hosts.includes('broken.example.com'), 'the invalid object is not served');
    // A Gateway left out takes the VirtualServices bound to it along (reported too), not the others.
    const badGw = asApiObjects(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 0, name: http, protocol: HTTP}, hosts: ["*"]}]
`);
    const b2 = await buildFromResources(loadObjects({ istio: [...badGw, ...objs.filter((o) => o.kind !== 'Gateway')], services: [], slices: [], pods: new Map() }), { secretsDir: dir });
    assert.ok(b2.rejected.has('Gateway/shop/edge'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
