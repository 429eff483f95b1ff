/**
 * Builds the runtime route table from a Snapshot, once per swap: selects the Gateways whose
 * selector matches this proxy's labels, merges their ports, and precompiles every matcher.
 * A request then costs one host lookup and a walk over precompiled predicates.
 */
import type {
  Cluster,
  L4Destination,
  L4Match,
  L4Route,
  CompiledGateway,
  GatewayServer,
  HttpRoute,
  RouteDestination,
  RouteMatch,
  ServerProtocol,
  Snapshot,
  VirtualHost,
} from '../config/snapshot.ts';
import { DEFAULT_RETRIES } from '../config/compile.ts';
import { selectExtAuthz, type CompiledExtAuthz, type ProxyIdentity } from './authz.ts';
import { compileGlobalReplace } from '../lib/re2.ts';
import { buildHttpChain, type ChainDeps } from '../dataplane/filters/chain.ts';
import type { HttpFilter } from '../dataplane/filters/types.ts';
import { compileMatchList, DomainIndex, type MatchInput } from './matchers.ts';
import { blockList, ipIn, labelsMatch } from './policy.ts';
import type { CompiledRateLimit, RateLimiters } from './ratelimit.ts';

/**
 * One Envoy route: a VirtualService `http[]` rule with ONE of its `match[]` entries (Istio turns
 * each match entry into its own Envoy route, so a rule with three entries is three routes; a rule
 * without `match` is one route matching every path). Everything the request path needs is
 * resolved here, once per snapshot.
 */
export interface CompiledRoute {
  readonly route: HttpRoute;
  readonly gateway: string;
  /** The match entry this route was built from; undefined for a rule without `match`. */
  readonly match: RouteMatch | undefined;
  readonly matches: (input: MatchInput) => boolean;
  /**
   * The upstream path (no query) for a request path, with the rule's `rewrite.uri` applied as
   * Envoy's `prefix_rewrite` for THIS match: the matched prefix is replaced; an exact or regex
   * match (or none) replaces the whole path... except that a rule without `uri` match is a `/`
   * prefix route, so `/a/foo` with rewrite `/r` becomes `/ra/foo`, as Envoy does.
   * Undefined when the rule has no uri rewrite.
   */
  readonly rewritePath?: (path: string) => string;
  /** True for Istio's catch-all routes (prefix `/` or regex `.*`, no header/query match). */
  readonly catchAll: boolean;
  /** Picks one destination by weight; undefined for redirect/direct routes. */
  readonly pick: () => RouteDestination | undefined;
  /** `rewrite.uriRegexRewrite`, compiled once (RE2 global replace over the path, as Envoy's `regex_rewrite`). */
  readonly regexRewrite?: (path: string) => string;
  /** Live hit counter (the only mutable field; read by the admin/dashboard). */
  hits: number;
}

export interface RuntimeVirtualHost {
  readonly domains: readonly string[];
  readonly routes: readonly CompiledRoute[];
  /** Indexes into PortTable.servers that cover these domains (for the 421 check). */
  readonly servers: ReadonlySet<number>;
}

/** One VirtualService `tcp[]`/`tls[]` rule, compiled. */
export interface CompiledL4Route {
  readonly route: L4Route;
  readonly matches: (conn: L4Input) => boolean;
  readonly pick: () => L4Destination | undefined;
}

/** What an L4 match can see of a connection. */
export interface L4Input {
  readonly port: number;
  /** Local (destination) address of the connection. */
  readonly localAddress: string;
  readonly sni?: string;
}

/** How a port's connections are handled. */
export type PortKind = 'http' | 'https' | 'tcp' | 'tls';

export interface PortTable {
  readonly kind: PortKind;
  readonly bindPort: number;
  /** The port number as the (first) Gateway declares it; what `match.port` compares with. */
  readonly number: number;
  readonly bind?: string;
  readonly protocol: ServerProtocol;
  readonly tls: boolean;
  readonly servers: readonly GatewayServer[];
  readonly hosts: DomainIndex<RuntimeVirtualHost>;
  /** SNI name → server index (exact, then wildcard, then `*`). */
  readonly sni: DomainIndex<number>;
  readonly virtualHosts: readonly RuntimeVirtualHost[];
  /**
   * Mesh outbound only: registry services without a VirtualService, reached by their own
   * default route (Envoy's per-service route), keyed by host alias then service port.
   */
  readonly services?: DomainIndex<ReadonlyMap<number, RuntimeVirtualHost>>;
  /** VirtualService `tcp[]` rules (TCP ports, and TLS ports that terminate). */
  readonly tcpRoutes: readonly CompiledL4Route[];
  /** VirtualService `tls[]` rules (PASSTHROUGH servers, by SNI). */
  readonly tlsRoutes: readonly CompiledL4Route[];
}

