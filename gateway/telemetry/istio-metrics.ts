/**
 * Istio's standard metrics (https://istio.io/latest/docs/reference/config/metrics/) with Istio's
 * names, labels and default buckets. Label values come only from config (this proxy's identity,
 * the snapshot's clusters, services and workloads) and bounded values (status codes, Portico's
 * own response flags): never from what a client sends, so cardinality stays bounded.
 *
 * Label sets are resolved once per (cluster, endpoint) and the series objects cached per
 * (status, grpc, flags), so recording a request is a few map lookups and increments.
 */
import type { Cluster, Endpoint, Snapshot } from '../../config/snapshot.ts';
import type { RequestRecord } from '../proxy.ts';
import type { Counter, CounterSeries, Histogram, HistogramSeries, Labels, Registry } from '../../lib/metrics.ts';

/** Istio's default buckets for istio_request_duration_milliseconds. */
export const DURATION_BUCKETS_MS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's default buckets for istio_request_bytes / istio_response_bytes: 1 .. 10^9, ×10. */
export const BYTES_BUCKETS: readonly number[] = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

const PEER_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_service_name',
  'destination_service_namespace',
  'destination_cluster',
] as const;

export const HTTP_LABELS: readonly string[] = [...PEER_LABELS, 'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'];
export const TCP_LABELS: readonly string[] = [...PEER_LABELS, 'request_protocol', 'response_flags', 'connection_security_policy'];

/** Istio's HTTP families (names, help, labels, buckets), once per registry. */
export interface IstioHttpFamilies {
  readonly requests: Counter;
  readonly duration: Histogram;
  readonly requestBytes: Histogram;
  readonly responseBytes: Histogram;
}

const httpFamilies = new WeakMap<Registry, IstioHttpFamilies>();

/**
 * The `istio_requests_total` / duration / size families of `registry`, created on first use. A
 * sidecar's outbound (reporter `source`) and inbound (reporter `destination`) sides share them,
 * so one process has one registry and one exposition.
 */
export function istioHttpFamilies(registry: Registry): IstioHttpFamilies {
  let f = httpFamilies.get(registry);
  if (!f) {
    f = {
      requests: registry.counter('istio_requests_total', 'Requests handled by this proxy.', HTTP_LABELS),
      duration: registry.histogram('istio_request_duration_milliseconds', 'Request duration in milliseconds.', HTTP_LABELS, DURATION_BUCKETS_MS),
      requestBytes: registry.histogram('istio_request_bytes', 'HTTP request body sizes.', HTTP_LABELS, BYTES_BUCKETS),
      responseBytes: registry.histogram('istio_response_bytes', 'HTTP response body sizes.', HTTP_LABELS, BYTES_BUCKETS),
    };
    httpFamilies.set(registry, f);
  }
  return f;
}

/** Who this proxy is: the `source_*` labels of a gateway / outbound sidecar, `destination_*` of an inbound one. */
export interface ProxyIdentity {
  /** Workload name, e.g. `istio-ingressgateway`. */
  readonly workload: string;
  readonly namespace: string;
  /** `app` label (defaults to the workload name). */
  readonly app?: string;
  readonly version?: string;
  /** SPIFFE id, when the proxy has one. */
  readonly principal?: string;
  readonly canonicalService?: string;
  readonly canonicalRevision?: string;
}

export interface IstioMetricsOptions {
  readonly proxy: ProxyIdentity;
  /**
   * `source` for gateways and client-side sidecars (Istio reports ingress gateway traffic as
   * `reporter="source"`), `destination` for a sidecar's inbound side.
   */
  readonly reporter?: 'source' | 'destination';
  /** Istio's cluster id label value (default `Kubernetes`). */
  readonly clusterId?: string;
  /** For `spiffe://<trustDomain>/ns/<ns>/sa/<sa>` principals (default cluster.local). */
  readonly trustDomain?: string;
  /**
   * Whether this proxy originates ISTIO_MUTUAL to an endpoint (gateway/mtls.ts `wantsIstioMutual`).
   * Given, `source_principal` is the proxy's principal only on series of endpoints it talks mTLS
   * to (Istio reads it off the upstream connection's local certificate), `unknown` elsewhere.
   * Absent, a proxy with a principal reports it on every series.
   */
  readonly upstreamMtls?: (cluster: Cluster, endpoint: Endpoint) => boolean;
}

const U = 'unknown';

interface SeriesSet {
  readonly requests: CounterSeries;
  readonly duration: HistogramSeries;
  readonly requestBytes: HistogramSeries;
  readonly responseBytes: HistogramSeries;
}

/** The destination side of a label set, plus its series cache. */
interface Dest {
  readonly labels: Record<string, string>;
  /** (status | grpc << 10) → flags → series. */
  readonly series: Map<number, Map<string, SeriesSet>>;
  readonly retries?: CounterSeries;
}

interface ClusterDests {
  readonly cluster: Dest;
  /** `address:port` → the endpoint's own labels. */
  readonly endpoints: Map<string, Dest>;
}

