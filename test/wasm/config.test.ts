/** WasmPlugin (and the EnvoyFilter Wasm form) through validation and compilation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSnapshotFromText, formatIssue } from '../../config/index.ts';
import { defaultPullPolicy, normaliseUrl } from '../../config/kinds/wasmplugin.ts';

const wp = (name: string, spec: string, ns = 'istio-system') => `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: ${name}
  namespace: ${ns}
spec:
${spec
  .trim()
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
---
`;

async function snapshot(yaml: string) {
  const r = await buildSnapshotFromText(yaml, '/cfg/plugins.yaml', { cwd: '/cfg' });
  if (!r.ok) assert.fail(r.issues.map((i) => formatIssue(i, '/cfg')).join('\n'));
  return r.snapshot;
}

async function problems(yaml: string): Promise<string[]> {
  const r = await buildSnapshotFromText(yaml, '/cfg/plugins.yaml', { cwd: '/cfg' });
  return [...(r.ok ? [] : r.issues), ...(r.warnings ?? [])].map((i) => formatIssue(i, '/cfg'));
}

test('WasmPlugin compiles with Istio defaults: FAIL_CLOSE, priority 0, phase before the router, oci:// when no scheme', async () => {
  const s = await snapshot(wp('auth', `
selector:
  matchLabels: {istio: ingressgateway}
url: registry.example/plugins/auth:1.0
pluginName: basic_auth
pluginConfig:
  basic_auth_rules: [{prefix: /, credentials: ["a:b"]}]`));
  const [p] = s.wasmPlugins ?? [];
  assert.ok(p);
  assert.equal(p.id, 'WasmPlugin/istio-system/auth');
  assert.equal(p.url, 'oci://registry.example/plugins/auth:1.0');
  assert.equal(p.failStrategy, 'FAIL_CLOSE');
  assert.equal(p.priority, 0);
  assert.equal(p.phase, 'UNSPECIFIED');
  assert.equal(p.imagePullPolicy, 'IfNotPresent');
  assert.equal(p.pluginName, 'basic_auth');
  assert.deepEqual(JSON.parse(p.pluginConfig), { basic_auth_rules: [{ prefix: '/', credentials: ['a:b'] }] });
  assert.equal(p.meshWide, true, 'istio-system is the default root namespace');
  assert.deepEqual(p.selector, { istio: 'ingressgateway' });
});

test('no WasmPlugin: the snapshot has no wasmPlugins field (no per-request cost, golden outputs unchanged)', async () => {
  const s = await snapshot(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`);
  assert.equal('wasmPlugins' in s, false);
});

test('order within a phase: priority descending, then namespace, then name', async () => {
  const s = await snapshot(
    wp('b', 'url: file:///p/b.wasm\nphase: AUTHZ\npriority: 10', 'default') +
      wp('a', 'url: file:///p/a.wasm\nphase: AUTHZ\npriority: 10', 'default') +
      wp('z', 'url: file:///p/z.wasm\nphase: AUTHZ\npriority: 100', 'zeta') +
      wp('low', 'url: file:///p/low.wasm\nphase: AUTHZ\npriority: -5', 'aaa'),
  );
  assert.deepEqual(s.wasmPlugins?.map((p) => p.id), ['WasmPlugin/zeta/z', 'WasmPlugin/default/a', 'WasmPlugin/default/b', 'WasmPlugin/aaa/low']);
});

test('every field: sha256, pull policy and secret, failStrategy, vmConfig.env, match, relative file:// url', async () => {
  const s = await snapshot(wp('all', `
selector: {matchLabels: {app: x}}
url: file://plugins/x.wasm
sha256: ${'ab'.repeat(32)}
imagePullPolicy: Always
imagePullSecret: regcred
phase: STATS
priority: 7
failStrategy: FAIL_RELOAD
type: HTTP
vmConfig:
  env:
  - {name: A, value: "1"}
  - {name: HOME, valueFrom: HOST}
match:
- mode: CLIENT
  ports: [{number: 8080}]`, 'default'));
  const p = s.wasmPlugins![0];
  assert.equal(p.url, 'file:///cfg/plugins/x.wasm');
  assert.equal(p.sha256, 'ab'.repeat(32));
  assert.equal(p.imagePullPolicy, 'Always');
  assert.equal(p.imagePullSecret, 'regcred');
  assert.equal(p.phase, 'STATS');
  assert.equal(p.failStrategy, 'FAIL_RELOAD');
  assert.deepEqual(p.env, [{ name: 'A', valueFrom: 'INLINE', value: '1' }, { name: 'HOME', valueFrom: 'HOST', value: '' }]);
  assert.deepEqual(p.match, [{ mode: 'CLIENT', ports: [8080] }]);
  assert.equal(p.meshWide, false);
});

test('imagePullPolicy default: Always for oci :latest or no tag, IfNotPresent otherwise', () => {
  assert.equal(defaultPullPolicy('oci://r.io/a/b'), 'Always');
  assert.equal(defaultPullPolicy('oci://r.io/a/b:latest'), 'Always');
  assert.equal(defaultPullPolicy('oci://localhost:5000/a/b'), 'Always');
  assert.equal(defaultPullPolicy('oci://localhost:5000/a/b:v1'), 'IfNotPresent');
  assert.equal(defaultPullPolicy(`oci://r.io/a@sha256:${'0'.repeat(64)}`), 'IfNotPresent');
  assert.equal(defaultPullPolicy('https://x/y.wasm'), 'IfNotPresent');
  assert.equal(normaliseUrl('file:///abs/p.wasm', '/cfg/x.yaml'), 'file:///abs/p.wasm');
});

test('bad WasmPlugins are reported with file:line, kind/name and field path', async () => {
  const out = await problems(wp('bad', `
url: ftp://x/y.wasm
sha256: nothex
phase: LATE
failStrategy: FAIL_SOMETIMES
type: NETWORK
pluginConfig: "a string"
match: [{mode: CLIENTX}]`));
  const joined = out.join('\n');
  assert.match(joined, /plugins\.yaml:\d+: WasmPlugin\/bad: spec\.url: unsupported url scheme 'ftp:\/\/'/);
  assert.match(joined, /spec\.sha256: sha256 must be 64 lower-case hex digits/);
  assert.match(joined, /spec\.phase: 'LATE' is not one of/);
  assert.match(joined, /spec\.failStrategy: 'FAIL_SOMETIMES' is not one of/);
  assert.match(joined, /spec\.type: NETWORK Wasm plugins are not run by Portico/);
  assert.match(joined, /spec\.pluginConfig: pluginConfig must be an object/);
  assert.match(joined, /spec\.match\[0\]\.mode: 'CLIENTX'/);
  const nourl = await problems(wp('nourl', 'phase: AUTHN'));
  assert.equal(nourl.length, 1);
  assert.match(nourl[0], /WasmPlugin\/nourl: spec\.url/);
});

const ef = (vmConfig: string) => `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: basic-auth, namespace: istio-system}
spec:
  workloadSelector:
    labels: {istio: ingressgateway}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            name: basic_auth
            root_id: basic_auth
            configuration:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: '{"basic_auth_rules":[{"prefix":"/productpage","request_methods":["GET"],"credentials":["admin3:admin3"]}]}'
            vm_config:
              vm_id: basic_auth_vm
              runtime: envoy.wasm.runtime.v8
${vmConfig}
`;

test('EnvoyFilter envoy.filters.http.wasm with vm_config.code.local.filename compiles to a plugin', async () => {
  const s = await snapshot(ef(`              code:
                local:
                  filename: /var/local/lib/wasm-filters/basic-auth.wasm`));
  const p = s.wasmPlugins![0];
  assert.equal(p.id, 'EnvoyFilter/istio-system/basic-auth/configPatches[0]');
  assert.equal(p.url, 'file:///var/local/lib/wasm-filters/basic-auth.wasm');
  assert.equal(p.pluginName, 'basic_auth');
  assert.equal(p.vmId, 'basic_auth_vm');
  assert.equal(p.context, 'GATEWAY');
  assert.match(p.pluginConfig, /admin3:admin3/);
  assert.equal(p.failStrategy, 'FAIL_CLOSE');
});

test('an EnvoyFilter Wasm patch Portico cannot apply is an error, not a warning', async () => {
  const out = await problems(ef(`              code:
                remote:
                  http_uri: {uri: "https://storage.example/basic-auth.wasm"}`));
  assert.equal(out.length, 1);
  assert.doesNotMatch(out[0], /^warning:/);
  assert.match(out[0], /vm_config\.code: vm_config\.code\.remote is not supported/);
});
