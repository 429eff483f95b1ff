/**
 * Sidecar mode: one workload's inbound and outbound proxy, from the same snapshot as gateways.
 *
 *   peer sidecar ──mTLS──► inbound :<WorkloadEntry port> ──► PeerAuthentication ──► RequestAuthentication
 *        ──► AuthorizationPolicy (CUSTOM, DENY, ALLOW; AUDIT logged) ──► XFCC ──► app 127.0.0.1:<app port>
 *   app ──HTTP_PROXY──► outbound 127.0.0.1:15001 (mesh VirtualServices, registry names) ──mTLS──► peer sidecar
 *
 * Port mapping off Kubernetes: the WorkloadEntry's `ports` are where *the sidecar* listens (what
 * endpoints in the registry point at, as a Pod IP:containerPort would); the app listens on the
 * app port, given per sidecar (`appPort`) or by the label `portico.dev/app-port`. See docs/mesh.md.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { Duplex } from 'node:stream';
import { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Cluster, Service, Snapshot, Workload } from '../config/snapshot.ts';
import type { AttrValue, SpanData } from '../telemetry/otlp.ts';
import { decideSampling, extractContext, injectContext, newSpanId, newTraceId, type TraceContext } from '../telemetry/trace-context.ts';
import { buildHttpChain, bodyHook, doneOnClose, runRequestFilters, runResponseFilters } from '../dataplane/filters/chain.ts';
import { wasmExtensions } from '../dataplane/filters/wasm.ts';
import type { WasmManager } from '../wasm/plugins.ts';
import type { FilterExchange, HttpFilter } from '../dataplane/filters/types.ts';
import { Balancer } from './balancer.ts';
import { forward } from './forward.ts';
import { makeHeaderPolicy, peerAddress, upstreamRequestHeaders, type HeaderMap } from './headers.ts';
import { JwksCache } from './jwt-authn.ts';
import { hostOnly } from './matchers.ts';
import { meshUpstreamTls, mtlsPeer, type MeshIdentity, type MtlsPeer } from './mtls.ts';
import { normalizePath, splitTarget } from '../lib/path.ts';
import { selectPeerAuthn, type EffectiveMtls, type PeerAuthnDecision } from './peer-authn.ts';
import { UpstreamPools } from './pools.ts';
import { GatewayRuntime, silentLogger, type GatewayLogger } from './runtime.ts';
import { redactQuery } from './telemetry/access-log.ts';
import type { Telemetry } from './telemetry/hooks.ts';
import { istioHttpFamilies } from './telemetry/istio-metrics.ts';
import { Registry, type CounterSeries, type HistogramSeries } from '../lib/metrics.ts';
import { setXfcc } from './xfcc.ts';

/** Label naming the port the app listens on, when `appPort` is not given. */
export const APP_PORT_LABEL = 'portico.dev/app-port';
export const DEFAULT_OUTBOUND_PORT = 15001;

export interface SidecarOptions {
  /** `namespace/name` of the WorkloadEntry (a bare name means namespace `default`). */
  readonly workload: string;
  readonly identity: MeshIdentity;
  /** Where the app listens: one port for every inbound port, or by WorkloadEntry port name or number. */
  readonly appPort?: number | Readonly<Record<string, number>>;
  readonly appHost?: string;
  /** Outbound listener port (default 15001; 0 picks one). */
  readonly outboundPort?: number;
  /** Inbound bind address; default the WorkloadEntry's address. */
  readonly inboundHost?: string;
  /**
   * Transparent capture (kube/iptables.ts): WorkloadEntry/endpoint port → the port the inbound
   * listener binds, where iptables redirects that port's traffic. Default: the same port.
   */
  readonly inboundListen?: ReadonlyMap<number, number>;
  /** An injected pod's own workload (from the downward API), used when no WorkloadEntry names it. */
  readonly podWorkload?: Workload;
  readonly logger?: GatewayLogger;
  /** The process's Wasm plugin host; WasmPlugins selecting this workload run only when given. */
  readonly wasm?: WasmManager;
  /** Outbound telemetry (reporter `source`), the gateway seam. */
  readonly telemetry?: Telemetry;
  /** Inbound telemetry (reporter `destination`, SERVER spans). */
  readonly inboundTelemetry?: InboundTelemetry;
  readonly drainMs?: number;
}

