/**
 * Do Istio's Grafana dashboards fill with Portico's metrics? A real Prometheus scrapes the
 * gateway, two sidecars and the control plane of a small mesh (telemetry-topology.ts) carrying
 * HTTP (over mTLS and plaintext), gRPC and TCP traffic, and answers PromQL of the kinds Istio's
 * mesh, service and workload dashboards are built from — written here from Istio's documented
 * metric names and labels (https://istio.io/latest/docs/reference/config/metrics/): request
 * rate, success rate and latency quantiles by destination and by source workload, sizes, TCP
 * bytes and connections by connection_security_policy, component versions, process metrics.
 * Every query must return data.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { missing, which } from '../helpers/external.ts';
import { freePort } from '../helpers/net.ts';
import { GATEWAY_ID, startTopology } from './telemetry-topology.ts';

const PP = 'productpage.default.svc.cluster.local';
const RATINGS = 'ratings.default.svc.cluster.local';
const R = '[1m]';

/** name → PromQL. Grouped as the dashboards are. */
const QUERIES: Readonly<Record<string, string>> = {
  // Mesh dashboard: global traffic, per-workload tables, component versions.
  'mesh: request rate': `sum(rate(istio_requests_total{reporter=~"source|waypoint"}${R}))`,
  'mesh: success rate': `sum(rate(istio_requests_total{reporter=~"source|waypoint",response_code!~"5.."}${R})) / sum(rate(istio_requests_total{reporter=~"source|waypoint"}${R}))`,
  'mesh: 5xx rate': `sum(rate(istio_requests_total{reporter=~"source|waypoint",response_code=~"5.."}${R}))`,
  'mesh: rate by destination workload': `sum(rate(istio_requests_total{reporter="source"}${R})) by (destination_workload, destination_workload_namespace, destination_service)`,
  'mesh: p99 by destination workload': `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="source"}${R})) by (le, destination_workload, destination_workload_namespace))`,
  'mesh: TCP received by destination': `sum(rate(istio_tcp_received_bytes_total{reporter="source"}${R})) by (destination_workload, destination_workload_namespace, destination_service)`,
  'mesh: TCP sent by destination': `sum(rate(istio_tcp_sent_bytes_total{reporter="source"}${R})) by (destination_workload, destination_workload_namespace, destination_service)`,
  'mesh: proxy versions': `sum(istio_build{component="proxy"}) by (tag)`,
  'mesh: control plane versions': `sum(istio_build{component="pilot"}) by (tag)`,

  // Service dashboard (productpage): client and server views, by source workload.
  'service: client request rate': `sum(rate(istio_requests_total{reporter="source",destination_service="${PP}"}${R}))`,
  'service: server request rate': `sum(rate(istio_requests_total{reporter="destination",destination_service="${PP}"}${R}))`,
  'service: server success rate': `sum(rate(istio_requests_total{reporter="destination",destination_service="${PP}",response_code!~"5.*"}${R})) / sum(rate(istio_requests_total{reporter="destination",destination_service="${PP}"}${R}))`,
  'service: server p50': `histogram_quantile(0.50, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service="${PP}"}${R})) by (le))`,
  'service: server p99': `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service="${PP}"}${R})) by (le))`,
  'service: mTLS requests by source workload and code': `sum(rate(istio_requests_total{reporter="destination",connection_security_policy="mutual_tls",destination_service="${PP}"}${R})) by (source_workload, source_workload_namespace, response_code)`,
  'service: plaintext requests by source workload': `sum(rate(istio_requests_total{reporter="destination",connection_security_policy!="mutual_tls",destination_service="${RATINGS}"}${R})) by (source_workload, source_workload_namespace)`,
  'service: p90 by source workload': `histogram_quantile(0.90, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service="${PP}"}${R})) by (le, source_workload, source_workload_namespace))`,
  'service: request size p50 by source': `histogram_quantile(0.50, sum(rate(istio_request_bytes_bucket{reporter="destination",destination_service="${PP}"}${R})) by (le, source_workload))`,
  'service: response size p99 by source': `histogram_quantile(0.99, sum(rate(istio_response_bytes_bucket{reporter="destination",destination_service="${PP}"}${R})) by (le, source_workload))`,
  'service: fault-aborted requests reach the service view': `sum(rate(istio_requests_total{reporter="source",destination_service="${RATINGS}",response_flags="FI"}${R}))`,
  'service: TCP received by source, non-mTLS': `sum(rate(istio_tcp_received_bytes_total{connection_security_policy!="mutual_tls",destination_service="tcp-echo.default.svc.cluster.local"}${R})) by (source_workload, source_workload_namespace)`,
  'service: TCP sent by source, non-mTLS': `sum(rate(istio_tcp_sent_bytes_total{connection_security_policy!="mutual_tls",destination_service="tcp-echo.default.svc.cluster.local"}${R})) by (source_workload, source_workload_namespace)`,
  'service: gRPC request rate': `sum(rate(istio_requests_total{request_protocol="grpc",destination_service="greeter.default.svc.cluster.local"}${R})) by (response_code)`,

  // Workload dashboard (productpage-v1): inbound by source, outbound by destination service.
  'workload: inbound rate': `sum(rate(istio_requests_total{reporter="destination",destination_workload="productpage-v1",destination_workload_namespace="default"}${R}))`,
  'workload: inbound by source (mTLS)': `sum(rate(istio_requests_total{reporter="destination",connection_security_policy="mutual_tls",destination_workload="productpage-v1"}${R})) by (source_workload, source_workload_namespace, response_code)`,
  'workload: inbound p95 by source': `histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="productpage-v1"}${R})) by (le, source_workload, source_workload_namespace))`,
  'workload: outbound by destination service': `sum(rate(istio_requests_total{reporter="source",source_workload="productpage-v1",source_workload_namespace="default"}${R})) by (destination_service, response_code)`,
  'workload: outbound success rate': `sum(rate(istio_requests_total{reporter="source",source_workload="productpage-v1",response_code!~"5.*"}${R})) by (destination_service) / sum(rate(istio_requests_total{reporter="source",source_workload="productpage-v1"}${R})) by (destination_service)`,
  'workload: outbound p99 by destination': `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="source",source_workload="productpage-v1"}${R})) by (le, destination_service))`,
  'workload: gateway outbound carries its SPIFFE identity': `sum(rate(istio_requests_total{reporter="source",source_workload="istio-ingressgateway",source_principal="${GATEWAY_ID}",destination_service="${PP}"}${R}))`,
  'workload: TCP connections opened by security policy': `sum(rate(istio_tcp_connections_opened_total{source_workload="istio-ingressgateway"}${R})) by (destination_service, connection_security_policy)`,
  'workload: TCP connections closed by security policy': `sum(rate(istio_tcp_connections_closed_total{source_workload="istio-ingressgateway"}${R})) by (destination_service, connection_security_policy)`,

  // Process metrics: every component can be watched.
  'process: resident memory of every job': `count(process_resident_memory_bytes) >= 4`,
  'process: CPU of every job': `count(rate(process_cpu_seconds_total${R})) >= 4`,
  'process: open fds of every job': `count(process_open_fds > 0) >= 4`,
  'process: uptime of every job': `count(time() - process_start_time_seconds > 0) >= 4`,
};

