/**
 * The mesh benchmark (issue 5 item 7): what two sidecars add to a request.
 *
 *   direct:  loadgen ─────────────────────────────────────────────────────────► app
 *   mesh:    loadgen ─► client sidecar (outbound :15001 role) ──mTLS──► server sidecar (inbound) ─► app
 *
 * A fixed request rate (default 1000 rps, Istio's published figure is per 1000 rps) from a
 * separate open-loop load generator (bench/mesh/loadgen.ts); added latency = mesh pN − direct pN
 * per round, rounds interleaved (direct, mesh, direct, mesh...) so host noise hits both alike.
 * Both sidecars are real `portico sidecar` processes from dist/ (rebuilt when stale), under
 * PeerAuthentication STRICT, with telemetry on (metrics; tracing at MeshConfig's default 1%).
 * Memory: RSS of each sidecar idle (after start) and the maximum while loaded; CPU per sidecar.
 *
 *   npm run bench -- ... is the wrk suite; this one:  node --import tsx bench/mesh/run.ts
 *   BENCH_MESH_RATE (1000)  BENCH_DURATION (s, 10)  BENCH_MESH_ROUNDS (3)  BENCH_QUICK=1 (2 s, 1 round)
 *
 * Writes bench/results/mesh-latest.json and mesh-latest.md (and a dated copy of the JSON).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateCa } from '../../certs/index.ts';
import { installCleanup, freePort, sleep, startChild, stopChild, waitForPort, type Child } from '../lib/procs.ts';
import { hostCpuMs, readRssKb, sampleRss, sumCpuMs } from '../lib/rss.ts';
import { makeTlsFiles, porticoCli, REPO_ROOT, startUpstream, tempDir } from '../lib/targets.ts';
import type { LoadResult } from './loadgen.ts';

const RESULTS_DIR = join(REPO_ROOT, 'bench/results');
/** Issue 5's targets, with Istio 1.15's published figures for scale. */
export const MESH_TARGETS = { addedP90Ms: 2.65, sidecarRssMb: 60 } as const;

const say = (msg: string): void => void process.stdout.write(`bench mesh: ${msg}\n`);

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}='${raw}' must be a positive number`);
  return n;
}

function meshYaml(serverInbound: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench-app, namespace: default}
spec:
  hosts: [bench-app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: bench-app}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bench-app, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: ${serverInbound}}
  labels: {app: bench-app, version: v1}
  serviceAccount: bench-app
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bench-client, namespace: default}
spec:
  address: 127.0.0.1
  labels: {app: bench-client}
  serviceAccount: bench-client
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench-app, namespace: default}
spec:
  hosts: [bench-app.default.svc.cluster.local]
  http:
  - route: [{destination: {host: bench-app.default.svc.cluster.local}}]
`;
}

async function load(args: { origin: string; path: string; host?: string; rate: number; durationSec: number; warmupSec: number }): Promise<LoadResult> {
  const argv = ['--import', 'tsx', join(REPO_ROOT, 'bench/mesh/loadgen.ts'), '--origin', args.origin, '--path', args.path, '--rate', String(args.rate), '--duration', String(args.durationSec), '--warmup', String(args.warmupSec)];
  if (args.host) argv.push('--host', args.host);
  const child = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c));
  child.stderr.on('data', (c: Buffer) => (err += c));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`load generator exited ${code}: ${err.slice(-2000)}`);
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

interface Round {
  readonly direct: LoadResult;
  readonly mesh: LoadResult;
  readonly added: { p50Ms: number; p90Ms: number; p99Ms: number };
  /** CPU of each sidecar during the mesh run, in percent of one core. */
  readonly cpuPct: { client?: number; server?: number };
  /** Highest RSS of each sidecar during the mesh run (KiB). */
  readonly loadedRssKb: { client?: number; server?: number };
}

const r3 = (v: number): number => Math.round(v * 1000) / 1000;
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mb = (kb: number | undefined): string => (kb === undefined ? 'n/a' : `${(kb / 1024).toFixed(1)} MB`);

