/**
 * Sidecars fed only by the control plane (`--controlplane URL`): config from its snapshot stream,
 * workload certificates from its CSR API, STRICT mTLS between them. The control plane is a real
 * `portico controlplane` process, so "killing" it is SIGKILL; one client sidecar is a real
 * `portico sidecar --controlplane` process, the others run in-process.
 *
 *   (a) a VirtualService edit in the watched directory reaches every sidecar (each one's own
 *       outbound route changes); the per-sidecar latency is reported, not asserted;
 *   (b) with the control plane killed, traffic through the sidecars keeps succeeding; a new
 *       control plane on the same port is caught up with (a later edit reaches every sidecar).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Pool } from 'undici';
import { startSidecar, type SidecarHandle } from '../../bin/commands/sidecar.ts';
import { silentLogger } from '../../gateway/runtime.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Echo } from '../helpers/upstream.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const TOKEN = 'mesh-cp-token-0123456789abcdefghijkl';

function registryYaml(inbound: { v1: number; v2: number }): string {
  const we = (name: string, labels: string, sa: string, port?: number): string => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${name}, namespace: default}
spec:
  address: 127.0.0.1
${port !== undefined ? `  ports: {http: ${port}}\n` : ''}  labels: {${labels}}
  serviceAccount: ${sa}
`;
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
${we('echo-v1', 'app: echo, version: v1', 'echo', inbound.v1)}${we('echo-v2', 'app: echo, version: v2', 'echo', inbound.v2)}${we('sleep', 'app: sleep', 'sleep')}${we('curl', 'app: curl', 'curl')}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`;
}

/** The mesh route under test: its response header says which config a sidecar runs. */
function virtualServiceYaml(marker: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - headers: {response: {set: {x-config: "${marker}"}}}
    route: [{destination: {host: echo.default.svc.cluster.local}}]
`;
}

interface Cp {
  readonly child: ChildProcess;
  readonly url: string;
  kill(): Promise<void>;
}

async function spawnControlPlane(t: TestContext, args: { config: string; caDir: string; port: number }): Promise<Cp> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bin/portico.ts', 'controlplane', '--config', args.config, '--port', String(args.port), '--host', '127.0.0.1', '--ca-dir', args.caDir, '--heartbeat', '500ms'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORTICO_BOOTSTRAP_TOKEN: TOKEN } },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const m = /"msg":"control plane ready","url":"([^"]+)"/.exec(out);
    if (m) return { child, url: m[1]!, kill: async () => void (child.kill('SIGKILL'), await exited) };
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`control plane did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function spawnSidecar(t: TestContext, args: string[]): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'sidecar', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void child.kill('SIGKILL'));
  let out = '';
  return new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c;
      const line = /sidecar ready .*\n/.exec(out);
      if (line) resolve(line[0]);
    });
    child.stderr!.on('data', (c: Buffer) => (out += c));
    child.once('exit', (code) => reject(new Error(`sidecar exited ${code}: ${out}`)));
  });
}

/** One request through a sidecar's outbound listener, as an HTTP_PROXY client sends it. */
async function callEcho(proxy: Pool): Promise<{ status: number; marker?: string; echo?: Echo }> {
  const res = await proxy.request({ path: 'http://echo/hello', method: 'GET', headers: { host: 'echo' } });
  const body = await res.body.text();
  return { status: res.statusCode, marker: res.headers['x-config'] as string | undefined, echo: res.statusCode === 200 ? (JSON.parse(body) as Echo) : undefined };
}

/**
 * Polls every sidecar until its route serves `marker`; returns how long each took from `since`.
 * Fails (naming the laggards) if one has not switched after `limitMs`.
 */
async function untilEverySidecarServes(proxies: ReadonlyMap<string, Pool>, marker: string, since: number, limitMs = 15_000): Promise<Map<string, number>> {
  const took = new Map<string, number>();
  await Promise.all(
    [...proxies].map(async ([name, pool]) => {
      while (Date.now() < since + limitMs) {
        const r = await callEcho(pool).catch(() => undefined);
        if (r?.status === 200 && r.marker === marker) return void took.set(name, Date.now() - since);
        await new Promise((res) => setTimeout(res, 5));
      }
    }),
  );
  const missing = [...proxies.keys()].filter((n) => !took.has(n));
  assert.deepEqual(missing, [], `sidecars still not serving ${marker} after ${limitMs} ms`);
  return took;
}

function show(took: Map<string, number>): string {
  return [...took].map(([n, ms]) => `${n} ${ms} ms`).join(', ');
}

