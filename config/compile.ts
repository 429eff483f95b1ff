/**
 * Stage 3: validated resources → the frozen Snapshot runtimes read (config/snapshot.ts).
 *
 * Pure: no I/O (certificate bytes come from validation), no mutation of the input, deterministic
 * ordering everywhere so that the same YAML always yields byte-identical JSON and the same version.
 */
import { DEFAULT_PATH_NORMALIZATION, parsePathNormalization } from '../lib/path.ts';
import { createHash } from 'node:crypto';
import { isAbsolute, relative } from 'node:path';
import type {
  RawClientTls, RawConnectionPool, RawLoadBalancer, RawOutlierDetection, RawPortTrafficPolicy, RawTrafficPolicy,
} from './kinds/destinationrule.ts';
import type { RawServer } from './kinds/gateway.ts';
import { normaliseCidr, splitRegexFlags, type RawStringMatch } from './kinds/common.ts';
import type { AuthorizationPolicySpec, RawAuthzRule, RawOperation, RawSource } from './kinds/authorizationpolicy.ts';
import { isPathTemplate, parseConditionKey } from './kinds/authorizationpolicy.ts';
import { exportToNamespaces, findDelegate, mergeDelegateRule } from './delegate.ts';
import { classifyPatch, HTTP_STATUS_NAMES, LOCAL_RATELIMIT_NAME, TYPED_STRUCT_TYPES, type RawPatch } from './kinds/envoyfilter.ts';
import type { RawExtAuthzHttpProvider } from './kinds/meshconfig.ts';
import type { PeerAuthenticationSpec } from './kinds/peerauthentication.ts';
import type { RawJwtRule, RequestAuthenticationSpec } from './kinds/requestauthentication.ts';
import { compileEnvoyWasmPatch, compileWasmPlugin, sortWasmPlugins, type RawWasmPluginSpec } from './kinds/wasmplugin.ts';
import { envoyMatcherList, headerPatternMatcher, istioPattern, resolveEnvoyServer, resolveProviderServer, type ResolvedServer } from './policy.ts';
import { isPlainObject, protoField } from './schema.ts';
import type { ServiceEntrySpec } from './kinds/serviceentry.ts';
import type { RawDestination, RawHeaderOps, RawHeaders, RawHttpMatch, RawHttpRoute, RawL4Match, VirtualServiceSpec } from './kinds/virtualservice.ts';
import type { WorkloadEntrySpec } from './kinds/workloadentry.ts';
import type { Resource } from './load.ts';
import {
  arrayOf, fqdn, gatewayRef, intersectHosts, labelsMatch, lookupDestinationRule, lookupService, serverNamespaceAllows,
  splitServerHost, type ModelIndex, type RegistryEntry,
} from './model.ts';
import { parseDuration } from './schema.ts';
import type {
  AuthzPolicy, AuthzRule, Condition, ExtAuthzFilter, JwtRule, L4Destination, L4Match, L4Route, LocalRateLimit, MtlsMode,
  OperationMatch, PeerAuthn, PolicyTarget, ProxyContext, RequestAuthn, SecurityPolicies, SourceMatch, StringPattern,
  Cluster, ClientTls, CompiledGateway, ConnectionPool, CorsPolicy, Endpoint, FaultInjection, GatewayPort, GatewayServer,
  HeaderOps, HeaderRules, HttpRoute, LoadBalancerPolicy, Mirror, NamedMatch, OutlierDetection, RetryPolicy, RouteAction,
  RouteDestination, RouteMatch, ServerProtocol, ServerTls, Service, Snapshot, SourceRef, StringMatch, TrafficPolicy,
  ValueMatch, VirtualHost, Workload,
  MeshSettings,
  WasmPluginConfig,
} from './snapshot.ts';
import { tlsKey, type ValidatedConfig } from './validate.ts';

export interface CompileOptions {
  /** Source file names in the snapshot are shown relative to this directory when under it. */
  readonly cwd?: string;
}

/** Istio's default retry policy when a VirtualService route says nothing about retries. */
export const DEFAULT_RETRY_ON = ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'] as const;
export const DEFAULT_RETRIES: RetryPolicy = {
  attempts: 2,
  retryOn: [...DEFAULT_RETRY_ON],
  retriableStatusCodes: [503],
  retryRemoteLocalities: false,
};

const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'GRPC-WEB']);

/** Removes keys whose value is undefined, so snapshots compare and serialise cleanly. */
function strip<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Domain order: exact names first (alphabetical), then wildcards longest first, `*` last. */
export function compareDomains(a: string, b: string): number {
  const rank = (d: string): number => (d === '*' ? 2 : d.startsWith('*') ? 1 : 0);
  return rank(a) - rank(b) || (rank(a) === 1 ? b.length - a.length : 0) || cmp(a, b);
}

export function compileSnapshot(config: ValidatedConfig, opts: CompileOptions = {}): Snapshot {
  const cwd = opts.cwd ?? process.cwd();
  const c = new Compiler(config, cwd);
  return c.run();
}

function stringMatch(m: RawStringMatch | undefined): StringMatch | undefined {
  if (!m) return undefined;
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  if (m.regex !== undefined) {
    const { regex, ignoreCase } = splitRegexFlags(m.regex);
    return ignoreCase ? { regex, ignoreCase: true } : { regex };
  }
  return undefined;
}

function valueMatch(m: RawStringMatch | null | undefined): ValueMatch {
  return stringMatch(m ?? undefined) ?? { present: true };
}

function namedMatches(map: Record<string, RawStringMatch | null> | undefined, lower: boolean): NamedMatch[] {
  return Object.entries(map ?? {}).map(([name, m]) => ({ name: lower ? name.toLowerCase() : name, match: valueMatch(m) }));
}

