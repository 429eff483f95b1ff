/**
 * Timeouts, retries, fault injection and mirroring, through a real gateway to real upstreams.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import type { RequestRecord } from '../../gateway/proxy.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Upstream } from '../helpers/upstream.ts';

/** A gateway on a free port routing `app.example.com` by the given http rules to `svc` endpoints. */
async function setup(t: TestContext, endpoints: number[], http: string, extraHosts = ''): Promise<{ port: number; records: RequestRecord[] }> {
  const port = await freePort();
  const records: RequestRecord[] = [];
  const eps = endpoints.map((p) => `  - {address: 127.0.0.1, ports: {http: ${p}}}`).join('\n');
  await startGateway(
    t,
    `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
${eps}
${extraHosts}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
${http}`,
    { onRequest: (r) => records.push(r) },
  );
  return { port, records };
}

async function call(port: number, path = '/', init: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method: (init.method ?? 'GET') as 'GET', headers: { host: 'app.example.com', ...init.headers }, body: init.body });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** An upstream that fails the first `failures` requests with `status`, then echoes. */
async function flaky(t: TestContext, failures: number, status = 503): Promise<Upstream> {
  let n = 0;
  return startEcho(t, 'flaky', (_e, res) => {
    if (n++ < failures) {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end('fail');
      return true;
    }
    return false;
  });
}

/** A port with nothing listening (connection refused). */
async function deadPort(): Promise<number> {
  return freePort();
}

test("Istio's default retry policy retries 503 twice and connect failures on another endpoint", async (t) => {
  const up = await flaky(t, 2, 503);
  const s = await setup(t, [up.port], `  - route: [{destination: {host: svc}}]`);
  const r = await call(s.port);
  assert.equal(r.status, 200, 'third attempt succeeds');
  assert.equal(up.seen.length, 3);

  const good = await startEcho(t, 'good');
  const dead = await deadPort();
  const s2 = await setup(t, [dead, good.port], `  - route: [{destination: {host: svc}}]`);
  for (let i = 0; i < 6; i++) assert.equal((await call(s2.port)).status, 200, 'connect failure is retried on the other endpoint');
});

test('retries stop at attempts; 500 is not retried by default; retries.attempts: 0 disables', async (t) => {
  const always = await flaky(t, 100, 503);
  const s = await setup(t, [always.port], `  - route: [{destination: {host: svc}}]`);
  const r = await call(s.port);
  assert.equal(r.status, 503);
  assert.equal(always.seen.length, 3, '1 try + 2 retries');

  const five = await flaky(t, 100, 500);
  const s2 = await setup(t, [five.port], `  - route: [{destination: {host: svc}}]`);
  assert.equal((await call(s2.port)).status, 500);
  assert.equal(five.seen.length, 1, '500 is not in the default retryOn');

  const none = await flaky(t, 100, 503);
  const s3 = await setup(t, [none.port], `  - route: [{destination: {host: svc}}]\n    retries: {attempts: 0}`);
  assert.equal((await call(s3.port)).status, 503);
  assert.equal(none.seen.length, 1);
});

test('retryOn 5xx with attempts: 4 retries a 500, and small POST bodies are resent intact', async (t) => {
  const up = await flaky(t, 3, 500);
  const s = await setup(t, [up.port], `  - route: [{destination: {host: svc}}]\n    retries: {attempts: 4, retryOn: 5xx}`);
  const r = await call(s.port, '/submit', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'payload-123' });
  assert.equal(r.status, 200);
  assert.equal(up.seen.length, 4);
  for (const seen of up.seen) assert.equal(seen.body, 'payload-123');
});

test('route timeout covers all retries and answers 504 with flag UT; perTryTimeout retries a slow try', async (t) => {
  let calls = 0;
  const slow = await startEcho(t, 'slow', (_e, res) => {
    calls++;
    setTimeout(() => {
      if (!res.destroyed) res.end('late');
    }, calls === 1 ? 400 : 5);
    return true;
  });
  const s = await setup(t, [slow.port], `  - route: [{destination: {host: svc}}]\n    timeout: 150ms\n    retries: {attempts: 0}`);
  const r = await call(s.port);
  assert.equal(r.status, 504);
  assert.match(r.text, /upstream request timeout/);
  assert.equal(s.records.at(-1)?.flag, 'UT');

  calls = 0;
  const s2 = await setup(t, [slow.port], `  - route: [{destination: {host: svc}}]\n    timeout: 2s\n    retries: {attempts: 2, perTryTimeout: 100ms, retryOn: 5xx}`);
  const r2 = await call(s2.port);
  assert.equal(r2.status, 200, 'second try is fast');
  assert.equal(r2.text, 'late');
  assert.equal(calls, 2);
});

