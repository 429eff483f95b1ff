/** The recorded result file (bench/results/*.json) and where it goes. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProfileSummary } from './profile.ts';
import type { GoalResult, ScenarioResult } from './report.ts';
import { renderChart } from './svg.ts';

export const RESULTS_DIR = new URL('../results/', import.meta.url).pathname;

export interface BenchResults {
  readonly schema: 1;
  /** ISO timestamp of the run. */
  readonly date: string;
  readonly quick: boolean;
  readonly cpuProfiled: boolean;
  readonly host: { node: string; cpus: number; cpuModel: string; kernel: string; platform: string };
  /** The commit measured, and uncommitted changes in the code under test at run time. */
  readonly git?: { commit: string; dirty: readonly string[] };
  readonly tools: { wrk: string; nginx?: string };
  readonly settings: { durationSec: number; warmupSec: number; connections: number; threads: number; workers: number };
  readonly targets: { minReqPerSecRatio: number; maxP99Ratio: number };
  readonly notes: readonly string[];
  readonly scenarios: readonly ScenarioResult[];
  /** Cross-scenario targets (telemetry on/off, authenticated/unauthenticated, check p99). */
  readonly goals?: readonly GoalResult[];
  readonly profiles?: Readonly<Record<string, ProfileSummary>>;
}

/**
 * Writes `<date>-<set>.json`, `latest.json`, `latest.svg` and `latest.md` (the table).
 * Quick and profiled runs get a `-quick`/`-profile` suffix so they never replace the recorded
 * full run (do not commit those).
 */
export function writeResults(r: BenchResults, setName: string, table: string, dir = RESULTS_DIR): string[] {
  mkdirSync(dir, { recursive: true });
  const suffix = r.cpuProfiled ? '-profile' : r.quick ? '-quick' : '';
  const json = `${JSON.stringify(r, null, 2)}\n`;
  const files: [string, string][] = [
    [`${r.date.slice(0, 10)}-${setName}${suffix}.json`, json],
    [`latest${suffix}.json`, json],
    [`latest${suffix}.svg`, renderChart(r)],
    [`latest${suffix}.md`, `${table}\n`],
  ];
  return files.map(([name, text]) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  });
}
