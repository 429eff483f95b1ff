/**
 * Routing features of VirtualService http rules, through a real gateway to real upstreams.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { freePort } from '../helpers/net.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startEcho, type Echo } from '../helpers/upstream.ts';

interface Setup {
  port: number;
  v1: Awaited<ReturnType<typeof startEcho>>;
  v2: Awaited<ReturnType<typeof startEcho>>;
}

async function setup(t: TestContext, http: string, extra = ''): Promise<Setup> {
  const v1 = await startEcho(t, 'v1');
  const v2 = await startEcho(t, 'v2');
  const port = await freePort();
  const yaml = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: 127.0.0.1, ports: {http: ${v1.port}}, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: 127.0.0.1, ports: {http: ${v2.port}}, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: main}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
${http}
${extra}`;
  await startGateway(t, yaml);
  return { port, v1, v2 };
}

async function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method: method as 'GET', headers: { host: 'app.example.com', ...headers } });
  const text = await res.body.text();
  let echo: Echo | undefined;
  try {
    echo = JSON.parse(text) as Echo;
  } catch {
    echo = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, echo };
}

const toV1 = `    route: [{destination: {host: reviews, subset: v1}}]`;
const toV2 = `    route: [{destination: {host: reviews, subset: v2}}]`;

test('first matching rule wins; match entries are ORed and fields ANDed', async (t) => {
  const s = await setup(
    t,
    `  - match:
    - {uri: {prefix: /api}, method: {exact: POST}}
    - {uri: {exact: /both}}
${toV2}
  - match: [{uri: {prefix: /}}]
${toV1}`,
  );
  assert.equal((await get(s.port, '/api/x', {}, 'POST')).echo?.name, 'v2');
  assert.equal((await get(s.port, '/api/x')).echo?.name, 'v1', 'GET does not satisfy the ANDed method');
  assert.equal((await get(s.port, '/both')).echo?.name, 'v2', 'second ORed entry');
  assert.equal((await get(s.port, '/bothx')).echo?.name, 'v1', 'exact is exact');
});

test('uri exact, prefix, regex (full match) and ignoreUriCase', async (t) => {
  const s = await setup(
    t,
    `  - match: [{uri: {regex: "/items/[0-9]+"}}]
${toV2}
  - match: [{uri: {prefix: /CaSe}, ignoreUriCase: true}]
${toV2}
  - route: [{destination: {host: reviews, subset: v1}}]`,
  );
  assert.equal((await get(s.port, '/items/42')).echo?.name, 'v2');
  assert.equal((await get(s.port, '/items/42/more')).echo?.name, 'v1', 'regex must match the whole path');
  assert.equal((await get(s.port, '/case/x')).echo?.name, 'v2');
});

test('headers, withoutHeaders, queryParams, authority, port and scheme matches', async (t) => {
  const s = await setup(
    t,
    `  - match: [{headers: {end-user: {exact: jason}}}]
${toV2}
  - match: [{queryParams: {debug: {exact: "1"}}}]
${toV2}
  - match: [{authority: {exact: special.example.com}}]
${toV2}
  - match: [{uri: {prefix: /nocookie}, withoutHeaders: {cookie: {}}}]
${toV2}
  - match: [{uri: {prefix: /port}, port: 1}]
${toV2}
  - match: [{uri: {prefix: /scheme}, scheme: {exact: https}}]
${toV2}
  - route: [{destination: {host: reviews, subset: v1}}]`,
  );
  assert.equal((await get(s.port, '/', { 'end-user': 'jason' })).echo?.name, 'v2');
  assert.equal((await get(s.port, '/', { 'end-user': 'jasonx' })).echo?.name, 'v1');
  assert.equal((await get(s.port, '/?a=b&debug=1')).echo?.name, 'v2');
  assert.equal((await get(s.port, '/?debug=10')).echo?.name, 'v1');
  assert.equal((await get(s.port, '/', { host: `special.example.com:${s.port}` })).echo?.name, 'v2', 'authority matches without the port');
  assert.equal((await get(s.port, '/nocookie')).echo?.name, 'v2');
  assert.equal((await get(s.port, '/nocookie', { cookie: 'a=b' })).echo?.name, 'v1');
  assert.equal((await get(s.port, '/port')).echo?.name, 'v1', 'listener port differs');
  assert.equal((await get(s.port, '/scheme')).echo?.name, 'v1', 'plain http is not https');
});

test('weighted split distributes by weight', async (t) => {
  const s = await setup(
    t,
    `  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}`,
  );
  const counts = { v1: 0, v2: 0 };
  for (let i = 0; i < 400; i++) counts[(await get(s.port, '/')).echo!.name as 'v1' | 'v2']++;
  // 400 draws at p=0.2: mean 80, sd 8; 40..130 is far outside any plausible run.
  assert.ok(counts.v2 > 40 && counts.v2 < 130, `v2 got ${counts.v2} of 400`);
  assert.equal(counts.v1 + counts.v2, 400);
});

test('header operations at rule and destination level, request and response', async (t) => {
  const s = await setup(
    t,
    `  - headers:
      request: {set: {x-rule: r}, add: {x-multi: two}, remove: [x-drop]}
      response: {set: {x-resp: rule}, remove: [x-upstream]}
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request: {set: {x-dest: d}}
        response: {add: {x-dest-resp: d}}`,
  );
  const r = await get(s.port, '/', { 'x-drop': 'gone', 'x-multi': 'one' });
  assert.equal(r.echo?.headers['x-rule'], 'r');
  assert.equal(r.echo?.headers['x-dest'], 'd');
  assert.equal(r.echo?.headers['x-drop'], undefined);
  assert.equal(r.echo?.headers['x-multi'], 'one, two');
  assert.equal(r.headers['x-resp'], 'rule');
  assert.equal(r.headers['x-dest-resp'], 'd');
  assert.equal(r.headers['x-upstream'], undefined);
});

test('rewrite: prefix uri, authority, uriRegexRewrite', async (t) => {
  const s = await setup(
    t,
    `  - match: [{uri: {prefix: /old/}}]
    rewrite: {uri: /new/, authority: internal.example}
${toV1}
  - match: [{uri: {prefix: /strip}}]
    rewrite: {uri: /}
${toV1}
  - match: [{uri: {prefix: /re/}}]
    rewrite:
      uriRegexRewrite: {match: "^/re/([a-z]+)/(.*)$", rewrite: "/\\\\2/\\\\1"}
${toV1}`,
  );
  const a = await get(s.port, '/old/path?q=1');
  assert.equal(a.echo?.url, '/new/path?q=1');
  assert.equal(a.echo?.headers.host, 'internal.example');
  assert.equal(a.echo?.headers['x-forwarded-host'], 'app.example.com');
  assert.equal((await get(s.port, '/strip/x')).echo?.url, '/x');
  assert.equal((await get(s.port, '/strip')).echo?.url, '/');
  assert.equal((await get(s.port, '/re/abc/rest')).echo?.url, '/rest/abc');
});

test('redirect and directResponse are answered by the gateway', async (t) => {
  const s = await setup(
    t,
    `  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new-place, authority: other.example.com, scheme: https, redirectCode: 308}
  - match: [{uri: {exact: /samehost}}]
    redirect: {uri: /there}
  - match: [{uri: {exact: /hello}}]
    directResponse: {status: 418, body: {string: "short and stout"}}`,
  );
  const r = await get(s.port, '/moved?x=1');
  assert.equal(r.status, 308);
  assert.equal(r.headers.location, 'https://other.example.com/new-place?x=1');
  const same = await get(s.port, '/samehost', { host: 'app.example.com:8080' });
  assert.equal(same.status, 301);
  assert.equal(same.headers.location, 'http://app.example.com:8080/there');
  const d = await get(s.port, '/hello');
  assert.equal(d.status, 418);
  assert.equal(d.text, 'short and stout');
  assert.equal(s.v1.seen.length + s.v2.seen.length, 0, 'nothing reached an upstream');
});

test('CORS preflight answered for allowed origins; actual responses carry allow-origin', async (t) => {
  const s = await setup(
    t,
    `  - corsPolicy:
      allowOrigins: [{exact: "https://ui.example.com"}, {regex: "https://.*\\\\.trusted\\\\.com"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-upstream]
      maxAge: 24h
      allowCredentials: true
${toV1}`,
  );
  const pre = await get(s.port, '/', { origin: 'https://ui.example.com', 'access-control-request-method': 'POST' }, 'OPTIONS');
  assert.equal(pre.status, 200);
  assert.equal(pre.headers['access-control-allow-origin'], 'https://ui.example.com');
  assert.equal(pre.headers['access-control-allow-methods'], 'GET,POST');
  assert.equal(pre.headers['access-control-max-age'], '86400');
  assert.equal(pre.headers['access-control-allow-credentials'], 'true');
  assert.equal(s.v1.seen.length, 0, 'preflight answered by the gateway');
  const actual = await get(s.port, '/', { origin: 'https://app.trusted.com' });
  assert.equal(actual.headers['access-control-allow-origin'], 'https://app.trusted.com');
  const other = await get(s.port, '/', { origin: 'https://evil.example' });
  assert.equal(other.headers['access-control-allow-origin'], undefined);
});

test('no matching route: 404 with a body that says so', async (t) => {
  const s = await setup(t, `  - match: [{uri: {prefix: /only}}]\n${toV1}`);
  const r = await get(s.port, '/elsewhere');
  assert.equal(r.status, 404);
  assert.match(r.text, /no route matched.*GET app\.example\.com\/elsewhere/);
});

test('path is normalised before matching and forwarded normalised (MeshConfig pathNormalization)', async (t) => {
  const http = `  - match: [{uri: {prefix: /admin}}]
    directResponse: {status: 403, body: {string: "admin is off limits"}}
  - match: [{uri: {prefix: /public}}]
${toV1}`;
  // BASE, Istio's default: RFC 3986 dot segments; no slash merging, %2F/%5C stay encoded.
  const base = await setup(t, http);
  for (const sneaky of ['/public/../admin', '/public/%2e%2e/admin', '/public/x/../../admin']) {
    assert.equal((await get(base.port, sneaky)).status, 403, `BASE: ${sneaky} must be treated as /admin`);
  }
  assert.equal((await get(base.port, '/public%2F..%2Fadmin')).echo?.url, '/public%2F..%2Fadmin', 'BASE: %2F is not a separator');
  assert.equal((await get(base.port, '//admin')).status, 404, 'BASE: // is not merged');
  assert.equal((await get(base.port, '/public/./a//b')).echo?.url, '/public/a//b');
  assert.equal((await get(base.port, '/public/%zz')).status, 400);

  const mesh = `---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}
`;
  const strict = await setup(t, http, mesh);
  for (const sneaky of ['/public/../admin', '/public/%2e%2e/admin', '/public%2F..%2Fadmin', '//admin', '/public/..%5Cadmin']) {
    assert.equal((await get(strict.port, sneaky)).status, 403, `DECODE_AND_MERGE_SLASHES: ${sneaky} must be treated as /admin`);
  }
  assert.equal((await get(strict.port, '/public/./a//b')).echo?.url, '/public/a/b');
});

test('x-forwarded-*, x-request-id set as Envoy does; identity headers from clients are stripped', async (t) => {
  const s = await setup(t, `  - route: [{destination: {host: reviews, subset: v1}}]`);
  const r = await get(s.port, '/', {
    'x-forwarded-for': '10.0.0.1',
    'x-forwarded-proto': 'https',
    'kubeflow-userid': 'admin@example.com',
    'Kubeflow-Groups': 'admins',
    kubeflow_userid: 'sneaky',
    'x-envoy-original-path': '/evil',
    'x-request-id': 'client-id-123',
  });
  const h = r.echo!.headers;
  assert.equal(h['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http', 'the edge trusts no client proto');
  assert.equal(h['x-forwarded-host'], 'app.example.com');
  assert.equal(h['x-request-id'], 'client-id-123');
  assert.equal(h['kubeflow-userid'], undefined);
  assert.equal(h['kubeflow-groups'], undefined);
  assert.equal(h['kubeflow_userid'], undefined);
  assert.equal(h['x-envoy-original-path'], undefined);
  const fresh = await get(s.port, '/');
  assert.match(String(fresh.echo!.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});

test('upstream connections are pooled (keep-alive reused across requests)', async (t) => {
  const s = await setup(t, `  - route: [{destination: {host: reviews, subset: v1}}]`);
  let connections = 0;
  s.v1.server.on('connection', () => connections++);
  for (let i = 0; i < 20; i++) await get(s.port, '/');
  assert.ok(connections <= 2, `20 sequential requests used ${connections} upstream connections`);
});

test('match-level gateways limit a match to one of the VirtualService gateways', async (t) => {
  const other = await freePort();
  const s = await setup(
    t,
    `  - match: [{uri: {prefix: /}, gateways: [other]}]
${toV2}
  - route: [{destination: {host: reviews, subset: v1}}]`,
    `---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: other}
spec:
  selector: {istio: somewhere-else}
  servers:
  - port: {number: ${other}, name: http, protocol: HTTP}
    hosts: ["*"]`,
  );
  assert.equal((await get(s.port, '/')).echo?.name, 'v1', 'the match is limited to gateway other');
});
