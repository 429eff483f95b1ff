/** Result shapes, pass/fail against the targets, and the text table. */
import type { GoalSpec, TargetName } from '../scenarios/index.ts';
import type { WrkResult } from './wrk.ts';

export type { TargetName } from '../scenarios/index.ts';

/** Portico must reach this fraction of nginx's req/s... */
export const MIN_REQ_RATIO = 0.5;
/** ...and keep its p99 within this multiple of nginx's. */
export const MAX_P99_RATIO = 2;

/** Table/chart order. `authz-check` (a probe) appears only in scenarios that have it. */
export const TARGETS: readonly TargetName[] = ['direct', 'authz-check', 'oauth2-auth', 'nginx', 'portico'];
/** Targets every scenario has (a missing one is shown as skipped). */
export const CORE_TARGETS: readonly TargetName[] = ['direct', 'nginx', 'portico'];

/** The targets to show for one scenario: the core ones plus any probe it ran. */
export function targetsOf(r: ScenarioResult): TargetName[] {
  return TARGETS.filter((t) => CORE_TARGETS.includes(t) || r.runs[t] !== undefined);
}

export interface TargetRun {
  readonly url: string;
  readonly wrk: WrkResult;
  /** Max RSS sampled during the measured run, KiB (Portico: the gateway; nginx: its worker). */
  readonly maxRssKb?: number;
  /** CPU the target used during the measured run, % of one core (nginx: its worker). */
  readonly cpuPct?: number;
  /** CPU microseconds per request served. */
  readonly cpuUsPerRequest?: number;
  /**
   * CPU the scenario's services (the authservice, its IdP, Redis) used per request during this
   * run, microseconds — the rest of the cost of an authenticated request.
   */
  readonly servicesCpuUsPerRequest?: number;
  /** The same, per service process (authservice, dex, oauth2-proxy, redis...), microseconds per request. */
  readonly servicesCpuUs?: Readonly<Record<string, number>>;
  /** Scenario.unloaded: one connection, nothing else going on. */
  readonly unloaded?: { readonly reqPerSec: number; readonly p50Ms: number; readonly p99Ms: number };
  /** CPU (% of one core) used during the run by everything except the target and upstreams: wrk + other processes. */
  readonly otherCpuPct?: number;
  /** RSS after start, before any traffic, KiB. */
  readonly idleRssKb?: number;
  /** Requests per upstream during the measured run. */
  readonly upstreamCounts?: Readonly<Record<string, number>>;
  /** Anything that makes the numbers suspect (errors, a split that did not split). */
  readonly problems: readonly string[];
}

export interface ScenarioResult {
  readonly name: string;
  readonly title: string;
  readonly runs: Partial<Record<TargetName, TargetRun>>;
  /** Portico/nginx; undefined without nginx. */
  readonly ratios?: { readonly reqPerSec: number; readonly p99: number };
  readonly pass?: { readonly reqPerSec: boolean; readonly p99: boolean; readonly clean: boolean };
}

export function judge(name: string, title: string, runs: Partial<Record<TargetName, TargetRun>>): ScenarioResult {
  const n = runs.nginx;
  const p = runs.portico;
  if (!n || !p) return { name, title, runs };
  const ratios = { reqPerSec: p.wrk.reqPerSec / n.wrk.reqPerSec, p99: p.wrk.p99Ms / n.wrk.p99Ms };
  return {
    name,
    title,
    runs,
    ratios,
    pass: { reqPerSec: ratios.reqPerSec >= MIN_REQ_RATIO, p99: ratios.p99 <= MAX_P99_RATIO, clean: p.problems.length === 0 && n.problems.length === 0 },
  };
}

/** 'NOISY HOST' when the only problems are other load on the machine, else 'ERRORS'. */
export function problemLabel(runs: readonly ({ readonly problems: readonly string[] } | undefined)[]): string | undefined {
  const all = runs.flatMap((r) => r?.problems ?? []);
  if (all.length === 0) return undefined;
  return all.every((p) => p.startsWith('noisy host') || p.startsWith('host was')) ? 'NOISY HOST' : 'ERRORS';
}