/** Everything the inbound side derives from one snapshot. */
interface InboundState {
  readonly snapshot: Snapshot;
  readonly workload: Workload;
  readonly peerAuthn: PeerAuthnDecision;
  /** The inbound HTTP filter chain: the same builder as the edge gateway's, for this workload. */
  readonly chain: readonly HttpFilter[];
  /** inbound (WorkloadEntry) port → app cluster */
  readonly apps: ReadonlyMap<number, Cluster>;
}

interface InboundListener {
  readonly port: number;
  readonly server: NetServer;
  readonly http: HttpServer;
  readonly sockets: Set<Socket>;
}

/** Counters for tests and the admin page. */
export interface SidecarStats {
  plaintextRefused: number;
  tlsRefused: number;
  inboundRequests: number;
  rbacDenied: number;
  jwtRejected: number;
}

export function workloadKey(name: string): string {
  return name.includes('/') ? name : `default/${name}`;
}

export class SidecarRuntime {
  readonly outbound: GatewayRuntime;
  readonly stats: SidecarStats = { plaintextRefused: 0, tlsRefused: 0, inboundRequests: 0, rbacDenied: 0, jwtRejected: 0 };
  private state: InboundState;
  private readonly listeners = new Map<number, InboundListener>();
  private readonly appPools = new UpstreamPools();
  private readonly appBalancer = new Balancer();
  private readonly jwks = new JwksCache();
  private readonly headerPolicy = makeHeaderPolicy({ identityHeaders: [], trustedHops: 1 });
  private readonly log: GatewayLogger;
  private readonly unsubscribe: () => void;
  private swapping: Promise<unknown> = Promise.resolve();

  constructor(
    snapshot: Snapshot,
    private readonly opts: SidecarOptions,
  ) {
    this.log = opts.logger ?? silentLogger;
    this.state = this.build(snapshot);
    const wl = this.state.workload;
    this.outbound = new GatewayRuntime(snapshot, {
      labels: wl.labels,
      namespace: wl.namespace,
      source: { labels: wl.labels, namespace: wl.namespace },
      meshOutbound: { port: opts.outboundPort ?? DEFAULT_OUTBOUND_PORT },
      logger: this.log,
      telemetry: opts.telemetry,
      drainMs: opts.drainMs,
      // Sidecars forward identity headers the edge set (kubeflow-userid) and trust the hop before.
      headerPolicy: makeHeaderPolicy({ identityHeaders: [], trustedHops: 1 }),
    });
    this.outbound.pools.tlsPolicy = meshUpstreamTls(opts.identity, () => this.outbound.table().snapshot);
    this.unsubscribe = opts.identity.onRotate(() => this.log.info('workload certificate rotated', { spiffeId: opts.identity.spiffeId }));
  }

  /** The workload this sidecar serves, as of the current snapshot. */
  workload(): Workload {
    return this.state.workload;
  }

  private build(snapshot: Snapshot): InboundState {
    const key = workloadKey(this.opts.workload);
    const workload = snapshot.workloads.find((w) => w.key === key) ?? (this.opts.podWorkload?.key === key ? this.opts.podWorkload : undefined);
    if (!workload) throw new Error(`workload ${key}: no WorkloadEntry of that namespace/name in the config (have: ${snapshot.workloads.map((w) => w.key).join(', ') || 'none'})`);
    const apps = new Map<number, Cluster>();
    for (const [name, port] of Object.entries(workload.ports)) {
      const app = this.appPortFor(workload, name, port);
      apps.set(port, {
        name: `inbound|${port}||`,
        host: this.opts.appHost ?? '127.0.0.1',
        port: app,
        resolution: 'STATIC',
        protocol: 'HTTP',
        endpoints: [{ address: this.opts.appHost ?? '127.0.0.1', port: app, labels: {}, weight: 1 }],
        trafficPolicy: {},
        meshExternal: false,
      });
    }
    const who = { namespace: workload.namespace, labels: workload.labels };
    return {
      snapshot,
      workload,
      apps,
      peerAuthn: selectPeerAuthn(snapshot.security, who),
      chain: buildHttpChain(snapshot, { ...who, mode: 'sidecar', context: 'SIDECAR_INBOUND', workloadName: workload.name }, {
        jwks: this.jwks,
        pools: this.appPools,
        balancer: this.appBalancer,
        log: (msg, fields) => this.log.info(msg, fields),
        ...(this.opts.wasm ? { extensions: wasmExtensions(this.opts.wasm) } : {}),
      }),
    };
  }