test('sidecars on the control plane: config edits reach every sidecar; traffic survives the control plane dying; a restarted one is caught up with', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-mesh-cp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'config');
  const caDir = join(dir, 'ca');
  mkdirSync(cfg);
  const inbound = { v1: await freePort(), v2: await freePort() };
  writeFileSync(join(cfg, 'registry.yaml'), registryYaml(inbound));
  writeFileSync(join(cfg, 'vs.yaml'), virtualServiceYaml('v1'));
  writeFileSync(join(dir, 'token'), TOKEN);

  const cpPort = await freePort();
  let cp = await spawnControlPlane(t, { config: cfg, caDir, port: cpPort });

  const apps = { v1: await startEcho(t, 'echo-v1'), v2: await startEcho(t, 'echo-v2') };
  const handles: SidecarHandle[] = [];
  t.after(() => Promise.allSettled(handles.map((h) => h.close())));
  const inProcess = async (workload: string, appPort?: number): Promise<SidecarHandle> => {
    const h = await startSidecar({ workload, controlplane: cp.url, token: TOKEN, appPort, outboundPort: 0, logger: silentLogger, drainMs: 200 });
    handles.push(h);
    return h;
  };
  const [v1, v2, curl] = await Promise.all([inProcess('default/echo-v1', apps.v1.port), inProcess('default/echo-v2', apps.v2.port), inProcess('default/curl')]);
  // Certificates came from the control plane's CSR API, for the WorkloadEntry's service account.
  assert.equal(v1.identity.spiffeId, 'spiffe://cluster.local/ns/default/sa/echo');
  assert.equal(curl.identity.spiffeId, 'spiffe://cluster.local/ns/default/sa/curl');
  assert.equal(v1.sidecar.mtlsMode(inbound.v1), 'STRICT');

  const sleepOut = await freePort();
  const line = await spawnSidecar(t, ['--controlplane', cp.url, '--token-file', join(dir, 'token'), '--workload', 'default/sleep', '--outbound-port', String(sleepOut), '--metrics-port', '0']);
  assert.match(line, /spiffe=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep .* metrics=\d+/);

  const proxies = new Map<string, Pool>([
    ['sleep (process)', new Pool(`http://127.0.0.1:${sleepOut}`)],
    ['curl', new Pool(`http://127.0.0.1:${curl.sidecar.outboundPort()}`)],
    ['echo-v1', new Pool(`http://127.0.0.1:${v1.sidecar.outboundPort()}`)],
    ['echo-v2', new Pool(`http://127.0.0.1:${v2.sidecar.outboundPort()}`)],
  ]);
  t.after(() => Promise.all([...proxies.values()].map((p) => p.close())));

  // Traffic flows under STRICT mTLS with control-plane-issued certificates.
  const first = await callEcho(proxies.get('curl')!);
  assert.equal(first.status, 200);
  assert.equal(first.marker, 'v1');
  assert.match(String(first.echo?.headers['x-forwarded-client-cert']), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/curl$/);
  const waitConnected = Date.now() + 10_000;
  while (!handles.every((h) => h.subscription?.connected()) && Date.now() < waitConnected) await new Promise((r) => setTimeout(r, 20));
  assert.ok(handles.every((h) => h.subscription?.connected()), 'every in-process sidecar is subscribed');

  await t.test('(a) a VirtualService edit reaches every sidecar', async () => {
    for (const p of proxies.values()) assert.equal((await callEcho(p)).marker, 'v1');
    const editedAt = Date.now();
    writeFileSync(join(cfg, 'vs.yaml'), virtualServiceYaml('v2'));
    const took = await untilEverySidecarServes(proxies, 'v2', editedAt);
    t.diagnostic(`VirtualService edit → each sidecar serves it (control plane debounce 100 ms, poll 5 ms): ${show(took)}; slowest ${Math.max(...took.values())} ms`);
    for (const h of handles) assert.equal(h.subscription?.current().position?.revision, 2);
  });

  await t.test('(b) the control plane dies: traffic keeps flowing; a new one on the same port is caught up with', async () => {
    let sent = 0;
    const failures: string[] = [];
    let stop = false;
    // Steady traffic from every sidecar for the whole outage and restart.
    const load = Promise.all(
      [...proxies].map(async ([name, pool]) => {
        while (!stop) {
          sent++;
          const r = await callEcho(pool).catch((err: Error) => ({ status: 0, marker: err.message }));
          if (r.status !== 200) failures.push(`${name}: ${r.status} ${r.marker ?? ''}`);
          await new Promise((res) => setTimeout(res, 5));
        }
      }),
    );
    await cp.kill();
    const waitDown = Date.now() + 5_000;
    while (handles.some((h) => h.subscription?.connected()) && Date.now() < waitDown) await new Promise((r) => setTimeout(r, 20));
    assert.ok(handles.every((h) => !h.subscription?.connected()), 'the sidecars noticed the control plane is gone');
    const sentBeforeOutage = sent;
    // Down for a while, with a config edit the dead control plane will never push.
    writeFileSync(join(cfg, 'vs.yaml'), virtualServiceYaml('v3'));
    await new Promise((r) => setTimeout(r, 1_000));
    assert.ok(sent - sentBeforeOutage > 20, `requests were sent while the control plane was down (${sent - sentBeforeOutage})`);
    for (const p of proxies.values()) assert.equal((await callEcho(p)).marker, 'v2', 'the last snapshot keeps being served');

    const restartedAt = Date.now();
    cp = await spawnControlPlane(t, { config: cfg, caDir, port: cpPort });
    const took = await untilEverySidecarServes(proxies, 'v3', restartedAt);
    stop = true;
    await load;
    t.diagnostic(`control plane restarted on :${cpPort} → each sidecar serves the edit made while it was down: ${show(took)} (includes the control plane's start-up and reconnect backoff)`);
    t.diagnostic(`${sent} requests through 4 sidecars during the outage and restart, ${failures.length} failed`);
    assert.deepEqual(failures, [], `of ${sent} requests`);
    // A new epoch: each in-process sidecar adopted the new control plane's revision 1.
    for (const h of handles) assert.equal(h.subscription?.current().position?.revision, 1);
  });
});