const fmtRps = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(1));
const fmtMb = (kb: number | undefined): string => (kb === undefined ? 'n/a' : `${(kb / 1024).toFixed(1)} MiB`);

function pad(cells: string[][]): string {
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length))) ?? [];
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** A Markdown table (readable as plain text too): scenario × target, ratios, verdicts. */
export function markdownTable(results: readonly ScenarioResult[]): string {
  const rows = tableRows(results);
  const md = [rows[0] as string[], (rows[0] as string[]).map(() => '---'), ...rows.slice(1)];
  return md.map((r) => `| ${r.join(' | ')} |`).join('\n');
}

function tableRows(results: readonly ScenarioResult[]): string[][] {
  const rows: string[][] = [['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'max RSS', 'CPU µs/req', 'Portico/nginx req/s', 'Portico/nginx p99', 'verdict']];
  for (const r of results) {
    for (const t of targetsOf(r)) {
      const run = r.runs[t];
      if (!run) {
        rows.push([r.name, t, 'skipped', '', '', '', '', '', '', '']);
        continue;
      }
      const isP = t === 'portico';
      let verdict = '';
      if (isP && r.pass && r.ratios) {
        const bits = [r.pass.reqPerSec ? 'req/s PASS' : `req/s FAIL (<${MIN_REQ_RATIO}x)`, r.pass.p99 ? 'p99 PASS' : `p99 FAIL (>${MAX_P99_RATIO}x)`];
        const label = problemLabel([run, r.runs.nginx]);
        if (label) bits.push(label);
        verdict = bits.join(', ');
      } else if (isP) verdict = 'n/a (no nginx)';
      if (!isP) verdict = problemLabel([run]) ?? '';
      rows.push([
        r.name,
        t,
        fmtRps(run.wrk.reqPerSec),
        fmtMs(run.wrk.p50Ms),
        fmtMs(run.wrk.p99Ms),
        t === 'direct' ? '' : fmtMb(run.maxRssKb),
        cpuCell(run),
        isP && r.ratios ? r.ratios.reqPerSec.toFixed(2) : '',
        isP && r.ratios ? r.ratios.p99.toFixed(2) : '',
        verdict,
      ]);
    }
  }
  return rows;
}

function cpuCell(run: TargetRun): string {
  if (run.cpuUsPerRequest === undefined) return '';
  const own = `${run.cpuUsPerRequest.toFixed(1)} (${run.cpuPct}% CPU)`;
  if (run.servicesCpuUsPerRequest === undefined) return own;
  const each = run.servicesCpuUs ? ` (${Object.entries(run.servicesCpuUs).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})` : '';
  return `${own} + services ${run.servicesCpuUsPerRequest.toFixed(1)}${each}`;
}

/** A goal after the run: its measured value, and pass/fail (undefined when a scenario it needs did not run). */
export interface GoalResult {
  readonly label: string;
  readonly kind: GoalSpec['kind'];
  /** The ratio, or the p99 in ms. */
  readonly value?: number;
  /** `>= 0.9`, `< 2 ms`. */
  readonly want: string;
  /** How the value was computed, e.g. `plain-http 15,935 / plain-http-telemetry-off 16,800 req/s`. */
  readonly from: string;
  readonly pass?: boolean;
  /** Problems (noise, errors) in the runs behind the value. */
  readonly problems: readonly string[];
}

function cpuNote(num: TargetRun, den: TargetRun): string {
  const total = (r: TargetRun): number | undefined => (r.cpuUsPerRequest === undefined ? undefined : r.cpuUsPerRequest + (r.servicesCpuUsPerRequest ?? 0));
  const a = total(num);
  const b = total(den);
  return a === undefined || b === undefined ? '' : ` (CPU ${a.toFixed(1)} vs ${b.toFixed(1)} µs/req incl. services)`;
}

/** Judges each goal against the scenario results present. */
export function evaluateGoals(goals: readonly GoalSpec[], results: readonly ScenarioResult[]): GoalResult[] {
  const byName = new Map(results.map((r) => [r.name, r]));
  return goals.map((g): GoalResult => {
    if (g.kind === 'req-ratio') {
      const want = `>= ${g.min}`;
      const num = byName.get(g.numerator)?.runs.portico;
      const den = byName.get(g.denominator)?.runs.portico;
      if (!num || !den) return { label: g.label, kind: g.kind, want, from: `needs scenarios ${g.numerator} and ${g.denominator}`, problems: [] };
      const value = num.wrk.reqPerSec / den.wrk.reqPerSec;
      return {
        label: g.label,
        kind: g.kind,
        value,
        want,
        // CPU per request beside it: steadier than req/s on a shared host.
        from: `${g.numerator} ${fmtRps(num.wrk.reqPerSec)} / ${g.denominator} ${fmtRps(den.wrk.reqPerSec)} req/s${cpuNote(num, den)}`,
        pass: value >= g.min,
        problems: [...num.problems, ...den.problems],
      };
    }
    const want = `< ${g.maxMs} ms`;
    const run = byName.get(g.scenario)?.runs[g.target];
    if (!run) return { label: g.label, kind: g.kind, want, from: `needs scenario ${g.scenario}`, problems: [] };
    const w = run.wrk;
    return {
      label: g.label,
      kind: g.kind,
      value: w.p99Ms,
      want,
      from: `${g.scenario}/${g.target}: ${fmtRps(w.reqPerSec)} req/s, p50 ${fmtMs(w.p50Ms)} ms, p99 ${fmtMs(w.p99Ms)} ms`,
      pass: w.p99Ms < g.maxMs,
      problems: run.problems,
    };
  });
}

function goalRows(goals: readonly GoalResult[]): string[][] {
  const rows = [['goal', 'value', 'target', 'from', 'verdict']];
  for (const g of goals) {
    const value = g.value === undefined ? 'not run' : g.kind === 'req-ratio' ? `${g.value.toFixed(2)}x` : `${fmtMs(g.value)} ms`;
    let verdict = g.pass === undefined ? '' : g.pass ? 'PASS' : 'FAIL';
    const label = problemLabel([g]);
    if (verdict && label) verdict += `, ${label}`;
    rows.push([g.label, value, g.want, g.from, verdict]);
  }
  return rows;
}

/** The goals as a Markdown table. */
export function goalsMarkdown(goals: readonly GoalResult[]): string {
  const rows = goalRows(goals);
  const md = [rows[0] as string[], (rows[0] as string[]).map(() => '---'), ...rows.slice(1)];
  return md.map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** The goals, column-aligned for a terminal. */
export function goalsText(goals: readonly GoalResult[]): string {
  return pad(goalRows(goals));
}

/** The same table, column-aligned for a terminal. */
export function textTable(results: readonly ScenarioResult[]): string {
  return pad(tableRows(results));
}

/** Portico's memory lines for the report. */
export function memoryLines(results: readonly ScenarioResult[]): string[] {
  return results.map((r) => {
    const p = r.runs.portico;
    const n = r.runs.nginx;
    return `${r.name}: Portico RSS idle ${fmtMb(p?.idleRssKb)}, under load max ${fmtMb(p?.maxRssKb)}; nginx worker under load max ${fmtMb(n?.maxRssKb)}`;
  });
}

/** Scenarios measured unloaded: each proxy's latency over the direct baseline at one connection. */
export function unloadedLines(results: readonly ScenarioResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    const d = r.runs.direct?.unloaded;
    if (!d) continue;
    const parts = (['nginx', 'portico'] as const).flatMap((t) => {
      const u = r.runs[t]?.unloaded;
      return u ? [`${t} p50 ${u.p50Ms.toFixed(2)} ms (+${(u.p50Ms - d.p50Ms).toFixed(2)}), p99 ${u.p99Ms.toFixed(2)} ms`] : [];
    });
    out.push(`${r.name}: added latency unloaded (1 connection) over direct p50 ${d.p50Ms.toFixed(2)} ms: ${parts.join('; ')}`);
  }
  return out;
}
