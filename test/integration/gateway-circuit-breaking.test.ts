/**
 * DestinationRule connectionPool circuit breaking through a real gateway: with
 * maxConnections 1 and http1MaxPendingRequests 1 against a slow upstream, one request runs, one
 * waits, the rest get 503 "upstream connection pool overflow" at once.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import type { GatewayRuntime } from '../../gateway/runtime.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Echo, type Upstream } from '../helpers/upstream.ts';

type Handler = (req: Echo, res: ServerResponse) => boolean | void;

async function setup(t: TestContext, names: string[], trafficPolicy: string, handlers: Record<string, Handler> = {}): Promise<{ port: number; ups: Record<string, Upstream>; gw: GatewayRuntime }> {
  const ups: Record<string, Upstream> = {};
  for (const n of names) ups[n] = await startEcho(t, n, handlers[n]);
  const port = await freePort();
  const entries = names
    .map((n) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: app-${n}}
spec: {address: 127.0.0.1, ports: {http: ${ups[n]!.port}}, labels: {app: app}}`)
    .join('\n');
  const gw = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: app}}
${entries}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
${trafficPolicy}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: main}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{destination: {host: app}}]
`,
  );
  return { port, ups, gw };
}

async function get(port: number, headers: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: 'app.example.com', ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, name: res.headers['x-upstream'] as string | undefined, text };
}

test('maxConnections 1 + http1MaxPendingRequests 1: overflow answers 503 UO, admitted requests succeed', async (t) => {
  const held: ServerResponse[] = [];
  const slow: Handler = (_req, res) => {
    held.push(res);
    return true;
  };
  const s = await setup(t, ['slow'], `    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}`, { slow });
  const results = Array.from({ length: 6 }, () => get(s.port));
  await waitFor(() => held.length === 1);
  // Requests beyond the running one and the pending one are refused without reaching upstream.
  const overflowed = await Promise.all(results.slice(2));
  for (const r of overflowed) {
    assert.equal(r.status, 503);
    assert.match(r.text, /upstream connection pool overflow/);
  }
  assert.equal(s.ups.slow!.seen.length, 1, 'only one connection to the upstream');
  const st = s.gw.balancer.stats().find((c) => c.name.endsWith('|app.default.svc.cluster.local'))!;
  assert.equal(st.active, 2);
  assert.equal(st.pending, 1);
  assert.equal(st.overflows, 4);

  // Finish the first: the pending one gets the connection.
  respond(held[0]!);
  const first = await results[0]!;
  assert.equal(first.status, 200);
  await waitFor(() => held.length === 2);
  respond(held[1]!);
  assert.equal((await results[1]!).status, 200);
  // Capacity is back.
  const later = get(s.port);
  await waitFor(() => held.length === 3);
  respond(held[2]!);
  assert.equal((await later).status, 200);
});

function respond(res: ServerResponse): void {
  res.writeHead(200, { 'x-upstream': 'slow' });
  res.end('ok');
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
