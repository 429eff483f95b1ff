/**
 * The dashboard's data document over a real Bookinfo mesh (gateway + two outbound mesh
 * listeners, real Bookinfo services): the graph's edges and their numbers, the route table with
 * live hits, upstream health, traces and one trace's waterfall; the same endpoints with telemetry
 * off; bad trace ids; and p99 / rate arithmetic on a real registry.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import type { DashboardData } from '../../gateway/dashboard/index.ts';
import { GraphHistory, quantile } from '../../gateway/dashboard/graph.ts';
import type { TraceDetail } from '../../gateway/dashboard/traces.ts';
import { DURATION_BUCKETS_MS, IstioMetrics } from '../../gateway/telemetry/istio-metrics.ts';
import { Registry } from '../../lib/metrics.ts';
import { startBookinfoMesh } from './dashboard-bookinfo.ts';

async function get<T>(url: string): Promise<{ status: number; headers: Record<string, unknown>; body: T }> {
  const res = await request(url);
  const text = await res.body.text();
  const type = String(res.headers['content-type'] ?? '');
  return { status: res.statusCode, headers: res.headers, body: (type.startsWith('application/json') ? JSON.parse(text) : text) as T };
}

async function load(port: number, n: number, path = '/productpage'): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'bookinfo.example.com' } });
    await res.body.dump();
    assert.equal(res.statusCode, path === '/productpage' ? 200 : res.statusCode);
  }
}

test('dashboard data: Bookinfo graph with rates, route hits, upstream health, traces and a waterfall', async (t) => {
  const mesh = await startBookinfoMesh(t);
  await load(mesh.edgePort, 10);
  const admin = `http://127.0.0.1:${mesh.admin.port()}`;
  const { status, body: d } = await get<DashboardData>(`${admin}/dashboard/data`);
  assert.equal(status, 200);
  assert.deepEqual(d.proxies, ['gateway', 'productpage sidecar', 'reviews sidecar']);

  const g = d.graph!;
  const edge = (from: string, to: string) => g.edges.find((e) => e.source.endsWith(`/${from}`) && e.target.endsWith(`/${to}`));
  for (const [from, to] of [
    ['istio-ingressgateway', 'productpage'],
    ['productpage', 'details'],
    ['productpage', 'reviews'],
    ['reviews', 'ratings'],
  ]) {
    assert.ok(edge(from!, to!), `edge ${from} → ${to} in ${JSON.stringify(g.edges.map((e) => `${e.source}→${e.target}`))}`);
  }
  assert.equal(g.edges.length, 4, 'no other edges (the redirect and 404s are answered by the gateway itself)');
  const front = edge('istio-ingressgateway', 'productpage')!;
  assert.equal(front.total.requests, 10);
  assert.equal(front.total.errorRate, 0);
  assert.ok(front.total.p99Ms !== null && front.total.p99Ms > 0);
  assert.deepEqual(front.services, ['productpage.default.svc.cluster.local']);
  assert.ok(front.window, 'a window exists: the dashboard took its first sample at start');
  assert.equal(front.window.requests, 10);
  assert.ok(front.window.rps > 0);
  assert.equal(edge('productpage', 'reviews')!.total.requests, 10);
  const ratingsCalls = edge('reviews', 'ratings')!.total.requests;
  assert.ok(ratingsCalls > 0 && ratingsCalls < 10, `the 50/50 split sends some reviews calls to v3 (which calls ratings): ${ratingsCalls}`);
  const ingress = g.nodes.find((n) => n.name === 'istio-ingressgateway')!;
  assert.equal(ingress.kind, 'ingress');
  assert.equal(ingress.namespace, 'istio-system');
  assert.equal(g.nodes.find((n) => n.name === 'reviews')!.kind, 'service');

  const rule = (vs: string, index: number) => d.routes.find((r) => r.virtualService === vs && r.index === index)!;
  const pp = rule('default/bookinfo', 0);
  assert.equal(pp.proxy, 'gateway');
  assert.equal(pp.name, 'productpage');
  assert.equal(pp.hits, 10);
  assert.deepEqual(pp.match, ['uri = /productpage', 'uri starts with /static']);
  assert.deepEqual(pp.action, { kind: 'route', destinations: [{ host: 'productpage.default.svc.cluster.local', port: 9080, weight: 100 }] });
  assert.match(pp.source, /bookinfo-dashboard\.yaml:\d+$/);
  assert.deepEqual(rule('default/bookinfo', 1).action, { kind: 'redirect', to: '/productpage', code: 301 });
  const split = d.routes.filter((r) => r.virtualService === 'default/reviews' && r.index === 1);
  const fromPp = split.find((r) => r.proxy === 'productpage sidecar')!;
  assert.equal(fromPp.hits, 10, 'every productpage → reviews call went through the split rule');
  assert.equal(fromPp.action.kind === 'route' && fromPp.action.destinations.map((x) => `${x.subset}:${x.weight}`).join(','), 'v1:50,v3:50');
  assert.deepEqual(rule('default/reviews', 0).match, ['header[end-user] = jason']);

  const reviewsV3 = d.clusters.find((c) => c.proxy === 'productpage sidecar' && c.name === 'outbound|9080|v3|reviews.default.svc.cluster.local')!;
  assert.equal(reviewsV3.endpoints.length, 1);
  assert.equal(reviewsV3.endpoints[0]!.health, 'HEALTHY');
  assert.equal(reviewsV3.endpoints[0]!.version, 'v3');
  assert.equal(reviewsV3.active, 0);

  const traces = d.traces!;
  assert.equal(traces.kept, 10);
  assert.equal(traces.recent.length, 10);
  const slowest = traces.slow[0]!;
  assert.ok(traces.recent.every((x) => x.durationMs <= slowest.durationMs));
  // Istio's getRouteOperation: an exact uri match names the span host:port/path.
  assert.deepEqual([...new Set(traces.recent.map((x) => `${x.rootService} ${x.root}`))], ['istio-ingressgateway.istio-system productpage.default.svc.cluster.local:9080/productpage']);
  assert.ok(traces.recent.every((x) => x.spans >= 3 && x.status === 200));

  const detail = await get<TraceDetail>(`${admin}/dashboard/data?trace=${slowest.traceId}`);
  assert.equal(detail.status, 200);
  const spans = detail.body.spans;
  assert.equal(spans.length, slowest.spans);
  assert.equal(spans[0]!.depth, 0);
  assert.equal(spans[0]!.offsetUs, 0);
  assert.ok(spans.slice(1).every((s) => s.depth >= 1 && s.parentId !== undefined));
  assert.deepEqual(new Set(spans.map((s) => s.service)), new Set(['istio-ingressgateway.istio-system', 'productpage.default', ...(spans.length > 3 ? ['reviews.default'] : [])]));

  const bad = await get<{ error: string }>(`${admin}/dashboard/data?trace=not-hex`);
  assert.equal(bad.status, 400);
  const gone = await get<{ error: string }>(`${admin}/dashboard/data?trace=${'0'.repeat(32)}`);
  assert.equal(gone.status, 404);
  const page = await get<string>(`${admin}/dashboard`);
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-security-policy']), /script-src 'sha256-[A-Za-z0-9+/=]+'/);
  assert.doesNotMatch(String(page.headers['content-security-policy']), /unsafe-inline/);
  assert.match(page.body, /<svg|id="graph"/);
  const post = await request(`${admin}/dashboard/data`, { method: 'POST', body: '' });
  await post.body.dump();
  assert.equal(post.statusCode, 405);
});

test('dashboard data with telemetry off: no graph, no traces; routes and upstreams still live', async (t) => {
  const mesh = await startBookinfoMesh(t, { telemetry: false });
  await load(mesh.edgePort, 3);
  const { body: d } = await get<DashboardData>(`http://127.0.0.1:${mesh.admin.port()}/dashboard/data`);
  assert.equal(d.graph, null);
  assert.equal(d.traces, null);
  assert.equal(d.routes.find((r) => r.virtualService === 'default/bookinfo' && r.index === 0)!.hits, 3);
  assert.ok(d.clusters.length > 0);
  const page = await get<string>(`http://127.0.0.1:${mesh.admin.port()}/dashboard`);
  assert.equal(page.status, 200);
});

test('graph arithmetic on a real registry: p99 from Istio buckets, 5xx share, windowed rate, source reporter wins', () => {
  assert.equal(quantile(0.99, [1, 5, Infinity], [0, 0, 0]), null);
  assert.equal(quantile(0.5, [10, 20, Infinity], [0, 10, 10]), 15, 'linear inside the bucket, as histogram_quantile');
  assert.equal(quantile(0.99, [10, 20, Infinity], [0, 0, 5]), 20, 'the +Inf bucket answers the highest finite bound');

  let now = 1_000_000;
  const registry = new Registry();
  const metrics = new IstioMetrics(registry, { proxy: { workload: 'productpage-v1', app: 'productpage', namespace: 'default' } });
  const history = new GraphHistory(10_000, () => now);
  const rec = (status: number, durationMs: number) =>
    metrics.record({ method: 'GET', authority: 'x', path: '/', status, flag: '-', startMs: 0, durationMs, protocol: 'HTTP/1.1', grpc: false, requestBytes: 0, responseBytes: 0, cluster: 'c' }, undefined);

  // Exposition text as a proxy serves it (hand-made to control the counts exactly).
  const line = (reporter: string, code: number, n: number, buckets: number[]) => {
    const l = `reporter="${reporter}",source_workload="productpage-v1",source_canonical_service="productpage",source_workload_namespace="default",destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",destination_canonical_service="reviews",destination_service_namespace="default",response_code="${code}"`;
    const bs = [...DURATION_BUCKETS_MS.map(String), '+Inf'].map((le, i) => `istio_request_duration_milliseconds_bucket{${l},le="${le}"} ${buckets[i] ?? buckets.at(-1)}`);
    return [`istio_requests_total{${l}} ${n}`, ...bs].join('\n');
  };
  rec(200, 3);
  assert.deepEqual(history.graph([registry.render()]).edges, [], 'requests without a destination service (local replies) are not edges');
  const first = history.graph([line('source', 200, 0, [0])]);
  assert.equal(first.edges[0]!.window, null, 'one sample: no rate yet');
  now += 10_000;
  // 100 requests in 10 s: 90 at ≤ 5 ms, 10 in (5, 10] ms, 5 of them 503s; a destination-reported copy is ignored.
  const cum = DURATION_BUCKETS_MS.map((b) => (b < 5 ? 0 : b < 10 ? 90 : 100));
  const text = [line('source', 200, 95, cum.map((c) => Math.round(c * 0.95))), line('source', 503, 5, cum.map((c) => Math.round(c * 0.05))), line('destination', 200, 1000, cum.map((c) => c * 10))].join('\n');
  const g = history.graph([text]);
  assert.equal(g.edges.length, 1);
  const e = g.edges[0]!;
  assert.equal(e.source, 'default/productpage');
  assert.equal(e.target, 'default/reviews');
  assert.equal(e.total.requests, 100);
  assert.equal(e.total.errorRate, 0.05);
  assert.ok(e.window);
  assert.equal(e.window.seconds, 10);
  assert.equal(e.window.rps, 10);
  assert.equal(e.window.errorRate, 0.05);
  assert.ok(e.window.p99Ms! > 5 && e.window.p99Ms! <= 10, `p99 in the (5, 10] bucket: ${e.window.p99Ms}`);
});
