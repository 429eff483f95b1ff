/**
 * The telemetry composition root: `createTelemetry(opts)` builds Istio's metrics, tracing (span
 * per request, W3C + B3 propagation, OTLP export, embedded Jaeger-API trace store) and access
 * logs behind the `Telemetry` seam of hooks.ts, plus the small metrics server (Istio's :15020
 * `/stats/prometheus`). Per request: one observer object; metrics are cached series increments;
 * spans and log lines are only built for sampled / logged requests and shipped off the path.
 *
 * Wiring (CLI):
 *   const tel = createTelemetry({ proxy: { workload: 'istio-ingressgateway', namespace }, ... });
 *   const runtime = new GatewayRuntime(snapshot, { telemetry: tel, ... });
 *   tel.attach(runtime);                       // labels from the live snapshot, pool/balancer gauges
 *   await tel.listen(15020);                   // /stats/prometheus (+ Jaeger API, /v1/traces)
 *   on reload failure: tel.configReloadFailed();   on shutdown: await tel.close();
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { hostname, networkInterfaces } from 'node:os';
import type { Cluster, Endpoint } from '../../config/snapshot.ts';
import type { Snapshot } from '../../config/snapshot.ts';
import type { ClusterStats } from '../balancer.ts';
import type { DownstreamRequest } from '../forward.ts';
import type { HeaderMap } from '../headers.ts';
import type { RequestRecord } from '../proxy.ts';
import { createAccessLog, redactQuery, type AccessLog, type AccessLogOptions } from './access-log.ts';
import { certificatesInUse } from './certs.ts';
import type { ListenerFacts, RequestObserver, Telemetry } from './hooks.ts';
import { IstioMetrics, type ProxyIdentity, type TcpConnectionMetrics } from './istio-metrics.ts';
import { OtlpExporter, type AttrValue, type SpanData, type SpanKind } from '../../telemetry/otlp.ts';
import { PROMETHEUS_CONTENT_TYPE, Registry, registerProcessMetrics } from '../../lib/metrics.ts';
import { routeOperation } from './operation.ts';
import { decideSampling, extractContext, injectContext, newSpanId, newTraceId, type TraceContext } from '../../telemetry/trace-context.ts';
import { TraceStore } from './trace-store.ts';

/** What telemetry reads from the running gateway (GatewayRuntime satisfies it). */
export interface TelemetrySource {
  table(): { readonly snapshot: Snapshot };
  readonly pools?: { stats(): readonly { origin: string; connected: number; pending: number; running: number }[] };
  readonly balancer?: { stats?(): readonly ClusterStats[] };
}

export interface TracingOptions {
  /** Percentage of requests traced, 0..100 (MeshConfig defaultConfig.tracing.sampling; Istio's default 1). */
  readonly sampling?: number;
  /** OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. */
  readonly otlpEndpoint?: string;
  /** Keep spans in an embedded store served with Jaeger's API (default true). Pass a store to share one. */
  readonly store?: TraceStore | boolean;
  /** Jaeger service name (default `<canonical service>.<namespace>`, as Istio names proxies). */
  readonly serviceName?: string;
  /** Span kind of this proxy's spans: CLIENT for gateways/outbound (Istio's), SERVER for inbound. */
  readonly spanKind?: SpanKind;
  /** Envoy's node id tag (default `router~<ip>~<workload>.<ns>~<ns>.svc.cluster.local`). */
  readonly nodeId?: string;
}

export interface TelemetryOptions {
  /** This proxy's identity (default the istio-ingressgateway in istio-system). */
  readonly proxy?: ProxyIdentity;
  readonly reporter?: 'source' | 'destination';
  readonly clusterId?: string;
  readonly trustDomain?: string;
  /** Which endpoints this proxy originates ISTIO_MUTUAL to (gateway/mtls.ts `wantsIstioMutual`), for `source_principal`. */
  readonly upstreamMtls?: (cluster: Cluster, endpoint: Endpoint) => boolean;
  /** This proxy's address, Jaeger's process tag `ip` (default the first non-internal IPv4). */
  readonly ip?: string;
  /** false = no tracing at all (no propagation either). */
  readonly tracing?: TracingOptions | false;
  /** MeshConfig access log settings; absent or empty file = off. */
  readonly accessLog?: AccessLogOptions;
}