  private appPortFor(wl: Workload, name: string, port: number): number {
    const a = this.opts.appPort;
    let app: number | undefined;
    if (typeof a === 'number') app = a;
    else if (a) app = a[name] ?? a[String(port)];
    if (app === undefined && wl.labels[APP_PORT_LABEL] !== undefined) app = Number(wl.labels[APP_PORT_LABEL]);
    if (app === undefined || !Number.isInteger(app) || app <= 0 || app > 65535) {
      throw new Error(`workload ${wl.key}: port ${name} (${port}): no app port; pass --app-port or label the WorkloadEntry ${APP_PORT_LABEL}`);
    }
    if (app === (this.opts.inboundListen?.get(port) ?? port) && (this.opts.appHost ?? '127.0.0.1') === (this.opts.inboundHost ?? wl.address)) {
      throw new Error(`workload ${wl.key}: port ${name}: the app port ${app} is the sidecar's own inbound port; the app must listen elsewhere`);
    }
    return app;
  }

  /** Inbound ports: WorkloadEntry port → actual port. */
  inboundPorts(): Map<number, number> {
    return new Map([...this.listeners].map(([p, l]) => [p, (l.server.address() as { port: number }).port]));
  }

  outboundPort(): number {
    for (const port of this.outbound.ports().values()) return port;
    return -1;
  }

  /** The mTLS mode in force on an inbound port. */
  mtlsMode(port: number): EffectiveMtls {
    const app = this.state.apps.get(port)?.port;
    return this.state.peerAuthn.modeFor(port, ...(app !== undefined ? [app] : []));
  }

  async start(): Promise<void> {
    await this.outbound.start();
    await this.reconcile();
    this.log.info('sidecar started', {
      workload: this.state.workload.key,
      spiffeId: this.opts.identity.spiffeId,
      inbound: Object.fromEntries([...this.state.apps].map(([p, c]) => [p, `${c.host}:${c.port}`])),
      outbound: this.outboundPort(),
      peerAuthentication: this.state.peerAuthn.chain,
    });
  }

  /** Swaps in a snapshot for both sides; throws and keeps the old one when it cannot be served. */
  apply(snapshot: Snapshot): Promise<void> {
    const run = this.swapping.then(async () => {
      const next = this.build(snapshot);
      await this.outbound.apply(snapshot);
      const old = this.state;
      this.state = next;
      try {
        await this.reconcile();
      } catch (err) {
        this.state = old;
        throw err;
      }
    });
    this.swapping = run.catch(() => undefined);
    return run;
  }

  private async reconcile(): Promise<void> {
    const want = this.state.apps;
    for (const port of want.keys()) {
      if (!this.listeners.has(port)) this.listeners.set(port, await this.openInbound(port));
    }
    for (const [port, l] of this.listeners) {
      if (!want.has(port)) {
        this.listeners.delete(port);
        void closeInbound(l, this.opts.drainMs ?? 5_000);
      }
    }
  }

