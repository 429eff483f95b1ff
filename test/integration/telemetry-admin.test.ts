/**
 * Admin additions on a real gateway: /stats (plain) and /stats/prometheus, POST /logging with a
 * level check, /certs listing the served certificate with subject, SANs and expiry, /clusters
 * with live balancer state, the Jaeger API on the admin port.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { ensureDemoCerts } from '../../certs/index.ts';
import { startAdmin, type LogLevel } from '../../gateway/admin.ts';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';
import { parseProm } from './telemetry-helper.ts';

test('admin: /stats, /stats/prometheus, /logging, /certs, /clusters, Jaeger API', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const certs = ensureDemoCerts(dir, ['shop.example.com']);
  const c = certs.hosts['shop.example.com']!;
  const app = await startEcho(t, 'shop');
  const port = await freePort();
  const tel = createTelemetry({ tracing: { sampling: 100 } });
  t.after(() => tel.close());
  const runtime = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, serverCertificate: ${c.certFile}, privateKey: ${c.keyFile}}
    hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app.port}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: istio-system}
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http:
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
`,
    { telemetry: tel },
  );
  tel.attach(runtime);
  const levels: LogLevel[] = [];
  const admin = await startAdmin(runtime, 0, '127.0.0.1', () => true, { telemetry: tel, setLogLevel: (l) => levels.push(l) });
  t.after(() => admin.close());
  const base = `http://127.0.0.1:${admin.port()}`;
  const get = async (path: string, method = 'GET') => {
    const r = await request(`${base}${path}`, { method: method as 'GET' });
    return { status: r.statusCode, type: String(r.headers['content-type']), text: await r.body.text() };
  };

  const r = await request(`https://127.0.0.1:${port}/buy`, {
    headers: { host: 'shop.example.com' },
    dispatcher: new (await import('undici')).Agent({ connect: { rejectUnauthorized: false, servername: 'shop.example.com' } }),
  });
  assert.equal(r.statusCode, 200);
  await r.body.text();

  const prom = await get('/stats/prometheus');
  assert.equal(prom.status, 200);
  assert.ok(parseProm(prom.text).some((s) => s.name === 'istio_requests_total' && s.labels.destination_service === 'shop.default.svc.cluster.local'));
  const stats = await get('/stats');
  assert.match(stats.text, /^istio_requests_total\{.*response_code="200".*\}: 1$/m);
  assert.doesNotMatch(stats.text, /_bucket/);

  const certsPage = JSON.parse((await get('/certs')).text) as { certificates: { file: string; subject: string; subjectAltNames: string[]; expiresInSeconds: number; usedBy: string[] }[] };
  assert.equal(certsPage.certificates.length, 1);
  const cert = certsPage.certificates[0]!;
  assert.equal(cert.file, c.certFile);
  assert.match(cert.subject, /shop\.example\.com/);
  assert.ok(cert.subjectAltNames.includes('DNS:shop.example.com'));
  assert.ok(cert.expiresInSeconds > 86400, 'not about to expire');
  assert.deepEqual(cert.usedBy, ['istio-system/edge']);
  const expiry = parseProm(prom.text).find((s) => s.name === 'portico_certificate_expiry_seconds');
  assert.equal(expiry?.labels.file, c.certFile);

  assert.equal((await get('/logging?level=debug', 'POST')).status, 200);
  assert.equal((await get('/logging?level=loud', 'POST')).status, 400);
  assert.deepEqual(levels, ['debug']);
  assert.match((await get('/logging')).text, /portico: debug/);

  const clusters = JSON.parse((await get('/clusters')).text) as { clusters: { name: string; active?: number; endpoints: { health: string; active?: number; ejections?: number }[] }[] };
  const shop = clusters.clusters.find((x) => x.name === 'outbound|80||shop.default.svc.cluster.local')!;
  assert.equal(shop.endpoints[0]!.health, 'HEALTHY');
  assert.equal(shop.active, 0, 'live in-flight count from the balancer');
  assert.equal(shop.endpoints[0]!.ejections, 0);

  const services = JSON.parse((await get('/api/services')).text) as { data: string[] };
  assert.deepEqual(services.data, ['istio-ingressgateway.istio-system']);
  assert.equal((await get('/config_dump', 'DELETE')).status, 405);
});
