/**
 * Transparent capture for real: `portico iptables` applied in a network namespace this test makes
 * (`unshare -n`), pod A's sidecar running as uid 1337 in it, pod B (sidecar + app) in a second
 * namespace joined by a veth pair (10.244.0.10 ↔ 10.244.0.11). No HTTP_PROXY anywhere:
 *   - outbound: app A's plain `http.get('http://b.default.svc.cluster.local/')` (its "DNS" gives a
 *     ClusterIP, 10.96.0.20) is redirected to A's sidecar on 15001, which routes it by Host over
 *     mTLS to B (B's app sees A's SPIFFE id in XFCC);
 *   - inbound: B's sidecar calling A's pod IP on 9080 is redirected to A's inbound listener
 *     (15100) and reaches app A with B's identity; a plaintext client is refused (STRICT),
 *     though app A itself listens on 0.0.0.0:9080;
 *   - probes: kubelet-style plain HTTP to 10.244.0.10:15020/app-health/app/readyz runs app A's
 *     real probe over localhost.
 * Skips loudly without iptables or namespaces (PORTICO_REQUIRE=iptables makes that a failure).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadOrCreateCa } from '../../certs/store.ts';
import { missing, which } from '../helpers/external.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const INSIDE = process.env.PORTICO_TEST_CAPTURE_NETNS === '1';

function sh(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { encoding: 'utf8' }, (err, out, errOut) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${errOut || err.message}`)) : resolve(out))),
  );
}

const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: default}
spec:
  hosts: [a.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: a}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b, namespace: default}
spec:
  hosts: [b.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: b}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: default}
spec: {address: 10.244.0.10, ports: {http: 9080}, labels: {app: a}, serviceAccount: a}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: default}
spec: {address: 10.244.0.11, ports: {http: 19080}, labels: {app: b}, serviceAccount: b}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`;

/** A client run inside pod B's namespace: prints `<status>\\n<body>` or `error <code>`. */
const CLIENT = `import http from 'node:http';
const [url, host] = process.argv.slice(2);
const u = new URL(url);
const req = http.get({ host: u.hostname, port: u.port, path: u.pathname, headers: host ? { host } : {} }, (res) => {
  let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => process.stdout.write(res.statusCode + '\\n' + b));
});
req.on('error', (e) => process.stdout.write('error ' + (e.code ?? e.message)));
req.setTimeout(10000, () => req.destroy(new Error('timeout')));`;

const ECHO = `import http from 'node:http';
http.createServer((req, res) => res.end(JSON.stringify({ app: 'b', headers: req.headers }))).listen(29080, '127.0.0.1', () => process.stdout.write('listening\\n'));`;

