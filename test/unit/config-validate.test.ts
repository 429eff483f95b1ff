/**
 * Bad-config tests: each problem the validator must find, asserting file, line, field path and
 * code. Lines are located by searching the YAML for the offending text, so fixtures stay readable.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSnapshotFromText, ConfigErrorCodes, formatIssue, type ConfigIssue, type Snapshot } from '../../config/index.ts';
import { pairs, tempDir, writeCredential } from './config-tls-helper.ts';

const GW = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
`;

function vs(http: string, extra = ''): string {
  return `${GW}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
spec:
  hosts: ["*"]
  gateways: [gw]${extra}
  http:
${http}`;
}

/** 1-based line of the first line containing `needle` (after `from`, if given). */
function lineWith(text: string, needle: string, from?: string): number {
  const lines = text.split('\n');
  const start = from ? lines.findIndex((l) => l.includes(from)) : 0;
  const i = lines.findIndex((l, j) => j >= start && l.includes(needle));
  assert.ok(i >= 0, `fixture has no line with ${needle}`);
  return i + 1;
}

async function fail(text: string, opts: { cwd?: string; secretsDir?: string } = {}): Promise<{ issues: readonly ConfigIssue[]; cwd: string }> {
  const cwd = opts.cwd ?? process.cwd();
  const r = await buildSnapshotFromText(text, 'bad.yaml', { ...opts, cwd });
  assert.equal(r.ok, false, 'expected the config to be rejected');
  return { issues: r.ok ? [] : r.issues, cwd };
}

/** Builds a config that must be accepted and returns its warnings (same shape as fail()). */
async function warns(text: string, opts: { cwd?: string } = {}): Promise<{ issues: readonly ConfigIssue[]; cwd: string; snapshot: Snapshot }> {
  const cwd = opts.cwd ?? process.cwd();
  const r = await buildSnapshotFromText(text, 'bad.yaml', { cwd });
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i, cwd)).join('\n'));
  for (const w of r.warnings) assert.equal(w.severity, 'warning');
  return { issues: r.warnings, cwd, snapshot: r.snapshot };
}

function expectIssue(
  got: { issues: readonly ConfigIssue[]; cwd: string },
  want: { line: number; path: string; code: string; message?: RegExp; kind?: string; name?: string },
): ConfigIssue {
  const found = got.issues.find((i) => i.code === want.code && i.path === want.path);
  const all = got.issues.map((i) => `${formatIssue(i, got.cwd)} [${i.code}]`).join('\n');
  assert.ok(found, `no ${want.code} at ${want.path}; got:\n${all}`);
  assert.equal(found.file, join(got.cwd, 'bad.yaml'));
  assert.equal(found.line, want.line, `line of ${want.path}; got:\n${all}`);
  if (want.message) assert.match(found.message, want.message);
  if (want.kind) assert.equal(found.kind, want.kind);
  if (want.name) assert.equal(found.name, want.name);
  return found;
}

const OK_ROUTE = `  - route: [{destination: {host: reviews, subset: v1}}]\n`;

test('the base fixture is valid', async () => {
  const r = await buildSnapshotFromText(vs(OK_ROUTE), 'ok.yaml');
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i)).join('\n'));
});

test('unknown field, with a did-you-mean hint', async () => {
  const text = vs(`  - route:\n    - destination: {host: reviews}\n      weigth: 100\n`);
  const issue = expectIssue(await fail(text), {
    line: lineWith(text, 'weigth'),
    path: 'spec.http[0].route[0].weigth',
    code: ConfigErrorCodes.UNKNOWN_FIELD,
    message: /unknown field 'weigth' \(did you mean 'weight'\?\)/,
    kind: 'VirtualService',
    name: 'vs',
  });
  assert.equal(formatIssue(issue, process.cwd()), `bad.yaml:${issue.line}: VirtualService/vs: spec.http[0].route[0].weigth: unknown field 'weigth' (did you mean 'weight'?)`);
});

