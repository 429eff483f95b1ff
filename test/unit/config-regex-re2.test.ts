/**
 * Every regex in config is RE2, validated as Istio validates it (Go's `regexp`): RE2-only syntax
 * is accepted, JavaScript-only syntax is an error with file:line and field path, and
 * `uriRegexRewrite.rewrite` may only name groups the pattern has.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSnapshotFromText, ConfigErrorCodes, formatIssue, type ConfigIssue } from '../../config/index.ts';

const BASE = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
`;

/** One VirtualService rule with every regex-bearing field set to `re` (and a rewrite). */
function vsWith(re: string, rewrite = '/x/\\\\1'): string {
  return `${BASE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match:
    - uri: {regex: '${re}'}
      authority: {regex: '${re}'}
      headers: {x-h: {regex: '${re}'}}
      withoutHeaders: {x-w: {regex: '${re}'}}
      queryParams: {q: {regex: '${re}'}}
    corsPolicy:
      allowOrigins: [{regex: '${re}'}]
    rewrite:
      uriRegexRewrite: {match: '^/(${re})$', rewrite: "${rewrite}"}
    route: [{destination: {host: reviews}}]
`;
}

function envoyFilterWith(re: string): string {
  return `${BASE}---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: authn, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.http_connection_manager}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.ext_authz
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri: {uri: http://authservice.istio-system.svc.cluster.local:8080, cluster: outbound|8080||authservice.istio-system.svc.cluster.local, timeout: 10s}
            authorization_request:
              allowed_headers:
                patterns:
                - safe_regex: {regex: '${re}'}
`;
}

async function issues(text: string): Promise<readonly ConfigIssue[]> {
  const r = await buildSnapshotFromText(text, 'bad.yaml');
  return r.ok ? [] : r.issues.filter((i) => i.severity === 'error');
}

function lineOf(text: string, needle: string, nth = 0): number {
  const lines = text.split('\n');
  let seen = -1;
  for (let i = 0; i < lines.length; i++) if (lines[i]!.includes(needle) && ++seen === nth) return i + 1;
  throw new Error(`no line with ${needle}`);
}

const REGEX_PATHS = [
  ['spec.http[0].match[0].uri.regex', 'uri:'],
  ['spec.http[0].match[0].authority.regex', 'authority:'],
  ['spec.http[0].match[0].headers.x-h.regex', 'x-h:'],
  ['spec.http[0].match[0].withoutHeaders.x-w.regex', 'x-w:'],
  ['spec.http[0].match[0].queryParams.q.regex', 'queryParams:'],
  ['spec.http[0].corsPolicy.allowOrigins[0].regex', 'allowOrigins:'],
  ['spec.http[0].rewrite.uriRegexRewrite.match', 'uriRegexRewrite:'],
] as const;

test('RE2-only syntax is accepted everywhere a VirtualService takes a regex', async () => {
  for (const re of ['(?P<id>[0-9]+)', '\\pL+', '\\p{Greek}x', 'a(?i)b', '[[:alpha:]]+', '\\x{41}', '\\Qa.b\\E', '(?s:.)']) {
    const got = await issues(vsWith(re));
    assert.deepEqual(got.map((i) => formatIssue(i)), [], re);
  }
});

test('JavaScript-only syntax is an error at each field, with file:line and field path', async () => {
  const cases: [string, RegExp][] = [
    ['(?=x)y', /lookaround/],
    ['(?<!x)y', /lookaround/],
    ['(a)\\1', /backreference/],
    ['(?<n>a)\\k<n>', /backreference/],
    ['\\u0041', /invalid escape/],
    ['a++', /nested repetition/],
  ];
  for (const [re, message] of cases) {
    const text = vsWith(re, '/');
    const got = await issues(text);
    for (const [path, needle] of REGEX_PATHS) {
      const found = got.find((i) => i.path === path);
      assert.ok(found, `${re}: no issue at ${path}; got:\n${got.map((i) => formatIssue(i)).join('\n')}`);
      assert.equal(found.code, ConfigErrorCodes.BAD_REGEX);
      assert.equal(found.kind, 'VirtualService');
      assert.equal(found.line, lineOf(text, needle), `${re}: line of ${path}`);
      assert.match(found.message, message, `${re} at ${path}`);
    }
  }
});

test('Istio limits: empty and over-long regexes are errors', async () => {
  const long = 'a'.repeat(1025);
  const got = await issues(vsWith(long, '/'));
  assert.match(got.find((i) => i.path === 'spec.http[0].match[0].uri.regex')?.message ?? '', /too large, max length allowed is 1024/);
  const empty = await issues(vsWith('', '/'));
  assert.match(empty.find((i) => i.path === 'spec.http[0].match[0].uri.regex')?.message ?? '', /should not be empty/);
});

test('uriRegexRewrite.rewrite: groups must exist, and a backslash is a group or an escaped backslash', async () => {
  const ok = await issues(vsWith('a', '/\\\\0/\\\\1/\\\\\\\\'));
  assert.deepEqual(ok.map((i) => formatIssue(i)), []);
  for (const [rewrite, message] of [
    ['/\\\\2', /group \\2, but the regex has only 1 capture group/],
    ['/\\\\x', /must be followed by a digit/],
  ] as const) {
    const text = vsWith('a', rewrite);
    const got = await issues(text);
    const found = got.find((i) => i.path === 'spec.http[0].rewrite.uriRegexRewrite.rewrite');
    assert.ok(found, `${rewrite}: ${got.map((i) => formatIssue(i)).join('\n')}`);
    assert.equal(found.line, lineOf(text, 'uriRegexRewrite:'));
    assert.match(found.message, message);
  }
});

test('EnvoyFilter ext_authz safe_regex patterns are RE2 too', async () => {
  assert.deepEqual((await issues(envoyFilterWith('(?i)x-(?P<k>forwarded)-\\pL+'))).map((i) => formatIssue(i)), []);
  const text = envoyFilterWith('x-(?!secret).*');
  const got = await issues(text);
  const found = got.find((i) => i.code === ConfigErrorCodes.BAD_REGEX);
  assert.ok(found, got.map((i) => formatIssue(i)).join('\n'));
  assert.equal(found.kind, 'EnvoyFilter');
  assert.equal(found.line, lineOf(text, 'safe_regex'));
  assert.match(found.path, /allowed_headers\.patterns\[0\]\.safe_regex\.regex$/);
  assert.match(found.message, /lookaround/);
});
