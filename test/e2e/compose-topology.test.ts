/**
 * docker-compose.yml, run without Docker: the same services with their own `command`,
 * `entrypoint`, `environment`, `env_file` and mounted files, as real local processes (Portico
 * roles through the image's ENTRYPOINT — control plane, gateway, authservice, every Bookinfo app
 * and httpbin with its `portico sidecar` —, redis-server, the real Dex binary). Then, through the
 * gateway: a login on Redis sessions; jason's product page shows reviews v2 (productpage → its
 * sidecar → Istio's reviews VirtualService → reviews-v2's sidecar, mTLS under STRICT); httpbin
 * sees the gateway's SPIFFE identity in X-Forwarded-Client-Cert; a session survives an
 * authservice restart.
 *
 * How compose addresses become local ones (the whole mapping; nothing else is edited):
 *  1. Every port of a network namespace (a `network_mode: service:X` service shares X's) gets a
 *     free local port, keyed by (namespace, port): the ports in `expose`/`ports`, numeric `*PORT`
 *     env vars and `--*-port=N` flags. So each app+sidecar "pod" has its own 15001, 15020, 9080.
 *  2. `NAME:PORT` in any string (URLs, `host:port`) becomes `127.0.0.1:<mapped>` when NAME is a
 *     compose service; `localhost|127.0.0.1|0.0.0.0:PORT` maps within the service's own namespace,
 *     else through the published `ports` (the browser's view, e.g. Dex's redirect URIs).
 *  3. Listening settings: `--*-port=N` flags and env `*PORT=N` map like (1); bind addresses
 *     `0.0.0.0` (env values, `--*host=0.0.0.0`) become `127.0.0.1`.
 *  4. In mounted Istio YAML: a WorkloadEntry whose `address` is a service name gets 127.0.0.1
 *     and mapped ports; Gateway server ports bind their mapped port (`targetPort`).
 *  5. Volumes: bind mounts are copied (with 2–4 applied) into a temp dir, named volumes are
 *     empty temp dirs; container paths in args and env are replaced by those local paths.
 * Dex v2.13 (built here) needs `frontend.dir`; the official image embeds its templates, so that
 * one key is added to the generated Dex config. Jaeger and Prometheus are not started.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { Redis } from 'ioredis';
import { isMap, parse, parseAllDocuments, parseDocument } from 'yaml';
import { Browser, submitIdpLogin } from '../helpers/authservice-harness.ts';
import { findDex, findDexWebDir } from '../helpers/dex.ts';
import { missing } from '../helpers/external.ts';
import { freePort } from '../helpers/net.ts';
import { startRedis } from '../helpers/redis.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The Dockerfile's ENTRYPOINT; checked against the Dockerfile below. WORKDIR /app = the repo. */
const IMAGE_ENTRYPOINT = ['node', 'dist/bin/portico.js'];
const PORTICO_IMAGE = 'portico:local';
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '0.0.0.0']);

interface ComposeService {
  image?: string;
  command?: string[] | string;
  entrypoint?: string[];
  environment?: Record<string, string | number | boolean | null>;
  env_file?: string[] | string;
  volumes?: string[];
  expose?: (string | number)[];
  ports?: string[];
  network_mode?: string;
  healthcheck?: { disable?: boolean };
  depends_on?: string[] | Record<string, { condition?: string }>;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
}

/** `${VAR:-default}` / `${VAR}` interpolation, as compose does with the host environment. */
function interpolate<T>(v: T): T {
  if (typeof v === 'string') return v.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_m, name: string, def?: string) => process.env[name] || def || '') as T;
  if (Array.isArray(v)) return v.map(interpolate) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolate(x)])) as T;
  return v;
}

export function loadCompose(file = join(REPO, 'docker-compose.yml')): ComposeFile {
  return interpolate(parse(readFileSync(file, 'utf8'), { merge: true }) as ComposeFile);
}

/** The address plan: which local port stands for which (namespace, container port). */
class PortPlan {
  readonly ports = new Map<string, number>();
  readonly published = new Map<number, string>(); // host port → `${ns}:${containerPort}`
  constructor(readonly compose: ComposeFile) {}

  netns(service: string): string {
    const mode = this.compose.services[service]?.network_mode;
    return mode?.startsWith('service:') ? this.netns(mode.slice('service:'.length)) : service;
  }

