/**
 * Plugin lifecycle for one process: for every compiled WasmPluginConfig the snapshot carries,
 * fetch the module (off the request path), start one VM, keep it across snapshots while the
 * plugin's definition is unchanged, restart it on FAIL_RELOAD, and stop it when a snapshot no
 * longer names it. Shared data and queues outlive VMs (wasm/shared.ts).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import type { Cluster, Snapshot, WasmPluginConfig } from '../config/snapshot.ts';
import { LogLevel, type LogLevelName } from './abi.ts';
import type { EngineSettings, HttpCallRequest, MetricValue } from './engine.ts';
import { DEFAULT_FETCH_TIMEOUT_MS, ModuleCache } from './fetch.ts';
import type { Pairs } from './pairs.ts';
import type { NodeInfo } from './properties.ts';
import { SharedStore } from './shared.ts';
import { startVm, type HttpCallAnswer, type Vm, type VmHost, type VmOptions } from './vm.ts';

export interface WasmLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  debug?(msg: string, fields?: Record<string, unknown>): void;
}

export interface WasmManagerOptions {
  readonly cache?: ModuleCache;
  /** Where imagePullSecret folders live (`<dir>/<name>/.dockerconfigjson`). */
  readonly secretsDir?: string;
  readonly log?: WasmLogger;
  /** Messages a plugin logs below this level are dropped (default info). */
  readonly logLevel?: LogLevelName;
  readonly vm?: VmOptions;
  /** Linear memory cap per VM (default 256 MiB). */
  readonly memoryLimitBytes?: number;
  readonly fetchTimeoutMs?: number;
  readonly node?: NodeInfo;
  /** The environment `valueFrom: HOST` reads (default process.env). */
  readonly hostEnv?: Readonly<Record<string, string | undefined>>;
  /** How long a VM the snapshot dropped keeps serving in-flight requests (default 10 s). */
  readonly retireMs?: number;
}

/** The part of a Prometheus registry the manager needs (lib/metrics.ts Registry fits). */
export interface MetricsRegistry {
  gauge(name: string, help: string, labelNames: readonly string[], collect: (set: (labels: Record<string, string>, value: number) => void) => void): unknown;
  collectedCounter(name: string, help: string, labelNames: readonly string[], collect: (set: (labels: Record<string, string>, value: number) => void) => void): unknown;
}

export type PluginState =
  | { readonly kind: 'loading' }
  | { readonly kind: 'fetch-failed'; readonly reason: string }
  | { readonly kind: 'ready'; readonly vm: Vm }
  | { readonly kind: 'vm-failed'; readonly reason: string };

/** One plugin of the snapshot and its current VM. */
export class PluginHandle {
  state: PluginState = { kind: 'loading' };
  /** Settles when the first load attempt is over (ready or failed); for tests and readiness. */
  readonly loaded: Promise<void>;
  private bytes: Uint8Array | undefined;
  private restarting: Promise<void> | undefined;
  lastUsed = '';
  restarts = 0;

  constructor(
    readonly cfg: WasmPluginConfig,
    private readonly mgr: WasmManager,
  ) {
    this.loaded = this.load();
  }

  private async load(): Promise<void> {
    try {
      this.bytes = await this.mgr.fetchModule(this.cfg);
    } catch (e) {
      this.state = { kind: 'fetch-failed', reason: (e as Error).message };
      this.mgr.log.error('wasm module fetch failed', { plugin: this.cfg.id, url: this.cfg.url, error: (e as Error).message });
      return;
    }
    await this.startVm();
  }

  private async startVm(): Promise<void> {
    if (!this.bytes) return;
    try {
      const vm = await startVm(this.bytes, this.mgr.settingsFor(this.cfg), this.mgr.hostFor(this), this.mgr.opts.vm);
      if (this.retired) {
        vm.kill();
        return;
      }
      this.state = { kind: 'ready', vm };
      this.mgr.shared.onQueueReady(this.cfg.vmId, (token) => vm.queueReady(token));
      this.mgr.log.info('wasm plugin ready', { plugin: this.cfg.id, url: this.cfg.url });
    } catch (e) {
      this.state = { kind: 'vm-failed', reason: (e as Error).message };
      this.mgr.log.error('wasm VM failed to start', { plugin: this.cfg.id, error: (e as Error).message });
    }
  }

  /** The VM failed at run time: record it (the filter applies the failure strategy). */
  vmFailed(reason: string): void {
    if (this.state.kind === 'ready' && this.state.vm.failed) this.state = { kind: 'vm-failed', reason };
  }

  /** FAIL_RELOAD: a fresh VM from the same module (one restart at a time). */
  restart(): Promise<void> {
    if (!this.restarting) {
      this.restarts++;
      if (this.state.kind === 'ready') this.state.vm.kill();
      this.state = { kind: 'loading' };
      this.restarting = (this.bytes ? this.startVm() : this.load()).finally(() => (this.restarting = undefined));
    }
    return this.restarting;
  }

