/**
 * Istio's TCP metrics from the gateway's L4 paths: a `tcp[]` route on a TCP server and a `tls[]`
 * PASSTHROUGH route report istio_tcp_connections_opened/closed_total and the bytes each way
 * (received = from the downstream, sent = to it) with Istio's labels, and an upstream that
 * refuses the connection is counted with response_flags="UF".
 */
import assert from 'node:assert/strict';
import { connect as netConnect, createServer as netServer, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { request } from 'undici';
import { createRootCa, issueServerCert } from '../../certs/index.ts';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { parseProm } from './telemetry-helper.ts';

async function listen(t: TestContext, server: Server): Promise<number> {
  const open = new Set<Socket>();
  server.on('connection', (s: Socket) => {
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

function exchange(sock: Socket, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    sock.once('data', (c) => resolve(String(c)));
    sock.once('error', reject);
    sock.write(payload);
  });
}

function closed(sock: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (sock.destroyed) return resolve();
    sock.once('close', () => resolve());
  });
}

test('tcp[] and tls[] passthrough connections are counted in istio_tcp_* with Istio labels; a refused upstream is UF', async (t) => {
  const ca = createRootCa({ commonName: 'tcp-metrics-ca' });
  const pair = issueServerCert(ca, { commonName: 'secure.example.com' });
  const plainUp = await listen(
    t,
    netServer((s) => {
      s.on('data', (c) => s.write(`db:${c}`));
      s.on('error', () => undefined);
    }),
  );
  const tlsUp = await listen(
    t,
    tlsServer({ cert: pair.certPem, key: pair.keyPem }, (s) => {
      s.on('data', (c) => s.write(`tls:${c}`));
      s.on('error', () => undefined);
    }),
  );
  const refused = await freePort(); // nothing listens there
  const tcpPort = await freePort();
  const tlsPort = await freePort();
  const deadPort = await freePort();
  const tel = createTelemetry({ tracing: false });
  t.after(() => tel.close());
  const runtime = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: l4, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${tcpPort}, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: ${deadPort}, name: tcp-dead, protocol: TCP}
    hosts: ["*"]
  - port: {number: ${tlsPort}, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [secure.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: l4, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [l4]
  tcp:
  - match: [{port: ${tcpPort}}]
    route: [{destination: {host: db.default.svc.cluster.local, port: {number: 9000}}}]
  - match: [{port: ${deadPort}}]
    route: [{destination: {host: dead.default.svc.cluster.local, port: {number: 9000}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: istio-system}
spec:
  hosts: [secure.example.com]
  gateways: [l4]
  tls:
  - match: [{port: ${tlsPort}, sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure.default.svc.cluster.local, port: {number: 9443}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {tcp: ${plainUp}}, labels: {app: db, version: v1}, serviceAccount: db}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9443, name: tls, protocol: TLS}]
  endpoints: [{address: 127.0.0.1, ports: {tls: ${tlsUp}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dead, namespace: default}
spec:
  hosts: [dead.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: ${refused}}}]
`,
    { telemetry: tel },
  );
  tel.attach(runtime);
  const { port: mport } = await tel.listen(0);

  // TCP: two exchanges on one connection, then close.
  const sock = netConnect(tcpPort, '127.0.0.1');
  assert.equal(await exchange(sock, 'ping'), 'db:ping');
  assert.equal(await exchange(sock, 'again!'), 'db:again!');
  sock.end();
  await closed(sock);
  // TLS passthrough: the bytes are the TLS records, whatever their size.
  const secure = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername: 'secure.example.com', ca: ca.certPem });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  assert.equal(await exchange(secure, 'hello'), 'tls:hello');
  secure.end();
  await closed(secure);
  // A refused upstream: the client's connection is closed.
  const dead = netConnect(deadPort, '127.0.0.1');
  dead.on('error', () => undefined);
  await closed(dead);

  const series = async (name: string, want: Record<string, string>) => {
    const res = await request(`http://127.0.0.1:${mport}/stats/prometheus`);
    return parseProm(await res.body.text()).filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
  };
  // The gateway's side of a connection closes just after the client's: wait for the counters.
  const until = async (name: string, want: Record<string, string>, value: number) => {
    for (let i = 0; i < 100; i++) {
      const s = await series(name, want);
      if (s[0]?.value === value) return s[0];
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.fail(`${name}${JSON.stringify(want)} never reached ${value}: ${JSON.stringify(await series(name, want))}`);
  };

  const db = { destination_service: 'db.default.svc.cluster.local', response_flags: '-' };
  const opened = await until('istio_tcp_connections_opened_total', db, 1);
  await until('istio_tcp_connections_closed_total', db, 1);
  assert.deepEqual(
    {
      reporter: opened.labels.reporter,
      source_workload: opened.labels.source_workload,
      destination_workload: opened.labels.destination_workload,
      destination_app: opened.labels.destination_app,
      destination_version: opened.labels.destination_version,
      destination_principal: opened.labels.destination_principal,
      destination_service_name: opened.labels.destination_service_name,
      request_protocol: opened.labels.request_protocol,
      connection_security_policy: opened.labels.connection_security_policy,
    },
    {
      reporter: 'source',
      source_workload: 'istio-ingressgateway',
      destination_workload: 'db-v1',
      destination_app: 'db',
      destination_version: 'v1',
      destination_principal: 'spiffe://cluster.local/ns/default/sa/db',
      destination_service_name: 'db',
      request_protocol: 'tcp',
      connection_security_policy: 'unknown',
    },
  );
  assert.equal((await series('istio_tcp_received_bytes_total', db))[0]?.value, 'ping'.length + 'again!'.length);
  assert.equal((await series('istio_tcp_sent_bytes_total', db))[0]?.value, 'db:ping'.length + 'db:again!'.length);

  const tlsDest = { destination_service: 'secure.default.svc.cluster.local', response_flags: '-' };
  await until('istio_tcp_connections_closed_total', tlsDest, 1);
  assert.equal((await series('istio_tcp_connections_opened_total', tlsDest))[0]?.value, 1);
  assert.ok((await series('istio_tcp_received_bytes_total', tlsDest))[0]!.value > 'hello'.length, 'ClientHello and records counted');
  assert.ok((await series('istio_tcp_sent_bytes_total', tlsDest))[0]!.value > 'tls:hello'.length, 'ServerHello, certificate and records counted');

  const uf = { destination_service: 'dead.default.svc.cluster.local', response_flags: 'UF' };
  await until('istio_tcp_connections_opened_total', uf, 1);
  await until('istio_tcp_connections_closed_total', uf, 1);
});