  async allocate(fixed: Record<string, number>): Promise<void> {
    for (const [name, svc] of Object.entries(this.compose.services)) {
      const ns = this.netns(name);
      for (const p of svc.expose ?? []) await this.add(ns, Number(p), fixed);
      for (const [k, v] of Object.entries(svc.environment ?? {})) if (/PORT$/i.test(k) && /^\d+$/.test(String(v))) await this.add(ns, Number(v), fixed);
      const command = [svc.command ?? []].flat();
      for (const [i, a] of command.entries()) {
        const flag = /^--[a-z-]*port(?:=(\d+))?$/.exec(a);
        const value = flag?.[1] ?? (flag && /^\d+$/.test(command[i + 1] ?? '') ? command[i + 1] : undefined);
        if (value !== undefined) await this.add(ns, Number(value), fixed);
      }
      for (const spec of svc.ports ?? []) {
        const [host, container] = String(spec).split(':').map(Number);
        await this.add(ns, container!, fixed);
        this.published.set(host!, `${ns}:${container!}`);
      }
    }
  }

  private async add(ns: string, port: number, fixed: Record<string, number>): Promise<void> {
    const key = `${ns}:${port}`;
    if (!this.ports.has(key)) this.ports.set(key, fixed[key] ?? (await freePort()));
  }

  /** The local port for `host:port` as seen from inside `ns`; undefined when not ours. */
  resolve(ns: string, host: string, port: number): number | undefined {
    if (LOCAL_HOSTS.has(host)) {
      const own = this.ports.get(`${ns}:${port}`);
      if (own !== undefined) return own;
      const pub = this.published.get(port);
      return pub ? this.ports.get(pub) : undefined;
    }
    if (!(host in this.compose.services)) return undefined;
    return this.ports.get(`${this.netns(host)}:${port}`);
  }

  /** Rule 2: every `name:port` in a string. */
  text(ns: string, s: string): string {
    return s.replace(/\b([a-z0-9][a-z0-9.-]*):(\d{2,5})\b/gi, (m, host: string, port: string) => {
      const local = this.resolve(ns, host, Number(port));
      return local === undefined ? m : `127.0.0.1:${local}`;
    });
  }

  /** Rule 3 for one env var or flag value. */
  listen(ns: string, key: string, value: string): string {
    if (/PORT$/i.test(key) && /^\d+$/.test(value)) return String(this.resolve(ns, '127.0.0.1', Number(value)) ?? value);
    if (value === '0.0.0.0') return '127.0.0.1';
    return this.text(ns, value);
  }
}

/** Rule 4: Istio resources in a mounted YAML file. */
function rewriteIstioYaml(plan: PortPlan, ns: string, gatewayNs: string, text: string): string {
  const docs = parseAllDocuments(text);
  for (const doc of docs) {
    const kind = doc.get('kind');
    if (kind === 'WorkloadEntry') {
      const address = String(doc.getIn(['spec', 'address']));
      const ports = doc.getIn(['spec', 'ports']);
      if (address in plan.compose.services && isMap(ports)) {
        doc.setIn(['spec', 'address'], '127.0.0.1');
        for (const item of ports.items) {
          const local = plan.resolve(ns, address, Number((item.value as { value: unknown }).value));
          if (local !== undefined) doc.setIn(['spec', 'ports', String((item.key as { value: unknown }).value)], local);
        }
      }
    } else if (kind === 'Gateway') {
      const servers = (doc.toJS() as { spec: { servers: { port: { number: number; targetPort?: number } }[] } }).spec.servers;
      servers.forEach((s, i) => {
        const local = plan.resolve(gatewayNs, '127.0.0.1', s.port.targetPort ?? s.port.number);
        if (local !== undefined) doc.setIn(['spec', 'servers', i, 'port', 'targetPort'], local);
      });
    }
  }
  return plan.text(ns, docs.map((d) => d.toString()).join(''));
}

interface Launch {
  name: string;
  argv: string[];
  env: Record<string, string>;
}