export interface RouteTable {
  readonly snapshot: Snapshot;
  /** The HTTP filter chain for this proxy (dataplane/filters), built once per snapshot. */
  readonly chain: readonly HttpFilter[];
  /** ext_authz filters that apply to this proxy, in evaluation order. */
  readonly extAuthz: readonly CompiledExtAuthz[];
  /** Local rate limits that apply to this proxy. */
  readonly rateLimits: readonly CompiledRateLimit[];
  readonly gateways: readonly CompiledGateway[];
  readonly ports: ReadonlyMap<number, PortTable>;
  readonly clusters: ReadonlyMap<string, Cluster>;
}


/** Keeps the match entries that apply on `gateway`; null when none does (route never applies). */
function applicableMatches(matches: readonly RouteMatch[], gateway: string): readonly RouteMatch[] | null {
  if (matches.length === 0) return matches;
  const kept = matches.filter((m) => !m.gateways || m.gateways.length === 0 || m.gateways.includes(gateway));
  return kept.length === 0 ? null : kept;
}

function weightedPicker(route: HttpRoute): () => RouteDestination | undefined {
  if (route.action.kind !== 'route') return () => undefined;
  const dests = route.action.destinations;
  if (dests.length === 0) return () => undefined;
  if (dests.length === 1) {
    const only = dests[0]!;
    return () => only;
  }
  const total = dests.reduce((sum, d) => sum + d.weight, 0);
  const cumulative: number[] = [];
  let acc = 0;
  for (const d of dests) cumulative.push((acc += d.weight));
  return () => {
    const r = Math.random() * total;
    for (let i = 0; i < cumulative.length; i++) if (r < cumulative[i]!) return dests[i];
    return dests[dests.length - 1];
  };
}

/**
 * Istio's IsCatchAllRoute: a route matching every path (prefix `/`, or regex `.*`) with no header
 * or query parameter condition. pilot/pkg/networking/core/route/route.go
 */
function isCatchAll(m: RouteMatch | undefined): boolean {
  if (!m) return true;
  if ((m.headers?.length ?? 0) > 0 || (m.queryParams?.length ?? 0) > 0 || (m.withoutHeaders?.length ?? 0) > 0) return false;
  const u = m.uri;
  if (!u) return true;
  return ('prefix' in u && u.prefix === '/') || ('regex' in u && u.regex === '.*');
}

/** `rewrite.uri` as Envoy's prefix_rewrite on the route built from match entry `m`. */
function compilePrefixRewrite(uri: string, m: RouteMatch | undefined): (path: string) => string {
  const u = m?.uri;
  // No uri condition: Istio emits prefix "/" for the route, so "/" is what gets replaced.
  const prefixLen = u === undefined ? 1 : 'prefix' in u ? u.prefix.length : -1;
  if (prefixLen < 0) return () => uri;
  return (path) => {
    let out = uri + path.slice(prefixLen);
    if (out.startsWith('//')) out = out.slice(1);
    return out === '' ? '/' : out;
  };
}

/**
 * `visibleIn`: the proxy's namespace; routes of VirtualServices not exported to it are left out
 * (Istio's `exportTo`: a gateway or sidecar sees only what is exported to its own namespace).
 */
