/**
 * The gateway runtime: owns the listeners, the current RouteTable and the long-lived state that
 * survives swaps (pools, balancer cursors, certificates). `apply()` is the only way config
 * changes: it builds the new table first and swaps only if that worked.
 */
import { silentLogger, type Logger } from '../lib/log.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { Balancer } from './balancer.ts';
import { HealthChecker, type HealthCheckOptions } from './health.ts';
import { makeHeaderPolicy, type HeaderPolicy } from './headers.ts';
import { openListener, type Listener, type ListenerOptions } from './listeners.ts';
import { UpstreamPools } from './pools.ts';
import type { ProxyDeps, RequestRecord } from './proxy.ts';
import { JwksCache } from './jwt-authn.ts';
import { buildRouteTable, type RouteTable, type RouteTableOptions } from './router.ts';
import type { Telemetry } from './telemetry/hooks.ts';
import { CertStore } from './tls.ts';
import { RateLimiters } from './ratelimit.ts';
import type { WasmManager } from '../wasm/plugins.ts';
import { wasmExtensions } from '../dataplane/filters/wasm.ts';
import type { SessionFastPath } from '../dataplane/filters/session-cache.ts';

/** lib/log.ts's message-first logger (pino underneath, redacted). */
export type GatewayLogger = Logger;

export { silentLogger };

export interface GatewayOptions {
  /** The ext_authz session fast path (dataplane/filters/session-cache.ts): only with the authservice's cookie key. */
  readonly sessionFastPath?: SessionFastPath;
  /** This proxy's labels; Gateways whose selector they satisfy are served. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly headerPolicy?: HeaderPolicy;
  readonly listener?: ListenerOptions;
  readonly logger?: GatewayLogger;
  readonly onRequest?: (record: RequestRecord) => void;
  readonly telemetry?: Telemetry;
  /** This proxy's namespace, for namespace-scoped policies (default istio-system for gateways). */
  readonly namespace?: string;
  /** The gateway workload's name, matched by policies' `targetRefs` (default istio-ingressgateway). */
  readonly workloadName?: string;
  /** Sidecar: the workload's labels and namespace, seen by `sourceLabels`/`sourceNamespace` route matches. */
  readonly source?: { readonly labels: Readonly<Record<string, string>>; readonly namespace: string };
  /** Serve the mesh VirtualServices as an outbound HTTP proxy (sidecar mode). */
  readonly meshOutbound?: { readonly port: number; readonly bind?: string };
  /** Active TCP health checks of registry endpoints (clusters with outlierDetection); off by default. */
  readonly healthChecks?: HealthCheckOptions;
  /** How long close() lets in-flight requests finish. */
  readonly drainMs?: number;
  /** The process's Wasm plugin host; WasmPlugins of the snapshot run only when given. */
  readonly wasm?: WasmManager;
}

/**
 * The labels of Istio's own ingress gateway pods (its Helm chart sets both): Gateways select
 * `istio: ingressgateway`, while Kubeflow's gateway policies select `app: istio-ingressgateway`.
 */
export const DEFAULT_GATEWAY_LABELS: Readonly<Record<string, string>> = Object.freeze({ app: 'istio-ingressgateway', istio: 'ingressgateway' });

/** The gateway Deployment's name, for policies that select it by `targetRefs`. */
export const DEFAULT_GATEWAY_WORKLOAD = 'istio-ingressgateway';

export class GatewayRuntime {
  private current: RouteTable;
  private readonly listeners = new Map<number, Listener>();
  readonly pools = new UpstreamPools();
  readonly balancer = new Balancer();
  readonly certs = new CertStore();
  readonly rateLimiters = new RateLimiters();
  /** JWKS key sets of RequestAuthentications, kept across snapshots (no refetch on reload). */
  readonly jwks = new JwksCache();
  private readonly deps: ProxyDeps;
  private readonly labels: Readonly<Record<string, string>>;
  private readonly log: GatewayLogger;
  private swapping: Promise<unknown> = Promise.resolve();

