/**
 * The scenario list. To add one (an authenticated route, a mesh sidecar hop...), write a file
 * exporting a `Scenario` and append it here; see docs/benchmarks.md.
 */
import { https } from './https.ts';
import { plainHttp } from './plain-http.ts';
import { splitRetry } from './split-retry.ts';
import type { Scenario } from './types.ts';

export type { Scenario, ScenarioContext, PorticoConfig, ServiceSpec, TlsFiles, UpstreamInfo } from './types.ts';

export const SCENARIOS: readonly Scenario[] = [plainHttp, https, splitRetry];

/** Picks scenarios by a comma-separated list of names (all when empty); unknown names throw. */
export function selectScenarios(list: string | undefined): Scenario[] {
  const names = (list ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) return [...SCENARIOS];
  return names.map((n) => {
    const s = SCENARIOS.find((x) => x.name === n);
    if (!s) throw new Error(`BENCH_SCENARIOS: unknown scenario '${n}' (known: ${SCENARIOS.map((x) => x.name).join(', ')})`);
    return s;
  });
}
