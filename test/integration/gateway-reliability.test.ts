/**
 * An upstream killed in the middle of a bounded load: requests are retried around it (no client
 * sees a failure), the dead endpoint is ejected by outlier detection, and when a server is back on
 * its port it receives traffic again after the ejection time.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';

function serve(name: string, port: number, counts: Map<string, number>): Promise<Server> {
  const server = createServer((_req, res) => {
    counts.set(name, (counts.get(name) ?? 0) + 1);
    res.end(name);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

function kill(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

test('an upstream killed mid-load is retried around, ejected, then returns', async (t) => {
  const counts = new Map<string, number>();
  const bad: string[] = [];
  const ports = [await freePort(), await freePort(), await freePort()];
  const servers = [await serve('a', ports[0]!, counts), await serve('b', ports[1]!, counts), await serve('c', ports[2]!, counts)];
  t.after(() => Promise.all(servers.map((s) => (s.listening ? kill(s) : undefined))));
  const port = await freePort();
  const entries = ports.map((p, i) => `  - {address: 127.0.0.1, ports: {http: ${p}}, labels: {name: n${i}}}`).join('\n');
  const gw = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
${entries}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    outlierDetection:
      consecutiveGatewayErrors: 2
      interval: 50ms
      baseEjectionTime: 600ms
      maxEjectionPercent: 50
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{destination: {host: app}}]
`,
  );
  const agent = new Agent({ connections: 8 });
  t.after(() => agent.close());
  const failures: string[] = [];
  let sent = 0;
  const load = async (until: () => boolean): Promise<void> => {
    const worker = async (): Promise<void> => {
      while (!until() && sent < 5000) {
        sent++;
        try {
          const r = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
          const body = await r.body.text();
          if (r.statusCode !== 200) failures.push(`${r.statusCode} ${body}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  };

  let killedAt = 0;
  const started = Date.now();
  await load(() => {
    if (!killedAt && Date.now() - started > 200) {
      killedAt = Date.now();
      void kill(servers[1]!);
    }
    return killedAt > 0 && Date.now() - killedAt > 300;
  });
  assert.deepEqual(failures, [], `every request was retried around the dead endpoint; gateway saw: ${bad.join('; ')}`);
  const ejected = gw.balancer.stats().flatMap((c) => c.endpoints).filter((e) => e.health === 'EJECTED');
  assert.equal(ejected.length, 1, 'the dead endpoint is ejected');
  assert.equal(ejected[0]!.port, ports[1]);

  // Back on its port: after the ejection time it gets traffic again.
  servers[1] = await serve('b-again', ports[1]!, counts);
  await new Promise((r) => setTimeout(r, 800));
  await load(() => (counts.get('b-again') ?? 0) > 5 || Date.now() - started > 10_000);
  assert.ok((counts.get('b-again') ?? 0) > 0, 'the endpoint returned after baseEjectionTime');
  assert.deepEqual(failures, []);
});

test('active health checks (opt-in) mark an unreachable endpoint unhealthy before any request fails', async (t) => {
  const counts = new Map<string, number>();
  const live = await freePort();
  const dead = await freePort();
  const server = await serve('live', live, counts);
  t.after(() => kill(server));
  const port = await freePort();
  const gw = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${live}}}, {address: 127.0.0.1, ports: {http: ${dead}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{destination: {host: app}}]
    retries: {attempts: 0}
`,
    { healthChecks: { intervalMs: 40, timeoutMs: 200 } },
  );
  const deadline = Date.now() + 3000;
  const health = () => gw.balancer.stats().flatMap((c) => c.endpoints).find((e) => e.port === dead)?.health;
  while (health() !== 'UNHEALTHY' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(health(), 'UNHEALTHY');
  for (let i = 0; i < 10; i++) {
    const r = await request(`http://127.0.0.1:${port}/`);
    assert.equal(r.statusCode, 200, 'with retries off, only health checking keeps requests off the dead endpoint');
    await r.body.dump();
  }
});
