/**
 * `npm run bench`: loads a direct baseline, nginx and Portico with wrk for each scenario and
 * records req/s, p50/p99 and memory. Not a test: nothing here asserts; it prints, marks
 * PASS/FAIL against the targets and writes bench/results/. See docs/benchmarks.md.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_QUICK=1 (2 s smoke run), BENCH_CONNECTIONS (50),
 * BENCH_SCENARIOS (comma list; `mesh` runs bench/mesh/run.ts), BENCH_CPU_PROF=1 (profile the gateway; results not recorded as latest),
 * BENCH_KEEP_TMP=1 (keep generated configs and logs), BENCH_QUIET_WAIT_SEC (how long to wait for a
 * quiet host before each run, default 60), BENCH_UNLOADED_SEC (unloaded runs, default 3).
 */
import { spawnSync } from 'node:child_process';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { GOALS, SCENARIOS, selectScenarios, type Probe, type Scenario, type ScenarioContext } from './scenarios/index.ts';
import { summariseProfiles, formatProfileSummary, type ProfileSummary } from './lib/profile.ts';
import { installCleanup, sleep, stopChild, type Child } from './lib/procs.ts';
import { evaluateGoals, goalsMarkdown, goalsText, judge, markdownTable, memoryLines, textTable, unloadedLines, MAX_P99_RATIO, MIN_REQ_RATIO, type ScenarioResult, type TargetName, type TargetRun } from './lib/report.ts';
import { hostCpuMs, readRssKb, sampleRss, sumCpuMs } from './lib/rss.ts';
import { writeResults, type BenchResults } from './lib/results.ts';
import {
  makeTlsFiles,
  REPO_ROOT,
  readCounts,
  resetCounts,
  scenarioContext,
  startNginx,
  startPortico,
  startUpstream,
  tempDir,
  type RunningUpstream,
  type StartedTarget,
} from './lib/targets.ts';
import { ensureTools, type Tools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';

interface Settings {
  readonly durationSec: number;
  readonly warmupSec: number;
  readonly connections: number;
  readonly threads: number;
  readonly quick: boolean;
  readonly cpuProf: boolean;
}

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}='${raw}' must be a positive number`);
  return n;
}

function settings(): Settings {
  const quick = process.env.BENCH_QUICK === '1';
  const durationSec = Math.round(positive('BENCH_DURATION', quick ? 2 : 10));
  return {
    durationSec,
    warmupSec: quick ? 1 : Math.min(3, Math.max(1, Math.round(durationSec / 5))),
    connections: Math.round(positive('BENCH_CONNECTIONS', 50)),
    threads: 1,
    quick,
    cpuProf: process.env.BENCH_CPU_PROF === '1',
  };
}

const say = (msg: string): void => void process.stdout.write(`bench: ${msg}\n`);

/**
 * On a shared machine other work skews the numbers: wait (up to BENCH_QUIET_WAIT_SEC, default
 * 60 s) until the host is under 25% busy over one second. Returns a note when it never got quiet.
 */
async function waitForQuietHost(): Promise<string | undefined> {
  const waitSec = Number(process.env.BENCH_QUIET_WAIT_SEC ?? 60);
  const deadline = Date.now() + (Number.isFinite(waitSec) && waitSec >= 0 ? waitSec : 60) * 1000;
  let busyPct = 0;
  while (Date.now() < deadline) {
    const a = hostCpuMs();
    await sleep(1000);
    const b = hostCpuMs();
    if (!a || !b) return undefined;
    busyPct = Math.round(((b.busy - a.busy) / (b.total - a.total)) * 100);
    if (busyPct < 25) return undefined;
  }
  say(`host still ${busyPct}% busy after ${waitSec} s of waiting; measuring anyway`);
  return `host was ${busyPct}% busy before the run`;
}

/** What one measured run loads and whose CPU/memory it counts. */
interface Load {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The process(es) under test (RSS, CPU); none for the direct baseline. */
  readonly target?: { readonly pids: () => number[] };
  /** The scenario's services (authservice, IdP, Redis): their CPU per request is recorded beside. */
  readonly servicePids: readonly number[];
  /** The same services by name, for the per-process breakdown. */
  readonly serviceByName?: Readonly<Record<string, number>>;
  /** Run the scenario's upstream-count check (proxied runs only). */
  readonly check?: Scenario['check'];
}

/** Warm up, then one measured wrk run with RSS sampling and upstream counting. */
async function measure(tools: Tools, s: Settings, load: Load, upstreams: readonly RunningUpstream[]): Promise<TargetRun> {
  const { url, target } = load;
  const base = { connections: s.connections, threads: s.threads, headers: load.headers };
  const waited = await waitForQuietHost();
  await runWrk(tools.wrk, { ...base, url, durationSec: s.warmupSec });
  await resetCounts(upstreams);
  const upPids = upstreams.map((u) => u.child.pid);
  const ourBefore = sumCpuMs([...upPids, ...load.servicePids, ...(target?.pids() ?? [])]);
  const hostBefore = hostCpuMs();
  const sampler = target ? sampleRss(target.pids) : undefined;
  const cpuBefore = target ? sumCpuMs(target.pids()) : undefined;
  const svcBefore = load.servicePids.length ? sumCpuMs([...load.servicePids]) : undefined;
  const eachBefore = Object.entries(load.serviceByName ?? {}).map(([name, pid]) => [name, pid, sumCpuMs([pid])] as const);
  const wrk = await runWrk(tools.wrk, { ...base, url, durationSec: s.durationSec });
  const cpuAfter = target ? sumCpuMs(target.pids()) : undefined;
  const svcAfter = load.servicePids.length ? sumCpuMs([...load.servicePids]) : undefined;
  const eachAfter = eachBefore.map(([name, pid, before]) => [name, before, sumCpuMs([pid])] as const);
  const hostAfter = hostCpuMs();
  const ourAfter = sumCpuMs([...upPids, ...load.servicePids, ...(target?.pids() ?? [])]);
  const maxRssKb = sampler?.stop();
  const cpuMs = cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined;
  // CPU per request is the contention-free efficiency number: on a small box the proxies share
  // cores with wrk and the upstream, so req/s alone understates the cheaper one.
  const cpu =
    cpuMs !== undefined && wrk.requests > 0
      ? { cpuPct: Math.round((cpuMs / (wrk.durationSec * 1000)) * 1000) / 10, cpuUsPerRequest: Math.round(((cpuMs * 1000) / wrk.requests) * 10) / 10 }
      : {};
  // A probe's target is itself a service: its services figure would double count.
  const svcMs = svcBefore !== undefined && svcAfter !== undefined && target && !load.servicePids.some((p) => target.pids().includes(p)) ? svcAfter - svcBefore : undefined;
  const perRequest = (ms: number) => Math.round(((ms * 1000) / wrk.requests) * 10) / 10;
  const each: Record<string, number> = {};
  for (const [name, before, after] of eachAfter) if (before !== undefined && after !== undefined) each[name] = perRequest(after - before);
  const svc =
    svcMs !== undefined && wrk.requests > 0
      ? { servicesCpuUsPerRequest: perRequest(svcMs), ...(Object.keys(each).length > 1 ? { servicesCpuUs: each } : {}) }
      : {};
  const upstreamCounts = await readCounts(upstreams);
  const problems: string[] = [];
  // Everything busy on the host that is not the target or the upstreams: wrk (one thread, so at
  // most one core) plus anything else running. Above one core, something else competed.
  let otherCpuPct: number | undefined;
  if (hostBefore && hostAfter && ourBefore !== undefined && ourAfter !== undefined) {
    const wallMs = wrk.durationSec * 1000;
    otherCpuPct = Math.round(((hostAfter.busy - hostBefore.busy - (ourAfter - ourBefore)) / wallMs) * 100);
    if (otherCpuPct > 110) problems.push(`noisy host: ${otherCpuPct}% CPU used by wrk + other processes (wrk alone is <= 100%)`);
  }
  if (waited) problems.push(waited);
  if (wrk.non2xx > 0) problems.push(`${wrk.non2xx} non-2xx/3xx responses`);
  const sock = wrk.socketErrors;
  const sockTotal = sock.connect + sock.read + sock.write + sock.timeout;
  if (sockTotal > 0) problems.push(`socket errors: connect ${sock.connect}, read ${sock.read}, write ${sock.write}, timeout ${sock.timeout}`);
  if (load.check) {
    const p = load.check(upstreamCounts);
    if (p) problems.push(p);
  }
  return { url, wrk, maxRssKb, ...cpu, ...svc, otherCpuPct, upstreamCounts, problems };
}

/** One connection for BENCH_UNLOADED_SEC (default 3) seconds, after the loaded run: the latency a hop adds when idle. */
async function unloaded(tools: Tools, s: Settings, url: string, headers: Readonly<Record<string, string>>): Promise<TargetRun['unloaded']> {
  const durationSec = Math.round(positive('BENCH_UNLOADED_SEC', s.quick ? 1 : 3));
  await runWrk(tools.wrk, { url, headers, connections: 1, threads: 1, durationSec: 1 });
  const w = await runWrk(tools.wrk, { url, headers, connections: 1, threads: 1, durationSec });
  return { reqPerSec: Math.round(w.reqPerSec), p50Ms: w.p50Ms, p99Ms: w.p99Ms };
}

function line(name: string, run: TargetRun): string {
  const w = run.wrk;
  const extra = run.problems.length ? `  PROBLEMS: ${run.problems.join('; ')}` : '';
  const svc = run.servicesCpuUsPerRequest !== undefined ? ` + services ${run.servicesCpuUsPerRequest} µs/req` : '';
  const cpu = run.cpuPct !== undefined ? `  CPU ${run.cpuPct}% (${run.cpuUsPerRequest} µs/req${svc})` : '';
  const each = run.servicesCpuUs ? ` [${Object.entries(run.servicesCpuUs).map(([k, v]) => `${k} ${v}`).join(', ')}]` : '';
  const idle = run.unloaded ? `  unloaded p50 ${run.unloaded.p50Ms.toFixed(2)} ms p99 ${run.unloaded.p99Ms.toFixed(2)} ms` : '';
  return `  ${name.padEnd(11)} ${Math.round(w.reqPerSec).toString().padStart(7)} req/s  p50 ${w.p50Ms.toFixed(2)} ms  p99 ${w.p99Ms.toFixed(2)} ms${cpu}${each}${idle}${extra}`;
}

async function runScenario(
  tools: Tools,
  s: Settings,
  scenario: Scenario,
  ctx: ScenarioContext,
  services: Readonly<Record<string, Child>>,
  upstreams: readonly RunningUpstream[],
  logDir: string,
  profDir: string | undefined,
): Promise<ScenarioResult> {
  say(`scenario ${scenario.name}: ${scenario.title}`);
  const setup = scenario.setup ? await scenario.setup(ctx) : {};
  const headers = { ...scenario.headers, ...setup.headers };
  const servicePids = Object.values(services).map((c) => c.pid);
  const serviceByName = Object.fromEntries(Object.entries(services).map(([n, c]) => [n, c.pid]));
  const runs: Partial<Record<TargetName, TargetRun>> = {};
  const url = `${scenario.scheme}://127.0.0.1:${ctx.port}${scenario.path}`;

  runs.direct = await measure(tools, s, { url: scenario.direct(ctx), headers, servicePids: [] }, upstreams);
  if (scenario.unloaded) runs.direct = { ...runs.direct, unloaded: await unloaded(tools, s, scenario.direct(ctx), headers) };
  say(line('direct', runs.direct));

  for (const probe of setup.probes ?? []) {
    runs[probe.target] = await measure(tools, s, { url: probe.url, headers: probe.headers, target: probeProcess(probe, ctx, services), servicePids, serviceByName }, upstreams);
    say(line(probe.target, runs[probe.target] as TargetRun));
  }

  if (tools.nginx) {
    const nginx = await startNginx(tools.nginx, scenario, ctx, logDir);
    try {
      runs.nginx = await measure(tools, s, { url, headers, target: nginx, servicePids, serviceByName, check: scenario.check }, upstreams);
      if (scenario.unloaded) runs.nginx = { ...runs.nginx, unloaded: await unloaded(tools, s, url, headers) };
    } finally {
      await nginx.stop();
    }
    say(line('nginx', runs.nginx));
  }

  const portico = await startPortico(scenario, ctx, logDir, profDir);
  try {
    await sleep(1000); // let startup garbage settle before reading idle RSS
    const idleRssKb = readRssKb(portico.child.pid);
    const run = await measure(tools, s, { url, headers, target: portico, servicePids, serviceByName, check: scenario.check }, upstreams);
    runs.portico = { ...run, idleRssKb, ...(scenario.unloaded ? { unloaded: await unloaded(tools, s, url, headers) } : {}) };
  } finally {
    await stopChild(portico.child, 10_000);
  }
  say(line('portico', runs.portico));
  return judge(scenario.name, scenario.title, runs);
}

