/**
 * A small mesh for telemetry tests, all real servers on loopback:
 *
 *   client ──HTTP──► gateway ──ISTIO_MUTUAL──► productpage sidecar ──► productpage app
 *                                                                        │ HTTP_PROXY
 *                       ratings app ◄── ratings sidecar ◄──mTLS── productpage sidecar (outbound)
 *   client ──h2c gRPC──► gateway ──h2c──► greeter (no sidecar)
 *   client ──TCP──► gateway tcp[] ──► tcp-echo (no sidecar)
 *   client ──plaintext──► ratings sidecar (PERMISSIVE: a caller without a sidecar)
 *   client ──► gateway /ratings (fault abort 503)
 *
 * The gateway has its own SPIFFE identity (istio-ingressgateway-service-account) from the mesh
 * CA, as `portico gateway --controlplane --workload` gets one. `round()` sends one of each.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as httpServer } from 'node:http';
import { connect as h2connect, createServer as h2server, type ServerHttp2Session } from 'node:http2';
import { connect as netConnect, createServer as netServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Pool, request } from 'undici';
import { loadOrCreateCa } from '../../certs/index.ts';
import { issueLocalCert, startSidecar, type SidecarHandle } from '../../bin/commands/sidecar.ts';
import { startControlPlane } from '../../controlplane/index.ts';
import { MeshIdentity, meshUpstreamTls, wantsIstioMutual } from '../../gateway/mtls.ts';
import { silentLogger } from '../../gateway/runtime.ts';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { compileYaml, startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';

export interface ScrapeTarget {
  readonly job: string;
  readonly port: number;
  readonly path: string;
}

export interface Topology {
  readonly targets: readonly ScrapeTarget[];
  /** One request of each kind; resolves when all answered (and the TCP connection closed). */
  round(): Promise<void>;
}

const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account';
export { GATEWAY_ID };

function configYaml(p: { gwHttp: number; gwGrpc: number; gwTcp: number; ppInbound: number; ratingsInbound: number; grpc: number; tcp: number }): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${p.gwHttp}, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: ${p.gwGrpc}, name: grpc, protocol: GRPC}
    hosts: ["*"]
  - port: {number: ${p.gwTcp}, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/ingress]
  http:
  - match: [{port: ${p.gwGrpc}}]
    route: [{destination: {host: greeter.default.svc.cluster.local, port: {number: 50051}}}]
  - match: [{uri: {prefix: /ratings}}]
    fault: {abort: {percentage: {value: 100}, httpStatus: 503}}
    route: [{destination: {host: ratings.default.svc.cluster.local, port: {number: 9080}}}]
  - match: [{uri: {exact: /productpage}}]
    route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}}}]
  tcp:
  - match: [{port: ${p.gwTcp}}]
    route: [{destination: {host: tcp-echo.default.svc.cluster.local, port: {number: 9000}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: ${p.ppInbound}}, labels: {app: productpage, version: v1}, serviceAccount: bookinfo-productpage}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: ${p.ratingsInbound}}, labels: {app: ratings, version: v1}, serviceAccount: bookinfo-ratings}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {app: istio-ingressgateway}, serviceAccount: istio-ingressgateway-service-account}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${p.grpc}}, labels: {app: greeter, version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: ${p.tcp}}, labels: {app: tcp-echo, version: v1}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ratings, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  mtls: {mode: PERMISSIVE}