/** The short name Istio reports as destination_service_name. */
function serviceName(host: string): string {
  const i = host.indexOf('.svc.');
  return i > 0 ? host.slice(0, host.indexOf('.')) : host;
}

function workloadName(key: string | undefined): string | undefined {
  if (!key) return undefined;
  const slash = key.indexOf('/');
  return slash >= 0 ? key.slice(slash + 1) : key;
}

function shared(values: readonly (string | undefined)[]): string | undefined {
  if (values.length === 0) return undefined;
  const first = values[0];
  return values.every((v) => v === first) ? first : undefined;
}

export class IstioMetrics {
  private readonly requests;
  private readonly duration;
  private readonly requestBytes;
  private readonly responseBytes;
  private readonly tcpSent;
  private readonly tcpReceived;
  private readonly tcpOpened;
  private readonly tcpClosed;
  private readonly retries;
  private readonly source: Record<string, string>;
  private snapshot: Snapshot | undefined;
  private clusters = new Map<string, ClusterDests>();
  private readonly unknownDest: Dest;
  /** Per destination label set and flags: the TCP counters, resolved once. */
  private readonly tcpSeries = new WeakMap<Dest, Map<string, TcpConnectionMetrics>>();

  constructor(
    registry: Registry,
    private readonly opts: IstioMetricsOptions,
  ) {
    ({ requests: this.requests, duration: this.duration, requestBytes: this.requestBytes, responseBytes: this.responseBytes } = istioHttpFamilies(registry));
    this.tcpSent = registry.counter('istio_tcp_sent_bytes_total', 'Bytes sent to the downstream during TCP connections.', TCP_LABELS);
    this.tcpReceived = registry.counter('istio_tcp_received_bytes_total', 'Bytes received from the downstream during TCP connections.', TCP_LABELS);
    this.tcpOpened = registry.counter('istio_tcp_connections_opened_total', 'TCP connections opened.', TCP_LABELS);
    this.tcpClosed = registry.counter('istio_tcp_connections_closed_total', 'TCP connections closed.', TCP_LABELS);
    this.retries = registry.counter('portico_upstream_retries_total', 'Upstream request retries (attempts beyond the first).', ['cluster']);
    const p = opts.proxy;
    const app = p.app ?? p.workload;
    this.source = {
      reporter: opts.reporter ?? 'source',
      source_workload: p.workload,
      source_canonical_service: p.canonicalService ?? app,
      source_canonical_revision: p.canonicalRevision ?? p.version ?? 'latest',
      source_workload_namespace: p.namespace,
      source_principal: p.principal !== undefined && opts.upstreamMtls === undefined ? p.principal : U,
      source_app: app,
      source_version: p.version ?? U,
      source_cluster: opts.clusterId ?? 'Kubernetes',
    };
    this.unknownDest = this.makeDest({}, undefined);
  }

  private makeDest(dest: Record<string, string>, cluster: string | undefined): Dest {
    const labels: Record<string, string> = {
      ...this.source,
      destination_workload: U,
      destination_workload_namespace: U,
      destination_principal: U,
      destination_app: U,
      destination_version: U,
      destination_service: U,
      destination_canonical_service: U,
      destination_canonical_revision: 'latest',
      destination_service_name: U,
      destination_service_namespace: U,
      destination_cluster: this.opts.clusterId ?? 'Kubernetes',
      ...dest,
    };
    return { labels, series: new Map(), retries: cluster ? this.retries.with({ cluster }) : undefined };
  }

  /** Rebuilds the (cluster, endpoint) → labels cache for a new snapshot. Series are kept. */
  private resolve(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    const services = new Map(snapshot.services.map((s) => [s.host, s]));
    const td = this.opts.trustDomain ?? 'cluster.local';
    const clusters = new Map<string, ClusterDests>();
    for (const c of snapshot.clusters) clusters.set(c.name, this.clusterDests(c, services.get(c.host)?.namespace, td));
    this.clusters = clusters;
  }