  constructor(
    snapshot: Snapshot,
    private readonly opts: GatewayOptions = {},
  ) {
    this.labels = opts.labels ?? DEFAULT_GATEWAY_LABELS;
    this.log = opts.logger ?? silentLogger;
    this.current = buildRouteTable(snapshot, this.labels, this.tableOptions());
    this.deps = {
      table: () => this.current,
      balancer: this.balancer,
      pools: this.pools,
      headerPolicy: opts.headerPolicy ?? makeHeaderPolicy(),
      onRequest: opts.onRequest,
      telemetry: opts.telemetry,
      source: opts.source,
      onFilterError: (err, filter) => this.log.error('HTTP filter failed; request answered 500', { filter, error: err instanceof Error ? err.message : String(err) }),
    };
    this.certs.onChange = (file, error) => {
      if (error) this.log.warn('certificate change not applied; keeping the previous certificate', { file, error: error.message });
      else {
        this.log.info('certificate reloaded', { file });
        for (const l of this.listeners.values()) {
          const pt = this.current.ports.get(l.bindPort);
          if (pt) l.refreshTls(pt);
        }
      }
    };
  }

  private tableOptions(): RouteTableOptions {
    const m = this.opts.meshOutbound;
    const identity = { namespace: this.opts.namespace ?? 'istio-system', context: 'GATEWAY' as const, workloadName: this.opts.workloadName ?? DEFAULT_GATEWAY_WORKLOAD };
    const chainDeps = {
      jwks: this.jwks,
      pools: this.pools,
      balancer: this.balancer,
      log: (msg: string, fields: Record<string, unknown>) => this.log.info(msg, fields),
      ...(this.opts.wasm ? { extensions: wasmExtensions(this.opts.wasm) } : {}),
      ...(this.opts.sessionFastPath ? { sessions: this.opts.sessionFastPath } : {}),
    };
    const base = { identity, rateLimiters: this.rateLimiters, chainDeps };
    return m ? { ...base, meshOutboundPort: m.port, meshOutboundBind: m.bind } : base;
  }

  /** The table requests are routed with right now. */
  table(): RouteTable {
    return this.current;
  }

  /** Ports being served, bind port → actual port. */
  ports(): Map<number, number> {
    return new Map([...this.listeners.values()].map((l) => [l.bindPort, l.port()]));
  }

  private healthChecker: HealthChecker | undefined;

  async start(): Promise<void> {
    await this.reconcile(this.current);
    if (this.opts.healthChecks) {
      this.healthChecker = new HealthChecker(this.balancer, () => this.current.clusters.values(), this.opts.healthChecks);
      this.healthChecker.start();
    }
    if (this.listeners.size === 0) {
      this.log.warn('no Gateway matches this proxy\'s labels; nothing to serve', { labels: this.labels });
    }
  }

  /**
   * Swaps in a new snapshot. Opens listeners for new ports before the swap and closes the ones
   * no longer named after it; ports that stay keep their sockets and connections. Throws (and
   * keeps the old table) when the snapshot cannot be served, e.g. a port is taken.
   */
  apply(snapshot: Snapshot): Promise<void> {
    const run = this.swapping.then(async () => {
      if (snapshot.version === this.current.snapshot.version) return;
      const next = buildRouteTable(snapshot, this.labels, this.tableOptions());
      await this.reconcile(next);
      this.log.info('config applied', { version: snapshot.version, ports: [...next.ports.keys()] });
    });
    this.swapping = run.catch(() => undefined);
    return run;
  }

  private async reconcile(next: RouteTable): Promise<void> {
    const opened: Listener[] = [];
    const replaced: Listener[] = [];
    try {
      for (const [port, pt] of next.ports) {
        const existing = this.listeners.get(port);
        if (existing && existing.kind === pt.kind) continue;
        if (existing) {
          // The kind of listener changed on this port: the old server must release it first.
          replaced.push(existing);
          await existing.close(0);
          this.listeners.delete(port);
        }
        opened.push(await openListener(this.deps, pt, this.certs, { logger: this.log, ...this.opts.listener }));
      }
    } catch (err) {
      await Promise.all(opened.map((l) => l.close(0)));
      throw err;
    }
    for (const l of opened) this.listeners.set(l.bindPort, l);
    this.current = next;
    for (const [port, l] of this.listeners) {
      const pt = next.ports.get(port);
      if (pt) {
        if (!opened.includes(l)) l.refreshTls(pt);
      } else {
        this.listeners.delete(port);
        void l.close(this.opts.drainMs ?? 5_000);
      }
    }
  }

  /** Stops accepting, lets in-flight requests finish up to `drainMs`, then closes pools. */
  async close(drainMs = this.opts.drainMs ?? 5_000): Promise<void> {
    await this.healthChecker?.stop();
    const all = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all(all.map((l) => l.close(drainMs)));
    this.certs.close();
    await this.pools.close();
  }
}
