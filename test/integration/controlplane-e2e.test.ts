/**
 * End to end: `portico controlplane` as a real child process, and an in-process GatewayRuntime
 * fed only by the control plane client. Editing the VirtualService file changes what the gateway
 * answers; killing the control plane leaves the gateway serving its last snapshot.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { connectProxyToControlPlane, waitForSnapshot } from '../../controlplane/client.ts';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const TOKEN = 'e2e-token-0123456789abcdefghij';

function gatewayYaml(port: number, upstream: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: up}
spec:
  hosts: [up.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${upstream}}}]
`;
}

function virtualServiceYaml(prefix: string, marker: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: ${prefix}}}]
    headers: {response: {set: {x-config: "${marker}"}}}
    route: [{destination: {host: up.default.svc.cluster.local}}]
`;
}

test('portico controlplane (child process) drives an in-process gateway: a VirtualService edit is served, and survives the control plane dying', async (t) => {
  const up = await startEcho(t, 'up');
  const gwPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-cp-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'gateway.yaml'), gatewayYaml(gwPort, up.port));
  writeFileSync(join(dir, 'vs.yaml'), virtualServiceYaml('/old', 'v1'));

  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bin/portico.ts', 'controlplane', '--config', dir, '--port', '0', '--ca-dir', join(dir, 'ca'), '--heartbeat', '500ms'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORTICO_BOOTSTRAP_TOKEN: TOKEN } },
  );
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const deadline = Date.now() + 20_000;
  let url: string | undefined;
  while (!url) {
    const m = /"msg":"control plane ready","url":"([^"]+)"/.exec(out);
    if (m) url = m[1];
    else if (Date.now() > deadline || child.exitCode !== null) throw new Error(`control plane did not start:\n${out}`);
    else await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(!out.includes(TOKEN), 'the token is never logged');

  // What `portico gateway --controlplane URL` does.
  const first = await waitForSnapshot({ url, token: TOKEN, timeoutMs: 10_000 });
  const runtime = new GatewayRuntime(first.snapshot);
  await runtime.start();
  t.after(() => runtime.close(100));
  const applied: number[] = [];
  const link = connectProxyToControlPlane(runtime, { url, token: TOKEN, node: 'e2e-gateway', initial: first, minBackoffMs: 50, maxBackoffMs: 200, onApplied: (_s, rev) => void applied.push(rev) });
  t.after(() => link.close());

  const get = async (path: string): Promise<{ status: number; marker?: string }> => {
    const res = await request(`http://127.0.0.1:${gwPort}${path}`);
    await res.body.dump();
    return { status: res.statusCode, marker: res.headers['x-config'] as string | undefined };
  };
  assert.deepEqual(await get('/old/x'), { status: 200, marker: 'v1' });
  assert.equal((await get('/new/x')).status, 404);
  const waitConnected = Date.now() + 5_000;
  while (!link.connected() && Date.now() < waitConnected) await new Promise((r) => setTimeout(r, 20));
  assert.ok(link.connected());

  const editedAt = Date.now();
  writeFileSync(join(dir, 'vs.yaml'), virtualServiceYaml('/new', 'v2'));
  let served: { status: number; marker?: string } = { status: 0 };
  while (Date.now() < editedAt + 10_000) {
    served = await get('/new/x');
    if (served.status === 200) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const tookMs = Date.now() - editedAt;
  assert.deepEqual(served, { status: 200, marker: 'v2' });
  assert.equal((await get('/old/x')).status, 404);
  assert.deepEqual(applied, [2]);
  t.diagnostic(`VirtualService edit → gateway serves the new route: ${tookMs} ms (watch debounce 100 ms)`);

  // The control plane dies: the gateway keeps serving the last snapshot.
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const waitDown = Date.now() + 5_000;
  while (link.connected() && Date.now() < waitDown) await new Promise((r) => setTimeout(r, 20));
  assert.equal(link.connected(), false);
  for (let i = 0; i < 5; i++) assert.deepEqual(await get('/new/x'), { status: 200, marker: 'v2' });
});