/** Rule 5 and the command line: what `docker-compose up` would run for `name`, as a local process. */
function prepare(plan: PortPlan, name: string, root: string, gatewayNs: string, dexWebDir: string | undefined): Launch {
  const svc = plan.compose.services[name]!;
  const ns = plan.netns(name);
  const mounts: [string, string][] = [];
  for (const v of svc.volumes ?? []) {
    const [src, dst] = v.split(':') as [string, string];
    let local: string;
    if (src.startsWith('./') || src.startsWith('/')) {
      local = join(root, 'mounts', name, dst);
      mkdirSync(dirname(local), { recursive: true });
      cpSync(resolve(REPO, src), local, { recursive: true });
      const files = statSync(local).isDirectory() ? readdirSync(local, { recursive: true }).map((f) => join(local, String(f))) : [local];
      for (const f of files.filter((p) => /\.ya?ml$/.test(p))) {
        let text = rewriteIstioYaml(plan, ns, gatewayNs, readFileSync(f, 'utf8'));
        if (name === 'dex' && dexWebDir) {
          const doc = parseDocument(text);
          doc.setIn(['frontend', 'dir'], dexWebDir);
          text = doc.toString();
        }
        writeFileSync(f, text);
      }
    } else {
      local = join(root, 'volumes', src);
      mkdirSync(local, { recursive: true });
    }
    mounts.push([dst, local]);
  }
  mounts.sort((a, b) => b[0].length - a[0].length);
  const paths = (s: string): string => {
    for (const [dst, local] of mounts) {
      if (s === dst || s.startsWith(`${dst}/`)) return local + s.slice(dst.length);
      const eq = s.indexOf('=');
      if (eq > 0 && (s.slice(eq + 1) === dst || s.slice(eq + 1).startsWith(`${dst}/`))) return s.slice(0, eq + 1) + local + s.slice(eq + 1 + dst.length);
    }
    return s;
  };

  const env: Record<string, string> = {};
  for (const f of [svc.env_file ?? []].flat()) Object.assign(env, parseEnv(readFileSync(resolve(REPO, f), 'utf8')));
  for (const [k, v] of Object.entries(svc.environment ?? {})) env[k] = v === null ? '' : String(v);
  for (const k of Object.keys(env)) env[k] = paths(plan.listen(ns, k, env[k]!));

  const command = [svc.command ?? []].flat();
  const args = command.map((a, i) => {
    const flag = /^(--[a-z-]*port)(?:=(\d+))?$/.exec(a);
    if (flag?.[2]) return `${flag[1]}=${plan.listen(ns, 'PORT', flag[2])}`;
    if (flag && /^\d+$/.test(command[i + 1] ?? '')) return a;
    if (/^\d+$/.test(a) && /^--[a-z-]*port$/.test(command[i - 1] ?? '')) return plan.listen(ns, 'PORT', a);
    return paths(/^--[a-z-]*host=0\.0\.0\.0$/.test(a) ? a.replace('0.0.0.0', '127.0.0.1') : plan.text(ns, a));
  });
  return { name, argv: [...(svc.entrypoint ?? (svc.image === PORTICO_IMAGE ? IMAGE_ENTRYPOINT : [])), ...args], env };
}

interface Running {
  child: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

function run(t: TestContext, launch: Launch, cwd = REPO): Running {
  const [bin, ...args] = launch.argv;
  const exe = bin === 'node' ? process.execPath : bin!;
  const child = spawn(exe, args, { cwd, env: { PATH: process.env.PATH ?? '', ...launch.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer): void => void (out = (out + d.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  t.after(stop);
  return { child, output: () => out, stop };
}

async function waitFor(what: string, r: Running, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (r.child.exitCode !== null) throw new Error(`${what} exited with ${r.child.exitCode}:\n${r.output()}`);
    if (await ok().catch(() => false)) return;
    await new Promise((res) => setTimeout(res, 150));
  }
  throw new Error(`${what} not ready within ${ms} ms:\n${r.output()}`);
}

const httpOk = (url: string) => async (): Promise<boolean> => (await fetch(url)).ok;
const tcpOpen = (port: number) => (): Promise<boolean> =>
  new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), res(true)));
    s.once('error', () => res(false));
  });

function dependsOn(compose: ComposeFile, name: string): string[] {
  const deps = compose.services[name]?.depends_on ?? [];
  return Array.isArray(deps) ? deps : Object.keys(deps);
}

/** The Portico role a service runs (`portico <role>`), or undefined for other entrypoints. */
function role(compose: ComposeFile, name: string): string | undefined {
  const svc = compose.services[name]!;
  return svc.image === PORTICO_IMAGE && !svc.entrypoint ? String([svc.command ?? []].flat()[0]) : undefined;
}