export function compileRoutes(routes: readonly HttpRoute[], gateway: string, visibleIn?: string): CompiledRoute[] {
  const out: CompiledRoute[] = [];
  for (const route of routes) {
    if (route.exportTo && visibleIn !== undefined && !route.exportTo.includes(visibleIn)) continue;
    const matches = applicableMatches(route.match, gateway);
    if (matches === null) continue;
    const pick = weightedPicker(route);
    const rx = route.action.kind === 'route' ? route.action.rewrite?.uriRegex : undefined;
    const regexRewrite = rx ? compileGlobalReplace(rx.match, rx.rewrite) : undefined;
    const uri = route.action.kind === 'route' && route.action.rewrite?.uriRegex === undefined ? route.action.rewrite?.uri : undefined;
    const entries: (RouteMatch | undefined)[] = matches.length === 0 ? [undefined] : [...matches];
    for (const m of entries) {
      out.push({
        route,
        gateway,
        match: m,
        matches: compileMatchList(m ? [m] : []),
        rewritePath: uri !== undefined ? compilePrefixRewrite(uri, m) : undefined,
        catchAll: isCatchAll(m),
        pick,
        regexRewrite,
        hits: 0,
      });
    }
  }
  return out;
}

/**
 * Istio's SortVHostRoutes, applied to every gateway virtual host after the VirtualServices bound
 * to its host are concatenated: catch-all routes move to the end, the rest keep their order. So a
 * central dashboard's `prefix: /` no longer hides the apps' VirtualServices (and a catch-all
 * written first in one VirtualService is still tried last, as in Istio).
 * pilot/pkg/networking/core/gateway.go buildGatewayHTTPRouteConfig.
 */
export function sortVHostRoutes(routes: readonly CompiledRoute[]): CompiledRoute[] {
  const rest: CompiledRoute[] = [];
  const catchAll: CompiledRoute[] = [];
  for (const r of routes) (r.catchAll ? catchAll : rest).push(r);
  return rest.concat(catchAll);
}

interface PortBuilder {
  bindPort: number;
  number: number;
  bind?: string;
  protocol: ServerProtocol;
  servers: GatewayServer[];
  vhosts: { domains: string[]; routes: CompiledRoute[]; servers: Set<number> }[];
  tcpRoutes: CompiledL4Route[];
  tlsRoutes: CompiledL4Route[];
  byDomain: Map<string, { domains: string[]; routes: CompiledRoute[]; servers: Set<number> }>;
}

function isTlsProtocol(p: ServerProtocol): boolean {
  return p === 'HTTPS' || p === 'TLS';
}

function addVirtualHost(builder: PortBuilder, gateway: string, vh: VirtualHost, serverOffset: number, visibleIn: string): void {
  const routes = compileRoutes(vh.routes, gateway, visibleIn);
  const servers = vh.servers.map((i) => i + serverOffset);
  // Domains claimed by an earlier gateway on the same port get this gateway's routes appended.
  const fresh = vh.domains.filter((d) => !builder.byDomain.has(d));
  for (const d of vh.domains) {
    const existing = builder.byDomain.get(d);
    if (existing) {
      existing.routes.push(...routes);
      for (const s of servers) existing.servers.add(s);
    }
  }
  if (fresh.length > 0) {
    const entry = { domains: fresh, routes: [...routes], servers: new Set(servers) };
    builder.vhosts.push(entry);
    for (const d of fresh) builder.byDomain.set(d, entry);
  }
}

/**
 * Builds the route table for a proxy with `labels`. Throws (with a message naming both Gateways)
 * when two selected Gateways bind one port with different protocols; config validation reports
 * this too, so it only fires for label sets validation could not foresee.
 */
export interface RouteTableOptions {
  /** Who this proxy is, for selecting ext_authz filters (default: a gateway in istio-system). */
  readonly identity?: Omit<ProxyIdentity, 'labels'>;
  /** Long-lived token buckets; without it rate limits are not enforced. */
  readonly rateLimiters?: RateLimiters;
  /** Also serve the `mesh` VirtualServices as a plain-HTTP outbound proxy on this port (sidecar). */
  readonly meshOutboundPort?: number;
  readonly meshOutboundBind?: string;
  /** Long-lived state for the filter chain; without it the table has no filters (tests, tools). */
  readonly chainDeps?: Omit<ChainDeps, 'rateLimits'>;
}

