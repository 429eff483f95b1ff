/**
 * Bad-config tests for the policy kinds (EnvoyFilter ext_authz / local_ratelimit, MeshConfig and
 * the `istio` ConfigMap, AuthorizationPolicy, PeerAuthentication, RequestAuthentication) and L4
 * routes: each asserts the file, line, field path and code of the problem.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSnapshotFromText, ConfigErrorCodes, formatIssue, type ConfigIssue } from '../../config/index.ts';

function lineWith(text: string, needle: string, from?: string): number {
  const lines = text.split('\n');
  const start = from ? lines.findIndex((l) => l.includes(from)) : 0;
  const i = lines.findIndex((l, j) => j >= start && l.includes(needle));
  assert.ok(i >= 0, `fixture has no line with ${needle}`);
  return i + 1;
}

async function build(text: string): Promise<{ ok: boolean; issues: readonly ConfigIssue[]; warnings: readonly ConfigIssue[]; infos: readonly ConfigIssue[] }> {
  const r = await buildSnapshotFromText(text, 'bad.yaml');
  return { ok: r.ok, issues: r.ok ? [] : r.issues, warnings: r.warnings ?? [], infos: r.infos ?? [] };
}

function expectIssue(list: readonly ConfigIssue[], want: { line: number; path: string; code: string; message?: RegExp; kind?: string }): ConfigIssue {
  const found = list.find((i) => i.code === want.code && i.path === want.path && (!want.message || want.message.test(i.message)));
  const all = list.map((i) => `${formatIssue(i)} [${i.code}]`).join('\n');
  assert.ok(found, `no ${want.code} at ${want.path}; got:\n${all}`);
  assert.equal(found.file, join(process.cwd(), 'bad.yaml'));
  assert.equal(found.line, want.line, `line of ${want.path}; got:\n${all}`);
  if (want.message) assert.match(found.message, want.message);
  if (want.kind) assert.equal(found.kind, want.kind);
  return found;
}

const MESH = `apiVersion: portico.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh, namespace: istio-system}
spec:
  extensionProviders:
  - name: oauth2-proxy
    envoyExtAuthzHttp: {service: oauth2-proxy.oauth2-proxy.svc.cluster.local, port: 80}
`;

const EF = (typedConfig: string, extra = ''): string => `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: authn-filter, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
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
${typedConfig}${extra}`;

const GOOD_TC = `          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri: {uri: "http://authservice.example.com", cluster: "outbound|8080||authservice.example.com", timeout: 10s}
`;

test('the Kubeflow-style EnvoyFilter is valid; Envoy fields Portico does not model are warnings', async () => {
  const text = EF(`${GOOD_TC}          clear_route_cache: true\n          metadata_context_namespaces: [a]\n`);
  const r = await build(text);
  assert.ok(r.ok, r.issues.map((i) => formatIssue(i)).join('\n'));
  const w = expectIssue(r.warnings, { line: lineWith(text, 'metadata_context_namespaces'), path: 'spec.configPatches[0].patch.value.typed_config.metadata_context_namespaces', code: ConfigErrorCodes.UNKNOWN_FIELD });
  assert.equal(w.severity, 'warning');
});

test('ext_authz typed_config: did-you-mean inside Envoy protos, grpc_service, bad uri, camelCase accepted', async () => {
  const text = EF(`          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          grpc_service: {envoy_grpc: {cluster_name: x}}
          failure_mode_alow: true
          httpService:
            serverUri: {uri: "ftp://x", timeout: 1s}
            authorizationRequest:
              allowedHeaders:
                patterns: [{exact: cookie, prefix: x}]
`);
  const r = await build(text);
  assert.equal(r.ok, false);
  const base = 'spec.configPatches[0].patch.value.typed_config';
  expectIssue(r.issues, { line: lineWith(text, 'grpc_service'), path: `${base}.grpc_service`, code: ConfigErrorCodes.NOT_IMPLEMENTED });
  expectIssue(r.warnings, { line: lineWith(text, 'failure_mode_alow'), path: `${base}.failure_mode_alow`, code: ConfigErrorCodes.UNKNOWN_FIELD, message: /did you mean 'failure_mode_allow'/ });
  expectIssue(r.issues, { line: lineWith(text, 'ftp://'), path: `${base}.httpService.serverUri.uri`, code: ConfigErrorCodes.BAD_URI });
  expectIssue(r.issues, { line: lineWith(text, 'prefix: x'), path: `${base}.httpService.authorizationRequest.allowedHeaders.patterns[0].prefix`, code: ConfigErrorCodes.ONE_OF });
});

test('ext_authz server must be known: short host without ServiceEntry, port not on the service', async () => {
  const se = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: authservice, namespace: istio-system}
spec:
  hosts: [authservice]
  ports: [{number: 8080, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
`;
  const text = se + EF(`          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri:
              uri: http://authservice
              cluster: outbound|9999||authservice.istio-system.svc.cluster.local
              timeout: 1s
`);
  const r = await build(text);
  const base = 'spec.configPatches[0].patch.value.typed_config.http_service.server_uri';
  expectIssue(r.issues, { line: lineWith(text, 'outbound|9999'), path: `${base}.cluster`, code: ConfigErrorCodes.UNKNOWN_PORT, message: /port 9999 is not a port/ });
  const nohost = EF(`          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri: {uri: "http://nowhere:8080/check", timeout: 1s}
`);
  const r2 = await build(nohost);
  expectIssue(r2.issues, { line: lineWith(nohost, 'nowhere'), path: `${base}.uri`, code: ConfigErrorCodes.UNKNOWN_HOST });
  expectIssue(r2.warnings, { line: lineWith(nohost, 'nowhere'), path: `${base}.uri`, code: ConfigErrorCodes.BAD_URI, message: /ignores the path/ });
});

test('EnvoyFilter: wrong operation for a filter insert, removed v1alpha3 fields, ignored patches warn', async () => {
  const text = EF(GOOD_TC).replace('operation: INSERT_BEFORE', 'operation: MERGE').replace('  workloadSelector:', '  workloadLabels: {istio: ingressgateway}\n  workloadSelector:') +
    `  - applyTo: CLUSTER\n    match: {cluster: {service: x}}\n    patch: {operation: ADD, value: {name: c}}\n`;
  const r = await build(text);
  expectIssue(r.issues, { line: lineWith(text, 'operation: MERGE'), path: 'spec.configPatches[0].patch.operation', code: ConfigErrorCodes.BAD_ENUM });
  expectIssue(r.issues, { line: lineWith(text, 'workloadLabels'), path: 'spec.workloadLabels', code: ConfigErrorCodes.NOT_IMPLEMENTED, message: /pre-1\.5/ });
  expectIssue(r.warnings, { line: lineWith(text, 'applyTo: CLUSTER'), path: 'spec.configPatches[1]', code: ConfigErrorCodes.ENVOY_FILTER_IGNORED });
});

test('AuthorizationPolicy CUSTOM: unknown provider (did you mean), missing provider, provider without CUSTOM', async () => {
  const ap = (name: string, spec: string): string => `---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: istio-system}\nspec:\n${spec}`;
  const text = MESH + ap('a', '  action: CUSTOM\n  provider: {name: oauth2-prxy}\n  rules: [{}]\n') + ap('b', '  action: CUSTOM\n  rules: [{}]\n') + ap('c', '  action: DENY\n  provider: {name: oauth2-proxy}\n');
  const r = await build(text);
  expectIssue(r.issues, { line: lineWith(text, 'oauth2-prxy'), path: 'spec.provider.name', code: ConfigErrorCodes.UNKNOWN_PROVIDER, message: /did you mean 'oauth2-proxy'/, kind: 'AuthorizationPolicy' });
  expectIssue(r.issues, { line: lineWith(text, 'action: CUSTOM', 'name: b'), path: 'spec.action', code: ConfigErrorCodes.REQUIRED });
  expectIssue(r.issues, { line: lineWith(text, 'provider: {name: oauth2-proxy}', 'name: c'), path: 'spec.provider', code: ConfigErrorCodes.ONE_OF });
  const none = ap('a', '  action: CUSTOM\n  provider: {name: x}\n').slice(4);
  expectIssue((await build(none)).issues, { line: lineWith(none, 'name: x'), path: 'spec.provider.name', code: ConfigErrorCodes.UNKNOWN_PROVIDER, message: /needs a MeshConfig/ });
});

test('AuthorizationPolicy rules: condition keys, CIDRs, ports, unknown fields', async () => {
  const text = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from:
    - source: {ipBlocks: [10.0.0.0/33], principalz: [x]}
    to:
    - operation: {ports: ["http"], paths: ["/a*b"]}
    when:
    - key: request.header[x-a]
      values: [a]
    - key: source.ip
      values: [not-an-ip]
    - key: request.auth.claims[groups]
`;
  const r = await build(text);
  expectIssue(r.issues, { line: lineWith(text, '10.0.0.0/33'), path: 'spec.rules[0].from[0].source.ipBlocks[0]', code: ConfigErrorCodes.BAD_CIDR });
  expectIssue(r.issues, { line: lineWith(text, 'principalz'), path: 'spec.rules[0].from[0].source.principalz', code: ConfigErrorCodes.UNKNOWN_FIELD, message: /did you mean 'principals'/ });
  expectIssue(r.issues, { line: lineWith(text, '"http"'), path: 'spec.rules[0].to[0].operation.ports[0]', code: ConfigErrorCodes.WRONG_TYPE });
  expectIssue(r.warnings, { line: lineWith(text, '/a*b'), path: 'spec.rules[0].to[0].operation.paths[0]', code: ConfigErrorCodes.BAD_PATTERN });
  expectIssue(r.issues, { line: lineWith(text, 'request.header[x-a]'), path: 'spec.rules[0].when[0].key', code: ConfigErrorCodes.BAD_CONDITION_KEY });
  expectIssue(r.issues, { line: lineWith(text, 'not-an-ip'), path: 'spec.rules[0].when[1].values[0]', code: ConfigErrorCodes.BAD_CIDR });
  expectIssue(r.issues, { line: lineWith(text, 'claims[groups]'), path: 'spec.rules[0].when[2]', code: ConfigErrorCodes.REQUIRED, message: /needs values/ });
});

test('PeerAuthentication and RequestAuthentication', async () => {
  const text = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ns}
spec:
  mtls: {mode: STRIKT}
  portLevelMtls:
    "http": {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns}
spec:
  jwtRules:
  - issuer: a
    jwksUri: not a url
    jwks: "{}"
  - issuer: a
    jwks: '{"keys": []}'
`;
  const r = await build(text);
  expectIssue(r.issues, { line: lineWith(text, 'STRIKT'), path: 'spec.mtls.mode', code: ConfigErrorCodes.BAD_ENUM, message: /did you mean 'STRICT'/ });
  expectIssue(r.issues, { line: lineWith(text, '"http"'), path: 'spec.portLevelMtls.http', code: ConfigErrorCodes.WRONG_TYPE });
  expectIssue(r.issues, { line: lineWith(text, 'portLevelMtls'), path: 'spec.portLevelMtls', code: ConfigErrorCodes.REQUIRED, message: /selector/ });
  expectIssue(r.issues, { line: lineWith(text, 'not a url'), path: 'spec.jwtRules[0].jwksUri', code: ConfigErrorCodes.BAD_URI });
  expectIssue(r.issues, { line: lineWith(text, 'jwks: "{}"'), path: 'spec.jwtRules[0].jwks', code: ConfigErrorCodes.ONE_OF });
  expectIssue(r.issues, { line: lineWith(text, 'issuer: a', 'jwks: "{}"'), path: 'spec.jwtRules[1].issuer', code: ConfigErrorCodes.DUPLICATE_RESOURCE });
});

test('ConfigMap istio: data.mesh is parsed, problems point at lines inside the ConfigMap; two MeshConfigs conflict', async () => {
  const cm = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    accessLogEncoding: JSN
    extensionProviders:
    - name: p
      envoyExtAuthzHttp: {service: x.example.com, port: 70000}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
data: {a: b}
`;
  const r = await build(cm);
  expectIssue(r.issues, { line: lineWith(cm, 'JSN'), path: 'spec.accessLogEncoding', code: ConfigErrorCodes.BAD_ENUM, kind: 'MeshConfig' });
  expectIssue(r.issues, { line: lineWith(cm, '70000'), path: 'spec.extensionProviders[0].envoyExtAuthzHttp.port', code: ConfigErrorCodes.OUT_OF_RANGE });
  expectIssue(r.infos, { line: lineWith(cm, 'name: other'), path: 'metadata.name', code: ConfigErrorCodes.SKIPPED_KIND, kind: 'ConfigMap' });
  const two = `${MESH}---\n${cm.replace('JSN', 'JSON').replace('70000', '8080')}`;
  // Resources are ordered by namespace/name: istio-system/istio is used, istio-system/mesh conflicts.
  expectIssue((await build(two)).issues, { line: lineWith(two, 'name: mesh'), path: 'metadata.name', code: ConfigErrorCodes.MESHCONFIG_CONFLICT, message: /istio-system\/istio/ });
});

test('local rate limit: TypedStruct type_url, bucket fields, MERGE for per-route config', async () => {
  const text = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: rl, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
          value:
            stat_prefix: x
            token_bucket: {max_tokens: 0, fill_interval: 1 minute}
  - applyTo: HTTP_ROUTE
    match: {context: GATEWAY, routeConfiguration: {vhost: {name: "*:80", route: {action: ANY}}}}
    patch:
      operation: ADD
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value: {stat_prefix: y, filter_enabled: {default_value: {numerator: 10, denominator: HUNDERD}}}
`;
  const r = await build(text);
  const tc = 'spec.configPatches[0].patch.value.typed_config';
  expectIssue(r.issues, { line: lineWith(text, 'ratelimit.v3.RateLimit'), path: `${tc}.type_url`, code: ConfigErrorCodes.BAD_ENUM });
  expectIssue(r.issues, { line: lineWith(text, 'max_tokens: 0'), path: `${tc}.value.token_bucket.max_tokens`, code: ConfigErrorCodes.OUT_OF_RANGE });
  expectIssue(r.issues, { line: lineWith(text, '1 minute'), path: `${tc}.value.token_bucket.fill_interval`, code: ConfigErrorCodes.BAD_DURATION });
  expectIssue(r.issues, { line: lineWith(text, 'operation: ADD'), path: 'spec.configPatches[1].patch.operation', code: ConfigErrorCodes.BAD_ENUM, message: /MERGE/ });
  expectIssue(r.issues, {
    line: lineWith(text, 'HUNDERD'),
    path: 'spec.configPatches[1].patch.value.typed_per_filter_config["envoy.filters.http.local_ratelimit"].value.filter_enabled.default_value.denominator',
    code: ConfigErrorCodes.BAD_ENUM,
    message: /did you mean 'HUNDRED'/,
  });
});

const L4GW = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*.example.com"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
`;

test('L4: sniHosts must be covered by VirtualService hosts and the Gateway TLS servers; unrouted L4 servers warn', async () => {
  const text = `${L4GW}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*.example.com"]
  gateways: [gw]
  tls:
  - match: [{sniHosts: [a.example.com, b.other.org]}]
    route: [{destination: {host: a.example.com, port: {number: 443}}}]
`;
  const r = await build(text);
  const hits = r.issues.filter((i) => i.code === ConfigErrorCodes.SNI_NOT_ON_GATEWAY);
  assert.equal(hits.length, 2, hits.map((i) => i.message).join('\n'));
  expectIssue(r.issues, { line: lineWith(text, 'b.other.org'), path: 'spec.tls[0].match[0].sniHosts[1]', code: ConfigErrorCodes.SNI_NOT_ON_GATEWAY, message: /not served by any TLS server of Gateway default\/gw/ });
  const ok = await build(text.replace(', b.other.org', ''));
  assert.ok(ok.ok, ok.issues.map((i) => formatIssue(i)).join('\n'));
  expectIssue(ok.warnings, { line: lineWith(text, '- port: {number: 31400'), path: 'spec.servers[1]', code: ConfigErrorCodes.NO_L4_ROUTE, message: /tcp\[\]/ });
  const bare = await build(L4GW);
  expectIssue(bare.warnings, { line: lineWith(L4GW, '- port: {number: 443'), path: 'spec.servers[0]', code: ConfigErrorCodes.NO_L4_ROUTE, message: /PASSTHROUGH/ });
});

test('regex (?i) is accepted and compiled to ignoreCase; other RE2 inline flags are accepted as written', async () => {
  const base = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [a.example.com]
  http:
  - match: [{uri: {regex: "(?i)/Api/.*"}}, {uri: {regex: "/x"}}]
    route: [{destination: {host: a.example.com}}]
`;
  const r = await buildSnapshotFromText(base, 'bad.yaml');
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i)).join('\n'));
  const m = r.snapshot.mesh.virtualHosts[0].routes[0].match;
  assert.deepEqual(m[0].uri, { regex: '/Api/.*', ignoreCase: true });
  assert.deepEqual(m[1].uri, { regex: '/x' });
  // RE2 (and so Istio, which validates with Go's regexp) accepts every inline flag group.
  const dotall = await buildSnapshotFromText(base.replace('(?i)', '(?s)'), 'ok.yaml');
  assert.ok(dotall.ok, dotall.ok ? '' : dotall.issues.map((i) => formatIssue(i)).join('\n'));
  assert.deepEqual(dotall.snapshot.mesh.virtualHosts[0].routes[0].match[0].uri, { regex: '(?s)/Api/.*' });
});
