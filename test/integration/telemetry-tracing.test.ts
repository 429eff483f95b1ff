/**
 * Tracing through real gateways: two gateways in a row (edge → inner → app) produce one trace,
 * the inner gateway exporting over OTLP/HTTP into the edge's embedded store; the app sees W3C and
 * B3 headers naming the inner gateway's span; Jaeger's query API answers in Jaeger's shape with
 * working filters; an incoming context is continued and its sampled flag respected; OTLP export
 * reaches a tiny collector in the OTLP JSON shape.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { startMesh } from './telemetry-helper.ts';

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  startTime: number;
  duration: number;
  tags: { key: string; type: string; value: unknown }[];
  logs: unknown[];
  processID: string;
  warnings: unknown;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: unknown[] }>;
  warnings: unknown;
}

async function json<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await request(url);
  return { status: res.statusCode, body: (await res.body.json()) as T };
}

function gatewayYaml(name: string, selector: string, port: number, host: string, upstreamPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: istio-system}
spec:
  selector: {istio: ${selector}}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: next, namespace: default}
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${upstreamPort}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [${name}]
  http:
  - route: [{destination: {host: ${host}}}]
`;
}

async function twoHops(t: TestContext) {
  const app = await startEcho(t, 'app');
  const edgeTel = createTelemetry({ proxy: { workload: 'edge-gateway', namespace: 'istio-system' }, tracing: { sampling: 100 } });
  t.after(() => edgeTel.close());
  const { port: storePort } = await edgeTel.listen(0);
  const innerTel = createTelemetry({
    proxy: { workload: 'inner-gateway', namespace: 'default' },
    tracing: { sampling: 0, store: false, otlpEndpoint: `http://127.0.0.1:${storePort}/v1/traces` },
  });
  t.after(() => innerTel.close());
  const innerPort = await freePort();
  const inner = await startGateway(t, gatewayYaml('inner', 'inner', innerPort, 'app.default.svc.cluster.local', app.port), { labels: { istio: 'inner' }, telemetry: innerTel });
  innerTel.attach(inner);
  const edgePort = await freePort();
  const edge = await startGateway(t, gatewayYaml('edge', 'ingressgateway', edgePort, 'inner.default.svc.cluster.local', innerPort), { telemetry: edgeTel });
  edgeTel.attach(edge);
  return { app, edgeTel, innerTel, storePort, edgePort };
}

test('two gateways, one trace: parent/child spans, propagated W3C and B3, OTLP into one store, Jaeger shape', async (t) => {
  const { app, innerTel, storePort, edgePort } = await twoHops(t);
  const res = await request(`http://127.0.0.1:${edgePort}/productpage?x=1&code=secret-code`, { headers: { host: 'bookinfo.example.com', 'user-agent': 'trace-test' } });
  assert.equal(res.statusCode, 200);
  await res.body.text();
  await innerTel.exporter!.flush();

  const seen = app.seen.at(-1)!.headers;
  const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(seen['traceparent']));
  assert.ok(tp, `traceparent at the app: ${seen['traceparent']}`);
  const [, traceId, innerSpan] = tp;
  assert.equal(seen['x-b3-traceid'], traceId);
  assert.equal(seen['x-b3-spanid'], innerSpan);
  assert.equal(seen['x-b3-sampled'], '1', 'the inner gateway (sampling 0) respected the edge decision');
  assert.match(String(seen['x-b3-parentspanid']), /^[0-9a-f]{16}$/);
  const edgeSpan = String(seen['x-b3-parentspanid']);

  const services = await json<{ data: string[]; total: number; errors: null }>(`http://127.0.0.1:${storePort}/api/services`);
  assert.deepEqual(services.body.data, ['edge-gateway.istio-system', 'inner-gateway.default']);
  assert.equal(services.body.errors, null);
  const ops = await json<{ data: string[] }>(`http://127.0.0.1:${storePort}/api/services/edge-gateway.istio-system/operations`);
  assert.deepEqual(ops.body.data, ['inner.default.svc.cluster.local:80/*']);

  const one = await json<{ data: JaegerTrace[]; total: number; limit: number; offset: number; errors: null }>(`http://127.0.0.1:${storePort}/api/traces/${traceId}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.data.length, 1);
  const trace = one.body.data[0]!;
  assert.equal(trace.traceID, traceId);
  assert.equal(trace.spans.length, 2);
  const byService = (svc: string) => trace.spans.find((s) => trace.processes[s.processID]!.serviceName === svc)!;
  const e = byService('edge-gateway.istio-system');
  const i = byService('inner-gateway.default');
  assert.equal(e.spanID, edgeSpan);
  assert.equal(i.spanID, innerSpan);
  assert.deepEqual(e.references, []);
  assert.deepEqual(i.references, [{ refType: 'CHILD_OF', traceID: traceId, spanID: edgeSpan }]);
  assert.ok(e.startTime > 1e15 && e.startTime < 1e17, 'startTime in microseconds since the epoch');
  assert.ok(e.duration >= i.duration && i.duration > 0);
  assert.deepEqual(e.logs, []);
  const tag = (s: JaegerSpan, k: string) => s.tags.find((x) => x.key === k);
  assert.deepEqual(tag(e, 'component'), { key: 'component', type: 'string', value: 'proxy' });
  assert.deepEqual(tag(e, 'http.status_code'), { key: 'http.status_code', type: 'int64', value: 200 });
  assert.equal(tag(e, 'http.method')?.value, 'GET');
  assert.equal(tag(e, 'http.url')?.value, 'http://bookinfo.example.com/productpage?x=1&code=[REDACTED]');
  assert.equal(tag(e, 'istio.canonical_service')?.value, 'edge-gateway');
  assert.equal(tag(e, 'istio.namespace')?.value, 'istio-system');
  assert.equal(tag(e, 'upstream_cluster')?.value, 'outbound|80||inner.default.svc.cluster.local');
  assert.equal(tag(e, 'response_flags')?.value, '-');
  assert.equal(tag(e, 'peer.address')?.value, '127.0.0.1');
  assert.equal(tag(e, 'span.kind')?.value, 'client');
  assert.equal(tag(e, 'guid:x-request-id')?.value, tag(i, 'guid:x-request-id')?.value, 'one x-request-id across hops');
  assert.equal(tag(i, 'guid:x-request-id')?.value, seen['x-request-id']);
  assert.equal(tag(i, 'http.status_code')?.value, 200);

  const missing = await json<{ data: null; errors: { code: number }[] }>(`http://127.0.0.1:${storePort}/api/traces/${'f'.repeat(32)}`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.errors[0]!.code, 404);
});

test('Jaeger /api/traces filters: service required, operation, tags, duration, lookback, limit', async (t) => {
  const slowAfter = new Set(['/slow']);
  const mesh = await startMesh(t, { tracing: { sampling: 100 } }, (req, res) => {
    if (slowAfter.has(req.url)) {
      setTimeout(() => {
        res.writeHead(500);
        res.end('slow failure');
      }, 120);
      return true;
    }
  });
  const { port: sp } = await mesh.tel.listen(0);
  for (const path of ['/fast', '/fast', '/slow', '/nowhere']) {
    const r = await request(`http://127.0.0.1:${mesh.port}${path}`, { headers: { host: 'x.example.com' } });
    await r.body.text();
  }
  const svc = 'istio-ingressgateway.istio-system';
  const q = async (params: string) => (await json<{ data: JaegerTrace[]; errors: unknown }>(`http://127.0.0.1:${sp}/api/traces?${params}`)).body;
  const noService = await json<{ errors: { code: number; msg: string }[] }>(`http://127.0.0.1:${sp}/api/traces`);
  assert.equal(noService.status, 400);
  assert.match(noService.body.errors[0]!.msg, /service/);
  assert.equal((await q(`service=${svc}`)).data.length, 4);
  assert.equal((await q(`service=${svc}&limit=2`)).data.length, 2);
  assert.equal((await q(`service=${svc}&operation=${encodeURIComponent('reviews.default.svc.cluster.local:9080/*')}`)).data.length, 3);
  // Istio's getRouteOperation: no single destination cluster → `<VirtualService name>:<port><path>`.
  assert.equal((await q(`service=${svc}&operation=${encodeURIComponent(`main:${mesh.port}/nowhere*`)}`)).data.length, 1, 'the direct-response route is named as Istio names it');
  assert.equal((await q(`service=${svc}&tags=${encodeURIComponent('{"http.status_code":"500"}')}`)).data.length, 1);
  assert.equal((await q(`service=${svc}&tags=${encodeURIComponent('{"error":"true"}')}`)).data.length, 2, '500 and 503 are errors');
  assert.equal((await q(`service=${svc}&minDuration=100ms`)).data.length, 1);
  assert.equal((await q(`service=${svc}&maxDuration=100ms`)).data.length, 3);
  assert.equal((await q(`service=${svc}&lookback=1h`)).data.length, 4);
  assert.equal((await q(`service=${svc}&start=${(Date.now() + 60_000) * 1000}`)).data.length, 0);
  assert.equal((await q(`service=nobody`)).data.length, 0);
  const bad = await json<{ errors: unknown[] }>(`http://127.0.0.1:${sp}/api/traces?service=${svc}&minDuration=fast`);
  assert.equal(bad.status, 400);
});

test('incoming context: continued when sampled, respected when not, x-client-trace-id forces, b3 single answered in kind', async (t) => {
  const mesh = await startMesh(t, { tracing: { sampling: 0 } });
  const { port: sp } = await mesh.tel.listen(0);
  const send = async (headers: Record<string, string>) => {
    const r = await request(`http://127.0.0.1:${mesh.port}/r`, { headers: { host: 'x', ...headers } });
    await r.body.text();
    return mesh.ups[0]!.seen.at(-1)!.headers;
  };
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const h1 = await send({ traceparent: `00-${traceId}-00f067aa0ba902b7-01`, tracestate: 'vendor=1' });
  assert.match(String(h1.traceparent), new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  assert.equal(h1.tracestate, 'vendor=1');
  assert.equal(h1['x-b3-parentspanid'], '00f067aa0ba902b7');
  const stored = await json<{ data: JaegerTrace[] }>(`http://127.0.0.1:${sp}/api/traces/${traceId}`);
  assert.equal(stored.body.data[0]!.spans[0]!.references[0]!.spanID, '00f067aa0ba902b7');

  const h2 = await send({ traceparent: `00-${'1'.repeat(32)}-00f067aa0ba902b7-00` });
  assert.match(String(h2.traceparent), /-00$/);
  assert.equal(h2['x-b3-sampled'], '0');
  assert.equal((await json<unknown>(`http://127.0.0.1:${sp}/api/traces/${'1'.repeat(32)}`)).status, 404, 'not sampled, not stored');

  const h3 = await send({ 'x-client-trace-id': 'abc' });
  assert.equal(h3['x-b3-sampled'], '1');
  assert.equal((await json<unknown>(`http://127.0.0.1:${sp}/api/traces/${h3['x-b3-traceid']}`)).status, 200);

  const h4 = await send({ b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90' });
  assert.match(String(h4.b3), /^80f198ee56343ba864fe8b2a57d3eff7-[0-9a-f]{16}-1-e457b5a2e4d86bd1$/);
  assert.equal(h4['x-b3-traceid'], '80f198ee56343ba864fe8b2a57d3eff7');

  const h5 = await send({ 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7', 'x-b3-sampled': '1' });
  assert.equal(h5['x-b3-traceid'], '0000000000000000a3ce929d0e0e4736', '64-bit B3 ids are left-padded');

  const h6 = await send({ traceparent: 'garbage' });
  assert.match(String(h6.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'invalid context: a new unsampled trace');
});

test('OTLP export: batches reach a collector in the OTLP JSON shape', async (t) => {
  const bodies: { path: string; type: string; body: unknown }[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push({ path: req.url ?? '', type: String(req.headers['content-type']), body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => collector.close(() => r())));
  const cport = (collector.address() as { port: number }).port;
  const mesh = await startMesh(t, { tracing: { sampling: 100, store: false, otlpEndpoint: `http://127.0.0.1:${cport}/v1/traces` } });
  for (let i = 0; i < 3; i++) {
    const r = await request(`http://127.0.0.1:${mesh.port}/r${i}`, { headers: { host: 'x' } });
    await r.body.text();
  }
  await mesh.tel.exporter!.flush();
  assert.equal(bodies.length, 1, 'one batch');
  assert.equal(bodies[0]!.path, '/v1/traces');
  assert.equal(bodies[0]!.type, 'application/json');
  const req = bodies[0]!.body as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { scope: { name: string }; spans: Record<string, unknown>[] }[] }[] };
  assert.equal(req.resourceSpans.length, 1);
  const rs = req.resourceSpans[0]!;
  assert.equal(rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue, 'istio-ingressgateway.istio-system');
  const spans = rs.scopeSpans[0]!.spans;
  assert.equal(spans.length, 3);
  for (const s of spans) {
    assert.match(String(s.traceId), /^[0-9a-f]{32}$/);
    assert.match(String(s.spanId), /^[0-9a-f]{16}$/);
    assert.equal(s.kind, 3, 'SPAN_KIND_CLIENT');
    assert.match(String(s.startTimeUnixNano), /^\d{19}$/);
    assert.ok(BigInt(String(s.endTimeUnixNano)) >= BigInt(String(s.startTimeUnixNano)));
    const attrs = s.attributes as { key: string; value: Record<string, unknown> }[];
    assert.deepEqual(attrs.find((a) => a.key === 'http.status_code')?.value, { intValue: '200' });
    assert.deepEqual(attrs.find((a) => a.key === 'component')?.value, { stringValue: 'proxy' });
  }
});