  private retired = false;

  retire(): void {
    this.retired = true;
    if (this.state.kind === 'ready') this.state.vm.kill();
  }
}

/** The identity of a plugin definition: same key → the running VM is kept across snapshots. */
function pluginKey(c: WasmPluginConfig): string {
  return createHash('sha256')
    .update(JSON.stringify([c.id, c.url, c.sha256, c.imagePullPolicy, c.imagePullSecret, c.imagePullSecretFile, c.pluginConfig, c.pluginName, c.vmId, c.env]))
    .digest('hex');
}

export class WasmManager {
  readonly cache: ModuleCache;
  readonly shared = new SharedStore();
  readonly log: WasmLogger;
  private readonly plugins = new Map<string, PluginHandle>();
  private clusters = new Map<string, Cluster>();
  private latest = '';
  private gcTimer: NodeJS.Timeout | undefined;
  /** Custom metrics per plugin id: name → value (Envoy prefixes them `wasmcustom.`). */
  readonly metricValues = new Map<string, Map<string, MetricValue>>();
  readonly failures = new Map<string, number>();

  constructor(readonly opts: WasmManagerOptions = {}) {
    this.cache = opts.cache ?? new ModuleCache();
    this.log = opts.log ?? { info() {}, warn() {}, error() {} };
  }

  /** The handle of a snapshot's plugin (created and loading on first sight). */
  plugin(cfg: WasmPluginConfig, snapshot: Snapshot): PluginHandle {
    this.observe(snapshot);
    const key = pluginKey(cfg);
    let h = this.plugins.get(key);
    if (!h) {
      h = new PluginHandle(cfg, this);
      this.plugins.set(key, h);
    }
    h.lastUsed = snapshot.version;
    return h;
  }

  /** Every handle, for readiness checks and tests. */
  handles(): PluginHandle[] {
    return [...this.plugins.values()];
  }

  private observe(snapshot: Snapshot): void {
    if (snapshot.version === this.latest) return;
    this.latest = snapshot.version;
    this.clusters = new Map(snapshot.clusters.map((c) => [c.name, c]));
    // Plugins the new snapshot no longer uses are stopped after a grace period.
    if (this.gcTimer) clearTimeout(this.gcTimer);
    this.gcTimer = setTimeout(() => this.collect(), this.opts.retireMs ?? 10_000);
    this.gcTimer.unref();
  }

  private collect(): void {
    for (const [k, h] of this.plugins) {
      if (h.lastUsed !== this.latest) {
        h.retire();
        this.plugins.delete(k);
        this.metricValues.delete(h.cfg.id);
      }
    }
  }

  async fetchModule(cfg: WasmPluginConfig): Promise<Uint8Array> {
    let dockerConfig: string | undefined;
    if (cfg.imagePullSecret) {
      const dir = this.opts.secretsDir ?? 'certs/out/credentials';
      const file = cfg.imagePullSecretFile ?? join(dir, cfg.imagePullSecret, '.dockerconfigjson');
      try {
        dockerConfig = await readFile(file, 'utf8');
      } catch (e) {
        throw new Error(`imagePullSecret ${cfg.imagePullSecret}: cannot read ${file}: ${(e as Error).message}`);
      }
    }
    return this.cache.fetch({ url: cfg.url, sha256: cfg.sha256, pullPolicy: cfg.imagePullPolicy, dockerConfig, timeoutMs: this.opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS });
  }

  settingsFor(cfg: WasmPluginConfig): EngineSettings {
    const env: Record<string, string> = {};
    const hostEnv = this.opts.hostEnv ?? process.env;
    for (const e of cfg.env) {
      const v = e.valueFrom === 'HOST' ? hostEnv[e.name] : e.value;
      if (v !== undefined) env[e.name] = v;
    }
    return {
      rootId: cfg.pluginName,
      vmId: cfg.vmId,
      pluginName: cfg.id.startsWith('WasmPlugin/') ? cfg.id.slice('WasmPlugin/'.length).replace('/', '.') : cfg.name,
      pluginConfig: Buffer.from(cfg.pluginConfig),
      vmConfig: new Uint8Array(0),
      env,
      logLevel: LogLevel[this.opts.logLevel ?? 'info'],
      node: this.opts.node ?? { id: 'portico', cluster: 'portico', metadata: {} },
      memoryLimitBytes: this.opts.memoryLimitBytes ?? 256 << 20,
    };
  }

