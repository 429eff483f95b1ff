/**
 * Websockets through the gateway: upgrade over plain HTTP, a connect failure retried on another
 * endpoint, and an open websocket that survives config reloads.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { startHttpbin } from '../../demo/httpbin.ts';
import { compileYaml, startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';

function yaml(port: number, endpoints: number[], marker: string): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ws}
spec:
  hosts: [ws.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
${endpoints.map((p) => `  - {address: 127.0.0.1, ports: {http: ${p}}}`).join('\n')}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ws}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - headers: {response: {set: {x-marker: "${marker}"}}}
    route: [{destination: {host: ws}}]
`;
}

async function open(port: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

function echo(ws: WebSocket, text: string): Promise<string> {
  const reply = new Promise<string>((resolve) => ws.once('message', (m) => resolve(String(m))));
  ws.send(text);
  return reply;
}

test('websocket upgrades are retried past a dead endpoint and survive 10 config reloads', async (t) => {
  const httpbin = await startHttpbin({ port: 0, host: '127.0.0.1' });
  t.after(() => httpbin.close());
  const dead = await freePort();
  const port = await freePort();
  const gw = await startGateway(t, yaml(port, [dead, httpbin.port], 'v0'));
  const sockets: WebSocket[] = [];
  t.after(() => sockets.forEach((s) => s.terminate()));
  for (let i = 0; i < 4; i++) sockets.push(await open(port)); // round robin hits the dead endpoint too
  for (const [i, ws] of sockets.entries()) assert.match(await echo(ws, `hello ${i}`), new RegExp(`hello ${i}`));

  for (let i = 1; i <= 10; i++) await gw.apply(await compileYaml(yaml(port, [dead, httpbin.port], `v${i}`)));
  for (const [i, ws] of sockets.entries()) {
    assert.equal(ws.readyState, WebSocket.OPEN, 'reloads do not drop upgraded connections');
    assert.match(await echo(ws, `still here ${i}`), new RegExp(`still here ${i}`));
  }
});