export function buildRouteTable(snapshot: Snapshot, labels: Readonly<Record<string, string>>, opts: RouteTableOptions = {}): RouteTable {
  const gateways = snapshot.gateways.filter((g) => labelsMatch(g.selector, labels));
  const builders = new Map<number, PortBuilder & { owner: string }>();
  for (const gw of gateways) {
    for (const port of gw.ports) {
      let b = builders.get(port.bindPort);
      if (!b) {
        b = { tcpRoutes: [], tlsRoutes: [], bindPort: port.bindPort, number: port.number, bind: port.bind, protocol: port.protocol, servers: [], vhosts: [], byDomain: new Map(), owner: gw.key };
        builders.set(port.bindPort, b);
      } else if (isTlsProtocol(b.protocol) !== isTlsProtocol(port.protocol)) {
        throw new Error(`port ${port.bindPort}: Gateway ${gw.key} uses ${port.protocol} but ${b.owner} uses ${b.protocol}`);
      }
      const offset = b.servers.length;
      b.servers.push(...port.servers);
      for (const vh of port.virtualHosts) addVirtualHost(b, gw.key, vh, offset, opts.identity?.namespace ?? 'istio-system');
      b.tcpRoutes.push(...compileL4Routes(port.tcpRoutes ?? [], gw.key));
      b.tlsRoutes.push(...compileL4Routes(port.tlsRoutes ?? [], gw.key));
    }
  }

  const ports = new Map<number, PortTable>();
  for (const b of [...builders.values()].sort((x, y) => x.bindPort - y.bindPort)) {
    const hosts = new DomainIndex<RuntimeVirtualHost>();
    const virtualHosts: RuntimeVirtualHost[] = b.vhosts.map((v) => Object.freeze({ domains: v.domains, routes: sortVHostRoutes(v.routes), servers: v.servers }));
    for (const vh of virtualHosts) for (const d of vh.domains) hosts.add(d, vh);
    const sni = new DomainIndex<number>();
    b.servers.forEach((server, i) => {
      for (const h of server.hosts) sni.add(h, i);
    });
    const terminates = b.servers.some((s) => s.tls !== undefined && s.tls.mode !== 'PASSTHROUGH' && s.tls.mode !== 'AUTO_PASSTHROUGH');
    const kind: PortKind = b.protocol === 'TCP' || b.protocol === 'MONGO' ? 'tcp' : b.protocol === 'TLS' ? 'tls' : terminates ? 'https' : 'http';
    ports.set(b.bindPort, {
      kind,
      tcpRoutes: b.tcpRoutes,
      tlsRoutes: b.tlsRoutes,
      bindPort: b.bindPort,
      number: b.number,
      bind: b.bind,
      protocol: b.protocol,
      tls: terminates,
      servers: b.servers,
      hosts,
      sni,
      virtualHosts,
    });
  }
  if (opts.meshOutboundPort !== undefined) {
    if (ports.has(opts.meshOutboundPort)) throw new Error(`port ${opts.meshOutboundPort}: the mesh outbound listener collides with a Gateway port`);
    ports.set(opts.meshOutboundPort, meshOutboundTable(snapshot, opts.meshOutboundPort, opts.meshOutboundBind, opts.identity?.namespace));
  }
  const clusters = new Map(snapshot.clusters.map((c) => [c.name, c] as const));
  const who = { labels, namespace: opts.identity?.namespace ?? 'istio-system', context: opts.identity?.context ?? 'GATEWAY', workloadName: opts.identity?.workloadName } as const;
  const extAuthz = selectExtAuthz(snapshot, who);
  const rateLimits = opts.rateLimiters?.select(snapshot, who) ?? [];
  const chain = opts.chainDeps ? buildHttpChain(snapshot, { ...who, mode: 'edge' }, { ...opts.chainDeps, rateLimits }) : [];
  return { snapshot, chain, extAuthz, rateLimits, gateways, ports, clusters };
}

function compileL4Match(m: L4Match): (c: L4Input) => boolean {
  const subnets = blockList(m.destinationSubnets);
  const sni = m.sniHosts && m.sniHosts.length ? new DomainIndex<true>() : undefined;
  for (const h of m.sniHosts ?? []) sni!.add(h, true);
  return (c) => {
    if (m.port !== undefined && c.port !== m.port) return false;
    if (subnets && !ipIn(subnets, c.localAddress)) return false;
    if (sni && (c.sni === undefined || sni.lookup(c.sni) === undefined)) return false;
    return true;
  };
}