  private clusterDests(c: Cluster, svcNamespace: string | undefined, td: string): ClusterDests {
    const base = {
      destination_service: c.host,
      destination_service_name: serviceName(c.host),
      destination_service_namespace: svcNamespace ?? U,
      destination_workload_namespace: svcNamespace ?? U,
    };
    const eps = c.endpoints;
    const principal = this.opts.proxy.principal;
    const mtls = this.opts.upstreamMtls;
    const mutual = (e: Endpoint): boolean => principal !== undefined && mtls !== undefined && mtls(c, e);
    const app = shared(eps.map((e) => e.labels.app));
    const version = shared(eps.map((e) => e.labels.version));
    const clusterLevel: Record<string, string> = { ...base };
    if (app) clusterLevel.destination_app = clusterLevel.destination_canonical_service = app;
    if (version) clusterLevel.destination_version = clusterLevel.destination_canonical_revision = version;
    // Requests that never reached an endpoint (fault aborts) carry the principal when every endpoint is mTLS.
    if (eps.length > 0 && eps.every(mutual)) clusterLevel.source_principal = principal!;
    const cluster = this.makeDest(clusterLevel, c.name);
    const endpoints = new Map<string, Dest>();
    for (const e of eps) {
      const l = e.labels;
      const ns = e.workload?.split('/')[0] ?? svcNamespace;
      const d: Record<string, string> = { ...clusterLevel };
      if (mutual(e)) d.source_principal = principal!;
      else if (mtls !== undefined) d.source_principal = U;
      const wl = l['service.istio.io/workload-name'] ?? workloadName(e.workload);
      if (wl) d.destination_workload = wl;
      if (ns) d.destination_workload_namespace = ns;
      if (l.app) d.destination_app = l.app;
      if (l.version) d.destination_version = l.version;
      const canonical = l['service.istio.io/canonical-name'] ?? l.app;
      if (canonical) d.destination_canonical_service = canonical;
      const rev = l['service.istio.io/canonical-revision'] ?? l.version;
      if (rev) d.destination_canonical_revision = rev;
      if (e.serviceAccount && ns) d.destination_principal = `spiffe://${td}/ns/${ns}/sa/${e.serviceAccount}`;
      endpoints.set(`${e.address}:${e.port}`, this.makeDest(d, c.name));
    }
    return { cluster, endpoints };
  }

  private dest(snapshot: Snapshot | undefined, cluster: string | undefined, upstream: string | undefined): Dest {
    if (snapshot !== undefined && snapshot !== this.snapshot) this.resolve(snapshot);
    if (cluster === undefined) return this.unknownDest;
    const cd = this.clusters.get(cluster);
    if (!cd) return this.unknownDest;
    return (upstream !== undefined ? cd.endpoints.get(upstream) : undefined) ?? cd.cluster;
  }

  private seriesFor(d: Dest, status: number, grpc: boolean, flags: string): SeriesSet {
    const key = grpc ? status | 1024 : status;
    let byFlags = d.series.get(key);
    if (!byFlags) {
      byFlags = new Map();
      d.series.set(key, byFlags);
    }
    let s = byFlags.get(flags);
    if (!s) {
      const labels: Labels = {
        ...d.labels,
        request_protocol: grpc ? 'grpc' : 'http',
        response_code: String(status),
        grpc_response_status: '',
        response_flags: flags,
        connection_security_policy: (this.opts.reporter ?? 'source') === 'source' ? U : 'none',
      };
      s = {
        requests: this.requests.with(labels),
        duration: this.duration.with(labels),
        requestBytes: this.requestBytes.with(labels),
        responseBytes: this.responseBytes.with(labels),
      };
      byFlags.set(flags, s);
    }
    return s;
  }

  /** Records one finished HTTP request. `snapshot` is the one the request was routed with. */
  record(r: RequestRecord, snapshot: Snapshot | undefined): void {
    const d = this.dest(snapshot, r.cluster, r.upstream);
    const status = Number.isInteger(r.status) && r.status >= 0 && r.status < 1000 ? r.status : 0;
    const s = this.seriesFor(d, status, r.grpc, r.flag);
    s.requests.value++;
    s.duration.observe(r.durationMs);
    s.requestBytes.observe(r.requestBytes);
    s.responseBytes.observe(r.responseBytes);
    if (r.attempts !== undefined && r.attempts > 1 && d.retries) d.retries.value += r.attempts - 1;
  }

  /**
   * For L4 (tcp/tls) proxying: the counters of one connection to `cluster` (an `outbound|…`
   * name), resolved once. Call opened() when the upstream connection is made, sent/received
   * with byte counts (batched is fine), closed() once.
   */
  tcpConnection(snapshot: Snapshot | undefined, cluster: string | undefined, upstream?: string, flags = '-'): TcpConnectionMetrics {
    const d = this.dest(snapshot, cluster, upstream);
    let byFlags = this.tcpSeries.get(d);
    if (!byFlags) this.tcpSeries.set(d, (byFlags = new Map()));
    let m = byFlags.get(flags);
    if (!m) {
      const labels: Labels = { ...d.labels, request_protocol: 'tcp', response_flags: flags, connection_security_policy: (this.opts.reporter ?? 'source') === 'source' ? U : 'none' };
      const sent = this.tcpSent.with(labels);
      const received = this.tcpReceived.with(labels);
      const opened = this.tcpOpened.with(labels);
      const closed = this.tcpClosed.with(labels);
      m = {
        opened: () => opened.inc(),
        closed: () => closed.inc(),
        sent: (n) => sent.inc(n),
        received: (n) => received.inc(n),
      };
      byFlags.set(flags, m);
    }
    return m;
  }
}

export interface TcpConnectionMetrics {
  opened(): void;
  closed(): void;
  /** Bytes sent to the downstream (Istio: "during response"). */
  sent(bytes: number): void;
  /** Bytes received from the downstream. */
  received(bytes: number): void;
}