/** The service a probe loads (its port is the probe URL's), for its CPU and memory. */
function probeProcess(probe: Probe, ctx: ScenarioContext, services: Readonly<Record<string, Child>>): { pids: () => number[] } | undefined {
  const port = Number(new URL(probe.url).port);
  const name = Object.entries(ctx.services).find(([, p]) => p === port)?.[0];
  const child = name ? services[name] : undefined;
  return child ? { pids: () => [child.pid] } : undefined;
}

/** HEAD and any uncommitted changes to the code being measured (others may be mid-edit). */
function gitInfo(): { commit: string; dirty: string[] } | undefined {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', cwd: REPO_ROOT });
  if (head.status !== 0) return undefined;
  const st = spawnSync('git', ['status', '--porcelain', '--', 'gateway', 'authservice', 'config', 'certs', 'bin', 'demo'], { encoding: 'utf8', cwd: REPO_ROOT });
  return { commit: head.stdout.trim(), dirty: (st.stdout ?? '').split('\n').filter(Boolean) };
}

/**
 * `BENCH_SCENARIOS=mesh` (alone or in a list): the mesh benchmark, a fixed-rate two-sidecar run
 * that does not fit wrk's closed loop, in its own runner (bench/mesh/run.ts). Returns the rest.
 */
function runMeshIfAsked(list: string | undefined): { rest: string | undefined; code: number } {
  const names = (list ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  if (!names.includes('mesh')) return { rest: list, code: 0 };
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/mesh/run.ts')], { cwd: REPO_ROOT, stdio: 'inherit' });
  return { rest: names.filter((n) => n !== 'mesh').join(','), code: r.status ?? 1 };
}

async function main(): Promise<number> {
  installCleanup();
  const s = settings();
  let mesh = runMeshIfAsked(process.env.BENCH_SCENARIOS);
  if (mesh.rest === '') return mesh.code;
  // `wasm`: the WasmPlugin benchmark (bench/wasm/run.ts), in its own runner like `mesh`.
  if (mesh.rest !== undefined && mesh.rest.split(',').includes('wasm')) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/wasm/run.ts')], { cwd: REPO_ROOT, stdio: 'inherit' });
    mesh = { rest: mesh.rest.split(',').filter((n) => n !== 'wasm').join(','), code: r.status ?? 1 };
    if (mesh.rest === '') return mesh.code;
  }
  const scenarios = selectScenarios(mesh.rest);
  say(`${scenarios.length} scenario(s) × (direct, nginx, portico), wrk -t${s.threads} -c${s.connections} -d${s.durationSec}s --latency (+${s.warmupSec}s warm-up each)${s.quick ? ' [QUICK smoke run]' : ''}`);
  const tools = ensureTools();
  say(`wrk: ${tools.wrk} (${tools.versions.wrk}); nginx: ${tools.nginx ? `${tools.nginx} (${tools.versions.nginx})` : 'unavailable'}`);

  const root = tempDir('portico-bench-');
  const logDir = join(root, 'logs');
  mkdirSync(logDir, { recursive: true });
  say(`temp dir ${root}${process.env.BENCH_KEEP_TMP === '1' ? ' (kept)' : ' (removed on exit; BENCH_KEEP_TMP=1 keeps it)'}`);
  // Profiles are kept on purpose: they are what the person asked for.
  const profDir = s.cpuProf ? mkdtempSync(join(tmpdir(), 'portico-bench-prof-')) : undefined;
  if (profDir) say(`CPU profiling the gateway (and Node services) into ${profDir} (profiled numbers are slower and not recorded as latest)`);

  const tls = makeTlsFiles(root);
  const upstreams = [await startUpstream('v1', tls, logDir), await startUpstream('v2', tls, logDir)];
  const results: ScenarioResult[] = [];
  const profiles: Record<string, ProfileSummary> = {};
  try {
    for (const scenario of scenarios) {
      const scenarioProf = profDir ? join(profDir, scenario.name) : undefined;
      const { ctx, services, byName } = await scenarioContext(scenario, upstreams, tls, root, logDir, scenarioProf);
      try {
        results.push(await runScenario(tools, s, scenario, ctx, byName, upstreams, logDir, scenarioProf));
      } finally {
        await Promise.all(services.map((c) => stopChild(c)));
      }
      if (scenarioProf) {
        const summary = summariseProfiles(scenarioProf, process.cwd());
        if (summary) {
          profiles[scenario.name] = summary;
          process.stdout.write(`\nCPU profile of Portico, scenario ${scenario.name} (${summary.file}):\n${formatProfileSummary(summary)}\n\n`);
        }
        for (const svc of Object.keys(byName)) {
          const sv = summariseProfiles(`${scenarioProf}-${svc}`, process.cwd());
          if (!sv) continue;
          profiles[`${scenario.name}/${svc}`] = sv;
          process.stdout.write(`\nCPU profile of service ${svc}, scenario ${scenario.name} (${sv.file}):\n${formatProfileSummary(sv)}\n\n`);
        }
      }
    }
  } finally {
    await Promise.all(upstreams.map((u) => stopChild(u.child)));
  }

  process.stdout.write(`\n${textTable(results)}\n\n`);
  for (const l of memoryLines(results)) process.stdout.write(`${l}\n`);
  for (const l of unloadedLines(results)) process.stdout.write(`${l}\n`);
  process.stdout.write(`targets: Portico req/s >= ${MIN_REQ_RATIO}x nginx, p99 <= ${MAX_P99_RATIO}x nginx\n`);
  const goals = evaluateGoals(GOALS, results);
  process.stdout.write(`\n${goalsText(goals)}\n`);

  const out: BenchResults = {
    schema: 1,
    date: new Date().toISOString(),
    quick: s.quick,
    cpuProfiled: s.cpuProf,
    host: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', kernel: release(), platform: process.platform },
    git: gitInfo(),
    tools: tools.versions,
    settings: { durationSec: s.durationSec, warmupSec: s.warmupSec, connections: s.connections, threads: s.threads, workers: 1 },
    targets: { minReqPerSecRatio: MIN_REQ_RATIO, maxP99Ratio: MAX_P99_RATIO },
    notes: tools.notes,
    scenarios: results,
    goals,
    ...(Object.keys(profiles).length ? { profiles } : {}),
  };
  const setName = scenarios.length === SCENARIOS.length ? 'all' : scenarios.map((x) => x.name).join('+');
  const written = writeResults(out, setName, `${markdownTable(results)}\n\n${unloadedLines(results).map((l) => `- ${l}`).join('\n')}\n\n${goalsMarkdown(goals)}`);
  for (const f of written) say(`wrote ${f}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.message}\n`);
    process.exit(1);
  },
);
