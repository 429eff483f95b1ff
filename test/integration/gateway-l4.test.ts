/**
 * L4 routing: VirtualService `tcp[]` on TCP servers, `tls[]` with `sniHosts` on PASSTHROUGH
 * servers, and TLS termination followed by `tcp[]` routing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { createRootCa, ensureDemoCerts, issueServerCert } from '../../certs/index.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';

async function listen(t: TestContext, server: import('node:net').Server): Promise<number> {
  const open = new Set<import('node:net').Socket>();
  server.on('connection', (s: import('node:net').Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of open) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as { port: number }).port;
}

/** A TCP server that answers each chunk with `<name>:<chunk>`. */
function tagEcho(name: string) {
  return netServer((s) => {
    s.on('data', (c) => s.write(`${name}:${c}`));
    s.on('error', () => undefined);
  });
}

function registry(name: string, port: number, protocol = 'TCP'): string {
  return `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: ${protocol}}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: ${port}}}]
`;
}

function exchange(sock: import('node:net').Socket, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    sock.once('data', (c) => resolve(String(c)));
    sock.once('error', reject);
    sock.once('close', () => resolve(''));
    sock.write(payload);
  });
}

test('tcp[] routes a TCP server port to the destination', async (t) => {
  const up = await listen(t, tagEcho('db'));
  const port = await freePort();
  await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tcp-gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: ["*"]
  gateways: [tcp-gw]
  tcp:
  - match: [{port: ${port}}]
    route: [{destination: {host: db.default.svc.cluster.local, port: {number: 9000}}}]
${registry('db', up)}`,
  );
  const sock = netConnect(port, '127.0.0.1');
  t.after(() => sock.destroy());
  assert.equal(await exchange(sock, 'ping'), 'db:ping');
  assert.equal(await exchange(sock, 'again'), 'db:again', 'the connection stays spliced');
});

test('tls[] PASSTHROUGH routes by SNI without terminating; unknown SNI is closed', async (t) => {
  const ca = createRootCa({ commonName: 'passthrough-ca' });
  const a = issueServerCert(ca, { commonName: 'a.example.com' });
  const b = issueServerCert(ca, { commonName: 'b.example.com' });
  const mk = (name: string, pair: { certPem: string; keyPem: string }) =>
    tlsServer({ cert: pair.certPem, key: pair.keyPem }, (s) => {
      s.on('data', (c) => s.write(`${name}:${c}`));
      s.on('error', () => undefined);
    });
  const upA = await listen(t, mk('A', a));
  const upB = await listen(t, mk('B', b));
  const port = await freePort();
  await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [a.example.com, b.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sni}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [tls-gw]
  tls:
  - match: [{port: ${port}, sniHosts: [a.example.com]}]
    route: [{destination: {host: a.default.svc.cluster.local, port: {number: 9000}}}]
  - match: [{port: ${port}, sniHosts: [b.example.com]}]
    route: [{destination: {host: b.default.svc.cluster.local, port: {number: 9000}}}]
${registry('a', upA, 'TLS')}${registry('b', upB, 'TLS')}`,
  );
  for (const [host, tag] of [['a.example.com', 'A'], ['b.example.com', 'B']] as const) {
    const sock = tlsConnect({ host: '127.0.0.1', port, servername: host, ca: ca.certPem });
    t.after(() => sock.destroy());
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    assert.equal(sock.getPeerCertificate().subject.CN, host, 'the upstream terminated TLS, with its own certificate');
    assert.equal(await exchange(sock, 'hi'), `${tag}:hi`);
  }
  const other = tlsConnect({ host: '127.0.0.1', port, servername: 'c.example.com', ca: ca.certPem });
  await assert.rejects(new Promise((resolve, reject) => {
    other.once('secureConnect', resolve);
    other.once('error', reject);
    other.once('close', () => reject(new Error('closed')));
  }));
});

test('a TLS server with mode SIMPLE terminates and routes the plaintext by tcp[]', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-l4-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const certs = ensureDemoCerts(dir, ['db.example.com']);
  const up = await listen(t, tagEcho('plain'));
  const port = await freePort();
  await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-term}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: tls, protocol: TLS}
    tls: {mode: SIMPLE, credentialName: db-credential}
    hosts: [db.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db.example.com]
  gateways: [tls-term]
  tcp:
  - route: [{destination: {host: db.default.svc.cluster.local, port: {number: 9000}}}]
${registry('db', up)}`,
    { secretsDir: join(dir, 'credentials') },
  );
  const { readFileSync } = await import('node:fs');
  const sock = tlsConnect({ host: '127.0.0.1', port, servername: 'db.example.com', ca: readFileSync(certs.ca.certFile) });
  t.after(() => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', resolve);
    sock.once('error', reject);
  });
  assert.equal(sock.getPeerCertificate().subject.CN, 'db.example.com');
  assert.equal(await exchange(sock, 'select 1'), 'plain:select 1');
});
