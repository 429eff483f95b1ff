/**
 * HTTPS at the edge: Istio's "Secure Gateways" task, SNI with several certificates, HTTP/2 by
 * ALPN, 421 for misdirected HTTP/2 reuse, httpsRedirect, websockets and certificate rotation.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { request } from 'undici';
import WebSocket from 'ws';
import { createRootCa, ensureDemoCerts, issueServerCert, writeCredential } from '../../certs/index.ts';
import { startHttpbin } from '../../demo/httpbin.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

interface Env {
  httpsPort: number;
  httpPort: number;
  ca: string;
  dir: string;
  hello: Awaited<ReturnType<typeof startEcho>>;
}

async function setup(t: TestContext): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const certs = ensureDemoCerts(dir, ['httpbin.example.com', 'helloworld.example.com']);
  const httpbin = await startHttpbin({ port: 0, host: '127.0.0.1' });
  t.after(() => httpbin.close());
  const hello = await startEcho(t, 'helloworld');
  const httpsPort = await freePort();
  const httpPort = await freePort();
  const yaml = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mygateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${httpsPort}, name: https-httpbin, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
    hosts: [httpbin.example.com]
  - port: {number: ${httpsPort}, name: https-helloworld, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: helloworld-credential}
    hosts: [helloworld.example.com]
  - port: {number: ${httpPort}, name: http, protocol: HTTP}
    tls: {httpsRedirect: true}
    hosts: [httpbin.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin.example.com]
  gateways: [mygateway]
  http:
  - match: [{uri: {prefix: /status}}, {uri: {prefix: /delay}}, {uri: {prefix: /headers}}, {uri: {prefix: /ws}}]
    route: [{destination: {host: httpbin.example.com, port: {number: ${httpbin.port}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: helloworld}
spec:
  hosts: [helloworld.example.com]
  gateways: [mygateway]
  http:
  - route: [{destination: {host: helloworld.default.svc.cluster.local, port: {number: 5000}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.example.com]
  ports: [{number: ${httpbin.port}, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: helloworld}
spec:
  hosts: [helloworld.default.svc.cluster.local]
  ports: [{number: 5000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${hello.port}}}]
`;
  await startGateway(t, yaml, { secretsDir: join(dir, 'credentials') });
  return { httpsPort, httpPort, ca: readFileSync(certs.ca.certFile, 'utf8'), dir, hello };
}

function httpsGet(env: Env, host: string, path: string, servername = host): Promise<{ status: number; body: string; cert: PeerCertificate; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: env.httpsPort, path, servername, headers: { host }, ca: env.ca, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cert: (res.socket as import('node:tls').TLSSocket).getPeerCertificate(), headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

test("Istio's HTTPS task: Host httpbin.example.com over TLS to /status/418 returns httpbin's 418", async (t) => {
  const env = await setup(t);
  const r = await httpsGet(env, 'httpbin.example.com', '/status/418');
  assert.equal(r.status, 418);
  assert.match(r.body, /teapot|-=\[/);
  assert.equal(r.cert.subject.CN, 'httpbin.example.com');
});

test('SNI selects the certificate of the matching server', async (t) => {
  const env = await setup(t);
  const r = await httpsGet(env, 'helloworld.example.com', '/hello');
  assert.equal(r.status, 200);
  assert.equal(r.cert.subject.CN, 'helloworld.example.com');
  assert.equal(JSON.parse(r.body).name, 'helloworld');
  // The certificate is verified against the CA only: a wrong name fails the handshake.
  await assert.rejects(httpsGet(env, 'httpbin.example.com', '/', 'nothing.example.com'));
});

test('HTTP/2 by ALPN, and 421 when a reused connection asks for a host its certificate does not cover', async (t) => {
  const env = await setup(t);
  const session = h2connect(`https://httpbin.example.com:${env.httpsPort}`, { ca: env.ca, servername: 'httpbin.example.com', host: '127.0.0.1', port: env.httpsPort } as never);
  t.after(() => session.close());
  const h2get = (authority: string, path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const s = session.request({ ':authority': authority, ':path': path, ':method': 'GET' });
      let status = 0;
      let body = '';
      s.on('response', (h) => (status = Number(h[':status'])));
      s.on('data', (c: Buffer) => (body += c));
      s.on('end', () => resolve({ status, body }));
      s.on('error', reject);
      s.end();
    });
  const ok = await h2get('httpbin.example.com', '/status/418');
  assert.equal(ok.status, 418);
  assert.equal(session.alpnProtocol, 'h2');
  const misdirected = await h2get('helloworld.example.com', '/hello');
  assert.equal(misdirected.status, 421);
  assert.equal(env.hello.seen.length, 0, 'never misrouted to helloworld over the httpbin connection');
});

test('httpsRedirect answers 301 to the HTTPS port', async (t) => {
  const env = await setup(t);
  const res = await request(`http://127.0.0.1:${env.httpPort}/status/200?x=1`, { headers: { host: 'httpbin.example.com' } });
  await res.body.dump();
  assert.equal(res.statusCode, 301);
  assert.equal(res.headers.location, `https://httpbin.example.com:${env.httpsPort}/status/200?x=1`);
});

test('websocket upgrade over HTTPS reaches the upstream and echoes', async (t) => {
  const env = await setup(t);
  const ws = new WebSocket(`wss://127.0.0.1:${env.httpsPort}/ws`, [], { headers: { host: 'httpbin.example.com' }, ca: env.ca, servername: 'httpbin.example.com' } as WebSocket.ClientOptions);
  t.after(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const reply = new Promise<string>((resolve) => ws.once('message', (m) => resolve(String(m))));
  ws.send('hello through portico');
  assert.match(await reply, /hello through portico/);
});

test('a rotated certificate is served to new connections without a restart', async (t) => {
  const env = await setup(t);
  const before = await httpsGet(env, 'helloworld.example.com', '/');
  // Issue a new certificate from a new CA and drop it into the credential folder.
  const ca2 = createRootCa({ commonName: 'rotated.example.com' });
  const pair = issueServerCert(ca2, { commonName: 'helloworld.example.com' });
  writeCredential(join(env.dir, 'credentials'), 'helloworld-credential', pair, ca2.certPem);
  const deadline = Date.now() + 5000;
  let cert: PeerCertificate | undefined;
  while (Date.now() < deadline) {
    cert = await new Promise<PeerCertificate>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: env.httpsPort, servername: 'helloworld.example.com', rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate());
        s.end();
      });
      s.on('error', reject);
    });
    if (cert.issuer.CN === 'rotated.example.com') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(before.cert.issuer.CN, 'example.com');
  assert.equal(cert?.issuer.CN, 'rotated.example.com');
});
