/**
 * Drain: HTTP/1.1 responses already in flight when the gateway starts draining carry
 * `Connection: close` (as Envoy and nginx do), on every connection, so keep-alive clients move
 * to another instance instead of sending their next request into a closing listener.
 */
import assert from 'node:assert/strict';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { test } from 'node:test';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { compileYaml } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

function config(port: number, app: number): string {
  return `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: ["*"]
  gateways: [default/gw]
  http:
  - route: [{destination: {host: app.default.svc.cluster.local, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app}}}]
`;
}

test('responses in flight on every keep-alive connection when the drain starts carry Connection: close', async (t) => {
  const held: ServerResponse[] = [];
  let arrived: () => void = () => undefined;
  const app = await startEcho(t, 'app', (_req, res) => {
    held.push(res);
    arrived();
    return true;
  });
  const port = await freePort();
  const runtime = new GatewayRuntime(await compileYaml(config(port, app.port)), {});
  await runtime.start();
  t.after(() => runtime.close(100));

  const get = (agent: Agent): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/x', agent }, resolve);
      req.on('error', reject);
      req.end();
    });
  // Each client has answered one request already, so both connections carry an earlier response.
  const agents = [new Agent({ keepAlive: true, maxSockets: 1 }), new Agent({ keepAlive: true, maxSockets: 1 })];
  t.after(() => agents.forEach((a) => a.destroy()));
  const release = (): void => {
    for (const r of held.splice(0)) r.end('ok');
  };
  for (const agent of agents) {
    const first = get(agent);
    await new Promise<void>((resolve) => (arrived = resolve));
    release();
    const res = await first;
    res.resume();
    await once(res, 'end');
    assert.notEqual(res.headers.connection, 'close', 'before the drain: keep-alive');
  }

  const both = new Promise<void>((resolve) => {
    arrived = () => held.length === 2 && resolve();
  });
  const pending = agents.map(get);
  await both;
  const closing = runtime.close(5_000);
  release();
  for (const res of await Promise.all(pending)) {
    res.resume();
    assert.equal(res.headers.connection, 'close');
  }
  await closing;
});