interface PromResult {
  status: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
  error?: string;
}

test("a real Prometheus answers the queries Istio's mesh, service and workload dashboards are built from", async (t) => {
  const prometheus = which('prometheus');
  if (!prometheus) return missing(t, 'prometheus', 'prometheus not on PATH (apt-get install -y prometheus)');
  const topo = await startTopology(t);

  const dir = mkdtempSync(join(tmpdir(), 'portico-dashboards-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const jobs = topo.targets.map((x) => `- job_name: ${x.job}\n  metrics_path: ${x.path}\n  static_configs: [{targets: ['127.0.0.1:${x.port}']}]`).join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), `global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n${jobs}\n`);
  const pport = await freePort();
  const child = spawn(prometheus, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${pport}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });

  const query = async (q: string): Promise<PromResult> => {
    try {
      const res = await request(`http://127.0.0.1:${pport}/api/v1/query?query=${encodeURIComponent(q)}`);
      return (await res.body.json()) as PromResult;
    } catch (err) {
      return { status: 'unreachable', error: String(err) };
    }
  };

  // Traffic keeps flowing while we ask, so rate() has increases to see across scrapes.
  let stop = false;
  let rounds = 0;
  const traffic = (async () => {
    while (!stop) {
      await topo.round();
      rounds++;
    }
  })();
  t.after(async () => {
    stop = true;
    await traffic.catch(() => undefined);
  });

  const pending = new Map(Object.entries(QUERIES));
  const answers = new Map<string, PromResult>();
  const deadline = Date.now() + 60_000;
  while (pending.size > 0 && Date.now() < deadline) {
    for (const [name, q] of pending) {
      const r = await query(q);
      answers.set(name, r);
      if (r.status === 'error') assert.fail(`${name}: Prometheus refused the query: ${r.error}\n${q}`);
      if (r.status === 'success' && (r.data?.result.length ?? 0) > 0) pending.delete(name);
    }
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 1000));
  }
  stop = true;
  await traffic;
  assert.ok(rounds > 0, 'traffic flowed');
  const empty = [...pending.keys()].map((n) => `  ${n}: ${QUERIES[n]}  →  ${JSON.stringify(answers.get(n))}`);
  const up = empty.length
    ? JSON.stringify(((await (await request(`http://127.0.0.1:${pport}/api/v1/targets`)).body.json()) as { data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] } }).data.activeTargets.map((x) => [x.labels.job, x.health, x.lastError]))
    : '';
  assert.equal(empty.length, 0, `${empty.length}/${Object.keys(QUERIES).length} queries returned no data (${rounds} traffic rounds; up: ${up}):\n${empty.join('\n')}\nPrometheus log:\n${log}`);

  // The gRPC series is labelled as gRPC and the mTLS view names the gateway as the source.
  const grpc = await query(`istio_requests_total{request_protocol="grpc"}`);
  assert.ok(grpc.data!.result.every((s) => s.metric.destination_service === 'greeter.default.svc.cluster.local'));
  const bySource = await query(QUERIES['service: mTLS requests by source workload and code']!);
  assert.ok(bySource.data!.result.some((s) => s.metric.source_workload === 'istio-ingressgateway' && s.metric.source_workload_namespace === 'istio-system'), JSON.stringify(bySource.data));
  const versions = await query(`sum(istio_build) by (component, tag)`);
  assert.deepEqual(versions.data!.result.map((s) => s.metric.component).sort(), ['pilot', 'proxy']);
});
