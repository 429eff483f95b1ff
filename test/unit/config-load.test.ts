/** Loader: files, directories, multi-document YAML, List, apiVersions, field lines. */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSnapshot } from '../../config/index.ts';
import { loadConfig, parseConfigText } from '../../config/load.ts';
import { tempDir } from './config-tls-helper.ts';

const SE = (name: string, api = 'networking.istio.io/v1') => `apiVersion: ${api}
kind: ServiceEntry
metadata:
  name: ${name}
spec:
  hosts: [${name}.example.com]
  ports: [{number: 80, name: http}]
  resolution: DNS
`;

test('field paths map to lines', () => {
  const text = `# comment
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
      weight: 90
    - destination:
        host: reviews
      weight: 10
`;
  const { resources, issues } = parseConfigText(text, '/x/vs.yaml');
  assert.deepEqual(issues, []);
  const [r] = resources;
  assert.equal(r.key, 'prod/reviews');
  assert.equal(r.line, 2);
  assert.equal(r.lineOf('spec.http[0].route[1].weight'), 16);
  assert.equal(r.lineOf('spec.http[0].route[1]'), 14);
  assert.equal(r.lineOf('spec.http[0].route[0].destination.host'), 12);
  // Unknown paths fall back to the nearest ancestor.
  assert.equal(r.lineOf('spec.http[0].route[1].destination.subset'), 14);
});

test('loads a directory recursively, sorted, yaml and yml only', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
  writeFileSync(join(dir, 'b.yaml'), SE('b'));
  writeFileSync(join(dir, 'a.yml'), `${SE('a1')}---\n${SE('a2')}`);
  writeFileSync(join(dir, 'sub', 'deeper', 'c.yaml'), SE('c'));
  writeFileSync(join(dir, 'notes.txt'), 'not yaml: [');
  writeFileSync(join(dir, 'empty.yaml'), '# nothing here\n---\n');
  const r = await loadConfig([dir]);
  assert.deepEqual(r.issues, []);
  assert.deepEqual(r.files, [join(dir, 'a.yml'), join(dir, 'b.yaml'), join(dir, 'empty.yaml'), join(dir, 'sub/deeper/c.yaml')]);
  assert.deepEqual(r.resources.map((x) => x.name), ['a1', 'a2', 'b', 'c']);
  assert.deepEqual(r.resources.map((x) => x.line), [1, 10, 1, 1]);
  const built = await buildSnapshot([dir]);
  assert.ok(built.ok);
  assert.equal(built.resources, 4);
  assert.deepEqual(built.snapshot.services.map((s) => s.host), ['a1.example.com', 'a2.example.com', 'b.example.com', 'c.example.com']);
});

test('a missing path is reported, not thrown', async (t) => {
  const dir = tempDir(t);
  const r = await buildSnapshot([join(dir, 'nope.yaml')]);
  assert.equal(r.ok, false);
  assert.equal(r.ok ? '' : r.issues[0].code, 'PORTICO_CFG_FILE_READ');
});

test('all three networking apiVersions are accepted', () => {
  for (const api of ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3']) {
    const { resources, issues } = parseConfigText(SE('x', api), '/x.yaml');
    assert.deepEqual(issues, [], api);
    assert.equal(resources[0].apiVersion, api);
  }
  const bad = parseConfigText(SE('x', 'networking.istio.io/v2'), '/x.yaml');
  assert.equal(bad.issues[0].code, 'PORTICO_CFG_UNSUPPORTED_API_VERSION');
  assert.equal(bad.issues[0].line, 1);
});

test('namespace defaults to default; kind List is unpacked with item lines', () => {
  const text = `apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: WorkloadEntry
  metadata: {name: one}
  spec: {address: 10.0.0.1}
- apiVersion: networking.istio.io/v1
  kind: WorkloadEntry
  metadata: {name: two, namespace: ns2}
  spec: {address: 10.0.0.2, labels: {app: x}}
`;
  const { resources, issues } = parseConfigText(text, '/l.yaml');
  assert.deepEqual(issues, []);
  assert.deepEqual(resources.map((r) => [r.key, r.line]), [['default/one', 4], ['ns2/two', 8]]);
  assert.equal(resources[1].lineOf('spec.labels.app'), 11);
});

test('security kinds, EnvoyFilter and MeshConfig load and compile', async () => {
  const text = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec: {action: CUSTOM, provider: {name: authservice}, rules: [{}]}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec: {jwtRules: [{issuer: x}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: authn-filter}
spec: {configPatches: []}
---
apiVersion: portico.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {extensionProviders: [{name: authservice, envoyExtAuthzHttp: {service: authservice.example.com, port: 8080}}]}
`;
  const { resources, issues } = parseConfigText(text, '/k.yaml');
  assert.deepEqual(issues, []);
  assert.deepEqual(resources.map((r) => r.kind), ['AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication', 'EnvoyFilter', 'MeshConfig']);
  const { buildSnapshotFromText } = await import('../../config/index.ts');
  const r = await buildSnapshotFromText(text);
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => i.message).join('\n'));
  assert.equal(r.snapshot.extAuthz[0].server.cluster, 'outbound|8080||authservice.example.com');
  assert.equal(r.snapshot.security.peerAuthentications[0].mode, 'STRICT');
});

test('duplicate YAML keys are syntax errors with a line', () => {
  const { issues } = parseConfigText('apiVersion: networking.istio.io/v1\nkind: Gateway\nkind: Gateway\n', '/d.yaml');
  assert.equal(issues[0].code, 'PORTICO_CFG_YAML_SYNTAX');
  assert.equal(issues[0].line, 3);
});
