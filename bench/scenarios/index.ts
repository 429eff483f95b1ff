/**
 * The scenario list. To add one (an authenticated route, a mesh sidecar hop...), write a file
 * exporting a `Scenario` and append it here; see docs/benchmarks.md.
 */
import { authMemory, authNone, authRedis } from './auth.ts';
import { https } from './https.ts';
import { oauth2ProxyMemory, oauth2ProxyMemoryFastPath, oauth2ProxyRedis, oauth2ProxyRedisFastPath } from './oauth2-proxy.ts';
import { plainHttp, plainHttpTelemetryOff } from './plain-http.ts';
import { plainHttpAuthz, plainHttpJwt } from './policies.ts';
import { splitRetry } from './split-retry.ts';
import type { GoalSpec, Scenario } from './types.ts';

export type { GoalSpec, Probe, ProbeTarget, Scenario, ScenarioContext, ScenarioSetup, PorticoConfig, ServiceSpec, TargetName, TlsFiles, UpstreamInfo } from './types.ts';

/** Run order: scenarios compared with each other run back to back, so host noise hits both alike. */
export const SCENARIOS: readonly Scenario[] = [plainHttp, plainHttpTelemetryOff, plainHttpAuthz, plainHttpJwt, https, splitRetry, authNone, authMemory, authRedis, oauth2ProxyMemory, oauth2ProxyRedis, oauth2ProxyMemoryFastPath, oauth2ProxyRedisFastPath];

/** Targets across scenarios (issue 6: telemetry's cost; issue 4: the authenticated route). */
export const GOALS: readonly GoalSpec[] = [
  { kind: 'req-ratio', label: 'telemetry on / off (plain route)', numerator: 'plain-http', denominator: 'plain-http-telemetry-off', min: 0.9 },
  { kind: 'req-ratio', label: 'authenticated (memory) / unauthenticated', numerator: 'auth-memory', denominator: 'auth-none', min: 0.6 },
  { kind: 'req-ratio', label: 'authenticated (Redis) / unauthenticated', numerator: 'auth-redis', denominator: 'auth-none', min: 0.6 },
  { kind: 'p99-max', label: 'authservice check p99, Redis, 50 connections', scenario: 'auth-redis', target: 'authz-check', maxMs: 2 },
];

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