export interface PorticoTelemetry extends Telemetry {
  readonly registry: Registry;
  readonly metrics: IstioMetrics;
  /** The embedded trace store (when enabled). */
  readonly traces?: TraceStore;
  readonly exporter?: OtlpExporter;
  readonly accessLog?: AccessLog;
  /** Connects to the running gateway: live snapshot for labels, pool/balancer/cert/config gauges. */
  attach(source: TelemetrySource): void;
  /** L4 proxying reports connections and bytes through this. */
  tcpConnection(cluster: string | undefined, upstream?: string, flags?: string): TcpConnectionMetrics;
  /** Count a config reload that did not apply. */
  configReloadFailed(): void;
  /** Prometheus text at `/stats/prometheus` (and `/metrics`); Jaeger API and OTLP ingest when a store exists. Returns false for other paths. */
  metricsHandler(req: IncomingMessage, res: ServerResponse): boolean;
  /** Starts the metrics server (Istio's :15020). */
  listen(port?: number, host?: string): Promise<{ server: Server; port: number }>;
  /** Flushes exports and logs, stops the metrics server. */
  close(): Promise<void>;
}

const DEFAULT_PROXY: ProxyIdentity = { workload: 'istio-ingressgateway', namespace: 'istio-system', app: 'istio-ingressgateway' };

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** The first non-internal IPv4 address (a pod's IP), else loopback. */
function firstIp(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

class Observer implements RequestObserver {
  /** Set when upstream headers were written (the ids sent upstream). */
  spanId?: string;
  traceId?: string;
  requestId?: string;
  constructor(
    readonly t: TelemetryImpl,
    readonly req: DownstreamRequest,
    readonly listener: ListenerFacts,
    readonly ctx: TraceContext | undefined,
    readonly sampled: boolean,
  ) {}

  upstreamHeaders(headers: HeaderMap): void {
    if (this.t.tracing) {
      if (!this.sampled && !this.ctx?.traceId) {
        // Unsampled new trace: only the decision travels (W3C + B3 flag), so the next hops do not
        // sample on their own; full ids would cost five headers per request for nothing.
        headers['traceparent'] = `00-${newTraceId()}-${newSpanId()}-00`;
        headers['x-b3-sampled'] = '0';
        if (this.ctx?.b3Single) headers['b3'] = '0';
        const rid = headers['x-request-id'];
        if (typeof rid === 'string') this.requestId = rid;
        return;
      }
      const traceId = this.ctx?.traceId || newTraceId();
      const spanId = newSpanId();
      this.traceId = traceId;
      this.spanId = spanId;
      injectContext(headers, traceId, spanId, this.ctx?.parentSpanId, this.sampled, this.ctx?.b3Single === true);
    }
    const rid = headers['x-request-id'];
    if (typeof rid === 'string') this.requestId = rid;
  }

  end(record: RequestRecord): void {
    this.t.finish(this, record);
  }
}

class TelemetryImpl implements PorticoTelemetry {
  readonly registry = new Registry();
  readonly metrics: IstioMetrics;
  readonly traces?: TraceStore;
  readonly exporter?: OtlpExporter;
  readonly accessLog?: AccessLog;
  readonly tracing: boolean;
  private readonly sampling: number;
  private readonly serviceName: string;
  private readonly spanKind: SpanKind;
  private readonly nodeId: string;
  private readonly proxy: ProxyIdentity;
  /** Jaeger `processes[].tags` / OTLP resource attributes of this proxy's spans. */
  private readonly processTags: readonly (readonly [string, AttrValue])[];
  private source?: TelemetrySource;
  private readonly reloadFailures;
  private server?: Server;
  private readonly hostPorts = new Map<string, string>();
  /** Shared observer when neither tracing nor access logs need per-request state. */
  private readonly plain?: RequestObserver;

  constructor(opts: TelemetryOptions) {
    this.proxy = opts.proxy ?? DEFAULT_PROXY;
    registerProcessMetrics(this.registry, 'proxy');
    this.metrics = new IstioMetrics(this.registry, { proxy: this.proxy, reporter: opts.reporter, clusterId: opts.clusterId, trustDomain: opts.trustDomain, upstreamMtls: opts.upstreamMtls });
    const tr = opts.tracing === false ? undefined : (opts.tracing ?? {});
    this.tracing = tr !== undefined;
    const sampling = tr?.sampling ?? 1;
    if (!(sampling >= 0 && sampling <= 100)) throw new Error(`tracing.sampling must be a percentage 0..100, got ${sampling}`);
    this.sampling = sampling;
    const p = this.proxy;
    this.serviceName = tr?.serviceName ?? `${p.canonicalService ?? p.app ?? p.workload}.${p.namespace}`;
    this.spanKind = tr?.spanKind ?? (opts.reporter === 'destination' ? 'SERVER' : 'CLIENT');
    const ip = opts.ip ?? firstIp();
    this.processTags = [
      ['hostname', hostname()],
      ['ip', ip],
    ];
    this.nodeId = tr?.nodeId ?? `router~${ip}~${hostname()}.${p.namespace}~${p.namespace}.svc.cluster.local`;
    if (tr && tr.store !== false) this.traces = tr.store instanceof TraceStore ? tr.store : new TraceStore();
    if (tr?.otlpEndpoint) this.exporter = new OtlpExporter({ endpoint: tr.otlpEndpoint, resource: { 'service.namespace': p.namespace } });
    if (opts.accessLog && opts.accessLog.file) this.accessLog = createAccessLog(opts.accessLog);
    this.reloadFailures = this.registry.counter('portico_config_reload_failures_total', 'Config reloads that failed to compile or apply (the previous config stays).').with();
    this.reloadFailures.value = 0;
    this.registerHealth();
    if (!this.tracing && !this.accessLog) {
      this.plain = { end: (rec) => this.metrics.record(rec, this.source?.table().snapshot) };
    }
  }

  private registerHealth(): void {
    const r = this.registry;
    r.gauge('portico_config_version_info', 'The config snapshot version being served (value is always 1).', ['version'], (set) => {
      const s = this.source?.table().snapshot;
      if (s) set({ version: s.version }, 1);
    });
    r.gauge('portico_upstream_pool_connections', 'Upstream connection pool state by origin.', ['origin', 'state'], (set) => {
      for (const p of this.source?.pools?.stats() ?? []) {
        // Number(): an HTTP/2 origin is one undici Client, whose `stats.connected` is a boolean
        // at run time; printed as `true` it made Prometheus reject the whole scrape.
        set({ origin: p.origin, state: 'connected' }, Number(p.connected));
        set({ origin: p.origin, state: 'pending' }, Number(p.pending));
        set({ origin: p.origin, state: 'running' }, Number(p.running));
      }
    });
    const clusterStats = (): readonly ClusterStats[] => this.source?.balancer?.stats?.() ?? [];
    r.gauge('portico_upstream_rq_active', 'Requests in flight per upstream cluster.', ['cluster'], (set) => {
      for (const c of clusterStats()) set({ cluster: c.name }, c.active);
    });
    r.gauge('portico_upstream_endpoint_healthy', 'Endpoint health per cluster (1 healthy, 0 ejected or unhealthy).', ['cluster', 'endpoint'], (set) => {
      for (const c of clusterStats()) for (const e of c.endpoints) set({ cluster: c.name, endpoint: `${e.address}:${e.port}` }, e.health === 'HEALTHY' ? 1 : 0);
    });
    r.collectedCounter('portico_upstream_ejections_total', 'Outlier ejections per cluster since start.', ['cluster'], (set) => {
      for (const c of clusterStats()) set({ cluster: c.name }, c.endpoints.reduce((n, e) => n + e.ejections, 0));
    });
    r.collectedCounter('portico_upstream_rq_pending_overflow_total', 'Requests refused by circuit breaking (503 UO) per cluster.', ['cluster'], (set) => {
      for (const c of clusterStats()) set({ cluster: c.name }, c.overflows);
    });
    r.gauge('portico_certificate_expiry_seconds', 'Seconds until each served certificate expires (negative once expired).', ['file', 'subject'], (set) => {
      const s = this.source?.table().snapshot;
      if (!s) return;
      for (const c of certificatesInUse(s)) if (c.expiresInSeconds !== undefined) set({ file: c.file, subject: c.subject ?? '' }, c.expiresInSeconds);
    });
    r.collectedCounter('portico_traces_exported_spans_total', 'Spans exported over OTLP, by outcome.', ['outcome'], (set) => {
      if (!this.exporter) return;
      set({ outcome: 'exported' }, this.exporter.exported);
      set({ outcome: 'failed' }, this.exporter.failed);
      set({ outcome: 'dropped' }, this.exporter.dropped);
    });
  }

  attach(source: TelemetrySource): void {
    this.source = source;
  }

  begin(req: DownstreamRequest, listener: ListenerFacts): RequestObserver {
    if (this.plain) return this.plain;
    let ctx: TraceContext | undefined;
    let sampled = false;
    if (this.tracing) {
      ctx = extractContext(req.headers);
      sampled = decideSampling(ctx, req.headers, this.sampling);
    }
    return new Observer(this, req, listener, ctx, sampled);
  }

  finish(o: Observer, rec: RequestRecord): void {
    this.metrics.record(rec, this.source?.table().snapshot);
    if (o.sampled) this.span(o, rec);
    this.accessLog?.log({ req: o.req, record: rec, requestId: o.requestId, traceId: o.traceId ?? (o.ctx?.traceId || undefined) });
  }

  /**
   * Istio's route decorator (operation.ts): `host:port/path`, `prefix*` for a prefix match; for a
   * request no route took, the cluster's `host:port/*` or `unrouted`.
   */
  private operation(o: Observer, rec: RequestRecord): string {
    const route = rec.route?.route;
    if (route) return routeOperation(route, rec.route!.match, o.listener.number ?? o.listener.bindPort);
    if (rec.cluster) {
      let op = this.hostPorts.get(rec.cluster);
      if (op === undefined) {
        const parts = rec.cluster.split('|');
        op = parts.length === 4 ? `${parts[3]}:${parts[1]}/*` : `${rec.cluster}/*`;
        if (this.hostPorts.size < 10_000) this.hostPorts.set(rec.cluster, op);
      }
      return op;
    }
    return 'unrouted';
  }

  private span(o: Observer, rec: RequestRecord): void {
    if (!this.traces && !this.exporter) return;
    const traceId = o.traceId ?? (o.ctx?.traceId || newTraceId());
    const spanId = o.spanId ?? newSpanId();
    const p = this.proxy;
    const scheme = o.listener.scheme;
    const requestId = o.requestId ?? (typeof o.req.headers['x-request-id'] === 'string' ? o.req.headers['x-request-id'] : undefined);
    const ua = o.req.headers['user-agent'];
    const peer = o.req.socket?.remoteAddress;
    const attributes: [string, AttrValue][] = [
      ['node_id', this.nodeId],
      ['zone', ''],
      ['istio.canonical_service', p.canonicalService ?? p.app ?? p.workload],
      ['istio.canonical_revision', p.canonicalRevision ?? p.version ?? 'latest'],
      ['istio.namespace', p.namespace],
      ['istio.mesh_id', 'cluster.local'],
      ['guid:x-request-id', requestId ?? ''],
      ['http.url', `${scheme}://${rec.authority}${redactQuery(rec.path)}`.slice(0, 2048)],
      ['http.method', rec.method],
      ['downstream_cluster', '-'],
      ['user_agent', typeof ua === 'string' ? ua.slice(0, 256) : '-'],
      ['http.protocol', rec.protocol],
      ['peer.address', peer ? (peer.startsWith('::ffff:') ? peer.slice(7) : peer) : ''],
      ['request_size', rec.requestBytes],
      ['response_size', rec.responseBytes],
      ['response_flags', rec.flag],
      ['http.status_code', rec.status],
      ['upstream_cluster', rec.cluster ?? '-'],
      ['upstream_cluster.name', rec.cluster ?? '-'],
      ['component', 'proxy'],
    ];
    if (rec.upstream) attributes.push(['upstream_address', rec.upstream]);
    const error = rec.status >= 500 || rec.status === 0;
    if (error) attributes.push(['error', true]);
    const span: SpanData = {
      traceId,
      spanId,
      parentSpanId: o.ctx?.parentSpanId,
      name: this.operation(o, rec),
      kind: this.spanKind,
      startUs: Math.round((performance.timeOrigin + rec.startMs) * 1000),
      durationUs: Math.max(1, Math.round(rec.durationMs * 1000)),
      service: this.serviceName,
      attributes,
      error,
      process: this.processTags,
    };
    this.traces?.add(span);
    this.exporter?.add(span);
  }

  tcpConnection(cluster: string | undefined, upstream?: string, flags?: string): TcpConnectionMetrics {
    return this.metrics.tcpConnection(this.source?.table().snapshot, cluster, upstream, flags);
  }

  configReloadFailed(): void {
    this.reloadFailures.inc();
  }

  metricsHandler(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://metrics');
    if (url.pathname === '/stats/prometheus' || url.pathname === '/metrics') {
      const body = this.registry.render();
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    }
    if (url.pathname === '/healthz/ready') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('LIVE\n');
      return true;
    }
    // The metrics port listens on every interface (Prometheus scrapes it); traces carry request
    // URLs, so the Jaeger API and OTLP ingest answer only local callers (other Portico processes
    // on this host, the admin dashboard).
    if (!isLoopback(req.socket.remoteAddress)) return false;
    return this.traces ? this.traces.handle(req, res, url) : false;
  }

  async listen(port = 15020, host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
    const server = createServer((req, res) => {
      if (!this.metricsHandler(req, res)) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found: try /stats/prometheus\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new Error(`metrics port ${port} is already in use`) : err));
      server.listen(port, host, resolve);
    });
    this.server = server;
    const a = server.address();
    return { server, port: typeof a === 'object' && a ? a.port : port };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.exporter?.close();
    await this.accessLog?.close();
  }
}

/** Builds telemetry for one proxy process. Throws on bad options (sampling, access log format). */
export function createTelemetry(opts: TelemetryOptions = {}): PorticoTelemetry {
  return new TelemetryImpl(opts);
}

export { TraceStore } from './trace-store.ts';
export type { ProxyIdentity, TcpConnectionMetrics } from './istio-metrics.ts';