  private async openInbound(port: number): Promise<InboundListener> {
    const sockets = new Set<Socket>();
    const http = createHttpServer({ headersTimeout: 30_000, requestTimeout: 0, keepAliveTimeout: 65_000 });
    http.on('request', (req, res) => this.handle(port, req, res));
    const server = createNetServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.once('error', () => socket.destroy());
      socket.once('data', (first: Buffer) => this.dispatch(port, socket, first, http, tlsServer));
    });
    const tlsServer = new TlsServer({ ...this.opts.identity.contextOptions(), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] });
    tlsServer.on('secureConnection', (tls: TLSSocket) => {
      if (!tls.authorized) {
        this.stats.tlsRefused++;
        return tls.destroy();
      }
      http.emit('connection', tls);
    });
    tlsServer.on('tlsClientError', (_err, tls: TLSSocket) => {
      this.stats.tlsRefused++;
      tls.destroy();
    });
    // Rotation: new handshakes get the new certificate; established connections keep theirs.
    const off = this.opts.identity.onRotate(() => tlsServer.setSecureContext(this.opts.identity.contextOptions()));
    server.once('close', off);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'EADDRINUSE' ? new Error(`inbound port ${port} of ${this.state.workload.key} is already in use`) : err),
      );
      server.listen(this.opts.inboundListen?.get(port) ?? port, this.opts.inboundHost ?? this.state.workload.address, () => resolve());
    });
    return { port, server, http, sockets };
  }

  /**
   * PeerAuthentication on the first byte (a TLS handshake starts with 0x16): STRICT refuses
   * plaintext, DISABLE refuses TLS, PERMISSIVE takes both. mTLS connections must present a
   * certificate signed by the mesh root.
   */
  private dispatch(port: number, socket: Socket, first: Buffer, http: HttpServer, tlsServer: TlsServer): void {
    const mode = this.mtlsMode(port);
    const isTls = first[0] === 0x16;
    if (!isTls && mode === 'STRICT') {
      this.stats.plaintextRefused++;
      socket.destroy();
      return;
    }
    if (isTls && mode === 'DISABLE') {
      this.stats.tlsRefused++;
      socket.destroy();
      return;
    }
    socket.pause();
    if (!isTls) {
      socket.unshift(first);
      http.emit('connection', socket);
      socket.resume();
      return;
    }
    // node:tls takes over a net.Socket's handle and would lose the byte already read, so the
    // TLS layer reads through a small stream that replays it.
    const stream = replayStream(socket, first);
    rawOfStream.set(stream, socket);
    tlsServer.emit('connection', stream);
  }

  private handle(port: number, req: IncomingMessage, res: ServerResponse): void {
    this.stats.inboundRequests++;
    const st = this.state;
    const app = st.apps.get(port);
    const raw = req.socket instanceof TLSSocket ? rawSocketOf(req.socket) : req.socket;
    const remoteAddress = raw?.remoteAddress;
    const peer: MtlsPeer | undefined = req.socket instanceof TLSSocket ? mtlsPeer(req.socket) : undefined;
    const target = splitTarget(req.url ?? '/');
    const path = normalizePath(target.path, st.snapshot.meshConfig.pathNormalization);
    const remote = peerAddress(remoteAddress);
    const obs = this.opts.inboundTelemetry?.begin(req, res, { state: st, port, peer, ownPrincipal: this.opts.identity.spiffeId, remote });
    if (!app || path === undefined) return void reply(res, 400, 'Bad Request', obs);
    const authority = typeof req.headers.host === 'string' ? req.headers.host : '';
    const headers = upstreamRequestHeaders(req.headers, { remoteAddress: remote, scheme: peer ? 'https' : 'http', authority }, this.headerPolicy);
    const fx: FilterExchange = {
      request: {
        method: req.method ?? 'GET',
        path,
        query: target.query,
        authority,
        host: hostOnly(authority).toLowerCase(),
        scheme: peer ? 'https' : 'http',
        port,
        headers: req.headers,
        peerIp: remote,
        remoteIp: remote,
        principal: peer?.principal,
        peerNamespace: peer?.namespace,
        protocol: req.httpVersion === '2.0' ? 'HTTP/2' : 'HTTP/1.1',
      },
      route: undefined,
      vhostNames: [],
      upstreamHeaders: headers,
      responseHeaders: [],
      flags: '-',
      state: new Map(),
      bodySource: req,
    };
    doneOnClose(st.chain, fx, res);
    runRequestFilters(
      st.chain,
      fx,
      (local) => {
        if (res.destroyed) return;
        if (local) {
          if (local.flag === 'RBAC') this.stats.rbacDenied++;
          if (local.status === 401) this.stats.jwtRejected++;
          if (obs) {
            obs.flag = local.flag;
            obs.responseBytes = Buffer.byteLength(local.body);
          }
          if (res.headersSent) return void res.destroy();
          const h: HeaderMap = { ...(local.headers as HeaderMap | undefined), 'content-length': String(Buffer.byteLength(local.body)) };
          runResponseFilters(st.chain, fx, local.status, h);
          res.writeHead(local.status, h as Record<string, string>);
          res.end(local.body);
          return;
        }
        setXfcc(headers, this.opts.identity.spiffeId, peer);
        headers['host'] = authority;
        obs?.upstreamHeaders(headers);
        forward({
          req,
          res,
          cluster: app,
          method: fx.request.method,
          path: req.url ?? '/',
          headers,
          body: fx.body !== undefined ? { kind: 'buffered', data: fx.body } : fx.requestBody ? { kind: 'stream', hook: bodyHook(fx.requestBody, false) } : req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined ? { kind: 'none' } : { kind: 'stream' },
          retries: { attempts: 0, retryOn: [], retriableStatusCodes: [], retryRemoteLocalities: false },
          pools: this.appPools,
          balancer: this.appBalancer,
          sendError: (err) => reply(res, err.status, err.message),
          onResponseHeaders:
            st.chain.length > 0
              ? (h, status) => {
                  runResponseFilters(st.chain, fx, status, h);
                  if (fx.responseBody) return bodyHook(fx.responseBody, fx.holdResponseHeaders === true);
                }
              : undefined,
        }).then(
          (result) => {
            if (obs) {
              obs.flag = result.flag;
              obs.responseBytes = result.responseBytes;
            }
          },
          (err: unknown) => {
            this.log.error('inbound request failed', { error: err instanceof Error ? err.message : String(err) });
            if (!res.headersSent) reply(res, 500, 'internal error');
            else res.destroy();
          },
        );
      },
      0,
      (err, f) => this.log.error('HTTP filter failed; request answered 500', { filter: f.name, error: err instanceof Error ? err.message : String(err) }),
    );
  }

  async close(drainMs = this.opts.drainMs ?? 5_000): Promise<void> {
    this.unsubscribe();
    const all = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all([this.outbound.close(drainMs), ...all.map((l) => closeInbound(l, drainMs))]);
    await this.appPools.close();
  }
}