test('the compose file uses the image entrypoint the Dockerfile declares, and every Portico role exists', () => {
  const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  assert.ok(dockerfile.includes(`ENTRYPOINT ${JSON.stringify(IMAGE_ENTRYPOINT).replace(/,/g, ', ')}`), 'Dockerfile ENTRYPOINT matches what this test runs');
  const compose = loadCompose();
  for (const [name, svc] of Object.entries(compose.services)) {
    if (svc.image !== PORTICO_IMAGE || svc.entrypoint) continue;
    const role = [svc.command ?? []].flat()[0]!;
    assert.ok(existsSync(join(REPO, 'bin/commands', `${role}.ts`)), `${name}: portico ${role} is not a CLI command`);
  }
});

test('every Bookinfo app and httpbin sits behind its own sidecar, wired as docs/mesh.md says', () => {
  const compose = loadCompose();
  const flags = (name: string): Record<string, string> =>
    Object.fromEntries(
      [compose.services[name]!.command ?? []]
        .flat()
        .map((a) => /^--([a-z-]+)=(.*)$/.exec(a))
        .filter((m) => m !== null)
        .map((m) => [m[1]!, m[2]!]),
    );
  const registry = parseAllDocuments(readFileSync(join(REPO, 'config/examples/compose/registry.yaml'), 'utf8')).map(
    (d) => d.toJS() as { kind: string; metadata: { name: string; namespace: string }; spec: { address?: string; ports?: Record<string, number>; labels?: Record<string, string> } },
  );
  const entries = new Map(registry.filter((r) => r.kind === 'WorkloadEntry').map((r) => [`${r.metadata.namespace}/${r.metadata.name}`, r.spec]));
  const apps = Object.keys(compose.services).filter((n) => compose.services[n]!.entrypoint?.some((a) => a.startsWith('demo/')));
  assert.deepEqual(apps.sort(), ['details', 'httpbin', 'productpage', 'ratings', 'reviews-v1', 'reviews-v2', 'reviews-v3']);
  for (const app of apps) {
    const svc = compose.services[app]!;
    const sidecars = Object.keys(compose.services).filter((n) => compose.services[n]!.network_mode === `service:${app}`);
    assert.equal(sidecars.length, 1, `${app}: one sidecar in its network namespace`);
    const f = flags(sidecars[0]!);
    assert.equal(role(compose, sidecars[0]!), 'sidecar');
    assert.equal(f.controlplane, 'http://controlplane:15010', `${app}: config and certificate from the control plane`);
    assert.equal(svc.environment?.HOST, '127.0.0.1', `${app}: the app listens on loopback only, so only its sidecar reaches it`);
    assert.equal(f['app-port'], String(svc.environment?.PORT), `${app}: --app-port is the app's PORT`);
    const entry = entries.get(f.workload!);
    assert.ok(entry, `${app}: --workload ${f.workload} is a WorkloadEntry in the compose registry`);
    assert.equal(entry.address, app, `${f.workload}: address is the app's service name`);
    assert.deepEqual(Object.values(entry.ports ?? {}), [Number(svc.expose?.[0])], `${f.workload}: the WorkloadEntry port is the sidecar's (the app's first exposed port)`);
    assert.notEqual(Number(svc.expose?.[0]), Number(svc.environment?.PORT), `${app}: sidecar and app ports differ`);
    if (svc.environment?.HTTP_PROXY !== undefined) assert.equal(svc.environment.HTTP_PROXY, `http://127.0.0.1:${f['outbound-port']}`, `${app}: HTTP_PROXY is its sidecar's outbound listener`);
    assert.ok(dependsOn(compose, sidecars[0]!).includes('controlplane'));
  }
  // Workloads without a sidecar opt out of auto mTLS; the gateway takes a registry identity.
  for (const key of ['istio-system/authservice', 'auth/dex']) assert.equal(entries.get(key)?.labels?.['sidecar.istio.io/inject'], 'false', key);
  const gw = flags(Object.keys(compose.services).find((n) => role(compose, n) === 'gateway')!);
  assert.equal(gw.controlplane, 'http://controlplane:15010');
  assert.ok(entries.has(gw.workload!), `gateway --workload ${gw.workload} is in the registry`);
  // Mesh-wide STRICT: the control plane serves the PeerAuthentication.
  const cp = Object.keys(compose.services).find((n) => role(compose, n) === 'controlplane')!;
  const strict = compose.services[cp]!.volumes!.find((v) => v.includes('peer-authentication-strict.yaml'));
  assert.ok(strict && [compose.services[cp]!.command ?? []].flat().includes(`--config=${strict.split(':')[1]}`), 'the control plane loads the STRICT PeerAuthentication');
});