test("fault abort (Istio's Bookinfo jason → 500) is not retried and is flagged FI; delay is flagged DI", async (t) => {
  const up = await startEcho(t, 'ratings');
  const s = await setup(
    t,
    [up.port],
    `  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      abort:
        percentage: {value: 100.0}
        httpStatus: 500
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /slow}}]
    fault:
      delay: {percentage: {value: 100}, fixedDelay: 120ms}
    route: [{destination: {host: svc}}]
  - route: [{destination: {host: svc}}]`,
  );
  const r = await call(s.port, '/ratings/0', { headers: { 'end-user': 'jason' } });
  assert.equal(r.status, 500);
  assert.equal(r.text, 'fault filter abort');
  assert.equal(up.seen.length, 0, 'an injected abort never reaches the upstream');
  assert.equal(s.records.at(-1)?.flag, 'FI');
  assert.equal((await call(s.port, '/ratings/0', { headers: { 'end-user': 'alice' } })).status, 200);

  const started = performance.now();
  const slow = await call(s.port, '/slow');
  assert.equal(slow.status, 200);
  assert.ok(performance.now() - started >= 100, 'delay applied');
  assert.equal(s.records.at(-1)?.flag, 'DI');
});

test('fault percentages apply independently and by share', async (t) => {
  const up = await startEcho(t, 'svc');
  const s = await setup(t, [up.port], `  - fault: {abort: {percentage: {value: 30}, httpStatus: 418}}\n    route: [{destination: {host: svc}}]`);
  let aborted = 0;
  for (let i = 0; i < 300; i++) if ((await call(s.port)).status === 418) aborted++;
  // mean 90, sd ~8: anything in 45..140 is a working percentage.
  assert.ok(aborted > 45 && aborted < 140, `${aborted} of 300 aborted at 30%`);
});

test('gRPC requests get gRPC-shaped local replies (fault grpcStatus, no route)', async (t) => {
  const up = await startEcho(t, 'grpc');
  const s = await setup(t, [up.port], `  - match: [{uri: {prefix: /pkg.Svc/}}]\n    fault: {abort: {percentage: {value: 100}, grpcStatus: UNAVAILABLE}}\n    route: [{destination: {host: svc}}]`);
  const r = await call(s.port, '/pkg.Svc/Method', { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: '' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['grpc-status'], '14');
  const nr = await call(s.port, '/other.Svc/Method', { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: '' });
  assert.equal(nr.headers['grpc-status'], '12', 'no route → UNIMPLEMENTED');
});

test('mirror sends a copy to the -shadow host without affecting the response', async (t) => {
  const primary = await startEcho(t, 'primary');
  const shadowHits: { host?: string; url?: string }[] = [];
  const shadow = createServer((req, res) => {
    shadowHits.push({ host: req.headers.host, url: req.url });
    res.writeHead(500);
    res.end('shadow failure must not matter');
  });
  await new Promise<void>((resolve) => shadow.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => shadow.close(() => resolve())));
  const shadowPort = (shadow.address() as { port: number }).port;
  const s = await setup(
    t,
    [primary.port],
    `  - route: [{destination: {host: svc}}]
    mirror: {host: mirror.default.svc.cluster.local}
    mirrorPercentage: {value: 100.0}`,
    `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mirror}
spec:
  hosts: [mirror.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${shadowPort}}}]`,
  );
  const r = await call(s.port, '/copy-me?x=1');
  assert.equal(r.status, 200);
  const deadline = Date.now() + 2000;
  while (shadowHits.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  assert.equal(shadowHits.length, 1);
  assert.equal(shadowHits[0]!.host, 'app.example.com-shadow');
  assert.equal(shadowHits[0]!.url, '/copy-me?x=1');
});

test('request bodies of unknown length: small ones are buffered (retried), large ones stream through intact', async (t) => {
  const up = await flaky(t, 1, 503);
  const s = await setup(t, [up.port], `  - route: [{destination: {host: svc}}]`);
  const { Readable } = await import('node:stream');
  const small = await request(`http://127.0.0.1:${s.port}/small`, { method: 'POST', headers: { host: 'app.example.com' }, body: Readable.from([Buffer.from('chunked '), Buffer.from('and small')]) });
  assert.equal(small.statusCode, 200, 'the 503 was retried with the buffered body');
  await small.body.dump();
  assert.deepEqual(up.seen.map((e) => e.body), ['chunked and small', 'chunked and small']);

  const big = Buffer.alloc(300 * 1024, 'x');
  const parts = [big.subarray(0, 100_000), big.subarray(100_000, 200_000), big.subarray(200_000)];
  const r = await request(`http://127.0.0.1:${s.port}/big`, { method: 'POST', headers: { host: 'app.example.com' }, body: Readable.from(parts) });
  assert.equal(r.statusCode, 200);
  await r.body.dump();
  assert.equal(up.seen.at(-1)!.body.length, big.length, 'a body past the buffer limit arrives whole');
});