export function compileL4Routes(routes: readonly L4Route[], gateway: string): CompiledL4Route[] {
  const out: CompiledL4Route[] = [];
  for (const route of routes) {
    const ms = route.match.filter((m) => !m.gateways || m.gateways.length === 0 || m.gateways.includes(gateway));
    if (route.match.length > 0 && ms.length === 0) continue;
    const preds = ms.map(compileL4Match);
    const dests = route.destinations;
    const total = dests.reduce((n, d) => n + d.weight, 0);
    out.push({
      route,
      matches: preds.length === 0 ? () => true : (c) => preds.some((p) => p(c)),
      pick: () => {
        if (dests.length <= 1) return dests[0];
        let r = Math.random() * total;
        for (const d of dests) if ((r -= d.weight) < 0) return d;
        return dests[dests.length - 1];
      },
    });
  }
  return out;
}

/** First route whose match holds, in order (Istio: first match wins). */
export function matchRoute(vh: RuntimeVirtualHost, input: MatchInput): CompiledRoute | undefined {
  for (const r of vh.routes) if (r.matches(input)) return r;
  return undefined;
}

/** `ns` of `name.ns.svc.cluster.local`; undefined for other hosts. */
function namespaceOfHost(host: string): string | undefined {
  const m = /^[^.]+\.([^.]+)\.svc\.cluster\.local$/.exec(host);
  return m ? m[1] : undefined;
}

/** Short forms a client inside the mesh may use for `name.ns.svc.cluster.local`. */
export function hostAliases(host: string): string[] {
  const m = /^([^.]+)\.([^.]+)\.svc\.cluster\.local$/.exec(host);
  if (!m) return [host];
  return [host, m[1]!, `${m[1]}.${m[2]}`, `${m[1]}.${m[2]}.svc`];
}

/**
 * The outbound listener of a sidecar: VirtualServices bound to `mesh`, then every registry
 * service by its own name. The request's Host (with port) picks the service port.
 */
function meshOutboundTable(snapshot: Snapshot, bindPort: number, bind?: string, callerNs?: string): PortTable {
  const hosts = new DomainIndex<RuntimeVirtualHost>();
  const virtualHosts: RuntimeVirtualHost[] = snapshot.mesh.virtualHosts.map((vh) =>
    Object.freeze({ domains: vh.domains, routes: compileRoutes(vh.routes, 'mesh', callerNs), servers: new Set<number>() }),
  );
  // Short names (`reviews`) resolve in the caller's namespace first, as the Kubernetes DNS search
  // path does (`<ns>.svc.cluster.local` first); the first host added for a name keeps it.
  for (const vh of virtualHosts) for (const d of vh.domains) hosts.add(d, vh);
  const shortForms = (own: boolean): void => {
    for (const vh of virtualHosts) {
      for (const d of vh.domains) if ((namespaceOfHost(d) === callerNs) === own) for (const a of hostAliases(d)) hosts.add(a, vh);
    }
  };
  shortForms(true);
  shortForms(false);
  const services = new DomainIndex<ReadonlyMap<number, RuntimeVirtualHost>>();
  const ordered = [...snapshot.services.filter((s) => namespaceOfHost(s.host) === callerNs), ...snapshot.services.filter((s) => namespaceOfHost(s.host) !== callerNs)];
  for (const svc of ordered) {
    const byPort = new Map<number, RuntimeVirtualHost>();
    for (const p of svc.ports) {
      const route: HttpRoute = {
        virtualService: `registry/${svc.host}`,
        index: 0,
        source: { file: '', line: 0 },
        match: [],
        action: { kind: 'route', destinations: [{ host: svc.host, port: p.number, weight: 100, cluster: `outbound|${p.number}||${svc.host}` }], retries: DEFAULT_RETRIES, mirrors: [] },
      };
      byPort.set(p.number, { domains: hostAliases(svc.host), routes: compileRoutes([route], 'mesh'), servers: new Set() });
    }
    for (const alias of hostAliases(svc.host)) services.add(alias, byPort);
  }
  return { kind: 'http', tcpRoutes: [], tlsRoutes: [], bindPort, number: bindPort, bind: bind ?? '127.0.0.1', protocol: 'HTTP', tls: false, servers: [], hosts, sni: new DomainIndex(), virtualHosts, services };
}