const rawOfStream = new WeakMap<Duplex, Socket>();

/**
 * The TCP socket under an inbound TLS connection, for `source.ip`. node:tls keeps the wrapped
 * stream only internally (TLSWrap → JSStreamSocket → stream); if that ever changes, `source.ip`
 * policies see no address (and fail closed for ipBlocks) rather than a wrong one.
 */
function rawSocketOf(tls: TLSSocket): Socket | undefined {
  const stream = (tls as unknown as { _handle?: { _parentWrap?: { stream?: Duplex } } })._handle?._parentWrap?.stream;
  return stream ? rawOfStream.get(stream) : undefined;
}

/** Returns the body bytes written (forward() counts them for a local error reply). */
function reply(res: ServerResponse, status: number, body: string, obs?: InboundObserver): number {
  if (res.headersSent) return void res.destroy(), 0;
  if (obs) obs.responseBytes = Buffer.byteLength(body);
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
  return Buffer.byteLength(body);
}

/** A duplex over `socket` that first yields `first` (the byte(s) read to detect TLS). */
function replayStream(socket: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(first);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.once('end', () => d.push(null));
  socket.once('close', () => d.destroy());
  return d;
}

async function closeInbound(l: InboundListener, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      for (const s of l.sockets) s.destroy();
      resolve();
    }, graceMs);
    timer.unref();
    l.server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    l.http.closeIdleConnections();
    for (const s of l.sockets) if (!s.readable) s.destroy();
  });
}

