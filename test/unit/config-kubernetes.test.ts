/**
 * Kubernetes objects in config inputs: a directory of real manifests (Istio's bookinfo shape,
 * Kubeflow kustomize output) loads, Services (+ EndpointSlices, + Pods for labels) become the
 * registry as in a cluster, and other kinds are skipped with one info line each.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildSnapshot, buildSnapshotFromText, ConfigErrorCodes, formatIssue, type BuildResult } from '../../config/index.ts';
import { endpointUsable, kubePortProtocol } from '../../config/kinds/kubernetes.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = join(root, 'test/fixtures/kubernetes');

function ok(r: BuildResult): Extract<BuildResult, { ok: true }> {
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i, root)).join('\n'));
  return r;
}

test('bookinfo manifests (Services + Deployments + EndpointSlices + Pods) validate and become the registry', async () => {
  const r = ok(await buildSnapshot([join(fixtures, 'bookinfo')], { cwd: root }));
  assert.deepEqual(r.warnings.map((w) => formatIssue(w, root)), []);
  // One info line per skipped object: the ServiceAccount and the three Deployments.
  assert.deepEqual(
    (r.infos ?? []).map((i) => `${i.kind}/${i.name}`),
    ['ServiceAccount/bookinfo-details', 'Deployment/details-v1', 'Deployment/reviews-v1', 'Deployment/productpage-v1'],
  );
  for (const i of r.infos ?? []) assert.equal(i.code, ConfigErrorCodes.SKIPPED_KIND);

  const svc = (host: string) => r.snapshot.services.find((s) => s.host === host);
  const reviews = svc('reviews.default.svc.cluster.local');
  assert.ok(reviews, r.snapshot.services.map((s) => s.host).join(', '));
  assert.equal(reviews.resolution, 'STATIC');
  assert.equal(reviews.location, 'MESH_INTERNAL');
  assert.deepEqual(reviews.ports, [{ number: 9080, name: 'http', protocol: 'HTTP' }]);
  // Not ready (.13) and terminating (.14) endpoints are not sent, as Istio does.
  assert.deepEqual(reviews.endpoints.map((e) => [e.address, e.port, e.labels.version, e.serviceAccount, e.locality]), [
    ['10.244.0.11', 9080, 'v1', 'bookinfo-reviews', 'zone-a'],
    ['10.244.0.12', 9080, 'v2', 'bookinfo-reviews', undefined],
  ]);
  // No EndpointSlice for productpage: it resolves by its cluster DNS name (the ClusterIP in a cluster).
  assert.equal(svc('productpage.default.svc.cluster.local')?.resolution, 'DNS');

  // DestinationRule subsets pick endpoints by the Pods' labels.
  const cluster = (name: string) => r.snapshot.clusters.find((c) => c.name === name);
  assert.deepEqual(cluster('outbound|9080|v1|reviews.default.svc.cluster.local')?.endpoints.map((e) => e.address), ['10.244.0.11']);
  assert.deepEqual(cluster('outbound|9080|v2|reviews.default.svc.cluster.local')?.endpoints.map((e) => e.address), ['10.244.0.12']);
  assert.equal(cluster('outbound|9080||productpage.default.svc.cluster.local')?.resolution, 'DNS');
});

test('without the EndpointSlices, subsets of a DNS-resolved Service are a warning (labels cannot pick endpoints)', async () => {
  const r = ok(await buildSnapshot([join(fixtures, 'bookinfo/bookinfo.yaml'), join(fixtures, 'bookinfo/bookinfo-gateway.yaml')], { cwd: root }));
  const w = r.warnings.filter((i) => i.code === ConfigErrorCodes.NOT_ENFORCED && i.path.endsWith('.subset'));
  assert.equal(w.length, 2, r.warnings.map((i) => formatIssue(i, root)).join('\n'));
  assert.match(w[0].message, /Service default\/reviews has no EndpointSlice/);
});

test('Kubeflow kustomize output: VirtualServices validate against the Services; CRDs, RBAC, ConfigMaps, Knative Services skipped', async () => {
  const r = ok(await buildSnapshot([join(fixtures, 'kubeflow')], { cwd: root }));
  assert.deepEqual(r.warnings.map((w) => formatIssue(w, root)), []);
  assert.deepEqual(
    (r.infos ?? []).map((i) => i.kind),
    ['ServiceAccount', 'ClusterRole', 'ConfigMap', 'Deployment', 'CustomResourceDefinition', 'Service'],
  );
  assert.match((r.infos ?? [])[5].message, /serving\.knative\.dev\/v1/);
  const cd = r.snapshot.services.find((s) => s.host === 'centraldashboard.kubeflow.svc.cluster.local');
  assert.deepEqual(cd?.ports, [{ number: 80, name: 'http', protocol: 'HTTP', targetPort: 8082 }]);
  // appProtocol wins over the name; the name prefix before '-' picks the protocol otherwise.
  const ui = r.snapshot.services.find((s) => s.host === 'ml-pipeline-ui.kubeflow.svc.cluster.local');
  assert.deepEqual(ui?.ports.map((p) => [p.number, p.protocol]), [[80, 'HTTP2'], [8887, 'GRPC']]);
  // An ExternalName Service is a DNS alias of its externalName, as in Istio.
  const ext = r.snapshot.services.find((s) => s.host === 'minio-external.kubeflow.svc.cluster.local');
  assert.equal(ext?.resolution, 'DNS');
  assert.deepEqual(ext?.endpoints.map((e) => [e.address, e.port]), [['minio.storage.example.com', 9000]]);
  const vh = r.snapshot.gateways.find((g) => g.name === 'kubeflow-gateway')?.ports[0].virtualHosts[0];
  assert.ok(vh?.routes.some((rt) => rt.action.kind === 'route' && rt.action.destinations[0].cluster === 'outbound|8887||ml-pipeline-ui.kubeflow.svc.cluster.local'));
});

test("Istio's port protocol selection (ConvertProtocol)", () => {
  const cases: [Parameters<typeof kubePortProtocol>[0], string | undefined][] = [
    [{ name: 'http', port: 80 }, 'HTTP'],
    [{ name: 'http-web', port: 80 }, 'HTTP'],
    [{ name: 'HTTP2-x', port: 80 }, 'HTTP2'],
    [{ name: 'grpc-web-ui', port: 80 }, 'GRPC-WEB'],
    [{ name: 'grpc', port: 80 }, 'GRPC'],
    [{ name: 'tcp-db', port: 5432 }, 'TCP'],
    [{ name: 'web', port: 80 }, undefined], // sniffed in Istio
    [{ name: 'ssh', port: 22 }, 'TCP'], // a well-known TCP port
    [{ name: 'http', port: 53, protocol: 'UDP' }, 'UDP'],
    [{ name: 'web', port: 80, appProtocol: 'kubernetes.io/h2c' }, 'HTTP2'],
    [{ name: 'web', port: 80, appProtocol: 'kubernetes.io/ws' }, 'HTTP'],
    [{ name: 'web', port: 443, appProtocol: 'kubernetes.io/wss' }, 'HTTPS'],
    [{ name: 'http', port: 80, appProtocol: 'grpc' }, 'GRPC'],
  ];
  for (const [p, want] of cases) assert.equal(kubePortProtocol(p), want, JSON.stringify(p));
});

test('EndpointSlice conditions: ready (or unset) is used; not ready only with publishNotReadyAddresses; terminating never', () => {
  assert.equal(endpointUsable({}, false), true);
  assert.equal(endpointUsable({ conditions: { ready: true } }, false), true);
  assert.equal(endpointUsable({ conditions: { ready: false } }, false), false);
  assert.equal(endpointUsable({ conditions: { ready: false } }, true), true);
  assert.equal(endpointUsable({ conditions: { ready: false, serving: true, terminating: true } }, true), false);
});

test('unknown Istio kinds are still errors with a hint; Istio kinds Portico does not read and Gateway API kinds warn', async () => {
  const text = `apiVersion: networking.istio.io/v1
kind: VirtualServce
metadata: {name: a}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g}
spec: {gatewayClassName: istio}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {}
`;
  const r = await buildSnapshotFromText(text, 'k.yaml');
  assert.equal(r.ok, false);
  assert.deepEqual(r.ok ? [] : r.issues.map((i) => [i.line, i.code]), [[2, ConfigErrorCodes.UNKNOWN_KIND]]);
  assert.deepEqual((r.warnings ?? []).map((i) => [i.kind, i.code]), [['Sidecar', ConfigErrorCodes.SKIPPED_KIND], ['HTTPRoute', ConfigErrorCodes.SKIPPED_KIND], ['Gateway', ConfigErrorCodes.SKIPPED_KIND]]);
  assert.deepEqual((r.infos ?? []).map((i) => i.kind), ['Deployment']);
});

test('portico validate prints one info: line per skipped object and exits 0', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bin/portico.ts'), 'validate', 'test/fixtures/kubernetes/bookinfo'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, -1).map((l) => l.replace(/:\d+: .*/, '')), Array(4).fill('info: test/fixtures/kubernetes/bookinfo/bookinfo.yaml'));
  assert.match(lines[0], /ServiceAccount\/bookinfo-details: ServiceAccount \(v1\) skipped: not configuration Portico reads$/);
  assert.equal(lines.at(-1), 'ok: 9 resources in 3 files');
});
