/**
 * Istio metrics from a real gateway: names, labels and buckets in the exposition, label values
 * from config only (a flood of random Hosts and paths adds no series), `promtool check metrics`
 * accepts the output, and a real Prometheus scrapes the metrics server and answers a query for
 * istio_requests_total with the right labels.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { missing, which } from '../helpers/external.ts';
import { freePort } from '../helpers/net.ts';
import { BYTES_BUCKETS, DURATION_BUCKETS_MS } from '../../gateway/telemetry/istio-metrics.ts';
import { parseProm, startMesh } from './telemetry-helper.ts';

async function get(port: number, path: string, host = 'reviews.example.com'): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host } });
  await res.body.text();
  return res.statusCode;
}

async function scrape(port: number): Promise<string> {
  const res = await request(`http://127.0.0.1:${port}/stats/prometheus`);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return res.body.text();
}

test('istio_* metrics carry Istio labels resolved from config, with Istio buckets', async (t) => {
  const mesh = await startMesh(t, { tracing: false });
  const { port: mport } = await mesh.tel.listen(0);
  for (let i = 0; i < 3; i++) assert.equal(await get(mesh.port, '/reviews/1'), 200);
  assert.equal(await get(mesh.port, '/nowhere'), 503);
  const samples = parseProm(await scrape(mport));

  const ok = samples.filter((s) => s.name === 'istio_requests_total' && s.labels.response_code === '200');
  assert.equal(ok.length, 1, 'one series for the 200s');
  assert.equal(ok[0]!.value, 3);
  assert.deepEqual(ok[0]!.labels, {
    reporter: 'source',
    source_workload: 'istio-ingressgateway',
    source_canonical_service: 'istio-ingressgateway',
    source_canonical_revision: 'latest',
    source_workload_namespace: 'istio-system',
    source_principal: 'unknown',
    source_app: 'istio-ingressgateway',
    source_version: 'unknown',
    source_cluster: 'Kubernetes',
    destination_workload: 'reviews-v1',
    destination_workload_namespace: 'default',
    destination_principal: 'spiffe://cluster.local/ns/default/sa/bookinfo-reviews',
    destination_app: 'reviews',
    destination_version: 'v1',
    destination_service: 'reviews.default.svc.cluster.local',
    destination_canonical_service: 'reviews',
    destination_canonical_revision: 'v1',
    destination_service_name: 'reviews',
    destination_service_namespace: 'default',
    destination_cluster: 'Kubernetes',
    request_protocol: 'http',
    response_code: '200',
    grpc_response_status: '',
    response_flags: '-',
    connection_security_policy: 'unknown',
  });
  const direct = samples.find((s) => s.name === 'istio_requests_total' && s.labels.response_code === '503');
  assert.equal(direct?.labels.destination_service, 'unknown');

  // Histograms: Istio's buckets, cumulative, +Inf equals _count.
  const buckets = samples.filter((s) => s.name === 'istio_request_duration_milliseconds_bucket' && s.labels.response_code === '200');
  assert.deepEqual(buckets.map((b) => b.labels.le), [...DURATION_BUCKETS_MS.map(String), '+Inf']);
  assert.equal(buckets.at(-1)!.value, 3);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value);
  const resp = samples.filter((s) => s.name === 'istio_response_bytes_bucket' && s.labels.response_code === '200');
  assert.deepEqual(resp.map((b) => b.labels.le), [...BYTES_BUCKETS.map(String), '+Inf']);
  assert.equal(samples.find((s) => s.name === 'istio_response_bytes_count' && s.labels.response_code === '200')?.value, 3);
  assert.ok(samples.find((s) => s.name === 'istio_response_bytes_sum' && s.labels.response_code === '200')!.value > 0);

  // Health metrics.
  assert.equal(samples.find((s) => s.name === 'portico_config_version_info')?.labels.version, mesh.runtime.table().snapshot.version);
  assert.equal(samples.find((s) => s.name === 'portico_config_reload_failures_total')?.value, 0);
  mesh.tel.configReloadFailed();
  assert.equal(parseProm(await scrape(mport)).find((s) => s.name === 'portico_config_reload_failures_total')?.value, 1);
  assert.ok(samples.some((s) => s.name === 'portico_upstream_pool_connections'), 'pool gauges present');
});

test('label cardinality is bounded: random hosts, paths and headers add no series', async (t) => {
  const mesh = await startMesh(t, { tracing: false });
  const { port: mport } = await mesh.tel.listen(0);
  await get(mesh.port, '/warm');
  await get(mesh.port, '/nowhere');
  const before = parseProm(await scrape(mport)).filter((s) => s.name === 'istio_requests_total').length;
  for (let i = 0; i < 40; i++) {
    await get(mesh.port, i % 2 ? `/x/${Math.random()}` : `/nowhere/${i}`, `h${i}-${Math.random().toString(36).slice(2)}.example.com`);
  }
  const after = parseProm(await scrape(mport)).filter((s) => s.name === 'istio_requests_total');
  assert.equal(after.length, before);
  assert.equal(after.reduce((n, s) => n + s.value, 0), 42);
});

test('TCP connection metrics API', async (t) => {
  const mesh = await startMesh(t, { tracing: false });
  const { port: mport } = await mesh.tel.listen(0);
  const c = mesh.tel.tcpConnection('outbound|9080||reviews.default.svc.cluster.local');
  c.opened();
  c.received(100);
  c.sent(2500);
  c.closed();
  const s = parseProm(await scrape(mport));
  const sent = s.find((x) => x.name === 'istio_tcp_sent_bytes_total');
  assert.equal(sent?.value, 2500);
  assert.equal(sent?.labels.request_protocol, 'tcp');
  assert.equal(sent?.labels.destination_service, 'reviews.default.svc.cluster.local');
  assert.equal(s.find((x) => x.name === 'istio_tcp_received_bytes_total')?.value, 100);
  assert.equal(s.find((x) => x.name === 'istio_tcp_connections_opened_total')?.value, 1);
  assert.equal(s.find((x) => x.name === 'istio_tcp_connections_closed_total')?.value, 1);
});

test('promtool check metrics accepts the exposition', async (t) => {
  const promtool = which('promtool');
  if (!promtool) return missing(t, 'prometheus', 'promtool not on PATH (apt-get install -y prometheus)');
  const mesh = await startMesh(t, { tracing: false });
  const { port: mport } = await mesh.tel.listen(0);
  await get(mesh.port, '/reviews/1');
  await get(mesh.port, '/nowhere');
  const text = await scrape(mport);
  const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  // Exit 1 = the text does not parse. Exit 3 = lint findings; the only one allowed is the unit of
  // Istio's own metric name, which Istio fixed as milliseconds (dashboards depend on it).
  const findings = `${r.stdout}${r.stderr}`.split('\n').filter(Boolean);
  const allowed = /^istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"$/;
  assert.ok(r.status === 0 || (r.status === 3 && findings.every((f) => allowed.test(f))), `promtool exit ${r.status}:\n${findings.join('\n')}`);
  // And a broken exposition is refused (the check can fail).
  const broken = spawnSync(promtool, ['check', 'metrics'], { input: text.replace('istio_requests_total{', 'istio_requests_total{{'), encoding: 'utf8' });
  assert.equal(broken.status, 1);
});

test('a real Prometheus scrapes the gateway and answers istio_requests_total', async (t) => {
  const prometheus = which('prometheus');
  if (!prometheus) return missing(t, 'prometheus', 'prometheus not on PATH (apt-get install -y prometheus)');
  const mesh = await startMesh(t, { tracing: false });
  const { port: mport } = await mesh.tel.listen(0);
  for (let i = 0; i < 5; i++) await get(mesh.port, '/reviews/1');

  const dir = mkdtempSync(join(tmpdir(), 'portico-prom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: portico
  metrics_path: /stats/prometheus
  static_configs: [{targets: ['127.0.0.1:${mport}']}]
`,
  );
  const pport = await freePort();
  const child = spawn(prometheus, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${pport}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
  t.after(() => {
    child.kill('SIGTERM');
  });

  const query = encodeURIComponent('istio_requests_total{response_code="200"}');
  const deadline = Date.now() + 30_000;
  let result: { metric: Record<string, string>; value: [number, string] }[] = [];
  while (Date.now() < deadline) {
    try {
      const res = await request(`http://127.0.0.1:${pport}/api/v1/query?query=${query}`);
      const body = (await res.body.json()) as { status: string; data?: { result: typeof result } };
      if (body.status === 'success' && body.data && body.data.result.length > 0) {
        result = body.data.result;
        break;
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.equal(result.length, 1, `Prometheus returned no istio_requests_total; its log:\n${log}`);
  const m = result[0]!.metric;
  assert.equal(m.destination_service, 'reviews.default.svc.cluster.local');
  assert.equal(m.destination_workload, 'reviews-v1');
  assert.equal(m.destination_version, 'v1');
  assert.equal(m.reporter, 'source');
  assert.equal(m.source_workload, 'istio-ingressgateway');
  assert.equal(m.job, 'portico');
  assert.equal(result[0]!.value[1], '5');
});