// ---------------------------------------------------------------------------------------------
// Inbound telemetry: Istio's `reporter="destination"` metrics and a SERVER span per request.
// gateway/telemetry's IstioMetrics labels the proxy as the *source* of every request, which is
// right for gateways and outbound sidecars; inbound, the proxy is the destination and the source
// is the mTLS peer, known per connection. So the inbound side resolves its own label sets, on the
// same families of the same registry (one exposition per process).
// ---------------------------------------------------------------------------------------------

export interface InboundTelemetryOptions {
  /** The process's registry (the outbound telemetry's); default a new one. */
  readonly registry?: Registry;
  /** Shared with the outbound telemetry, so one sidecar has one trace store / one exporter. */
  readonly traces?: { add(span: SpanData): void };
  readonly exporter?: { add(span: SpanData): void };
  /** Percentage of new traces sampled (0..100), as the outbound side. Default 1. */
  readonly sampling?: number;
  /** Istio's cluster id label value (default `Kubernetes`). */
  readonly clusterId?: string;
}

interface InboundSeries {
  readonly requests: CounterSeries;
  readonly duration: HistogramSeries;
  readonly requestBytes: HistogramSeries;
  readonly responseBytes: HistogramSeries;
}

const UNKNOWN = 'unknown';

/** Label values for one side of a request from a WorkloadEntry (or several sharing an identity). */
function workloadLabels(side: 'source' | 'destination', wls: readonly Workload[], principal: string | undefined): Record<string, string> {
  const shared = (f: (w: Workload) => string | undefined): string | undefined => {
    const v = wls.map(f);
    return v.length > 0 && v.every((x) => x !== undefined && x === v[0]) ? v[0] : undefined;
  };
  const app = shared((w) => w.labels.app);
  const version = shared((w) => w.labels.version);
  return {
    [`${side}_workload`]: shared((w) => w.labels['service.istio.io/workload-name'] ?? w.name) ?? UNKNOWN,
    [`${side}_workload_namespace`]: shared((w) => w.namespace) ?? UNKNOWN,
    [`${side}_principal`]: principal ?? UNKNOWN,
    [`${side}_app`]: app ?? UNKNOWN,
    [`${side}_version`]: version ?? UNKNOWN,
    [`${side}_canonical_service`]: shared((w) => w.labels['service.istio.io/canonical-name'] ?? w.labels.app ?? w.name) ?? UNKNOWN,
    [`${side}_canonical_revision`]: shared((w) => w.labels['service.istio.io/canonical-revision'] ?? w.labels.version) ?? 'latest',
  };
}

/**
 * The inbound side's metrics and spans. One instance per sidecar; `begin` per request. Label
 * values come from the snapshot and from verified peer certificates only (mesh CA-signed SPIFFE
 * ids), never from request headers, so cardinality is bounded by the mesh's workloads.
 */
export class InboundTelemetry {
  readonly registry: Registry;
  private readonly requests;
  private readonly duration;
  private readonly requestBytes;
  private readonly responseBytes;
  /** `peer principal|status|flags|grpc` → series; rebuilt lazily per snapshot. */
  private series = new Map<string, InboundSeries>();
  private forSnapshot: Snapshot | undefined;
  private readonly sampling: number;

  constructor(private readonly opts: InboundTelemetryOptions = {}) {
    this.registry = opts.registry ?? new Registry();
    ({ requests: this.requests, duration: this.duration, requestBytes: this.requestBytes, responseBytes: this.responseBytes } = istioHttpFamilies(this.registry));
    const sampling = opts.sampling ?? 1;
    if (!(sampling >= 0 && sampling <= 100)) throw new Error(`tracing sampling must be a percentage 0..100, got ${sampling}`);
    this.sampling = sampling;
  }

  get tracing(): boolean {
    return this.opts.traces !== undefined || this.opts.exporter !== undefined;
  }

  begin(req: IncomingMessage, res: ServerResponse, facts: InboundFacts): InboundObserver {
    const o = new InboundObserver(this, req, facts);
    if (this.tracing) {
      o.ctx = extractContext(req.headers);
      o.sampled = decideSampling(o.ctx, req.headers, this.sampling);
    }
    res.once('close', () => this.finish(o, res));
    return o;
  }

