/** What a benchmark scenario is: one routing setup, expressed for Portico and for nginx. */

/** One upstream process (bench/upstream.ts). */
export interface UpstreamInfo {
  /** Also its subset/version label and its nginx upstream block name: `v1`, `v2`. */
  readonly name: string;
  readonly http: number;
  /** TLS port (same body), used for the direct baseline of TLS scenarios. */
  readonly https?: number;
}

/** Server certificate files, issued by Portico's own CA for 127.0.0.1 (certs/index.ts). */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** `credentialName` under `secretsDir` holding the same cert (Istio's Secret form). */
  readonly credentialName: string;
  readonly secretsDir: string;
}

export interface ScenarioContext {
  /** The port the target under test (nginx or Portico) must listen on, on 127.0.0.1. */
  readonly port: number;
  /** All upstreams, `v1` first. */
  readonly upstreams: readonly UpstreamInfo[];
  readonly tls: TlsFiles;
  /** This scenario's temp dir (config files go here). */
  readonly dir: string;
  /**
   * Ports of the scenario's extra `services`, by service name, plus `<name>.<extra>` for each of
   * a service's `extraPorts`. All are allocated before the first service starts (so services
   * can name each other); by the time `setup`, the targets and wrk run, all are listening.
   */
  readonly services: Readonly<Record<string, number>>;
}

/**
 * An extra process a scenario needs next to the targets (an authservice, a dev IdP, a second
 * Portico as the mesh sidecar). Started before the targets on a free 127.0.0.1 port, stopped after.
 */
export interface ServiceSpec {
  readonly name: string;
  /** More free ports this service needs (e.g. `health`), found in ctx.services as `<name>.<extra>`. */
  readonly extraPorts?: readonly string[];
  /**
   * The command line to run; must listen on 127.0.0.1:`port`. Runs with cwd = repo root.
   * Services start in order, each once the previous one listens.
   */
  command(ctx: ScenarioContext, port: number): { cmd: string; args: readonly string[]; env?: Readonly<Record<string, string>> };
}

/**
 * A load target that is not a proxy: wrk straight at a service the scenario started (the
 * authservice's check endpoint), to see that hop's own latency. Measured like `direct`.
 */
export interface Probe {
  readonly target: ProbeTarget;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Probe targets known to the report (each gets its own table row). */
export type ProbeTarget = 'authz-check' | 'oauth2-auth';

/** What `Scenario.setup` hands back once the services run. */
export interface ScenarioSetup {
  /** Headers added to `Scenario.headers` for every target (a session cookie). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly probes?: readonly Probe[];
}

export interface PorticoConfig {
  /** File name → Istio YAML, written into a fresh dir passed as `--config`. */
  readonly files: Readonly<Record<string, string>>;
  /** Extra `portico gateway` flags, e.g. `--secrets-dir`. */
  readonly args?: readonly string[];
}

export interface Scenario {
  /** Short id used on the command line (`BENCH_SCENARIOS`) and in result file names. */
  readonly name: string;
  /** One line for tables and the chart. */
  readonly title: string;
  readonly scheme: 'http' | 'https';
  /** Request path wrk asks for. */
  readonly path: string;
  /** Headers wrk sends on every request. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Istio config for Portico. */
  portico(ctx: ScenarioContext): PorticoConfig;
  /**
   * The `bin/portico.ts` arguments, given the written config dir. Default:
   * `gateway --config DIR --admin-port=-1 --workers=1 --no-watch --drain-ms 500` plus `PorticoConfig.args`.
   * A mesh scenario returns `['sidecar', '--config', dir, '--workload', ...]` instead.
   */
  porticoCommand?(ctx: ScenarioContext, configDir: string): readonly string[];
  /** Extra processes this scenario needs (see ServiceSpec). */
  readonly services?: readonly ServiceSpec[];
  /**
   * Also measure each target unloaded (one connection, BENCH_UNLOADED_SEC seconds, default 3):
   * the latency a proxy adds to a request when nothing else is going on.
   */
  readonly unloaded?: boolean;
  /** Runs once the services listen, before any target (e.g. one real login for a session cookie). */
  setup?(ctx: ScenarioContext): Promise<ScenarioSetup>;
  /** The body of nginx's `http {}` block: upstream blocks, maps and one `server` on ctx.port. */
  nginx(ctx: ScenarioContext): string;
  /** URL for the direct (no proxy) baseline. */
  direct(ctx: ScenarioContext): string;
  /**
   * Optional correctness check over per-upstream request counts after a proxied run
   * (e.g. a 50/50 split really split). Returns a problem description, or undefined.
   */
  check?(counts: Readonly<Record<string, number>>): string | undefined;
}

/** Every row a scenario can have: the baseline, the two proxies, and probes. */
export type TargetName = 'direct' | 'nginx' | 'portico' | ProbeTarget;

/**
 * A target that spans scenarios (or is absolute), judged after the run:
 *  - `req-ratio`: Portico req/s in `numerator` ÷ Portico req/s in `denominator` ≥ `min`
 *    (telemetry on vs off, authenticated vs not);
 *  - `p99-max`: p99 of `target` in `scenario` < `maxMs` (the authservice's check latency).
 * Judged only when every scenario it names ran.
 */
export type GoalSpec =
  | { readonly kind: 'req-ratio'; readonly label: string; readonly numerator: string; readonly denominator: string; readonly min: number }
  | { readonly kind: 'p99-max'; readonly label: string; readonly scenario: string; readonly target: TargetName; readonly maxMs: number };
