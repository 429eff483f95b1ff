/**
 * `portico gateway --controlplane URL --workload NS/NAME`: the ingress gateway takes a SPIFFE
 * identity from the control plane's CSR API and originates ISTIO_MUTUAL to a sidecar under
 * STRICT mTLS (what docker-compose.yml needs). Real gateway processes; the control plane and the
 * app's sidecar run in-process. The same gateway without the flags is refused by the STRICT
 * sidecar, which is what makes the first assertion mean something.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { meshSettings } from '../../bin/commands/gateway.ts';
import { startSidecar } from '../../bin/commands/sidecar.ts';
import { startControlPlane, silentLogger } from '../../controlplane/index.ts';
import { silentLogger as quietGateway } from '../../gateway/runtime.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Echo } from '../helpers/upstream.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const TOKEN = 'gateway-mesh-token-0123456789abcdefghij';
const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account';

function configYaml(gatewayPort: number, inbound: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${gatewayPort}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/ingress]
  http: [{route: [{destination: {host: echo.default.svc.cluster.local, port: {number: 80}}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: ${inbound}}
  labels: {app: echo, version: v1}
  serviceAccount: echo
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  address: 127.0.0.1
  labels: {app: istio-ingressgateway}
  serviceAccount: istio-ingressgateway-service-account
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`;
}

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  output(): string;
}

function spawnGateway(t: TestContext, args: string[]): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'gateway', '--workers', '1', '--admin-port', '0', '--metrics-port=-1', '--no-watch', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '' },
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  });
  return { child, exited, output: () => out };
}

async function ready(p: Proc, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!p.output().includes('"msg":"gateway ready"')) {
    if (p.child.exitCode !== null) throw new Error(`gateway exited with ${p.child.exitCode}:\n${p.output()}`);
    if (Date.now() > deadline) throw new Error(`gateway not ready within ${ms} ms:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('gateway mesh flags: both or neither, a NAMESPACE/NAME workload, an http(s) URL, a readable token file', () => {
  assert.equal(meshSettings(undefined, undefined, undefined), undefined);
  assert.throws(() => meshSettings('http://cp:15010', undefined, undefined), /--controlplane and --workload go together/);
  assert.throws(() => meshSettings(undefined, 'istio-system/gw', undefined), /--controlplane and --workload go together/);
  assert.throws(() => meshSettings(undefined, undefined, '/tmp/x'), /--token-file needs --controlplane/);
  assert.throws(() => meshSettings('cp:15010', 'istio-system/gw', undefined), /--controlplane: 'cp:15010' is not an http\(s\) URL/);
  assert.throws(() => meshSettings('not a url', 'istio-system/gw', undefined), /is not a URL/);
  assert.throws(() => meshSettings('http://cp:15010', 'gw', undefined), /--workload: 'gw' is not NAMESPACE\/NAME/);
  assert.throws(() => meshSettings('http://cp:15010', 'istio-system/gw', '/nonexistent/token'), /--token-file: cannot read \/nonexistent\/token: ENOENT/);
  assert.deepEqual(meshSettings('http://cp:15010', 'istio-system/gw', undefined), { controlplane: 'http://cp:15010', workload: 'istio-system/gw', token: undefined });
});

test('portico gateway --controlplane --workload: ISTIO_MUTUAL to a STRICT sidecar with its own SPIFFE identity; without it, refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-mesh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [inbound, meshPort, plainPort] = [await freePort(), await freePort(), await freePort()];
  const meshCfg = join(dir, 'mesh.yaml');
  const plainCfg = join(dir, 'plain.yaml');
  writeFileSync(meshCfg, configYaml(meshPort, inbound));
  writeFileSync(plainCfg, configYaml(plainPort, inbound));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);

  // The gateway starts first: it waits for the control plane (compose starts them together).
  const cpPort = await freePort();
  const cpUrl = `http://127.0.0.1:${cpPort}`;
  const meshGw = spawnGateway(t, ['--config', meshCfg, '--controlplane', cpUrl, '--workload', 'istio-system/istio-ingressgateway', '--token-file', tokenFile]);
  const plainGw = spawnGateway(t, ['--config', plainCfg]);
  // These two never get a certificate, so they never bind meshCfg's port.
  const unknown = spawnGateway(t, ['--config', meshCfg, '--controlplane', cpUrl, '--workload', 'istio-system/nobody', '--token-file', tokenFile]);
  const badToken = join(dir, 'bad-token');
  writeFileSync(badToken, 'wrong-token-0123456789abcdefghijklmnop');
  const refused = spawnGateway(t, ['--config', meshCfg, '--controlplane', cpUrl, '--workload', 'istio-system/istio-ingressgateway', '--token-file', badToken]);
  // The control plane starts only once the gateway has found it missing.
  const waitDeadline = Date.now() + 20_000;
  while (!/waiting for the control plane to sign the gateway certificate/.test(meshGw.output())) {
    if (meshGw.child.exitCode !== null || Date.now() > waitDeadline) throw new Error(`the gateway did not wait for the control plane:\n${meshGw.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const cp = await startControlPlane({ config: [meshCfg], port: cpPort, host: '127.0.0.1', caDir: join(dir, 'ca'), token: TOKEN, logger: silentLogger });
  t.after(() => cp.close());
  const app = await startEcho(t, 'echo-v1');
  const sidecar = await startSidecar({ workload: 'default/echo-v1', controlplane: cp.url, token: TOKEN, appPort: app.port, outboundPort: 0, logger: quietGateway, drainMs: 100 });
  t.after(() => sidecar.close());
  assert.equal(sidecar.sidecar.mtlsMode(inbound), 'STRICT');

  await Promise.all([ready(meshGw), ready(plainGw)]);
  assert.ok(meshGw.output().includes(`"msg":"gateway mesh identity","spiffeId":"${GATEWAY_ID}"`), meshGw.output());

  const res = await fetch(`http://127.0.0.1:${meshPort}/hello`);
  const body = await res.text();
  assert.equal(res.status, 200, body);
  const echo = JSON.parse(body) as Echo;
  assert.equal(echo.name, 'echo-v1');
  assert.match(String(echo.headers['x-forwarded-client-cert']), new RegExp(`;URI=${GATEWAY_ID.replace(/[/.]/g, '\\$&')}$`));
  assert.match(String(echo.headers['x-forwarded-client-cert']), /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/echo;Hash=[0-9a-f]{64};/);

  // Plaintext from a gateway without a mesh identity: STRICT closes the connection.
  const plain = await fetch(`http://127.0.0.1:${plainPort}/hello`);
  await plain.arrayBuffer();
  assert.equal(plain.status, 503);
  assert.equal(app.seen.length, 1, 'only the mTLS request reached the app');

  // Mistakes waiting will not fix end the gateway at once, saying why.
  assert.equal(await unknown.exited, 1);
  assert.match(unknown.output(), /portico gateway: not starting: .*workload 'istio-system\/nobody': no WorkloadEntry/);
  assert.equal(await refused.exited, 1);
  assert.match(refused.output(), /portico gateway: not starting: .*(401|token|unauthori)/i);
  assert.doesNotMatch(refused.output(), /wrong-token/, 'the token is not logged');
});