  private finish(o: InboundObserver, res: ServerResponse): void {
    const durationMs = performance.now() - o.startMs;
    const status = res.headersSent ? res.statusCode : 0;
    const flag = !res.writableFinished && o.flag === '-' ? 'DC' : o.flag;
    const s = this.seriesFor(o.facts, status, flag, o.grpc);
    s.requests.value++;
    s.duration.observe(durationMs);
    s.requestBytes.observe(o.requestBytes);
    s.responseBytes.observe(o.responseBytes);
    if (o.sampled) this.span(o, status, flag, durationMs);
  }

  private seriesFor(f: InboundFacts, status: number, flag: string, grpc: boolean): InboundSeries {
    if (f.state.snapshot !== this.forSnapshot) {
      this.forSnapshot = f.state.snapshot;
      this.series = new Map();
    }
    const key = `${f.peer?.uri ?? ''}|${status}|${flag}|${grpc ? 1 : 0}|${f.port}`;
    let s = this.series.get(key);
    if (!s) {
      const labels = { ...this.peerLabels(f), request_protocol: grpc ? 'grpc' : 'http', response_code: String(status), grpc_response_status: '', response_flags: flag };
      s = { requests: this.requests.with(labels), duration: this.duration.with(labels), requestBytes: this.requestBytes.with(labels), responseBytes: this.responseBytes.with(labels) };
      this.series.set(key, s);
    }
    return s;
  }

