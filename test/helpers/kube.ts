/**
 * A real Kubernetes API server for tests: Debian's etcd plus kube-apiserver and kubectl built by
 * scripts/build-kube.sh (cached under ${PORTICO_CACHE:-~/.cache/portico}/kube/<version>/bin, or
 * KUBE_BIN_DIR). No kubelet, scheduler or controller-manager: tests create Pods through the API
 * and set their status through the status subresource.
 *
 * The API server runs with token auth (an admin token in system:masters), RBAC, service-account
 * keys made with openssl (so TokenRequest/TokenReview work) and `--endpoint-reconciler-type=none`
 * (it refuses a loopback advertise address otherwise). Istio's CRDs for the kinds Portico reads
 * are applied (test/fixtures/kube/istio-crds.yaml). Skips loudly when a binary is missing.
 *
 * EndpointSlices may not hold loopback addresses, so tests that route to pod IPs run inside a
 * network namespace of their own (`runInNetns`): `unshare -n`, then addresses such as 10.244.0.10
 * on that namespace's `lo`. Traffic never leaves it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { missing, which } from './external.ts';
import { freePort } from './net.ts';

export const KUBE_VERSION = process.env.KUBE_VERSION ?? 'v1.37.2';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const ISTIO_CRDS = join(ROOT, 'test/fixtures/kube/istio-crds.yaml');

export interface KubeBinaries {
  readonly apiserver: string;
  readonly kubectl: string;
  readonly etcd: string;
}

/** Where scripts/build-kube.sh puts the binaries. */
export function kubeBinDir(): string {
  return process.env.KUBE_BIN_DIR ?? join(process.env.PORTICO_CACHE ?? join(homedir(), '.cache/portico'), 'kube', KUBE_VERSION, 'bin');
}

/** The binaries, or undefined after skipping `t` loudly (failing it when PORTICO_REQUIRE has `kube`). */
export function kubeBinaries(t: TestContext): KubeBinaries | undefined {
  const dir = kubeBinDir();
  const apiserver = join(dir, 'kube-apiserver');
  const kubectl = join(dir, 'kubectl');
  const etcd = which('etcd', ['/usr/bin', '/usr/sbin']);
  if (!existsSync(apiserver) || !existsSync(kubectl)) {
    missing(t, 'kube', `no kube-apiserver/kubectl in ${dir} (run scripts/build-kube.sh, or set KUBE_BIN_DIR)`);
    return undefined;
  }
  if (!etcd) {
    missing(t, 'kube', 'etcd not found (apt-get install etcd-server)');
    return undefined;
  }
  return { apiserver, kubectl, etcd };
}

