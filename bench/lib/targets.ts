/** Starting and stopping the things under load: the upstreams, Portico's gateway, nginx. */
import { mkdirSync, mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createRootCa, issueServerCert, writeCredential } from '../../certs/index.ts';
import type { ScenarioContext, Scenario, TlsFiles, UpstreamInfo } from '../scenarios/index.ts';
import { childrenOf } from './rss.ts';
import { freePort, registerTempDir, startChild, stopChild, waitForPort, type Child } from './procs.ts';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;

let built: readonly string[] | undefined;

/**
 * How to run the Portico CLI under test: `node dist/bin/portico.js` (production's way, no tsx),
 * rebuilding first when dist/ is missing or older than the sources. `BENCH_FROM_SOURCE=1` runs
 * the TypeScript sources through tsx instead (to compare the two).
 */
export function porticoCli(): readonly string[] {
  if (process.env.BENCH_FROM_SOURCE === '1') return ['--import', 'tsx', join(REPO_ROOT, 'bin/portico.ts')];
  if (!built) {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/build.mjs'), '--if-stale'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.signal}); BENCH_FROM_SOURCE=1 runs the sources instead`);
    built = [join(REPO_ROOT, 'dist/bin/portico.js')];
  }
  return built;
}

/** A fresh temp dir removed on exit. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  registerTempDir(dir);
  return dir;
}

/** A server cert for 127.0.0.1 from a throwaway Portico root CA, as files and as a credential. */
export function makeTlsFiles(dir: string): TlsFiles {
  const ca = createRootCa({ commonName: 'Portico Bench CA' });
  const pair = issueServerCert(ca, { commonName: 'bench.portico.local', ipAddresses: ['127.0.0.1'] });
  const secretsDir = join(dir, 'credentials');
  const credentialName = 'bench-credential';
  const paths = writeCredential(secretsDir, credentialName, pair, ca.certPem);
  return { certFile: paths.certFile, keyFile: paths.keyFile, caFile: paths.caFile, credentialName, secretsDir };
}

export interface RunningUpstream extends UpstreamInfo {
  readonly child: Child;
}

/** Starts one bench/upstream.ts process; resolves with its ports once it is listening. */
export async function startUpstream(name: string, tls: TlsFiles, logDir: string): Promise<RunningUpstream> {
  const child = startChild(
    `upstream-${name}`,
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'bench/upstream.ts'), '--name', name, '--tls-cert', tls.certFile, '--tls-key', tls.keyFile],
    logDir,
    { ipc: true, cwd: REPO_ROOT },
  );
  const ready = await new Promise<{ http: number; https?: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`upstream ${name} did not start within 20 s; see ${child.logFile}`)), 20_000);
    child.proc.once('message', (m: { type?: string; http?: number; https?: number }) => {
      clearTimeout(timer);
      if (m.type === 'ready' && typeof m.http === 'number') resolve({ http: m.http, https: m.https });
      else reject(new Error(`upstream ${name}: unexpected first message ${JSON.stringify(m)}`));
    });
    void child.exited.then((code) => reject(new Error(`upstream ${name} exited (${code}); see ${child.logFile}`)));
  });
  return { name, child, ...ready };
}

function ask<T>(proc: ChildProcess, msg: { type: string }, reply: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${reply}' reply from upstream`)), 5000);
    const on = (m: { type?: string }): void => {
      if (m.type !== reply) return;
      clearTimeout(timer);
      proc.off('message', on);
      resolve(m as T);
    };
    proc.on('message', on);
    proc.send(msg);
  });
}

/** Zeroes every upstream's request counter. */
export async function resetCounts(ups: readonly RunningUpstream[]): Promise<void> {
  await Promise.all(ups.map((u) => ask(u.child.proc, { type: 'reset' }, 'reset')));
}

/** Requests each upstream served since the last reset, by name. */
export async function readCounts(ups: readonly RunningUpstream[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const u of ups) out[u.name] = (await ask<{ count: number }>(u.child.proc, { type: 'stats' }, 'stats')).count;
  return out;
}

/**
 * Per-scenario context: a temp dir, a free port for the target under test, and the scenario's
 * extra services started (their children are returned so the caller stops them afterwards).
 */