async function main(): Promise<void> {
  installCleanup();
  const quick = process.env.BENCH_QUICK === '1';
  const rate = num('BENCH_MESH_RATE', 1000);
  const durationSec = num('BENCH_DURATION', quick ? 2 : 10);
  const rounds = Math.round(num('BENCH_MESH_ROUNDS', quick ? 1 : 3));
  const warmupSec = quick ? 1 : 2;
  const cli = porticoCli();
  const root = tempDir('portico-bench-mesh-');
  const logDir = join(root, 'logs');
  const cfg = join(root, 'config');
  mkdirSync(logDir, { recursive: true });
  mkdirSync(cfg, { recursive: true });
  const caDir = join(root, 'ca');
  loadOrCreateCa(caDir); // before the sidecars, so two processes never race to create it

  const app = await startUpstream('app', makeTlsFiles(root), logDir);
  const serverInbound = await freePort();
  writeFileSync(join(cfg, 'mesh.yaml'), meshYaml(serverInbound));
  const clientOut = await freePort();
  const common = ['--config', cfg, '--ca-dir', caDir, '--no-watch', `--metrics-port=${await freePort()}`];
  const server = startChild('sidecar-server', process.execPath, [...cli, 'sidecar', ...common, '--workload', 'default/bench-app', '--app-port', String(app.http), `--outbound-port=${await freePort()}`], logDir, { cwd: REPO_ROOT });
  const client = startChild('sidecar-client', process.execPath, [...cli, 'sidecar', '--config', cfg, '--ca-dir', caDir, '--no-watch', `--metrics-port=${await freePort()}`, '--workload', 'default/bench-client', `--outbound-port=${clientOut}`], logDir, { cwd: REPO_ROOT });
  const children: Child[] = [server, client, app.child];
  try {
    await Promise.all([waitForPort(serverInbound, server), waitForPort(clientOut, client)]);
    await sleep(1500); // start-up garbage settles before idle RSS
    const idle = { client: readRssKb(client.pid), server: readRssKb(server.pid) };
    say(`${cli.join(' ').includes('dist/') ? 'dist build' : 'sources (tsx)'}; ${rounds} round(s) × (direct, mesh) at ${rate} rps for ${durationSec} s (+${warmupSec} s warm-up); idle RSS client ${mb(idle.client)}, server ${mb(idle.server)}`);

    const direct = { origin: `http://127.0.0.1:${app.http}`, path: '/' };
    const mesh = { origin: `http://127.0.0.1:${clientOut}`, path: 'http://bench-app:8080/', host: 'bench-app:8080' };
    const results: Round[] = [];
    for (let i = 0; i < rounds; i++) {
      const d = await load({ ...direct, rate, durationSec, warmupSec });
      const cpu0 = { client: sumCpuMs([client.pid]), server: sumCpuMs([server.pid]) };
      const rssC = sampleRss(() => [client.pid]);
      const rssS = sampleRss(() => [server.pid]);
      const host0 = hostCpuMs();
      const m = await load({ ...mesh, rate, durationSec, warmupSec });
      const host1 = hostCpuMs();
      const cpu1 = { client: sumCpuMs([client.pid]), server: sumCpuMs([server.pid]) };
      // CPU over the whole mesh load (warm-up included) per wall second of it.
      const wallMs = (durationSec + warmupSec) * 1000;
      const pct = (a?: number, b?: number): number | undefined => (a !== undefined && b !== undefined ? Math.round(((b - a) / wallMs) * 1000) / 10 : undefined);
      const round: Round = {
        direct: d,
        mesh: m,
        added: { p50Ms: r3(m.p50Ms - d.p50Ms), p90Ms: r3(m.p90Ms - d.p90Ms), p99Ms: r3(m.p99Ms - d.p99Ms) },
        cpuPct: { client: pct(cpu0.client, cpu1.client), server: pct(cpu0.server, cpu1.server) },
        loadedRssKb: { client: rssC.stop(), server: rssS.stop() },
      };
      results.push(round);
      const hostBusy = host0 && host1 ? Math.round(((host1.busy - host0.busy) / (host1.total - host0.total)) * 100) : undefined;
      say(
        `round ${i + 1}: direct p50/p90/p99 ${d.p50Ms}/${d.p90Ms}/${d.p99Ms} ms; mesh ${m.p50Ms}/${m.p90Ms}/${m.p99Ms} ms (${m.achievedRps} rps, ${m.errors} errors, ${m.non2xx} non-2xx); ` +
          `added ${round.added.p50Ms}/${round.added.p90Ms}/${round.added.p99Ms} ms; CPU client ${round.cpuPct.client}% server ${round.cpuPct.server}%; RSS client ${mb(round.loadedRssKb.client)} server ${mb(round.loadedRssKb.server)}; host ${hostBusy ?? '?'}% busy`,
      );
    }

    const added = {
      p50Ms: r3(median(results.map((r) => r.added.p50Ms))),
      p90Ms: r3(median(results.map((r) => r.added.p90Ms))),
      p99Ms: r3(median(results.map((r) => r.added.p99Ms))),
    };
    const loadedMaxKb = Math.max(...results.flatMap((r) => [r.loadedRssKb.client ?? 0, r.loadedRssKb.server ?? 0]));
    const idleMaxKb = Math.max(idle.client ?? 0, idle.server ?? 0);
    const cpuPerSidecar = { client: median(results.map((r) => r.cpuPct.client ?? NaN)), server: median(results.map((r) => r.cpuPct.server ?? NaN)) };
    const problems = results.flatMap((r, i) => (r.mesh.errors || r.mesh.non2xx || r.direct.errors ? [`round ${i + 1}: ${r.mesh.errors} errors, ${r.mesh.non2xx} non-2xx through the mesh; ${r.direct.errors} direct errors`] : []));
    const verdict = {
      addedP90: added.p90Ms <= MESH_TARGETS.addedP90Ms ? 'PASS' : 'FAIL',
      rss: loadedMaxKb / 1024 <= MESH_TARGETS.sidecarRssMb ? 'PASS' : 'FAIL',
    };
    const summary = [
      `added latency (median of ${rounds} round(s), mesh − direct at ${rate} rps): p50 ${added.p50Ms} ms, p90 ${added.p90Ms} ms, p99 ${added.p99Ms} ms — target p90 ≤ ${MESH_TARGETS.addedP90Ms} ms: ${verdict.addedP90}`,
      `sidecar RSS: idle client ${mb(idle.client)}, server ${mb(idle.server)}; loaded max ${mb(loadedMaxKb)} — target ≤ ${MESH_TARGETS.sidecarRssMb} MB: ${verdict.rss}`,
      `sidecar CPU at ${rate} rps: client ${cpuPerSidecar.client}% server ${cpuPerSidecar.server}% of one core (Istio 1.15: 35% per sidecar per 1000 rps)`,
      ...(problems.length ? [`PROBLEMS: ${problems.join('; ')}`] : []),
    ];
    process.stdout.write(`\n${summary.join('\n')}\n`);

    const head = spawnSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', cwd: REPO_ROOT }).stdout?.trim();
    const dirty = spawnSync('git', ['status', '--porcelain', '--', 'gateway', 'bin', 'config', 'certs', 'controlplane', 'telemetry'], { encoding: 'utf8', cwd: REPO_ROOT }).stdout?.split('\n').filter(Boolean);
    const out = {
      schema: 1,
      kind: 'mesh',
      date: new Date().toISOString(),
      quick,
      host: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', kernel: release() },
      git: { commit: head, dirty },
      build: cli.join(' ').includes('dist/') ? 'dist' : 'tsx',
      settings: { rate, durationSec, warmupSec, rounds, loadgen: 'bench/mesh/loadgen.ts (open loop, latency from the scheduled send time, 32 keep-alive connections)' },
      targets: MESH_TARGETS,
      added,
      idleRssKb: idle,
      loadedMaxRssKb: loadedMaxKb,
      idleMaxRssKb: idleMaxKb,
      cpuPctPerSidecar: cpuPerSidecar,
      verdict,
      problems,
      rounds: results,
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    if (!quick) {
      writeFileSync(join(RESULTS_DIR, 'mesh-latest.json'), `${JSON.stringify(out, null, 2)}\n`);
      writeFileSync(join(RESULTS_DIR, `${out.date.slice(0, 10)}-mesh.json`), `${JSON.stringify(out, null, 2)}\n`);
      const rows = results.map(
        (r, i) => `| ${i + 1} | ${r.direct.p50Ms} / ${r.direct.p90Ms} / ${r.direct.p99Ms} | ${r.mesh.p50Ms} / ${r.mesh.p90Ms} / ${r.mesh.p99Ms} | ${r.added.p50Ms} / ${r.added.p90Ms} / ${r.added.p99Ms} | ${r.cpuPct.client}% / ${r.cpuPct.server}% | ${mb(r.loadedRssKb.client)} / ${mb(r.loadedRssKb.server)} |`,
      );
      const md = [
        `Mesh benchmark, ${out.date} (${out.build} build, ${out.host.cpus} × ${out.host.cpuModel}, Node ${out.host.node}), ${rate} rps × ${durationSec} s per run:`,
        '',
        '| round | direct p50 / p90 / p99 ms | mesh p50 / p90 / p99 ms | added p50 / p90 / p99 ms | CPU client / server | loaded RSS client / server |',
        '|---|---|---|---|---|---|',
        ...rows,
        '',
        ...summary.map((l) => `- ${l}`),
        '',
      ].join('\n');
      writeFileSync(join(RESULTS_DIR, 'mesh-latest.md'), md);
      say(`wrote bench/results/mesh-latest.json, mesh-latest.md, ${out.date.slice(0, 10)}-mesh.json`);
    }
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench mesh: ${err.message}\n`);
    process.exit(1);
  },
);