export interface KubeCluster {
  /** `https://127.0.0.1:PORT`. */
  readonly server: string;
  /** Bearer token of `admin` (group system:masters). */
  readonly token: string;
  /** A kubeconfig file for the admin user (also what `kubectl` below uses). */
  readonly kubeconfig: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  readonly caPem: string;
  readonly dir: string;
  readonly bins: KubeBinaries;
  /** A fresh KubeConfig for the admin user. */
  kubeConfig(): KubeConfig;
  /** Runs kubectl with the admin kubeconfig; rejects with its stderr on a non-zero exit. */
  kubectl(args: readonly string[], stdin?: string): Promise<string>;
  /** `kubectl apply -f -` of YAML text. */
  apply(yaml: string): Promise<string>;
  /** Any API request as admin: JSON body in and out. */
  api<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

function run(cmd: string, args: readonly string[], stdin?: string, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, env: env ?? process.env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd.split('/').pop()} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

function openssl(args: readonly string[]): Promise<string> {
  return run('openssl', args);
}

/** A CA and a serving certificate for 127.0.0.1/localhost, plus the service-account key pair. */
async function makeKeys(dir: string): Promise<void> {
  const p = (f: string): string => join(dir, f);
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=portico-test-kube-ca']);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('apiserver.key'), '-out', p('apiserver.csr'), '-subj', '/CN=kube-apiserver']);
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
  await openssl(['x509', '-req', '-in', p('apiserver.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('apiserver.crt'), '-days', '2', '-extfile', p('ext.cnf')]);
  await openssl(['genrsa', '-out', p('sa.key'), '2048']);
  await openssl(['rsa', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')]);
}

function spawnLogged(cmd: string, args: readonly string[], name: string): { child: ChildProcess; output: () => string; exited: Promise<void> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-20000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => keep(Buffer.from(`${name}: ${err.message}\n`)));
  return { child, output: () => out, exited };
}

async function stopChild(c: { child: ChildProcess; exited: Promise<void> }): Promise<void> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill('SIGTERM');
  const t = setTimeout(() => c.child.kill('SIGKILL'), 5000);
  await c.exited;
  clearTimeout(t);
}

/** Waits until `probe` resolves true, or the process died, or `ms` passed (startup only). */
async function until(what: string, probe: () => Promise<boolean>, c: { child: ChildProcess; output: () => string }, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (c.child.exitCode !== null || c.child.signalCode !== null) throw new Error(`${what} exited during startup:\n${c.output()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} did not become ready in ${ms} ms:\n${c.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts etcd + kube-apiserver, applies Istio's CRDs, and stops both after the test. Returns
 * undefined (the test skipped) when the binaries are missing.
 */
export async function startKube(t: TestContext, opts: { crds?: boolean } = {}): Promise<KubeCluster | undefined> {
  const bins = kubeBinaries(t);
  if (!bins) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'portico-kube-'));
  await makeKeys(dir);
  const token = 'admin-' + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  writeFileSync(join(dir, 'tokens.csv'), `${token},admin,admin-uid,"system:masters"\n`);

  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcd = spawnLogged(
    bins.etcd,
    [
      '--name', 'portico-test',
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `portico-test=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync',
    ],
    'etcd',
  );
  const stops: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
  };
  stops.push(async () => rmSync(dir, { recursive: true, force: true }));
  stops.push(() => stopChild(etcd));
  t.after(close);
  await until('etcd', async () => (await request(`http://127.0.0.1:${etcdPort}/health`)).statusCode === 200, etcd);

  const api = spawnLogged(
    bins.apiserver,
    [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--secure-port=${apiPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      '--endpoint-reconciler-type=none',
      `--tls-cert-file=${join(dir, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(dir, 'apiserver.key')}`,
      `--client-ca-file=${join(dir, 'ca.crt')}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--service-cluster-ip-range=10.96.0.0/16',
      // No controller-manager creates `default` service accounts; tests create the ones they use.
      '--disable-admission-plugins=ServiceAccount',
      `--cert-dir=${join(dir, 'certs')}`,
      '--profiling=false',
    ],
    'kube-apiserver',
  );
  stops.push(() => stopChild(api));
  const server = `https://127.0.0.1:${apiPort}`;
  const caPem = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const dispatcher = new Agent({ connect: { ca: caPem } });
  stops.push(() => dispatcher.close());
  const auth = { authorization: `Bearer ${token}` };
  await until(
    'kube-apiserver',
    async () => (await request(`${server}/readyz`, { headers: auth, dispatcher }).then(async (r) => (await r.body.text(), r.statusCode))) === 200,
    api,
  );

  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
      users: [{ name: 'admin', user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'admin' } }],
      'current-context': 'test',
    }),
  );
  const kubectl = (args: readonly string[], stdin?: string): Promise<string> =>
    run(bins.kubectl, [`--kubeconfig=${kubeconfig}`, ...args], stdin, { ...process.env, KUBECONFIG: kubeconfig });
  const cluster: KubeCluster = {
    server,
    token,
    kubeconfig,
    caPem,
    dir,
    bins,
    kubeConfig: () => {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfig);
      return kc;
    },
    kubectl,
    apply: (yaml) => kubectl(['apply', '-f', '-'], yaml),
    api: async <T>(method: string, path: string, body?: unknown, contentType = 'application/json') => {
      const r = await request(`${server}${path}`, {
        method: method as 'GET',
        headers: { ...auth, accept: 'application/json', ...(body !== undefined ? { 'content-type': contentType } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        dispatcher,
      });
      const text = await r.body.text();
      return { status: r.statusCode, body: (text ? JSON.parse(text) : undefined) as T };
    },
    close,
  };
  if (opts.crds !== false) {
    await kubectl(['apply', '-f', ISTIO_CRDS]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', ISTIO_CRDS]);
  }
  return cluster;
}

/** True inside the network namespace `runInNetns` made. */
export function inNetns(): boolean {
  return process.env.PORTICO_TEST_NETNS === '1';
}

/**
 * Runs the test file `fileUrl` again in a new network namespace (`unshare -n`) with `lo` up and
 * `addresses` (e.g. 10.244.0.10/32) on it; resolves when that run passes, rejects with its
 * output when it fails. Skips loudly (or fails under PORTICO_REQUIRE=kube) when the binaries are
 * missing or namespaces cannot be made.
 */
export async function runInNetns(t: TestContext, fileUrl: string, addresses: readonly string[]): Promise<void> {
  if (!kubeBinaries(t)) return;
  const unshare = which('unshare', ['/usr/bin']);
  const ip = which('ip', ['/usr/sbin', '/sbin', '/usr/bin']);
  if (!unshare || !ip) {
    missing(t, 'kube', 'unshare and ip (util-linux, iproute2) are needed for the network namespace');
    return;
  }
  const probe = await run(unshare, ['-n', 'true']).then(
    () => '',
    (err: Error) => err.message,
  );
  if (probe) {
    missing(t, 'kube', `cannot create a network namespace (needs root or CAP_SYS_ADMIN): ${probe}`);
    return;
  }
  const setup = [`${ip} link set lo up`, ...addresses.map((a) => `${ip} addr add ${a} dev lo`)].join(' && ');
  const file = fileURLToPath(fileUrl);
  const out = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(unshare, ['-n', '--', 'sh', '-c', `${setup} && exec "$0" "$@"`, process.execPath, '--import', 'tsx', '--test', '--test-reporter=spec', file], {
      cwd: ROOT,
      // Without NODE_TEST_CONTEXT: node:test would see a nested run and skip the file.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')), PORTICO_TEST_NETNS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (d: Buffer): void => {
      output += d.toString();
      process.stderr.write(d);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('exit', (code) => resolve({ code, output }));
  });
  if (out.code !== 0) throw new Error(`the tests in ${file} failed inside the network namespace (exit ${out.code}):\n${out.output.slice(-8000)}`);
  const passed = Number(/ℹ pass (\d+)/.exec(out.output)?.[1] ?? 0);
  if (passed === 0) throw new Error(`no test ran inside the network namespace:\n${out.output.slice(-4000)}`);
}
