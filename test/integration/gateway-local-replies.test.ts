/**
 * Access logs as Envoy writes them for replies the gateway makes itself: a connect failure on
 * every attempt is `UF,URX` (Envoy keeps the cause and adds the retry limit; flags in Envoy's
 * order), a relayed retriable status after the last retry carries `URX`, and the body bytes of
 * a local reply are counted in %BYTES_SENT% (istio_response_bytes) on HTTP/1.1 and h2 alike.
 */
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { joinFlags } from '../../gateway/forward.ts';
import type { RequestRecord } from '../../gateway/proxy.ts';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

async function setup(t: TestContext): Promise<{ http: number; h2c: number; records: RequestRecord[]; log: () => Promise<string[]> }> {
  const dead = await freePort();
  const failing = await startEcho(t, 'failing', (_e, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('unavailable');
    return true;
  });
  const [http, h2c] = [await freePort(), await freePort()];
  const records: RequestRecord[] = [];
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
  const telemetry = createTelemetry({
    proxy: { workload: 'istio-ingressgateway', namespace: 'istio-system', app: 'istio-ingressgateway' },
    trustDomain: 'cluster.local',
    tracing: { sampling: 0 },
    accessLog: { file: '/dev/stdout', stream, encoding: 'JSON' },
  });
  const runtime = await startGateway(
    t,
    `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: ${http}, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: ${h2c}, name: h2c, protocol: HTTP2}, hosts: ["*"]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dead}
spec:
  hosts: [dead.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: ${dead}, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: failing}
spec:
  hosts: [failing.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: ${failing.port}, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: /dead}}]
    route: [{destination: {host: dead.default.svc.cluster.local, port: {number: ${dead}}}}]
  - match: [{uri: {prefix: /failing}}]
    route: [{destination: {host: failing.default.svc.cluster.local, port: {number: ${failing.port}}}}]
  - match: [{uri: {prefix: /direct}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: failing.default.svc.cluster.local, port: {number: ${failing.port}}}}]
`,
    { onRequest: (r) => records.push(r), telemetry },
  );
  telemetry.attach(runtime);
  t.after(() => telemetry.close());
  return {
    http,
    h2c,
    records,
    log: async () => {
      await telemetry.accessLog!.flush();
      return lines;
    },
  };
}

async function h2get(port: number, path: string): Promise<{ status: number; bytes: number }> {
  const s = h2connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve, reject) => {
      const req = s.request({ ':path': path });
      let status = 0;
      let bytes = 0;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => resolve({ status, bytes }));
      req.on('error', reject);
      req.end();
    });
  } finally {
    s.close();
  }
}

test('flags are joined in Envoy order', () => {
  assert.equal(joinFlags('UF', 'URX'), 'UF,URX');
  assert.equal(joinFlags('URX', 'UF'), 'UF,URX');
  assert.equal(joinFlags('DI', 'UF,URX'), 'UF,DI,URX');
  assert.equal(joinFlags('-', 'UT'), 'UT');
  assert.equal(joinFlags('FI', '-'), 'FI');
});

test('a connect failure on every attempt is logged UF,URX with the bytes of the 503 the gateway wrote', async (t) => {
  const env = await setup(t);
  const res = await request(`http://127.0.0.1:${env.http}/dead`);
  const body = await res.body.text();
  assert.equal(res.statusCode, 503);
  const h2 = await h2get(env.h2c, '/dead');
  assert.equal(h2.status, 503);
  const dead = env.records.filter((r) => r.path === '/dead');
  assert.equal(dead.length, 2);
  for (const r of dead) {
    assert.equal(r.flag, 'UF,URX', `${r.protocol}: Envoy's flags for a connect failure after retries`);
    assert.equal(r.attempts, 3, "Istio's default: 2 retries");
  }
  assert.equal(dead[0]!.responseBytes, Buffer.byteLength(body), 'HTTP/1.1: the local 503 body is counted');
  assert.equal(dead[1]!.responseBytes, h2.bytes, 'h2: the local 503 body is counted');
  const entries = (await env.log()).map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.path === '/dead');
  assert.deepEqual(entries.map((e) => [e.response_flags, e.bytes_sent]), [['UF,URX', Buffer.byteLength(body)], ['UF,URX', h2.bytes]], 'the access log says the same');
});

test('a retriable status relayed after the last retry is flagged URX', async (t) => {
  const env = await setup(t);
  const res = await request(`http://127.0.0.1:${env.http}/failing`);
  assert.equal(res.statusCode, 503);
  assert.equal(await res.body.text(), 'unavailable');
  const r = env.records.find((x) => x.path === '/failing');
  assert.equal(r?.flag, 'URX');
  assert.equal(r?.attempts, 3);
});

test('direct responses and fault aborts count their body bytes on HTTP/1.1 and h2', async (t) => {
  const env = await setup(t);
  for (const path of ['/direct', '/abort']) {
    const res = await request(`http://127.0.0.1:${env.http}${path}`);
    const n = Buffer.byteLength(await res.body.text());
    const h2 = await h2get(env.h2c, path);
    assert.ok(n > 0 && h2.bytes === n, `${path}: same body on both protocols`);
    const recs = env.records.filter((x) => x.path === path);
    assert.deepEqual(recs.map((x) => x.responseBytes), [n, n], `${path}: bytes counted on HTTP/1.1 and h2`);
  }
  const entries = (await env.log()).map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.path === '/direct');
  assert.ok(entries.length === 2 && entries.every((e) => e.bytes_sent === 'short and stout'.length), 'access log %BYTES_SENT%');
});