test('docker-compose topology with real processes, sidecars included: login on Redis sessions, jason sees reviews v2 through the sidecars under STRICT mTLS, httpbin sees the gateway in XFCC, sessions survive an authservice restart', async (t) => {
  const compose = loadCompose();
  const dexBin = findDex();
  if (!dexBin) return missing(t, 'dex', 'no dex binary ($DEX_BIN, PATH, .dex/bin/dex); run scripts/build-dex.sh');
  const dexWebDir = findDexWebDir(dexBin);
  if (!dexWebDir) return missing(t, 'dex', `found ${dexBin} but not its web assets; run scripts/build-dex.sh`);
  const redis = await startRedis(t);
  if (!redis) return;

  // The image runs the esbuild bundle (its check stage runs `npm run build`); so does this test.
  execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: REPO, stdio: 'ignore' });
  const root = mkdtempSync(join(tmpdir(), 'portico-compose-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const plan = new PortPlan(compose);
  await plan.allocate({ 'redis:6379': redis.port });

  const porticoServices = Object.entries(compose.services)
    .filter(([, s]) => s.image === PORTICO_IMAGE)
    .map(([n]) => n);
  const sidecars = porticoServices.filter((n) => role(compose, n) === 'sidecar');
  assert.ok(sidecars.length >= 7, `every Bookinfo app and httpbin has a sidecar service, got ${sidecars.join(', ')}`);
  const skipped = Object.keys(compose.services).filter((n) => !porticoServices.includes(n) && !['dex', 'redis'].includes(n));
  t.diagnostic(`not run: ${skipped.join(', ')}`);
  const gatewayNs = porticoServices.find((n) => role(compose, n) === 'gateway')!;
  assert.ok(gatewayNs, 'a service runs `portico gateway`');
  const begun = Date.now();

  // Dex, as the compose service mounts it (the authservice waits for it: depends_on).
  const dexLaunch = prepare(plan, 'dex', root, gatewayNs, dexWebDir);
  assert.equal(dexLaunch.argv[0], 'dex');
  const dex = run(t, { ...dexLaunch, argv: [dexBin, ...dexLaunch.argv.slice(1)] }, root);
  const dexPort = plan.resolve('dex', 'dex', 5556)!;
  const dexReady = waitFor('dex', dex, httpOk(`http://127.0.0.1:${dexPort}/dex/.well-known/openid-configuration`));

  const running = new Map<string, Running>();
  const launches = new Map<string, Launch>();
  const start = async (name: string): Promise<void> => {
    const launch = launches.get(name) ?? prepare(plan, name, root, gatewayNs, undefined);
    launches.set(name, launch);
    const r = run(t, launch);
    running.set(name, r);
    const svc = compose.services[name]!;
    if ([svc.command ?? []].flat()[0] === 'certs') {
      const code = await new Promise<number | null>((res) => r.child.once('exit', (c) => res(c)));
      assert.equal(code, 0, `${name} (one-shot) failed:\n${r.output()}`);
    } else if (launch.env.PORTICO_HEALTH_URL && svc.healthcheck === undefined) {
      await waitFor(name, r, httpOk(launch.env.PORTICO_HEALTH_URL));
    } else {
      // An app: its own PORT (behind a sidecar, `expose` is the sidecar's port), else `expose`.
      const port = Number(svc.environment?.PORT ?? svc.expose?.[0]);
      await waitFor(name, r, tcpOpen(plan.resolve(name, '127.0.0.1', port)!));
    }
  };
  // As `docker-compose up`: each service once its depends_on have started, the rest in parallel.
  const started = new Map<string, Promise<void>>();
  const startAfterDeps = (name: string): Promise<void> => {
    let p = started.get(name);
    if (!p) {
      const deps = dependsOn(compose, name);
      p = Promise.all(deps.map((d) => (d === 'dex' ? dexReady : porticoServices.includes(d) ? startAfterDeps(d) : undefined))).then(() => start(name));
      started.set(name, p);
    }
    return p;
  };
  await Promise.all(porticoServices.map(startAfterDeps));
  t.diagnostic(`${porticoServices.length} Portico processes (${sidecars.length} sidecars) + Dex ready in ${Date.now() - begun} ms`);
  // The sidecars took their certificates from the control plane: the SPIFFE IDs of the registry.
  for (const name of sidecars) assert.match(running.get(name)!.output(), /sidecar ready workload=default\/\S+ spiffe=spiffe:\/\/cluster\.local\/ns\/default\/sa\/\S+ /, name);

  // The browser's view: the published http port.
  const site = `http://127.0.0.1:${plan.resolve(gatewayNs, 'localhost', 8080)!}`;
  const browser = new Browser();
  const spoof = { 'kubeflow-userid': 'mallory@evil.example' };
  const first = await browser.request(`${site}/httpbin/headers`, { headers: spoof });
  assert.equal(first.status, 302, first.body);
  const toDex = new URL(first.headers.get('location')!);
  assert.equal(`${toDex.origin}${toDex.pathname}`, `${site}/dex/auth`, 'the browser reaches Dex through the gateway');
  const form = await browser.navigate(toDex);
  assert.equal(form.status, 200, form.body.slice(0, 300));
  const landed = await submitIdpLogin(browser, form, 'jason@example.com', 'password');
  assert.equal(landed.status, 200, landed.body.slice(0, 500));
  assert.equal(landed.url, `${site}/httpbin/headers`);
  const seen = (JSON.parse(landed.body) as { headers: Record<string, string> }).headers;
  const lower = Object.fromEntries(Object.entries(seen).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(lower['kubeflow-userid'], 'jason@example.com');
  // gateway → httpbin's sidecar over mTLS with the gateway's own certificate (from the control
  // plane, for the registry's istio-system/istio-ingressgateway entry); the sidecar writes
  // Envoy's XFCC for its app: By = httpbin's identity, URI = the gateway's.
  assert.match(
    lower['x-forwarded-client-cert'] ?? '(none)',
    /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/istio-ingressgateway-service-account$/,
  );

  // productpage → its sidecar (HTTP_PROXY) → Istio's reviews VirtualService (end-user jason) →
  // reviews-v2's sidecar over mTLS → reviews v2 → ratings, the same way: black stars.
  const page = await browser.navigate(`${site}/productpage`);
  assert.equal(page.status, 200, page.body.slice(0, 500));
  assert.match(page.body, /Signed in as <b id="user">jason@example\.com<\/b>/);
  assert.match(page.body, /glyphicon-star/, 'reviews with ratings (v2 or v3)');
  assert.match(page.body, /color="black"/, 'jason is routed to reviews v2 (black stars)');
  assert.doesNotMatch(page.body, /Error fetching product reviews|Ratings service is currently unavailable/);
  // Anyone else gets reviews v1 (no stars): the route is the VirtualService's, not a default.
  const other = new Browser();
  const otherLogin = await other.navigate(`${site}/productpage`);
  const otherPage = await submitIdpLogin(other, otherLogin, 'admin@example.com', 'password');
  assert.equal(otherPage.status, 200, otherPage.body.slice(0, 500));
  assert.match(otherPage.body, /Signed in as <b id="user">admin@example\.com<\/b>/);
  assert.doesNotMatch(otherPage.body, /glyphicon-star/, 'reviews v1 for admin');
  assert.doesNotMatch(otherPage.body, /Error fetching product reviews/);

  // STRICT: a plaintext client cannot reach productpage's sidecar (it closes the connection).
  const productpagePort = plan.resolve(gatewayNs, 'productpage', Number(compose.services.productpage!.expose![0]))!;
  await assert.rejects(fetch(`http://127.0.0.1:${productpagePort}/productpage`), 'plaintext refused by the STRICT sidecar');

  // The sessions live in Redis, under the authservice's key prefix.
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  const keys = await client.keys('portico:authservice:s:*');
  client.disconnect();
  assert.equal(keys.length, 2, `one session per user (jason, admin) in Redis, got ${keys.join(', ')}`);

  // Restart the authservice (same command and env): the cookie still works.
  const auth = porticoServices.find((n) => [compose.services[n]!.command ?? []].flat()[0] === 'authservice')!;
  await running.get(auth)!.stop();
  const down = await browser.request(`${site}/httpbin/headers`, { headers: { accept: 'application/json' } });
  assert.notEqual(down.status, 200, 'no authservice, no access');
  await start(auth);
  const again = await browser.request(`${site}/httpbin/headers`, { headers: { accept: 'application/json', 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/default/sa/forged' } });
  assert.equal(again.status, 200, again.body);
  const after = (JSON.parse(again.body) as { headers: Record<string, string> }).headers;
  const get = (name: string): string | undefined => Object.entries(after).find(([k]) => k.toLowerCase() === name)?.[1];
  assert.equal(get('kubeflow-userid'), 'jason@example.com');
  assert.doesNotMatch(get('x-forwarded-client-cert') ?? '', /forged/, 'a client-sent XFCC never reaches the app');
});