  /**
   * Source = the workloads holding the peer's identity (the name when one WorkloadEntry has that
   * service account, else only what they share, e.g. `app`); destination = this workload and the
   * service whose endpoint is this inbound port.
   */
  private peerLabels(f: InboundFacts): Record<string, string> {
    const { snapshot, workload } = f.state;
    const cluster = this.opts.clusterId ?? 'Kubernetes';
    const peerSa = f.peer?.principal ? /^[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(f.peer.principal) : null;
    const sources = peerSa ? snapshot.workloads.filter((w) => w.namespace === peerSa[1] && (w.serviceAccount ?? 'default') === peerSa[2]) : [];
    const source = f.peer?.uri
      ? { ...workloadLabels('source', sources, f.peer.uri), ...(sources.length === 0 && peerSa ? { source_workload_namespace: peerSa[1]! } : {}) }
      : workloadLabels('source', [], undefined);
    let service: Service | undefined;
    for (const s of snapshot.services) {
      if (s.endpoints.some((e) => e.workload === workload.key && e.port === f.port)) {
        service = s;
        break;
      }
    }
    return {
      reporter: 'destination',
      ...source,
      source_cluster: f.peer ? cluster : UNKNOWN,
      ...workloadLabels('destination', [workload], f.ownPrincipal),
      destination_service: service?.host ?? UNKNOWN,
      destination_service_name: service ? (service.host.includes('.svc.') ? service.host.slice(0, service.host.indexOf('.')) : service.host) : UNKNOWN,
      destination_service_namespace: service?.namespace ?? UNKNOWN,
      destination_cluster: cluster,
      connection_security_policy: f.peer ? 'mutual_tls' : 'none',
    };
  }

  private span(o: InboundObserver, status: number, flag: string, durationMs: number): void {
    const { workload, snapshot } = o.facts.state;
    const ns = workload.namespace;
    const canonical = workload.labels['service.istio.io/canonical-name'] ?? workload.labels.app ?? workload.name;
    const service = snapshot.services.find((s) => s.endpoints.some((e) => e.workload === workload.key && e.port === o.facts.port));
    const svcPort = service?.ports.find((p) => service.endpoints.some((e) => e.workload === workload.key && e.port === o.facts.port && (p.targetPort === undefined || p.targetPort === e.port)));
    const ua = o.req.headers['user-agent'];
    const rid = o.req.headers['x-request-id'];
    const error = status >= 500 || status === 0;
    const attributes: [string, AttrValue][] = [
      ['node_id', `sidecar~${workload.address}~${workload.name}.${ns}~${ns}.svc.cluster.local`],
      ['istio.canonical_service', canonical],
      ['istio.canonical_revision', workload.labels['service.istio.io/canonical-revision'] ?? workload.labels.version ?? 'latest'],
      ['istio.namespace', ns],
      ['istio.mesh_id', 'cluster.local'],
      ['guid:x-request-id', typeof rid === 'string' ? rid : ''],
      ['http.url', `${o.facts.peer ? 'https' : 'http'}://${o.req.headers.host ?? ''}${redactQuery(o.req.url ?? '/')}`.slice(0, 2048)],
      ['http.method', o.req.method ?? ''],
      ['downstream_cluster', '-'],
      ['user_agent', typeof ua === 'string' ? ua.slice(0, 256) : '-'],
      ['http.protocol', `HTTP/${o.req.httpVersion}`],
      ['peer.address', o.facts.remote ?? ''],
      ['request_size', o.requestBytes],
      ['response_size', o.responseBytes],
      ['response_flags', flag],
      ['http.status_code', status],
      ['upstream_cluster', `inbound|${o.facts.port}||`],
      ['upstream_cluster.name', `inbound|${o.facts.port}||`],
      ['component', 'proxy'],
    ];
    if (o.facts.peer?.principal) attributes.push(['peer.principal', o.facts.peer.principal]);
    if (error) attributes.push(['error', true]);
    const span: SpanData = {
      traceId: o.traceId ?? (o.ctx?.traceId || newTraceId()),
      spanId: o.spanId ?? newSpanId(),
      parentSpanId: o.ctx?.parentSpanId,
      // Envoy's inbound decorator: `<service host>:<port>/*`.
      name: service ? `${service.host}:${svcPort?.number ?? o.facts.port}/*` : `inbound|${o.facts.port}||`,
      kind: 'SERVER',
      startUs: Math.round((performance.timeOrigin + o.startMs) * 1000),
      durationUs: Math.max(1, Math.round(durationMs * 1000)),
      service: `${canonical}.${ns}`,
      attributes,
      error,
      process: [
        ['hostname', hostname()],
        ['ip', workload.address],
      ],
    };
    this.opts.traces?.add(span);
    this.opts.exporter?.add(span);
  }
}

/** What the inbound side knows about a request before it is authorised. */
interface InboundFacts {
  readonly state: InboundState;
  readonly port: number;
  readonly peer: MtlsPeer | undefined;
  readonly ownPrincipal: string;
  readonly remote: string | undefined;
}

/** Per-request inbound telemetry state; the request path sets `flag` and byte counts. */
export class InboundObserver {
  readonly startMs = performance.now();
  readonly grpc: boolean;
  readonly requestBytes: number;
  flag = '-';
  responseBytes = 0;
  ctx: TraceContext | undefined;
  sampled = false;
  traceId?: string;
  spanId?: string;

  constructor(
    readonly t: InboundTelemetry,
    readonly req: IncomingMessage,
    readonly facts: InboundFacts,
  ) {
    const ct = req.headers['content-type'];
    this.grpc = typeof ct === 'string' && ct.startsWith('application/grpc');
    const cl = Number(req.headers['content-length'] ?? 0);
    this.requestBytes = Number.isFinite(cl) && cl > 0 ? cl : 0;
  }

  /** Trace context for the app: this hop's span becomes the app's parent. */
  upstreamHeaders(headers: HeaderMap): void {
    if (!this.t.tracing) return;
    if (!this.sampled && !this.ctx?.traceId) {
      // Unsampled new trace: only the decision travels, so the app's calls out are not sampled anew.
      headers['traceparent'] = `00-${newTraceId()}-${newSpanId()}-00`;
      headers['x-b3-sampled'] = '0';
      return;
    }
    this.traceId = this.ctx?.traceId || newTraceId();
    this.spanId = newSpanId();
    injectContext(headers, this.traceId, this.spanId, this.ctx?.parentSpanId, this.sampled, this.ctx?.b3Single === true);
  }
}
