/**
 * Sidecar telemetry on real sockets: client app → client sidecar (outbound, reporter=source) ──mTLS──►
 * server sidecar (inbound, reporter=destination) → app. Each sidecar has its own metrics port;
 * spans of both hops go to one OTLP collector and form one trace.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Pool, request } from 'undici';
import { loadOrCreateCa } from '../../certs/index.ts';
import { startSidecar, type SidecarHandle } from '../../bin/commands/sidecar.ts';
import { silentLogger } from '../../gateway/runtime.ts';
import { decodeOtlp, type SpanData } from '../../telemetry/otlp.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

function configYaml(serverInbound: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-v1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: ${serverInbound}}
  labels: {app: httpbin, version: v1}
  serviceAccount: httpbin
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sleep, namespace: default}
spec:
  address: 127.0.0.1
  labels: {app: sleep, version: v1}
  serviceAccount: sleep
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`;
}

/** Samples of one metric whose labels include all of `want`. */
function samples(text: string, metric: string, want: Record<string, string>): { labels: string; value: number }[] {
  const out: { labels: string; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${metric}\\{(.*)\\} (\\S+)$`).exec(line);
    if (m && Object.entries(want).every(([k, v]) => m[1]!.includes(`${k}="${v}"`))) out.push({ labels: m[1]!, value: Number(m[2]) });
  }
  return out;
}

async function scrape(port: number): Promise<string> {
  const res = await request(`http://127.0.0.1:${port}/stats/prometheus`);
  assert.equal(res.statusCode, 200);
  return res.body.text();
}

test('sidecar telemetry: reporter=destination with the mTLS peer as source, reporter=source outbound, one trace over OTLP', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-mesh-tel-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const inbound = await freePort();
  writeFileSync(join(dir, 'mesh.yaml'), configYaml(inbound));
  const ca = loadOrCreateCa(join(dir, 'ca'));

  // One OTLP collector for both sidecars (what the demo's trace store does).
  const collected: SpanData[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      collected.push(...decodeOtlp(JSON.parse(Buffer.concat(chunks).toString())).spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => collector.close(() => r())));
  const otlpEndpoint = `http://127.0.0.1:${(collector.address() as { port: number }).port}/v1/traces`;

  const app = await startEcho(t, 'httpbin');
  const handles: SidecarHandle[] = [];
  t.after(() => Promise.allSettled(handles.map((h) => h.close())));
  const common = { config: [dir], ca, outboundPort: 0, metricsPort: 0, otlpEndpoint, tracingSampling: 100, logger: silentLogger, drainMs: 100, watch: false };
  const server = await startSidecar({ ...common, workload: 'default/httpbin-v1', appPort: app.port });
  handles.push(server);
  const client = await startSidecar({ ...common, workload: 'default/sleep' });
  handles.push(client);
  assert.ok(server.metricsPort && client.metricsPort && server.metricsPort !== client.metricsPort, 'each sidecar has its own metrics port');

  const proxy = new Pool(`http://127.0.0.1:${client.sidecar.outboundPort()}`);
  t.after(() => proxy.close());
  const call = async (path: string): Promise<{ status: number; body: string }> => {
    const res = await proxy.request({ path: `http://httpbin:8000${path}`, method: 'GET', headers: { host: 'httpbin:8000' } });
    return { status: res.statusCode, body: await res.body.text() };
  };
  for (let i = 0; i < 3; i++) assert.equal((await call('/get')).status, 200);
  assert.equal((await call('/admin')).status, 403);

  await t.test('the server sidecar reports reporter=destination with the client as source over mutual TLS', async () => {
    const text = await scrape(server.metricsPort!);
    const ok = samples(text, 'istio_requests_total', {
      reporter: 'destination',
      source_workload: 'sleep',
      source_workload_namespace: 'default',
      source_principal: 'spiffe://cluster.local/ns/default/sa/sleep',
      source_app: 'sleep',
      destination_workload: 'httpbin-v1',
      destination_principal: 'spiffe://cluster.local/ns/default/sa/httpbin',
      destination_app: 'httpbin',
      destination_version: 'v1',
      destination_service: 'httpbin.default.svc.cluster.local',
      destination_service_name: 'httpbin',
      response_code: '200',
      connection_security_policy: 'mutual_tls',
    });
    assert.equal(ok.length, 1, text);
    assert.equal(ok[0]!.value, 3);
    const denied = samples(text, 'istio_requests_total', { reporter: 'destination', response_code: '403', response_flags: 'RBAC', source_principal: 'spiffe://cluster.local/ns/default/sa/sleep' });
    assert.equal(denied.length, 1, text);
    assert.equal(denied[0]!.value, 1);
    assert.equal(samples(text, 'istio_request_duration_milliseconds_count', { reporter: 'destination', response_code: '200' })[0]?.value, 3);
    assert.equal((text.match(/^# TYPE istio_requests_total /gm) ?? []).length, 1, 'one family header per metric');
  });

  await t.test('the client sidecar reports reporter=source with the server as destination', async () => {
    const text = await scrape(client.metricsPort!);
    const ok = samples(text, 'istio_requests_total', {
      reporter: 'source',
      source_workload: 'sleep',
      source_principal: 'spiffe://cluster.local/ns/default/sa/sleep',
      destination_workload: 'httpbin-v1',
      destination_principal: 'spiffe://cluster.local/ns/default/sa/httpbin',
      destination_service: 'httpbin.default.svc.cluster.local',
      response_code: '200',
    });
    assert.equal(ok.length, 1, text);
    assert.equal(ok[0]!.value, 3);
    assert.equal(samples(text, 'istio_requests_total', { reporter: 'destination' }).length, 0, 'a client-only sidecar has no inbound series');
  });

  await t.test('each hop is a span: client CLIENT → server SERVER → the app sees the server span as parent', async () => {
    const until = Date.now() + 5_000;
    while (Date.now() < until && !(collected.some((s) => s.kind === 'SERVER') && collected.some((s) => s.kind === 'CLIENT'))) await new Promise((r) => setTimeout(r, 50));
    const seen = app.seen.find((e) => e.url === '/get')!;
    const [, traceId, parentOfApp] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(seen.headers['traceparent'])) ?? [];
    assert.ok(traceId, `the app got a sampled traceparent: ${String(seen.headers['traceparent'])}`);
    const trace = collected.filter((s) => s.traceId === traceId);
    const clientSpan = trace.find((s) => s.kind === 'CLIENT');
    const serverSpan = trace.find((s) => s.kind === 'SERVER');
    assert.ok(clientSpan && serverSpan, `both hops exported: ${JSON.stringify(trace.map((s) => [s.kind, s.service, s.name]))}`);
    assert.equal(clientSpan.service, 'sleep.default');
    assert.equal(serverSpan.service, 'httpbin.default');
    assert.equal(serverSpan.name, 'httpbin.default.svc.cluster.local:8000/*');
    assert.equal(serverSpan.spanId, parentOfApp, 'the app continues the server span');
    assert.ok(serverSpan.attributes.some(([k, v]) => k === 'peer.principal' && v === 'cluster.local/ns/default/sa/sleep'));
    // The server hop continues what the client hop sent (its parent is the client's upstream span id chain).
    assert.equal(serverSpan.parentSpanId, clientSpan.spanId);
  });
});