`;
}

function grpcFrame(payload: string): Buffer {
  const body = Buffer.from(payload);
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

async function listen(t: TestContext, server: import('node:net').Server): Promise<number> {
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

export async function startTopology(t: TestContext): Promise<Topology> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-topology-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = loadOrCreateCa(join(dir, 'ca'));

  // Apps. productpage calls ratings through its sidecar's outbound listener (HTTP_PROXY style).
  let ppProxy: Pool | undefined;
  const ratingsApp = await listen(
    t,
    httpServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ratings":{"Reviewer1":5}}'));
    }),
  );
  const ppApp = await listen(
    t,
    httpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const proxy = ppProxy;
        if (!proxy) return void res.writeHead(503).end('no sidecar yet');
        proxy
          .request({ path: 'http://ratings.default.svc.cluster.local:9080/ratings/0', method: 'GET', headers: { host: 'ratings.default.svc.cluster.local:9080' } })
          .then(async (r) => {
            const body = await r.body.text();
            res.writeHead(r.statusCode === 200 ? 200 : 502, { 'content-type': 'text/html' }).end(`<html>${body}</html>`);
          })
          .catch(() => res.writeHead(502).end('ratings unreachable'));
      });
    }),
  );
  const sessions = new Set<ServerHttp2Session>();
  const grpcServer = h2server();
  grpcServer.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  grpcServer.on('stream', (stream) => {
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      stream.end(grpcFrame('hello'));
    });
  });
  await new Promise<void>((resolve) => grpcServer.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sessions) s.destroy();
    return new Promise<void>((resolve) => grpcServer.close(() => resolve()));
  });
  const grpc = (grpcServer.address() as { port: number }).port;
  const tcp = await listen(
    t,
    netServer((s) => {
      s.on('data', (c) => s.write(`echo:${c}`));
      s.on('error', () => undefined);
    }),
  );

  const ports = { gwHttp: await freePort(), gwGrpc: await freePort(), gwTcp: await freePort(), ppInbound: await freePort(), ratingsInbound: await freePort(), grpc, tcp };
  const yaml = configYaml(ports);
  writeFileSync(join(dir, 'mesh.yaml'), yaml);

  const sidecars: SidecarHandle[] = [];
  t.after(() => Promise.allSettled(sidecars.map((s) => s.close())));
  const common = { config: [dir], ca, outboundPort: 0, metricsPort: 0, logger: silentLogger, drainMs: 100, watch: false, tracingSampling: 0 };
  const pp = await startSidecar({ ...common, workload: 'default/productpage-v1', appPort: ppApp });
  sidecars.push(pp);
  const ratings = await startSidecar({ ...common, workload: 'default/ratings-v1', appPort: ratingsApp });
  sidecars.push(ratings);
  ppProxy = new Pool(`http://127.0.0.1:${pp.sidecar.outboundPort()}`);
  t.after(() => ppProxy?.close());

  // The gateway, with its mesh identity (as startWorker in bin/commands/gateway.ts wires it).
  const snapshot = await compileYaml(yaml);
  const identity = new MeshIdentity(await issueLocalCert(ca, snapshot, 'istio-system/istio-ingressgateway'));
  const tel = createTelemetry({
    proxy: { workload: 'istio-ingressgateway', namespace: 'istio-system', app: 'istio-ingressgateway', principal: identity.spiffeId },
    upstreamMtls: wantsIstioMutual,
    tracing: false,
  });
  t.after(() => tel.close());
  const gateway = await startGateway(t, yaml, { telemetry: tel });
  gateway.pools.tlsPolicy = meshUpstreamTls(identity, () => gateway.table().snapshot);
  tel.attach(gateway);
  const gwMetrics = await tel.listen(0);

  const cp = await startControlPlane({ config: [dir], ca, port: 0 });
  t.after(() => cp.close());

  const gwPool = new Pool(`http://127.0.0.1:${ports.gwHttp}`);
  t.after(() => gwPool.close());
  const h2 = h2connect(`http://127.0.0.1:${ports.gwGrpc}`);
  h2.on('error', () => undefined);
  t.after(() => h2.close());

  const grpcCall = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = h2.request({ ':method': 'POST', ':path': '/greeter.Greeter/SayHello', 'content-type': 'application/grpc', te: 'trailers' });
      s.on('error', reject);
      s.resume();
      s.on('end', () => resolve());
      s.end(grpcFrame('world'));
    });
  const tcpExchange = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const sock = netConnect(ports.gwTcp, '127.0.0.1');
      sock.once('error', reject);
      sock.once('data', () => sock.end());
      sock.once('close', () => resolve());
      sock.write('ping');
    });
  const get = async (pool: Pool, path: string): Promise<void> => {
    const r = await pool.request({ path, method: 'GET', headers: { host: 'bookinfo.example.com' } });
    await r.body.text();
  };

  return {
    targets: [
      { job: 'gateway', port: gwMetrics.port, path: '/stats/prometheus' },
      { job: 'productpage', port: pp.metricsPort!, path: '/stats/prometheus' },
      { job: 'ratings', port: ratings.metricsPort!, path: '/stats/prometheus' },
      { job: 'controlplane', port: cp.port, path: '/metrics' },
    ],
    async round() {
      await Promise.all([
        get(gwPool, '/productpage'),
        get(gwPool, '/ratings/1'),
        grpcCall(),
        tcpExchange(),
        request(`http://127.0.0.1:${ports.ratingsInbound}/ratings/2`, { headers: { host: 'ratings.default.svc.cluster.local:9080' } }).then((r) => r.body.text()),
      ]);
    },
  };
}