export async function scenarioContext(
  scenario: Scenario,
  ups: readonly UpstreamInfo[],
  tls: TlsFiles,
  root: string,
  logDir: string,
  /** With BENCH_CPU_PROF: Node services run with `--cpu-prof` into `<cpuProfDir>-<service>`. */
  cpuProfDir?: string,
): Promise<{ ctx: ScenarioContext; services: Child[]; byName: Readonly<Record<string, Child>> }> {
  const dir = join(root, scenario.name);
  mkdirSync(dir, { recursive: true });
  const ports: Record<string, number> = {};
  // Every port first, so a service's command can name a later one (the IdP's redirect URI names
  // the authservice, which starts after the IdP).
  for (const svc of scenario.services ?? []) {
    ports[svc.name] = await freePort();
    for (const extra of svc.extraPorts ?? []) ports[`${svc.name}.${extra}`] = await freePort();
  }
  const ctx: ScenarioContext = { port: await freePort(), upstreams: ups, tls, dir, services: ports };
  const services: Child[] = [];
  const byName: Record<string, Child> = {};
  try {
    for (const svc of scenario.services ?? []) {
      const port = ports[svc.name] as number;
      const { cmd, args: given, env } = svc.command(ctx, port);
      const args = cpuProfDir && cmd === process.execPath ? ['--cpu-prof', '--cpu-prof-dir', `${cpuProfDir}-${svc.name}`, ...given] : given;
      const child = startChild(`${scenario.name}-${svc.name}`, cmd, args, logDir, { cwd: REPO_ROOT, env: { ...process.env, ...env } });
      services.push(child);
      byName[svc.name] = child;
      await waitForPort(port, child);
    }
  } catch (err) {
    await Promise.all(services.map((c) => stopChild(c)));
    throw err;
  }
  return { ctx, services, byName };
}

export interface StartedTarget {
  readonly child: Child;
  /** Pids whose RSS counts as this target's memory. */
  readonly pids: () => number[];
  stop(): Promise<void>;
}

/**
 * Starts `portico gateway` on the scenario's generated config. `cpuProfDir` adds `--cpu-prof`
 * (the profile is written when the gateway exits on SIGTERM).
 */
export async function startPortico(scenario: Scenario, ctx: ScenarioContext, logDir: string, cpuProfDir?: string): Promise<StartedTarget> {
  const cfg = scenario.portico(ctx);
  const configDir = join(ctx.dir, 'portico');
  mkdirSync(configDir, { recursive: true });
  for (const [file, text] of Object.entries(cfg.files)) writeFileSync(join(configDir, file), text);
  const nodeArgs: string[] = [];
  if (cpuProfDir) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', cpuProfDir);
  const command = scenario.porticoCommand?.(ctx, configDir) ?? [
    'gateway',
    '--config',
    configDir,
    // `--admin-port -1` (two args) is rejected by parseArgs as ambiguous; the `=` form works.
    '--admin-port=-1',
    // One process, like nginx's worker_processes 1 (the gateway defaults to one worker per core).
    '--workers=1',
    '--no-watch',
    '--drain-ms',
    '500',
    // Telemetry is on by default (that is what is measured); its metrics listener gets a free
    // port instead of 15020, which a demo or another gateway on this machine may hold.
    `--metrics-port=${await freePort()}`,
    ...(cfg.args ?? []),
  ];
  const args = [...nodeArgs, ...porticoCli(), ...command];
  const child = startChild(`portico-${scenario.name}`, process.execPath, args, logDir, { cwd: REPO_ROOT });
  await waitForPort(ctx.port, child);
  return { child, pids: () => [child.pid], stop: () => stopChild(child) };
}

/** The whole nginx.conf: one worker, no daemon, every path inside `dir`, the scenario's http body. */
export function nginxConf(scenario: Scenario, ctx: ScenarioContext, dir: string): string {
  const asRoot = process.getuid?.() === 0;
  return `# generated by bench/run.ts for scenario ${scenario.name}
worker_processes 1;
daemon off;
master_process on;
${asRoot ? 'user root;\n' : ''}pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {
  worker_connections 4096;
}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  ${scenario.nginx(ctx)}
}
`;
}

/** Starts nginx as a foreground child (`-p dir -c dir/nginx.conf -e dir/error.log`). */
export async function startNginx(nginx: string, scenario: Scenario, ctx: ScenarioContext, logDir: string): Promise<StartedTarget> {
  const dir = join(ctx.dir, 'nginx');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConf(scenario, ctx, dir));
  const child = startChild(`nginx-${scenario.name}`, nginx, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], logDir);
  await waitForPort(ctx.port, child);
  // Memory of nginx = its worker(s); the master only supervises.
  return { child, pids: () => childrenOf(child.pid), stop: () => stopChild(child) };
}