test('wrong type and bad enum', async () => {
  const text = vs(`  - route:\n    - destination: {host: reviews}\n      weight: "100"\n`).replace('protocol: HTTP}', 'protocol: HTTTP}');
  const got = await fail(text);
  expectIssue(got, { line: lineWith(text, 'weight: "100"'), path: 'spec.http[0].route[0].weight', code: ConfigErrorCodes.WRONG_TYPE, message: /expected an integer, got string/ });
  expectIssue(got, { line: lineWith(text, 'HTTTP'), path: 'spec.servers[0].port.protocol', code: ConfigErrorCodes.BAD_ENUM, message: /did you mean 'HTTP'/ });
});

test('route weights are relative (Istio 1.15+): 60/30 and 90/30 are valid, only a total of 0 is not', async () => {
  const ok = vs(`  - route:\n    - destination: {host: reviews}\n      weight: 90\n    - destination: {host: ratings.example.com}\n      weight: 30\n`);
  const { snapshot } = await warns(ok);
  const route = snapshot.gateways[0].ports[0].virtualHosts[0].routes[0];
  assert.equal(route.action.kind, 'route');
  assert.deepEqual(route.action.kind === 'route' ? route.action.destinations.map((d) => d.weight) : [], [90, 30]);
  const single = vs(`  - route:\n    - destination: {host: reviews}\n      weight: 50\n`);
  assert.equal((await warns(single)).issues.length, 0);
  const zero = vs(`  - route:\n    - destination: {host: reviews}\n      weight: 0\n    - destination: {host: ratings.example.com}\n      weight: 0\n`);
  expectIssue(await fail(zero), { line: lineWith(zero, 'weight: 0', 'ratings'), path: 'spec.http[0].route[1].weight', code: ConfigErrorCodes.WEIGHT_SUM, message: /total destination weight is 0/ });
  const negative = vs(`  - route:\n    - destination: {host: reviews}\n      weight: -1\n    - destination: {host: ratings.example.com}\n      weight: 2\n`);
  expectIssue(await fail(negative), { line: lineWith(negative, 'weight: -1'), path: 'spec.http[0].route[0].weight', code: ConfigErrorCodes.OUT_OF_RANGE });
  const unset = vs(`  - route:\n    - destination: {host: reviews}\n      weight: 10\n    - destination: {host: ratings.example.com}\n`);
  expectIssue(await warns(unset), { line: lineWith(unset, 'ratings.example.com'), path: 'spec.http[0].route[1]', code: ConfigErrorCodes.WEIGHT_SUM, message: /no traffic/ });
});

test('subset not defined by a DestinationRule: a warning (Istio accepts it), and the cluster has no endpoints', async () => {
  const text = vs(`  - route: [{destination: {host: reviews, subset: v9}}]\n`);
  const got = await warns(text);
  expectIssue(got, { line: lineWith(text, 'subset: v9'), path: 'spec.http[0].route[0].destination.subset', code: ConfigErrorCodes.UNKNOWN_SUBSET, message: /'v9'.*DestinationRule default\/reviews.*503/ });
  const cluster = got.snapshot.clusters.find((c) => c.subset === 'v9');
  assert.ok(cluster);
  assert.deepEqual(cluster.endpoints, []);
  assert.equal(cluster.resolution, 'STATIC');
});

test('unknown short host is a warning; FQDNs outside the registry resolve by DNS', async () => {
  const text = vs(`  - route: [{destination: {host: ratingz}}]\n  - route: [{destination: {host: ratings.example.com}}]\n  - route: [{destination: {host: reviews.default.svc.cluster.local}}]\n`);
  const got = await warns(text);
  expectIssue(got, { line: lineWith(text, 'ratingz'), path: 'spec.http[0].route[0].destination.host', code: ConfigErrorCodes.UNKNOWN_HOST, message: /ratingz\.default\.svc\.cluster\.local/ });
  const hosts = got.issues.filter((i) => i.code === ConfigErrorCodes.UNKNOWN_HOST);
  assert.equal(hosts.length, 1, hosts.map((i) => i.message).join('\n'));
  // Rules after a catch-all are never used (Istio's analyzeUnreachableHTTPRules warns too).
  assert.deepEqual(got.issues.filter((i) => i.code === ConfigErrorCodes.UNREACHABLE_RULE).map((i) => i.path), ['spec.http[1]', 'spec.http[2]']);
});