function started(t: TestContext, child: ChildProcess, ready: RegExp, what: string): Promise<void> {
  t.after(() => void (child.exitCode === null && child.kill('SIGKILL')));
  let out = '';
  return new Promise((resolve, reject) => {
    const on = (c: Buffer): void => {
      out += c;
      if (ready.test(out)) resolve();
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', (c: Buffer) => (out += c));
    child.once('exit', (code) => reject(new Error(`${what} exited ${code}:\n${out}`)));
  });
}

test('iptables capture: outbound and inbound go through the uid-1337 sidecar, probes through the status port', { timeout: 120_000 }, async (t) => {
  if (!INSIDE) {
    const unshare = which('unshare', ['/usr/bin']);
    const nsenter = which('nsenter', ['/usr/bin']);
    const ip = which('ip', ['/usr/sbin', '/sbin']);
    const restore = which('iptables-restore', ['/usr/sbin', '/sbin']);
    if (!unshare || !nsenter || !ip || !restore) return missing(t, 'iptables', 'iptables-restore, ip, unshare and nsenter are needed (apt-get install iptables iproute2 util-linux)');
    const probe = await sh(unshare, ['-n', 'true']).then(() => '', (e: Error) => e.message);
    if (probe) return missing(t, 'iptables', `cannot create a network namespace (needs root): ${probe}`);
    const out = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(unshare, ['-n', '--', 'sh', '-c', `${ip} link set lo up && exec "$0" "$@"`, process.execPath, '--import', 'tsx', '--test', '--test-reporter=spec', fileURLToPath(import.meta.url)], {
        cwd: ROOT,
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')), PORTICO_TEST_CAPTURE_NETNS: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d));
      child.stderr.on('data', (d: Buffer) => (output += d));
      child.once('exit', (code) => resolve({ code, output }));
    });
    process.stderr.write(out.output);
    assert.equal(out.code, 0, `the test failed inside the network namespace:\n${out.output.slice(-6000)}`);
    assert.match(out.output, /ℹ pass 1/);
    return;
  }

  // Pod B's namespace, joined to ours (pod A's) by a veth pair; ClusterIPs route out of A's end.
  const peer = spawn('unshare', ['-n', 'sleep', '600'], { stdio: 'ignore' });
  t.after(() => void peer.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 200));
  const pid = String(peer.pid);
  const inB = (...args: string[]): string[] => ['-t', pid, '-n', ...args];
  await sh('ip', ['link', 'add', 'veth-a', 'type', 'veth', 'peer', 'name', 'veth-b', 'netns', pid]);
  await sh('ip', ['addr', 'add', '10.244.0.10/24', 'dev', 'veth-a']);
  await sh('ip', ['link', 'set', 'veth-a', 'up']);
  await sh('ip', ['route', 'add', '10.96.0.0/16', 'dev', 'veth-a']);
  await sh('nsenter', inB('sh', '-c', 'ip link set lo up && ip addr add 10.244.0.11/24 dev veth-b && ip link set veth-b up'));

  const dir = mkdtempSync(join(tmpdir(), 'portico-capture-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'mesh.yaml'), CONFIG, { mode: 0o644 });
  writeFileSync(join(dir, 'client.mjs'), CLIENT, { mode: 0o644 });
  writeFileSync(join(dir, 'echo.mjs'), ECHO, { mode: 0o644 });
  const caDir = join(dir, 'ca');
  loadOrCreateCa(caDir);
  chmodSync(caDir, 0o755);
  for (const f of ['ca.crt', 'ca.key']) chmodSync(join(caDir, f), 0o644);
  const home = join(dir, 'home');
  await sh('mkdir', ['-m', '777', home]);

  // App A: listens on every address, as apps do; only the capture keeps others off it.
  const seen: IncomingHttpHeaders[] = [];
  const app = createServer((req, res) => {
    if (req.url === '/ready') return void res.end('ok');
    seen.push(req.headers);
    res.end(JSON.stringify({ app: 'a', headers: req.headers }));
  });
  await new Promise<void>((r) => app.listen(9080, '0.0.0.0', () => r()));
  t.after(() => void app.close());

  // istio-init
  await sh(process.execPath, ['--import', 'tsx', join(ROOT, 'bin/portico.ts'), 'iptables', '--inbound-ports', '9080=15100']);
  const nat = await sh('iptables-save', ['-t', 'nat']);
  assert.match(nat, /-A ISTIO_IN_REDIRECT -p tcp -m tcp --dport 9080 -j REDIRECT --to-ports 15100/);

  const portico = [process.execPath, '--import', 'tsx', join(ROOT, 'bin/portico.ts'), 'sidecar', '--config', join(dir, 'mesh.yaml'), '--ca-dir', caDir, '--no-watch'];
  const env = { ...process.env, HOME: home, ISTIO_KUBE_APP_PROBERS: JSON.stringify({ '/app-health/app/readyz': { httpGet: { path: '/ready', port: 9080, scheme: 'HTTP' } } }) };
  const sidecarA = spawn(portico[0]!, [...portico.slice(1), '--workload', 'default/a', '--app-port', '9080', '--inbound-ports', '9080=15100', '--inbound-host', '0.0.0.0', '--metrics-port', '15020', '--metrics-host', '0.0.0.0'], {
    cwd: ROOT,
    uid: 1337,
    gid: 1337,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const sidecarB = spawn('nsenter', inB(...portico, '--workload', 'default/b', '--app-port', '29080', '--metrics-port=-1'), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const appB = spawn('nsenter', inB(process.execPath, join(dir, 'echo.mjs')), { stdio: ['ignore', 'pipe', 'pipe'] });
  await Promise.all([started(t, sidecarA, /sidecar ready/, 'sidecar A'), started(t, sidecarB, /sidecar ready/, 'sidecar B'), started(t, appB, /listening/, 'app B')]);
  const fromB = async (url: string, host?: string): Promise<string> => sh('nsenter', inB(process.execPath, join(dir, 'client.mjs'), url, ...(host ? [host] : [])));

  // Outbound: a plain http.get; "DNS" answers a ClusterIP, as kube-dns would.
  const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = get('http://b.default.svc.cluster.local/hello', { lookup: (_h, _o, cb) => cb(null, [{ address: '10.96.0.20', family: 4 }]) }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
  });
  assert.equal(body.status, 200, body.text);
  const echoed = JSON.parse(body.text) as { app: string; headers: Record<string, string> };
  assert.equal(echoed.app, 'b');
  assert.match(echoed.headers['x-forwarded-client-cert'] ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/a/, 'B saw A\'s mTLS identity: the request went through A\'s sidecar');

  // Inbound: B's sidecar (its outbound listener, as B's app would be captured to it) → A's pod IP:9080.
  const viaMesh = await fromB('http://127.0.0.1:15001/', 'a.default.svc.cluster.local');
  assert.match(viaMesh, /^200\n/, viaMesh);
  assert.match(seen.at(-1)?.['x-forwarded-client-cert'] as string, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/b/);

  // A plaintext client reaching app A's port directly is captured too, and STRICT refuses it.
  const before = seen.length;
  const plain = await fromB('http://10.244.0.10:9080/');
  assert.match(plain, /^error (ECONNRESET|socket hang up)/, plain);
  assert.equal(seen.length, before, 'app A never saw the plaintext request');

  // Kubelet's rewritten probe: plain HTTP to the status port, answered by app A's real probe.
  assert.match(await fromB('http://10.244.0.10:15020/app-health/app/readyz'), /^200\n/);
  app.close();
  assert.match(await fromB('http://10.244.0.10:15020/app-health/app/readyz'), /^503\n/, 'app down: the probe fails');
});
