/** Result shapes, pass/fail against the targets, and the text table. */
import type { WrkResult } from './wrk.ts';

/** Portico must reach this fraction of nginx's req/s... */
export const MIN_REQ_RATIO = 0.5;
/** ...and keep its p99 within this multiple of nginx's. */
export const MAX_P99_RATIO = 2;

export type TargetName = 'direct' | 'nginx' | 'portico';
export const TARGETS: readonly TargetName[] = ['direct', 'nginx', 'portico'];

export interface TargetRun {
  readonly url: string;
  readonly wrk: WrkResult;
  /** Max RSS sampled during the measured run, KiB (Portico: the gateway; nginx: its worker). */
  readonly maxRssKb?: number;
  /** CPU the target used during the measured run, % of one core (nginx: its worker). */
  readonly cpuPct?: number;
  /** CPU microseconds per request served. */
  readonly cpuUsPerRequest?: number;
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
export function problemLabel(runs: readonly (TargetRun | undefined)[]): string | undefined {
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
    for (const t of TARGETS) {
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
        run.cpuUsPerRequest === undefined ? '' : `${run.cpuUsPerRequest.toFixed(1)} (${run.cpuPct}% CPU)`,
        isP && r.ratios ? r.ratios.reqPerSec.toFixed(2) : '',
        isP && r.ratios ? r.ratios.p99.toFixed(2) : '',
        verdict,
      ]);
    }
  }
  return rows;
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