test('regexes must compile and be RE2 (no lookarounds, no backreferences)', async () => {
  const text = vs(`  - match:\n    - uri: {regex: "/a(b"}\n    - headers: {x: {regex: "(?=x)y"}}\n    - queryParams: {q: {regex: "(a)\\\\1"}}\n    rewrite:\n      uriRegexRewrite: {match: "[z-a]", rewrite: "/"}\n${OK_ROUTE.replace('  - ', '    ')}`);
  const got = await fail(text);
  expectIssue(got, { line: lineWith(text, '/a(b'), path: 'spec.http[0].match[0].uri.regex', code: ConfigErrorCodes.BAD_REGEX });
  expectIssue(got, { line: lineWith(text, '(?=x)'), path: 'spec.http[0].match[1].headers.x.regex', code: ConfigErrorCodes.BAD_REGEX, message: /lookaround/ });
  expectIssue(got, { line: lineWith(text, 'queryParams'), path: 'spec.http[0].match[2].queryParams.q.regex', code: ConfigErrorCodes.BAD_REGEX, message: /backreference/ });
  expectIssue(got, { line: lineWith(text, '[z-a]'), path: 'spec.http[0].rewrite.uriRegexRewrite.match', code: ConfigErrorCodes.BAD_REGEX });
});

test('gateway references that do not exist are warnings, as istioctl analyze (name, ns/name, match gateways; mesh is reserved)', async () => {
  const text = vs(`  - match:\n    - uri: {prefix: /}\n      gateways: [other/gw, mesh]\n${OK_ROUTE.replace('  - ', '    ')}`).replace('gateways: [gw]', 'gateways: [gw, nope, default/gw, mesh]').replace('hosts: ["*"]\n  gateways', 'hosts: [reviews]\n  gateways');
  const got = await warns(text);
  expectIssue(got, { line: lineWith(text, 'nope'), path: 'spec.gateways[1]', code: ConfigErrorCodes.UNKNOWN_GATEWAY, message: /'nope'.*default\/nope/ });
  expectIssue(got, { line: lineWith(text, 'other/gw'), path: 'spec.http[0].match[0].gateways[0]', code: ConfigErrorCodes.UNKNOWN_GATEWAY });
  assert.equal(got.issues.length, 2);
});

test('duplicate kind/namespace/name', async () => {
  const text = `${GW}---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  host: reviews\n`;
  expectIssue(await fail(text), { line: lineWith(text, 'name: reviews', 'v1beta1'), path: 'metadata.name', code: ConfigErrorCodes.DUPLICATE_RESOURCE, message: /duplicate DestinationRule default\/reviews \(first defined at .*bad\.yaml:\d+\)/ });
});

test('two Gateways on overlapping selectors claiming one port with different protocols', async () => {
  const text = `${GW}---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: tcp\n  namespace: other\nspec:\n  selector: {istio: ingressgateway, extra: x}\n  servers:\n  - port: {number: 80, name: tcp, protocol: TCP}\n    hosts: ["*"]\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: elsewhere\nspec:\n  selector: {istio: eastwest}\n  servers:\n  - port: {number: 80, name: tcp, protocol: TCP}\n    hosts: ["*"]\n`;
  const got = await fail(text);
  expectIssue(got, { line: lineWith(text, 'protocol: TCP'), path: 'spec.servers[0].port.protocol', code: ConfigErrorCodes.PORT_CONFLICT, name: 'tcp', message: /port 80 is TCP here but HTTP in Gateway default\/gw/ });
  assert.equal(got.issues.length, 1, 'disjoint selectors do not conflict');
});