function headerOps(ops: RawHeaderOps | undefined): HeaderOps | undefined {
  if (!ops) return undefined;
  return {
    set: Object.entries(ops.set ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
    add: Object.entries(ops.add ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
    remove: (ops.remove ?? []).map((h) => h.toLowerCase()),
  };
}

function headerRules(h: RawHeaders | undefined): HeaderRules | undefined {
  if (!h) return undefined;
  return strip({ request: headerOps(h.request), response: headerOps(h.response) });
}

function ms(d: string | undefined): number | undefined {
  return d === undefined ? undefined : parseDuration(d);
}

/** Istio's port-name protocol inference (`http-web` → HTTP) when a port says no protocol. */
function portProtocol(p: { protocol?: string; name?: string }): string {
  if (p.protocol) return p.protocol;
  const prefix = (p.name ?? '').split('-')[0].toLowerCase();
  const known: Record<string, string> = { http: 'HTTP', http2: 'HTTP2', grpc: 'GRPC', 'grpc-web': 'GRPC-WEB', https: 'HTTPS', tcp: 'TCP', tls: 'TLS', mongo: 'MONGO' };
  return known[prefix] ?? 'TCP';
}

function retries(r: RawHttpRoute['retries']): RetryPolicy {
  if (!r) return DEFAULT_RETRIES;
  if (r.attempts === 0) return { attempts: 0, retryOn: [], retriableStatusCodes: [], retryRemoteLocalities: false };
  const tokens = r.retryOn === undefined ? [...DEFAULT_RETRY_ON] : r.retryOn.split(',').map((t) => t.trim()).filter(Boolean);
  const codes = tokens.filter((t) => /^\d{3}$/.test(t)).map(Number);
  const retryOn = tokens.filter((t) => !/^\d{3}$/.test(t));
  if (codes.length > 0 && !retryOn.includes('retriable-status-codes')) retryOn.push('retriable-status-codes');
  const defaultCodes = r.retryOn === undefined ? [503] : [];
  return strip({
    attempts: r.attempts ?? DEFAULT_RETRIES.attempts,
    perTryTimeoutMs: ms(r.perTryTimeout),
    retryOn,
    retriableStatusCodes: [...new Set([...defaultCodes, ...codes])].sort((a, b) => a - b),
    retryRemoteLocalities: r.retryRemoteLocalities ?? false,
  });
}

function fault(f: RawHttpRoute['fault']): FaultInjection | undefined {
  if (!f || (!f.delay && !f.abort)) return undefined;
  return strip({
    delay: f.delay
      ? { fixedDelayMs: ms(f.delay.fixedDelay) ?? 0, percentage: f.delay.percentage?.value ?? f.delay.percent ?? 100 }
      : undefined,
    abort: f.abort
      ? strip({ httpStatus: f.abort.httpStatus, grpcStatus: f.abort.grpcStatus, percentage: f.abort.percentage?.value ?? 100 })
      : undefined,
  });
}

function cors(p: RawHttpRoute['corsPolicy']): CorsPolicy | undefined {
  if (!p) return undefined;
  const maxAge = ms(p.maxAge);
  return strip({
    allowOrigins: [
      ...(p.allowOrigins ?? []).map((m) => stringMatch(m)).filter((m): m is StringMatch => m !== undefined),
      ...(p.allowOrigin ?? []).map((o) => ({ exact: o })),
    ],
    allowMethods: [...(p.allowMethods ?? [])],
    allowHeaders: [...(p.allowHeaders ?? [])],
    exposeHeaders: [...(p.exposeHeaders ?? [])],
    maxAgeSeconds: maxAge === undefined ? undefined : Math.floor(maxAge / 1000),
    allowCredentials: p.allowCredentials ?? false,
    unmatchedPreflights: p.unmatchedPreflights === 'IGNORE' ? ('IGNORE' as const) : ('FORWARD' as const),
  });
}

function loadBalancer(lb: RawLoadBalancer | undefined): LoadBalancerPolicy | undefined {
  if (!lb) return undefined;
  if (lb.consistentHash) {
    const h = lb.consistentHash;
    return {
      consistentHash: strip({
        httpHeaderName: h.httpHeaderName?.toLowerCase(),
        httpCookie: h.httpCookie ? strip({ name: h.httpCookie.name, path: h.httpCookie.path, ttlMs: ms(h.httpCookie.ttl) }) : undefined,
        useSourceIp: h.useSourceIp,
        httpQueryParameterName: h.httpQueryParameterName,
        minimumRingSize: h.minimumRingSize ?? (h.ringHash?.minimumRingSize || undefined),
      }),
    };
  }
  return lb.simple ? { simple: lb.simple } : undefined;
}

/** Istio translates these limits only `if X > 0`: an explicit 0 means the default (no limit). */
const positive = (n: number | undefined): number | undefined => (n !== undefined && n > 0 ? n : undefined);

function connectionPool(cp: RawConnectionPool | undefined): ConnectionPool | undefined {
  if (!cp) return undefined;
  return strip({
    tcp: cp.tcp
      ? strip({
          maxConnections: positive(cp.tcp.maxConnections),
          connectTimeoutMs: ms(cp.tcp.connectTimeout),
          tcpKeepalive: cp.tcp.tcpKeepalive
            ? strip({ probes: cp.tcp.tcpKeepalive.probes, timeMs: ms(cp.tcp.tcpKeepalive.time), intervalMs: ms(cp.tcp.tcpKeepalive.interval) })
            : undefined,
        })
      : undefined,
    http: cp.http
      ? strip({
          http1MaxPendingRequests: positive(cp.http.http1MaxPendingRequests),
          http2MaxRequests: positive(cp.http.http2MaxRequests),
          maxRequestsPerConnection: positive(cp.http.maxRequestsPerConnection),
          maxRetries: positive(cp.http.maxRetries),
          idleTimeoutMs: ms(cp.http.idleTimeout),
          h2UpgradePolicy: cp.http.h2UpgradePolicy,
        })
      : undefined,
  });
}

/** Istio/Envoy outlier detection defaults: 5 consecutive 5xx, 10s interval, 30s ejection, 10% max. */
function outlierDetection(od: RawOutlierDetection | undefined): OutlierDetection | undefined {
  if (!od) return undefined;
  return strip({
    consecutive5xxErrors: od.consecutive5xxErrors ?? 5,
    consecutiveGatewayErrors: od.consecutiveGatewayErrors,
    intervalMs: ms(od.interval) ?? 10_000,
    baseEjectionTimeMs: ms(od.baseEjectionTime) ?? 30_000,
    maxEjectionPercent: od.maxEjectionPercent ?? 10,
    minHealthPercent: od.minHealthPercent ?? 0,
  });
}

class Compiler {
  private readonly idx: ModelIndex;
  private readonly clusters = new Map<string, Cluster>();
  /** Compiled http routes per VirtualService key, in `http[]` order. */
  private readonly routes = new Map<string, HttpRoute[]>();

  constructor(
    private readonly config: ValidatedConfig,
    private readonly cwd: string,
  ) {
    this.idx = config.index;
  }

  private source(r: Resource, path: string): SourceRef {
    let file = r.file;
    if (isAbsolute(file)) {
      const rel = relative(this.cwd, file);
      if (rel && !rel.startsWith('..') && !isAbsolute(rel)) file = rel;
    }
    return { file, line: r.lineOf(path) };
  }

  run(): Snapshot {
    for (const vs of this.idx.virtualServices) {
      if (arrayOf<string>(vs.spec.hosts).length === 0) continue; // a delegate: reached through its roots only
      this.routes.set(vs.key, this.expandDelegates(vs));
    }
    // Like Istio, every registry service port gets a subset-less cluster even with no route to
    // it, so sidecars can reach services that have no VirtualService.
    for (const [host, entries] of this.idx.registry) {
      if (host.includes('*')) continue;
      for (const p of arrayOf<{ number: number }>(entries[0].se.spec.ports)) {
        const name = `outbound|${p.number}||${host}`;
        if (!this.clusters.has(name)) this.clusters.set(name, this.cluster(entries[0].se, name, host, p.number, undefined, entries[0]));
      }
    }
    const gateways = this.idx.gateways.map((gw) => this.gateway(gw));
    const security = this.security();
    const extAuthz = [...this.envoyExtAuthz(), ...this.customExtAuthz(security)];
    const localRateLimits = this.localRateLimits();
    const meshVs = this.idx.virtualServices.filter((vs) => {
      const gws = arrayOf<string>(vs.spec.gateways);
      return gws.length === 0 || gws.includes('mesh');
    });
    const mesh = { virtualHosts: this.virtualHosts(meshVs.flatMap((vs) => this.meshDomains(vs).map((d) => ({ vs, domain: d, server: -1 }))), 'mesh') };
    const files = [...this.config.fileContents.keys()].sort(cmp);
    const wasmPlugins = this.wasmPlugins();
    const body = {
      gateways,
      clusters: [...this.clusters.values()].sort((a, b) => cmp(a.name, b.name)),
      services: this.services(),
      workloads: this.workloads(),
      mesh,
      files,
      extAuthz,
      security,
      localRateLimits,
      meshConfig: this.meshSettings(),
      ...(wasmPlugins.length ? { wasmPlugins } : {}),
    };
    const version = this.version(body);
    return deepFreeze({ version, ...body });
  }

  /** sha256 over the canonical JSON, without source positions (moving YAML around is not a change) but with certificate bytes. */
  private version(body: Omit<Snapshot, 'version'>): string {
    const h = createHash('sha256');
    h.update(canonicalJson(body, (k) => k === 'source'));
    for (const f of body.files) {
      h.update(`\n${f}\n`);
      h.update(createHash('sha256').update(this.config.fileContents.get(f) ?? '').digest('hex'));
    }
    return h.digest('hex');
  }

  // ---- routes ----

  private destinationRef(vs: Resource, d: RawDestination): { host: string; port: number; subset?: string; cluster: string } {
    const host = fqdn(d.host, vs.namespace);
    const entry = lookupService(this.idx, host);
    const ports = arrayOf<{ number: number }>(entry?.se.spec.ports);
    const port = d.port?.number ?? (ports.length > 0 ? ports[0].number : 80);
    const subset = d.subset || undefined;
    const cluster = `outbound|${port}|${subset ?? ''}|${host}`;
    if (!this.clusters.has(cluster)) this.clusters.set(cluster, this.cluster(vs, cluster, host, port, subset, entry));
    return strip({ host, port, subset, cluster });
  }

  private httpMatch(vs: Resource, m: RawHttpMatch): RouteMatch {
    return strip({
      name: m.name,
      uri: stringMatch(m.uri),
      scheme: stringMatch(m.scheme),
      method: stringMatch(m.method),
      authority: stringMatch(m.authority),
      headers: namedMatches(m.headers, true),
      withoutHeaders: namedMatches(m.withoutHeaders, true),
      queryParams: namedMatches(m.queryParams, false),
      ignoreUriCase: m.ignoreUriCase ?? false,
      port: m.port,
      gateways: m.gateways?.map((g) => gatewayRef(g, vs.namespace)),
      sourceLabels: m.sourceLabels ? { ...m.sourceLabels } : undefined,
      sourceNamespace: m.sourceNamespace,
    });
  }

  private action(vs: Resource, rule: RawHttpRoute): RouteAction {
    if (rule.redirect) {
      const r = rule.redirect;
      return {
        kind: 'redirect',
        redirect: strip({ uri: r.uri, authority: r.authority, scheme: r.scheme, port: r.port, derivePort: r.derivePort, redirectCode: r.redirectCode ?? 301 }),
      };
    }
    if (rule.directResponse) {
      const b = rule.directResponse.body;
      const body = b?.string ?? (b?.bytes !== undefined ? Buffer.from(b.bytes, 'base64').toString('utf8') : undefined);
      return { kind: 'direct', response: strip({ status: rule.directResponse.status, body }) };
    }
    const dests = rule.route ?? [];
    const destinations: RouteDestination[] = dests.map((d) => {
      const ref = this.destinationRef(vs, d.destination);
      return strip({ ...ref, weight: d.weight ?? (dests.length === 1 ? 100 : 0), headers: headerRules(d.headers) });
    });
    const mirrors: Mirror[] = [];
    if (rule.mirror) {
      mirrors.push({ ...this.destinationRef(vs, rule.mirror), percentage: rule.mirrorPercentage?.value ?? 100 });
    }
    for (const m of rule.mirrors ?? []) mirrors.push({ ...this.destinationRef(vs, m.destination), percentage: m.percentage?.value ?? 100 });
    const rw = rule.rewrite;
    const timeout = ms(rule.timeout);
    return strip({
      kind: 'route' as const,
      destinations,
      rewrite: rw
        ? strip({
            uri: rw.uri,
            authority: rw.authority,
            uriRegex: rw.uriRegexRewrite ? { match: rw.uriRegexRewrite.match, rewrite: rw.uriRegexRewrite.rewrite } : undefined,
          })
        : undefined,
      timeoutMs: timeout ? timeout : undefined,
      retries: retries(rule.retries),
      mirrors,
    });
  }

  /** The VirtualService's rules, each `delegate` rule replaced by the delegate's rules merged under it. */
  private expandDelegates(vs: Resource<VirtualServiceSpec>): HttpRoute[] {
    const out: HttpRoute[] = [];
    arrayOf<RawHttpRoute>(vs.spec.http).forEach((rule, i) => {
      if (!rule.delegate) {
        out.push(this.httpRoute(vs, rule, i));
        return;
      }
      const delegate = findDelegate(this.idx, vs, rule.delegate);
      if (!delegate) return; // validation warns; Istio leaves the rule out
      arrayOf<RawHttpRoute>(delegate.spec.http).forEach((leaf, j) => {
        const merged = mergeDelegateRule(rule, leaf);
        // The delegate's own namespace resolves its destinations; exportTo stays the root's.
        if (merged) out.push({ ...this.httpRoute(delegate, merged, j), exportTo: exportToNamespaces(vs.spec.exportTo, vs.namespace) });
      });
    });
    return out;
  }

  private httpRoute(vs: Resource<VirtualServiceSpec>, rule: RawHttpRoute, index: number): HttpRoute {
    return strip({
      virtualService: vs.key,
      index,
      name: rule.name,
      source: this.source(vs, `spec.http[${index}]`),
      match: (rule.match ?? []).map((m) => this.httpMatch(vs, m)),
      action: this.action(vs, rule),
      headers: headerRules(rule.headers),
      cors: cors(rule.corsPolicy),
      fault: fault(rule.fault),
      exportTo: exportToNamespaces(vs.spec.exportTo, vs.namespace),
    });
  }

  /** The VirtualService's routes as seen from one gateway key (or `mesh`): match[].gateways filter. */
  private routesFor(vs: Resource, gatewayKey: string): HttpRoute[] {
    const out: HttpRoute[] = [];
    for (const r of this.routes.get(vs.key) ?? []) {
      if (r.match.length === 0) {
        out.push(r);
        continue;
      }
      const kept = r.match.filter((m) => !m.gateways || m.gateways.includes(gatewayKey));
      if (kept.length === r.match.length) out.push(r);
      else if (kept.length > 0) out.push({ ...r, match: kept });
    }
    return out;
  }

  // ---- virtual hosts ----

  /** Groups (VirtualService, domain, server) triples into VirtualHosts: one per distinct route set and servers. */
  private virtualHosts(entries: { vs: Resource; domain: string; server: number }[], gatewayKey: string): VirtualHost[] {
    const byDomain = new Map<string, { vs: Map<string, Resource>; servers: Set<number> }>();
    for (const e of entries) {
      const d = byDomain.get(e.domain) ?? { vs: new Map(), servers: new Set() };
      d.vs.set(e.vs.key, e.vs);
      if (e.server >= 0) d.servers.add(e.server);
      byDomain.set(e.domain, d);
    }
    const groups = new Map<string, { domains: string[]; vs: Resource[]; servers: number[] }>();
    for (const [domain, d] of byDomain) {
      const vs = [...d.vs.values()].sort((a, b) => cmp(a.key, b.key));
      const servers = [...d.servers].sort((a, b) => a - b);
      const sig = `${vs.map((v) => v.key).join(',')}|${servers.join(',')}`;
      const g = groups.get(sig) ?? { domains: [], vs, servers };
      g.domains.push(domain);
      groups.set(sig, g);
    }
    const hosts: VirtualHost[] = [];
    for (const g of groups.values()) {
      const routes = g.vs.flatMap((vs) => this.routesFor(vs, gatewayKey));
      if (routes.length === 0) continue;
      hosts.push({ domains: g.domains.sort(compareDomains), routes, servers: g.servers });
    }
    return hosts.sort((a, b) => compareDomains(a.domains[0], b.domains[0]));
  }

  /**
   * Domains a sidecar answers for: the FQDNs. Kubernetes short forms (`reviews`,
   * `reviews.default`) are added per sidecar at run time, its own namespace first
   * (gateway/router.ts meshOutboundTable): two namespaces' `reviews` must not merge here.
   */
  private meshDomains(vs: Resource<VirtualServiceSpec>): string[] {
    return [...new Set(arrayOf<string>(vs.spec.hosts).map((h) => fqdn(h, vs.namespace)))];
  }

  // ---- gateways ----

  private gateway(gw: Resource<import('./kinds/gateway.ts').GatewaySpec>): CompiledGateway {
    const servers = arrayOf<RawServer>(gw.spec.servers);
    const byPort = new Map<number, { server: RawServer; i: number }[]>();
    servers.forEach((server, i) => {
      const list = byPort.get(server.port.number) ?? [];
      list.push({ server, i });
      byPort.set(server.port.number, list);
    });
    const bound = this.idx.virtualServices.filter((vs) => arrayOf<string>(vs.spec.gateways).some((g) => gatewayRef(g, vs.namespace) === gw.key));
    const ports: GatewayPort[] = [...byPort.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([number, list]) => {
        const first = list[0].server;
        const compiled = list.map(({ server, i }) => this.server(gw, server, i));
        const entries: { vs: Resource; domain: string; server: number }[] = [];
        list.forEach(({ server }, si) => {
          const passthrough = server.tls?.mode === 'PASSTHROUGH' || server.tls?.mode === 'AUTO_PASSTHROUGH';
          if (!HTTP_PROTOCOLS.has(server.port.protocol) || passthrough) return;
          for (const vs of bound) {
            for (const vh of arrayOf<string>(vs.spec.hosts)) {
              const vsHost = fqdn(vh, vs.namespace);
              for (const raw of server.hosts) {
                const sh = splitServerHost(raw);
                if (!serverNamespaceAllows(sh.ns, gw.namespace, vs.namespace)) continue;
                const domain = intersectHosts(vsHost, sh.host);
                if (domain) entries.push({ vs, domain, server: si });
              }
            }
          }
        });
        const proto = first.port.protocol;
        const passthrough = (x: RawServer): boolean => x.tls?.mode === 'PASSTHROUGH' || x.tls?.mode === 'AUTO_PASSTHROUGH';
        const tcpServers = list.filter(({ server }) => server.port.protocol === 'TCP' || server.port.protocol === 'MONGO' || (server.port.protocol === 'TLS' && !passthrough(server)));
        const tlsServers = list.filter(({ server }) => server.port.protocol === 'TLS' && passthrough(server));
        return strip({
          number,
          bindPort: first.port.targetPort ?? number,
          bind: first.bind,
          protocol: proto as ServerProtocol,
          servers: compiled,
          virtualHosts: this.virtualHosts(entries, gw.key),
          tcpRoutes: tcpServers.length ? this.l4Routes(gw, bound, 'tcp', number, tcpServers.map((x) => x.server)) : undefined,
          tlsRoutes: tlsServers.length ? this.l4Routes(gw, bound, 'tls', number, tlsServers.map((x) => x.server)) : undefined,
        });
      });
    return {
      key: gw.key,
      name: gw.name,
      namespace: gw.namespace,
      source: this.source(gw, 'metadata.name'),
      selector: { ...(gw.spec.selector ?? {}) },
      ports,
    };
  }

  private server(gw: Resource, server: RawServer, i: number): GatewayServer {
    const t = server.tls;
    let tls: ServerTls | undefined;
    if (t?.mode && (server.port.protocol === 'HTTPS' || server.port.protocol === 'TLS')) {
      const files = this.config.tls.get(tlsKey(gw, `spec.servers[${i}].tls`));
      tls = strip({
        mode: t.mode,
        httpsRedirect: t.httpsRedirect ?? false,
        certFile: files?.certFile,
        keyFile: files?.keyFile,
        caFile: files?.caFile,
        credentialName: t.credentialName,
        minProtocolVersion: t.minProtocolVersion,
        maxProtocolVersion: t.maxProtocolVersion,
        cipherSuites: t.cipherSuites ? [...t.cipherSuites] : undefined,
        subjectAltNames: t.subjectAltNames ? [...t.subjectAltNames] : undefined,
      });
    }
    return strip({
      name: server.name,
      gateway: gw.key,
      source: this.source(gw, `spec.servers[${i}]`),
      hosts: server.hosts.map((h) => splitServerHost(h).host),
      httpsRedirect: t?.httpsRedirect ?? false,
      tls,
    });
  }

  // ---- L4 routes ----

  /** VirtualService tcp[]/tls[] rules bound to this gateway port, in (VirtualService, index) order. */
  private l4Routes(gw: Resource, bound: Resource<VirtualServiceSpec>[], section: 'tcp' | 'tls', port: number, servers: RawServer[]): L4Route[] {
    const out: L4Route[] = [];
    for (const vs of bound) {
      // The VirtualService must share a host with one of these servers (Istio binds by host too).
      const vsHosts = arrayOf<string>(vs.spec.hosts).map((h) => fqdn(h, vs.namespace));
      const hostOk = servers.some((srv) =>
        srv.hosts.some((raw) => {
          const sh = splitServerHost(raw);
          return serverNamespaceAllows(sh.ns, gw.namespace, vs.namespace) && vsHosts.some((h) => intersectHosts(h, sh.host));
        }),
      );
      if (!hostOk) continue;
      arrayOf<{ match?: RawL4Match[]; route?: { destination: RawDestination; weight?: number }[] }>(vs.spec[section]).forEach((rule, index) => {
        const all = arrayOf<RawL4Match>(rule.match).map((m) => this.l4Match(vs, m));
        const match = all.filter((m) => (!m.gateways || m.gateways.includes(gw.key)) && (m.port === undefined || m.port === port));
        if (all.length > 0 && match.length === 0) return;
        const dests = arrayOf<{ destination: RawDestination; weight?: number }>(rule.route);
        const destinations: L4Destination[] = dests.map((d) => {
          const ref = this.destinationRef(vs, d.destination);
          return strip({ host: ref.host, subset: ref.subset, port: ref.port, weight: d.weight ?? (dests.length === 1 ? 100 : 0), cluster: ref.cluster });
        });
        out.push({ virtualService: vs.key, index, source: this.source(vs, `spec.${section}[${index}]`), match, destinations });
      });
    }
    return out;
  }

  private l4Match(vs: Resource, m: RawL4Match): L4Match {
    return strip({
      port: m.port,
      destinationSubnets: (m.destinationSubnets ?? []).map(normaliseCidr),
      sniHosts: m.sniHosts?.map((h) => h.toLowerCase()),
      sourceLabels: m.sourceLabels ? { ...m.sourceLabels } : undefined,
      sourceNamespace: m.sourceNamespace,
      gateways: m.gateways?.map((g) => gatewayRef(g, vs.namespace)),
    });
  }

  // ---- policy: targets, security ----

  private target(r: Resource, selector: Record<string, string> | undefined, targetRefs?: unknown[]): PolicyTarget {
    return strip({
      namespace: r.namespace,
      meshWide: r.namespace === this.idx.rootNamespace,
      selector: { ...(selector ?? {}) },
      targetRefs: targetRefs?.length
        ? targetRefs.filter(isPlainObject).map((t) => strip({ kind: String(t.kind), group: t.group as string | undefined, name: String(t.name), namespace: t.namespace as string | undefined }))
        : undefined,
    });
  }

  private security(): SecurityPolicies {
    const peerAuthentications: PeerAuthn[] = this.idx.peerAuthentications.map((pa) => {
      const spec = pa.spec as PeerAuthenticationSpec;
      return {
        key: pa.key,
        name: pa.name,
        source: this.source(pa, 'metadata.name'),
        ...this.target(pa, spec.selector?.matchLabels),
        mode: (spec.mtls?.mode ?? 'UNSET') as MtlsMode,
        portLevelMtls: Object.entries(spec.portLevelMtls ?? {})
          .map(([port, v]) => ({ port: Number(port), mode: (v?.mode ?? 'UNSET') as MtlsMode }))
          .sort((a, b) => a.port - b.port),
      };
    });
    const authorizationPolicies: AuthzPolicy[] = this.idx.authorizationPolicies.map((ap) => {
      const spec = ap.spec as AuthorizationPolicySpec;
      return strip({
        key: ap.key,
        name: ap.name,
        source: this.source(ap, 'metadata.name'),
        ...this.target(ap, spec.selector?.matchLabels, spec.targetRefs ?? (spec.targetRef ? [spec.targetRef] : undefined)),
        action: spec.action ?? 'ALLOW',
        provider: spec.provider?.name,
        rules: (spec.rules ?? []).map((rule) => authzRule(rule ?? {})),
      });
    });
    const requestAuthentications: RequestAuthn[] = this.idx.requestAuthentications.map((ra) => {
      const spec = ra.spec as RequestAuthenticationSpec;
      return {
        key: ra.key,
        name: ra.name,
        source: this.source(ra, 'metadata.name'),
        ...this.target(ra, spec.selector?.matchLabels, spec.targetRefs ?? (spec.targetRef ? [spec.targetRef] : undefined)),
        jwtRules: (spec.jwtRules ?? []).map(jwtRule),
      };
    });
    return { rootNamespace: this.idx.rootNamespace, peerAuthentications, authorizationPolicies, requestAuthentications };
  }

  // ---- wasm ----

  private wasmPlugins(): WasmPluginConfig[] {
    const h = { source: (r: Resource, p: string) => this.source(r, p), target: (r: Resource, sel: Record<string, string> | undefined, refs?: unknown[]) => this.target(r, sel, refs) };
    const out = this.config.load.resources.filter((r) => r.kind === 'WasmPlugin').map((r) => compileWasmPlugin(r as Resource<RawWasmPluginSpec>, h));
    for (const ef of this.idx.envoyFilters) {
      arrayOf<RawPatch>(ef.spec.configPatches).forEach((p, i) => {
        if (classifyPatch(p) !== 'wasm') return;
        const c = compileEnvoyWasmPatch(ef, i, p.patch!.value!, p.match?.context ?? 'ANY', ef.spec.workloadSelector?.labels, h);
        if (c) out.push(c);
      });
    }
    return sortWasmPlugins(out);
  }

  // ---- ext_authz ----

  private authzCluster(r: Resource, s: ResolvedServer): string {
    const name = `outbound|${s.port}|${s.subset ?? ''}|${s.host}`;
    if (!this.clusters.has(name)) this.clusters.set(name, this.cluster(r, name, s.host, s.port, s.subset, s.entry));
    return name;
  }

  /** EnvoyFilter HTTP_FILTER patches inserting envoy.filters.http.ext_authz (the Kubeflow form). */
  private envoyExtAuthz(): ExtAuthzFilter[] {
    const out: ExtAuthzFilter[] = [];
    for (const ef of this.idx.envoyFilters) {
      arrayOf<RawPatch>(ef.spec.configPatches).forEach((p, i) => {
        if (classifyPatch(p) !== 'ext_authz') return;
        const value = p.patch!.value!;
        const tc = (value.typed_config ?? value.config) as Record<string, unknown>;
        const hs = protoField(tc, 'http_service') as Record<string, unknown>;
        const su = protoField(hs, 'server_uri') as Record<string, unknown>;
        const { server } = resolveEnvoyServer(this.idx, ef.namespace, su, '');
        if (!server) return;
        const req = protoField(hs, 'authorization_request') as Record<string, unknown> | undefined;
        const res = protoField(hs, 'authorization_response') as Record<string, unknown> | undefined;
        const clientHeaders = res ? protoField(res, 'allowed_client_headers') : undefined;
        const soe = protoField(tc, 'status_on_error') as Record<string, unknown> | undefined;
        const code = soe?.code;
        const body = protoField(tc, 'with_request_body') as Record<string, unknown> | undefined;
        const timeout = protoField(su, 'timeout');
        out.push(
          strip({
            id: `EnvoyFilter/${ef.key}/configPatches[${i}]`,
            origin: 'EnvoyFilter' as const,
            source: this.source(ef, `spec.configPatches[${i}]`),
            ...this.target(ef, ef.spec.workloadSelector?.labels),
            context: (p.match?.context ?? 'ANY') as ProxyContext,
            server: { cluster: this.authzCluster(ef, server), host: server.host, port: server.port, scheme: server.scheme },
            // Envoy HttpUri.timeout is required; 200 ms mirrors Envoy's gRPC service default.
            timeoutMs: typeof timeout === 'string' ? (parseDuration(timeout) ?? 200) : 200,
            pathPrefix: (protoField(hs, 'path_prefix') as string | undefined) ?? '',
            allowedRequestHeaders: envoyMatcherList(req ? protoField(req, 'allowed_headers') : undefined),
            headersToAdd: arrayOf<{ key: string; value?: string }>(req ? protoField(req, 'headers_to_add') : undefined).map((h) => [h.key.toLowerCase(), h.value ?? ''] as const),
            allowedUpstreamHeaders: envoyMatcherList(res ? protoField(res, 'allowed_upstream_headers') : undefined),
            allowedClientHeaders: clientHeaders === undefined ? undefined : envoyMatcherList(clientHeaders),
            allowedClientHeadersOnSuccess: envoyMatcherList(res ? protoField(res, 'allowed_client_headers_on_success') : undefined),
            failureModeAllow: protoField(tc, 'failure_mode_allow') === true,
            // Envoy: status_on_error defaults to 403 Forbidden.
            statusOnError: typeof code === 'number' ? code : typeof code === 'string' ? (HTTP_STATUS_NAMES[code] ?? 403) : 403,
            withRequestBody: body
              ? { maxRequestBytes: (protoField(body, 'max_request_bytes') as number | undefined) ?? 0, allowPartialMessage: protoField(body, 'allow_partial_message') === true }
              : undefined,
            applyTo: { kind: 'all' as const },
          }),
        );
      });
    }
    return out;
  }

  /** CUSTOM AuthorizationPolicies + MeshConfig envoyExtAuthzHttp providers (Istio's form). */
  private customExtAuthz(security: SecurityPolicies): ExtAuthzFilter[] {
    const out: ExtAuthzFilter[] = [];
    for (const ap of this.idx.authorizationPolicies) {
      if (ap.spec.action !== 'CUSTOM' || !ap.spec.provider?.name) continue;
      const found = this.idx.providers.get(ap.spec.provider.name);
      const p: RawExtAuthzHttpProvider | undefined = found?.provider.envoyExtAuthzHttp;
      if (!found || !p) continue;
      const { server } = resolveProviderServer(this.idx, found.mc.namespace, p, '');
      if (!server) continue;
      const compiled = security.authorizationPolicies.find((x) => x.key === ap.key)!;
      const body = p.includeRequestBodyInCheck;
      const { key: _k, name: _n, source: _s, action: _a, provider: _p, rules, ...target } = compiled;
      out.push(
        strip({
          id: `AuthorizationPolicy/${ap.key}`,
          origin: 'AuthorizationPolicy' as const,
          source: this.source(ap, 'metadata.name'),
          ...target,
          context: 'ANY' as const,
          provider: ap.spec.provider.name,
          server: { cluster: this.authzCluster(found.mc, server), host: server.host, port: server.port, scheme: server.scheme },
          // Istio: "timeout ... default is 10m".
          timeoutMs: p.timeout ? (parseDuration(p.timeout) ?? 600_000) : 600_000,
          pathPrefix: p.pathPrefix ?? '',
          allowedRequestHeaders: (p.includeRequestHeadersInCheck ?? p.includeHeadersInCheck ?? []).map(headerPatternMatcher),
          headersToAdd: Object.entries(p.includeAdditionalHeadersInCheck ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const).sort((a, b) => cmp(a[0], b[0])),
          allowedUpstreamHeaders: (p.headersToUpstreamOnAllow ?? []).map(headerPatternMatcher),
          allowedClientHeaders: p.headersToDownstreamOnDeny ? p.headersToDownstreamOnDeny.map(headerPatternMatcher) : undefined,
          allowedClientHeadersOnSuccess: (p.headersToDownstreamOnAllow ?? []).map(headerPatternMatcher),
          failureModeAllow: p.failOpen ?? false,
          statusOnError: p.statusOnError ? Number(p.statusOnError) : 403,
          withRequestBody: body ? { maxRequestBytes: body.maxRequestBytes ?? 0, allowPartialMessage: body.allowPartialMessage ?? false } : undefined,
          applyTo: { kind: 'rules' as const, rules },
        }),
      );
    }
    return out;
  }

  // ---- local rate limits ----

  /** The MeshConfig fields proxies read directly (telemetry, identity). */
  private meshSettings(): MeshSettings {
    const m = this.idx.mesh;
    const out: { -readonly [K in keyof MeshSettings]: MeshSettings[K] } = { trustDomain: m.trustDomain || 'cluster.local' };
    const sampling = m.defaultConfig?.tracing?.sampling;
    if (typeof sampling === 'number') out.tracingSampling = sampling;
    if (typeof m.accessLogFile === 'string' && m.accessLogFile) out.accessLogFile = m.accessLogFile;
    if (m.accessLogEncoding === 'JSON' || m.accessLogEncoding === 'TEXT') out.accessLogEncoding = m.accessLogEncoding;
    if (typeof m.accessLogFormat === 'string' && m.accessLogFormat) out.accessLogFormat = m.accessLogFormat;
    // Only when set, so snapshots of meshes on Istio's default stay as they were.
    const pn = m.pathNormalization?.normalization;
    if (pn !== undefined) out.pathNormalization = parsePathNormalization(pn) ?? DEFAULT_PATH_NORMALIZATION;
    return out;
  }

  private localRateLimits(): LocalRateLimit[] {
    const out: LocalRateLimit[] = [];
    for (const ef of this.idx.envoyFilters) {
      arrayOf<RawPatch>(ef.spec.configPatches).forEach((p, i) => {
        const kind = classifyPatch(p);
        if (kind !== 'local_ratelimit_filter' && kind !== 'local_ratelimit_route') return;
        const value = p.patch!.value!;
        const tc = kind === 'local_ratelimit_filter'
          ? (value.typed_config ?? value.config)
          : (protoField(value, 'typed_per_filter_config') as Record<string, unknown>)[LOCAL_RATELIMIT_NAME];
        if (!isPlainObject(tc)) return;
        const v = typeof tc['@type'] === 'string' && TYPED_STRUCT_TYPES.includes(tc['@type']) ? tc.value : tc;
        if (!isPlainObject(v)) return;
        const rc = p.match?.routeConfiguration;
        const scope: LocalRateLimit['scope'] =
          kind === 'local_ratelimit_filter'
            ? strip({ kind: 'listener' as const, portNumber: p.match?.listener?.portNumber })
            : p.applyTo === 'VIRTUAL_HOST'
              ? strip({ kind: 'vhost' as const, vhost: rc?.vhost?.name, portNumber: rc?.portNumber })
              : strip({ kind: 'route' as const, vhost: rc?.vhost?.name, route: rc?.vhost?.route?.name, portNumber: rc?.portNumber });
        const tb = protoField(v, 'token_bucket') as Record<string, unknown> | undefined;
        const fill = tb ? protoField(tb, 'fill_interval') : undefined;
        out.push(
          strip({
            id: `EnvoyFilter/${ef.key}/configPatches[${i}]`,
            source: this.source(ef, `spec.configPatches[${i}]`),
            ...this.target(ef, ef.spec.workloadSelector?.labels),
            context: (p.match?.context ?? 'ANY') as ProxyContext,
            scope,
            statPrefix: (protoField(v, 'stat_prefix') as string | undefined) ?? '',
            tokenBucket: tb
              ? {
                  maxTokens: protoField(tb, 'max_tokens') as number,
                  // Envoy: tokens_per_fill defaults to 1.
                  tokensPerFill: (protoField(tb, 'tokens_per_fill') as number | undefined) ?? 1,
                  fillIntervalMs: typeof fill === 'string' ? (parseDuration(fill) ?? 0) : 0,
                }
              : undefined,
            filterEnabled: fraction(protoField(v, 'filter_enabled')),
            filterEnforced: fraction(protoField(v, 'filter_enforced')),
            responseHeadersToAdd: arrayOf<Record<string, unknown>>(protoField(v, 'response_headers_to_add')).filter(isPlainObject).map((h) => {
              const hv = (h.header ?? {}) as { key?: string; value?: string };
              const action = protoField(h, 'append_action');
              const append = typeof action === 'string' ? action.startsWith('APPEND') : h.append !== false;
              return { name: String(hv.key ?? '').toLowerCase(), value: String(hv.value ?? ''), append };
            }),
          }),
        );
      });
    }
    return out.sort((a, b) => cmp(a.id, b.id));
  }

  // ---- clusters, services, workloads ----

  private endpoints(entry: RegistryEntry, port: { number: number; name: string; targetPort?: number } | undefined): Endpoint[] {
    const se = entry.se;
    const out: Endpoint[] = [];
    const portFor = (ports: Record<string, number> | undefined): number =>
      (port && ports?.[port.name]) ?? port?.targetPort ?? port?.number ?? 80;
    for (const ep of arrayOf<WorkloadEntrySpec>(se.spec.endpoints)) {
      out.push(
        strip({
          address: ep.address ?? '',
          port: portFor(ep.ports),
          labels: { ...(ep.labels ?? {}) },
          weight: ep.weight ?? 1,
          network: ep.network,
          locality: ep.locality,
          serviceAccount: ep.serviceAccount,
        }),
      );
    }
    const selector = se.spec.workloadSelector?.labels;
    if (se.spec.workloadSelector) {
      for (const we of this.idx.workloadEntries) {
        if (we.namespace !== se.namespace || !labelsMatch(selector, we.spec.labels)) continue;
        out.push(
          strip({
            address: we.spec.address ?? '',
            port: portFor(we.spec.ports),
            labels: { ...(we.spec.labels ?? {}) },
            weight: we.spec.weight ?? 1,
            network: we.spec.network,
            locality: we.spec.locality,
            serviceAccount: we.spec.serviceAccount,
            workload: we.key,
          }),
        );
      }
    }
    return out.sort((a, b) => cmp(a.address, b.address) || a.port - b.port || cmp(a.workload ?? '', b.workload ?? ''));
  }

  private cluster(vs: Resource, name: string, host: string, port: number, subset: string | undefined, entry: RegistryEntry | undefined): Cluster {
    const dr = lookupDestinationRule(this.idx, host, vs.namespace);
    const subsetDef = subset ? arrayOf<{ name: string; labels?: Record<string, string>; trafficPolicy?: RawTrafficPolicy }>(dr?.spec.subsets).find((s) => s.name === subset) : undefined;
    const trafficPolicy = dr ? this.trafficPolicy(dr, subsetDef, port) : {};
    if (!entry) {
      return { name, host, port, subset, resolution: 'DNS', protocol: 'HTTP', endpoints: [], trafficPolicy, meshExternal: true };
    }
    const se = entry.se.spec as ServiceEntrySpec;
    const sePort = arrayOf<{ number: number; name: string; protocol?: string; targetPort?: number }>(se.ports).find((p) => p.number === port);
    // A subset no DestinationRule defines has no endpoints (Istio builds no cluster for it: 503),
    // rather than every endpoint of the service.
    const unknownSubset = subset !== undefined && subsetDef === undefined;
    const endpoints = unknownSubset ? [] : this.endpoints(entry, sePort).filter((e) => labelsMatch(subsetDef?.labels, e.labels));
    return strip({
      name,
      host,
      port,
      subset,
      resolution: unknownSubset ? 'STATIC' : (se.resolution ?? 'NONE'),
      protocol: sePort ? portProtocol(sePort) : 'HTTP',
      endpoints,
      trafficPolicy,
      serviceEntry: entry.se.key,
      meshExternal: (se.location ?? 'MESH_EXTERNAL') === 'MESH_EXTERNAL',
    });
  }

  /** Top level → its port level → subset → subset port level; each later layer replaces whole sections. */
  private trafficPolicy(dr: Resource, subset: { name: string; trafficPolicy?: RawTrafficPolicy } | undefined, port: number): TrafficPolicy {
    const subsetIndex = subset ? arrayOf<{ name: string }>((dr.spec as { subsets?: unknown }).subsets).findIndex((s) => s.name === subset.name) : -1;
    const layers: { p: RawPortTrafficPolicy; path: string }[] = [];
    const addPolicy = (p: RawTrafficPolicy | undefined, path: string): void => {
      if (!p) return;
      layers.push({ p, path });
      const j = (p.portLevelSettings ?? []).findIndex((pl) => pl.port?.number === port);
      if (j >= 0) layers.push({ p: p.portLevelSettings![j], path: `${path}.portLevelSettings[${j}]` });
    };
    addPolicy((dr.spec as { trafficPolicy?: RawTrafficPolicy }).trafficPolicy, 'spec.trafficPolicy');
    if (subset) addPolicy(subset.trafficPolicy, `spec.subsets[${subsetIndex}].trafficPolicy`);
    let lb: RawLoadBalancer | undefined;
    let cp: RawConnectionPool | undefined;
    let od: RawOutlierDetection | undefined;
    let tls: { t: RawClientTls; path: string } | undefined;
    for (const { p, path } of layers) {
      lb = p.loadBalancer ?? lb;
      cp = p.connectionPool ?? cp;
      od = p.outlierDetection ?? od;
      if (p.tls) tls = { t: p.tls, path: `${path}.tls` };
    }
    return strip({
      loadBalancer: loadBalancer(lb),
      connectionPool: connectionPool(cp),
      outlierDetection: outlierDetection(od),
      tls: tls ? this.clientTls(dr, tls.t, tls.path) : undefined,
    });
  }

  private clientTls(dr: Resource, t: RawClientTls, path: string): ClientTls {
    const files = this.config.tls.get(tlsKey(dr, path));
    return strip({
      mode: t.mode ?? 'DISABLE',
      sni: t.sni,
      caFile: files?.caFile,
      certFile: files?.certFile,
      keyFile: files?.keyFile,
      credentialName: t.credentialName,
      subjectAltNames: t.subjectAltNames ? [...t.subjectAltNames] : undefined,
      insecureSkipVerify: t.insecureSkipVerify ?? false,
    });
  }

  private services(): Service[] {
    const out: Service[] = [];
    for (const [host, entries] of this.idx.registry) {
      const entry = entries[0];
      const se = entry.se.spec;
      const ports = arrayOf<{ number: number; name: string; protocol?: string; targetPort?: number }>(se.ports).map((p) =>
        strip({ number: p.number, name: p.name, protocol: portProtocol(p), targetPort: p.targetPort }),
      );
      const endpointPort = ports[0]; // Service.endpoints carry the first port; clusters pick per port.
      out.push({
        host,
        namespace: entry.se.namespace,
        ports,
        resolution: se.resolution ?? 'NONE',
        location: se.location ?? 'MESH_EXTERNAL',
        endpoints: this.endpoints(entry, endpointPort),
        serviceEntry: entry.se.key,
      });
    }
    return out.sort((a, b) => cmp(a.host, b.host) || cmp(a.namespace, b.namespace));
  }

  private workloads(): Workload[] {
    return this.idx.workloadEntries.map((we) =>
      strip({
        key: we.key,
        name: we.name,
        namespace: we.namespace,
        address: we.spec.address ?? '',
        labels: { ...(we.spec.labels ?? {}) },
        ports: { ...(we.spec.ports ?? {}) },
        serviceAccount: we.spec.serviceAccount,
        network: we.spec.network,
        locality: we.spec.locality,
        weight: we.spec.weight ?? 1,
      }),
    );
  }
}

/**
 * Envoy RuntimeFractionalPercent → percentage. Unset filter_enabled / filter_enforced mean 0%
 * ("defaults to 0% of requests for safety", local_ratelimit.v3.LocalRateLimit).
 */
function fraction(v: unknown): number {
  if (!isPlainObject(v)) return 0;
  const d = protoField(v, 'default_value');
  if (!isPlainObject(d)) return 0;
  const den = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 }[String(d.denominator ?? 'HUNDRED')] ?? 100;
  const num = typeof d.numerator === 'number' ? d.numerator : 0;
  return Math.min(100, (num / den) * 100);
}

const patterns = (xs: string[] | undefined): StringPattern[] => (xs ?? []).map(istioPattern);
const ports = (xs: (string | number)[] | undefined): number[] => (xs ?? []).map(Number);
const cidrs = (xs: string[] | undefined): string[] => (xs ?? []).map(normaliseCidr);

function pathPattern(p: string): StringPattern {
  return isPathTemplate(p) ? { template: p.split('/') } : istioPattern(p);
}

function operation(o: RawOperation): OperationMatch {
  return {
    paths: (o.paths ?? []).map(pathPattern),
    notPaths: (o.notPaths ?? []).map(pathPattern),
    hosts: patterns(o.hosts?.map((h) => h.toLowerCase())),
    notHosts: patterns(o.notHosts?.map((h) => h.toLowerCase())),
    methods: patterns(o.methods),
    notMethods: patterns(o.notMethods),
    ports: ports(o.ports),
    notPorts: ports(o.notPorts),
  };
}

function sourceMatch(s: RawSource): SourceMatch {
  return {
    principals: patterns(s.principals),
    notPrincipals: patterns(s.notPrincipals),
    requestPrincipals: patterns(s.requestPrincipals),
    notRequestPrincipals: patterns(s.notRequestPrincipals),
    namespaces: patterns(s.namespaces),
    notNamespaces: patterns(s.notNamespaces),
    ipBlocks: cidrs(s.ipBlocks),
    notIpBlocks: cidrs(s.notIpBlocks),
    remoteIpBlocks: cidrs(s.remoteIpBlocks),
    notRemoteIpBlocks: cidrs(s.notRemoteIpBlocks),
  };
}

function authzRule(rule: RawAuthzRule): AuthzRule {
  return {
    from: (rule.from ?? []).map((f) => sourceMatch(f?.source ?? {})),
    to: (rule.to ?? []).map((t) => operation(t?.operation ?? {})),
    when: (rule.when ?? []).map((c): Condition => {
      const k = parseConditionKey(c.key) ?? { type: 'pattern' as const };
      const raw = (xs: string[] | undefined): string[] => (xs ?? []).map((x) => (k.type === 'ip' ? normaliseCidr(x) : x));
      return strip({
        key: c.key,
        type: k.type,
        header: k.header,
        claim: k.claim,
        values: k.type === 'pattern' ? patterns(c.values) : [],
        notValues: k.type === 'pattern' ? patterns(c.notValues) : [],
        rawValues: k.type === 'pattern' ? [] : raw(c.values),
        rawNotValues: k.type === 'pattern' ? [] : raw(c.notValues),
      });
    }),
  };
}

function jwtRule(j: RawJwtRule): JwtRule {
  // Istio: with no location given, the token is read from `Authorization: Bearer` or `?access_token=`.
  const noLocation = !j.fromHeaders?.length && !j.fromParams?.length && !j.fromCookies?.length;
  return strip({
    issuer: j.issuer,
    audiences: [...(j.audiences ?? [])],
    jwksUri: j.jwksUri,
    jwks: j.jwks,
    fromHeaders: noLocation ? [{ name: 'authorization', prefix: 'Bearer ' }] : (j.fromHeaders ?? []).map((h) => ({ name: h.name.toLowerCase(), prefix: h.prefix ?? '' })),
    fromParams: noLocation ? ['access_token'] : [...(j.fromParams ?? [])],
    fromCookies: [...(j.fromCookies ?? [])],
    outputPayloadToHeader: j.outputPayloadToHeader?.toLowerCase(),
    forwardOriginalToken: j.forwardOriginalToken ?? false,
    outputClaimToHeaders: (j.outputClaimToHeaders ?? []).map((o) => ({ header: o.header.toLowerCase(), claim: o.claim })),
    timeoutMs: ms(j.timeout),
  });
}

/** JSON with object keys sorted recursively; `skip(key)` drops fields (e.g. source positions). */
export function canonicalJson(value: unknown, skip: (key: string) => boolean = () => false): string {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        if (skip(k)) continue;
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined) out[k] = walk(x);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(walk(value));
}

export function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