  hostFor(h: PluginHandle): VmHost {
    return {
      services: this.shared.services((name) => this.clusters.has(name)),
      httpCall: (req) => this.httpCall(req),
      log: (level, _plugin, message) => {
        const fields = { plugin: h.cfg.id };
        if (level === 'error' || level === 'critical') this.log.error(message, fields);
        else if (level === 'warn') this.log.warn(message, fields);
        else if (level === 'info') this.log.info(message, fields);
        else this.log.debug?.(message, fields);
      },
      metrics: (_plugin, values) => {
        let m = this.metricValues.get(h.cfg.id);
        if (!m) this.metricValues.set(h.cfg.id, (m = new Map()));
        for (const v of values) m.set(v.name, v);
      },
      failed: (_plugin, reason) => {
        this.failures.set(h.cfg.id, (this.failures.get(h.cfg.id) ?? 0) + 1);
        h.vmFailed(reason);
      },
    };
  }

  private async httpCall(req: HttpCallRequest): Promise<HttpCallAnswer> {
    const c = this.clusters.get(req.cluster);
    if (!c) throw new Error(`no cluster ${req.cluster}`);
    const ep = c.endpoints.length ? c.endpoints[Math.floor(Math.random() * c.endpoints.length)]! : { address: c.host, port: c.port };
    const pseudo = new Map(req.headers.filter((p) => p[0].startsWith(':')));
    const headers: Record<string, string> = {};
    for (const [k, v] of req.headers) if (!k.startsWith(':')) headers[k] = v;
    headers.host = pseudo.get(':authority') ?? c.host;
    const scheme = c.protocol === 'HTTPS' ? 'https' : 'http';
    const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
    const timeout = req.timeoutMs || 5000;
    const res = await request(`${scheme}://${host}:${ep.port}${pseudo.get(':path') ?? '/'}`, {
      method: (pseudo.get(':method') ?? 'GET') as 'GET',
      headers,
      body: req.body.length ? Buffer.from(req.body) : undefined,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    const out: Pairs = [[':status', String(res.statusCode)]];
    for (const [k, v] of Object.entries(res.headers)) {
      if (v === undefined) continue;
      for (const x of Array.isArray(v) ? v : [v]) out.push([k, x]);
    }
    return { headers: out, body };
  }

  /** Prometheus text for the plugins' custom metrics and the host's own. */
  prometheus(): string {
    const lines: string[] = [];
    const custom = new Map<string, { type: number; rows: string[] }>();
    for (const [plugin, m] of this.metricValues) {
      for (const v of m.values()) {
        // Envoy exposes proxy_define_metric names under the `wasmcustom` prefix.
        const name = `envoy_wasmcustom_${v.name.replace(/[^a-zA-Z0-9_]/g, '_')}`;
        let e = custom.get(name);
        if (!e) custom.set(name, (e = { type: v.type, rows: [] }));
        e.rows.push(`${name}{wasm_plugin="${plugin}"} ${v.value}`);
      }
    }
    for (const [name, e] of [...custom].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      lines.push(`# TYPE ${name} ${e.type === 0 ? 'counter' : 'gauge'}`, ...e.rows);
    }
    lines.push('# TYPE portico_wasm_vm_failures_total counter');
    for (const [plugin, n] of this.failures) lines.push(`portico_wasm_vm_failures_total{wasm_plugin="${plugin}"} ${n}`);
    lines.push('# TYPE portico_wasm_vm_memory_bytes gauge');
    for (const h of this.plugins.values()) if (h.state.kind === 'ready') lines.push(`portico_wasm_vm_memory_bytes{wasm_plugin="${h.cfg.id}"} ${h.state.vm.memoryBytes}`);
    return `${lines.join('\n')}\n`;
  }

  /**
   * Exposes the plugins' metrics through a Prometheus registry with collected families (the
   * gateway's /stats/prometheus): custom metrics as `portico_wasm_plugin_metric{wasm_plugin,name}`
   * (names are the plugin's, unknown in advance), VM failures and linear memory per plugin.
   */
  register(registry: MetricsRegistry): void {
    registry.gauge('portico_wasm_plugin_metric', 'Metrics Wasm plugins define (proxy_define_metric), by plugin and metric name.', ['wasm_plugin', 'name'], (set) => {
      for (const [plugin, m] of this.metricValues) for (const v of m.values()) set({ wasm_plugin: plugin, name: v.name }, v.value);
    });
    registry.collectedCounter('portico_wasm_vm_failures_total', 'Wasm VMs that failed (trap, exit, call budget, memory limit).', ['wasm_plugin'], (set) => {
      for (const [plugin, n] of this.failures) set({ wasm_plugin: plugin }, n);
    });
    registry.gauge('portico_wasm_vm_memory_bytes', 'Linear memory of each running Wasm VM.', ['wasm_plugin'], (set) => {
      for (const h of this.plugins.values()) if (h.state.kind === 'ready') set({ wasm_plugin: h.cfg.id }, h.state.vm.memoryBytes);
    });
  }

  close(): void {
    if (this.gcTimer) clearTimeout(this.gcTimer);
    for (const h of this.plugins.values()) h.retire();
    this.plugins.clear();
  }
}