function httpsGateway(tls: string): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tls
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
${tls}`;
}

test('HTTPS server without tls, and SIMPLE without a certificate', async () => {
  const none = httpsGateway('');
  expectIssue(await fail(none), { line: lineWith(none, '- port:'), path: 'spec.servers[0].tls', code: ConfigErrorCodes.HTTPS_WITHOUT_TLS });
  const nocert = httpsGateway('    tls: {mode: SIMPLE, privateKey: k.pem}\n');
  expectIssue(await fail(nocert), { line: lineWith(nocert, 'tls:'), path: 'spec.servers[0].tls.serverCertificate', code: ConfigErrorCodes.TLS_MISSING_CERT });
});

test('certificate files: missing, not matching, resolved relative to the YAML file', async (t) => {
  const dir = tempDir(t);
  const { a, b } = pairs();
  writeFileSync(join(dir, 'a.crt'), a.cert);
  writeFileSync(join(dir, 'a.key'), a.key);
  writeFileSync(join(dir, 'b.key'), b.key);
  const missing = httpsGateway('    tls:\n      mode: SIMPLE\n      serverCertificate: nothere.crt\n      privateKey: a.key\n');
  expectIssue(await fail(missing, { cwd: dir }), { line: lineWith(missing, 'nothere.crt'), path: 'spec.servers[0].tls.serverCertificate', code: ConfigErrorCodes.TLS_FILE_MISSING, message: new RegExp(`${dir}/nothere.crt`) });
  const mismatch = httpsGateway('    tls:\n      mode: SIMPLE\n      serverCertificate: a.crt\n      privateKey: b.key\n');
  expectIssue(await fail(mismatch, { cwd: dir }), { line: lineWith(mismatch, 'b.key'), path: 'spec.servers[0].tls.privateKey', code: ConfigErrorCodes.TLS_KEY_MISMATCH });
  const good = httpsGateway('    tls:\n      mode: SIMPLE\n      serverCertificate: a.crt\n      privateKey: a.key\n');
  const r = await buildSnapshotFromText(good, 'good.yaml', { cwd: dir });
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => i.message).join('\n'));
  assert.deepEqual(r.snapshot.files, [join(dir, 'a.crt'), join(dir, 'a.key')]);
  assert.equal(r.snapshot.gateways[0].ports[0].servers[0].tls?.certFile, join(dir, 'a.crt'));
});

test('credentialName resolves under the secrets dir (tls.crt/tls.key or cert/key)', async (t) => {
  const secrets = tempDir(t);
  const text = httpsGateway('    tls: {mode: SIMPLE, credentialName: my-cred}\n');
  expectIssue(await fail(text, { secretsDir: secrets }), { line: lineWith(text, 'credentialName'), path: 'spec.servers[0].tls.credentialName', code: ConfigErrorCodes.TLS_FILE_MISSING, message: /my-cred\/tls\.crt/ });
  writeCredential(secrets, 'my-cred', pairs().a);
  const r = await buildSnapshotFromText(text, 'ok.yaml', { secretsDir: secrets });
  assert.ok(r.ok);
  assert.equal(r.snapshot.gateways[0].ports[0].servers[0].tls?.keyFile, join(secrets, 'my-cred', 'tls.key'));
  writeFileSync(join(secrets, 'my-cred', 'tls.key'), pairs().b.key);
  expectIssue(await fail(text, { secretsDir: secrets }), { line: lineWith(text, 'credentialName'), path: 'spec.servers[0].tls.credentialName', code: ConfigErrorCodes.TLS_KEY_MISMATCH });
});

test('redirect and route in one rule; rule without action', async () => {
  const text = vs(`  - redirect: {uri: /x}\n    route: [{destination: {host: reviews}}]\n  - match: [{uri: {exact: /y}}]\n`);
  const got = await fail(text);
  expectIssue(got, { line: lineWith(text, 'redirect: {uri: /x}'), path: 'spec.http[0].redirect', code: ConfigErrorCodes.CONFLICTING_ACTIONS });
  expectIssue(got, { line: lineWith(text, '- match: [{uri: {exact: /y'), path: 'spec.http[1]', code: ConfigErrorCodes.NO_ACTION });
});

test('httpsRedirect on an HTTPS server is a warning, not an error', async (t) => {
  const secrets = tempDir(t);
  writeCredential(secrets, 'c', pairs().a);
  const text = httpsGateway('    tls: {mode: SIMPLE, credentialName: c, httpsRedirect: true}\n');
  const r = await buildSnapshotFromText(text, 'w.yaml', { secretsDir: secrets });
  assert.ok(r.ok);
  const w = r.warnings.find((i) => i.code === ConfigErrorCodes.HTTPS_REDIRECT);
  assert.ok(w);
  assert.equal(w.path, 'spec.servers[0].tls.httpsRedirect');
  assert.equal(w.severity, 'warning');
});

test('YAML syntax errors carry the line', async () => {
  const text = `${GW}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: broken\nspec:\n  hosts: [a\n  http: {}\n`;
  const got = await fail(text);
  const issue = got.issues.find((i) => i.code === ConfigErrorCodes.YAML_SYNTAX);
  assert.ok(issue);
  assert.ok(issue.line >= lineWith(text, 'hosts: [a'), `line ${issue.line}`);
});

test('unknown kind, unsupported apiVersion, bad duration: all reported at once', async () => {
  const text = `apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: a}\n---\napiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: b}\n---\n${vs(`  - timeout: 5 seconds\n${OK_ROUTE.replace('  - ', '    ')}`)}`;
  const got = await fail(text);
  expectIssue(got, { line: 2, path: 'kind', code: ConfigErrorCodes.UNKNOWN_KIND, message: /did you mean 'VirtualService'/ });
  expectIssue(got, { line: 5, path: 'apiVersion', code: ConfigErrorCodes.UNSUPPORTED_API_VERSION });
  expectIssue(got, { line: lineWith(text, '5 seconds'), path: 'spec.http[0].timeout', code: ConfigErrorCodes.BAD_DURATION });
  assert.equal(got.issues.length, 3);
});

test('a destination port the service does not have, and a missing port on a multi-port service: warnings', async () => {
  const text = vs(`  - route: [{destination: {host: reviews, port: {number: 9999}}}]\n`);
  expectIssue(await warns(text), { line: lineWith(text, '9999'), path: 'spec.http[0].route[0].destination.port.number', code: ConfigErrorCodes.UNKNOWN_PORT });
  const multi = vs(OK_ROUTE).replace('ports: [{number: 9080, name: http, protocol: HTTP}]', 'ports: [{number: 9080, name: http}, {number: 9090, name: grpc}]');
  expectIssue(await warns(multi), { line: lineWith(multi, 'subset: v1}}]'), path: 'spec.http[0].route[0].destination.port', code: ConfigErrorCodes.PORT_REQUIRED });
});

test('port protocols are case-insensitive, as Istio parses them (Gateway servers and ServiceEntry ports)', async () => {
  const text = vs(OK_ROUTE).replace('port: {number: 80, name: http, protocol: HTTP}', 'port: {number: 80, name: http, protocol: http}').replace('ports: [{number: 9080, name: http, protocol: HTTP}]', 'ports: [{number: 9080, name: http, protocol: Http2}]');
  const { snapshot, issues } = await warns(text);
  assert.deepEqual(issues, []);
  assert.equal(snapshot.gateways[0].ports[0].protocol, 'HTTP');
  assert.equal(snapshot.gateways[0].ports[0].virtualHosts.length, 1);
  assert.equal(snapshot.services.find((s) => s.host === 'reviews.default.svc.cluster.local')?.ports[0].protocol, 'HTTP2');
});
