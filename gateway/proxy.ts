/**
 * The per-request path of the gateway: parse and normalise, find the virtual host and route,
 * then redirect, answer directly, or forward. Reads exactly one RouteTable per request, so a
 * swap mid-request never mixes two configurations.
 */
import type { TLSSocket } from 'node:tls';
import type { CorsPolicy, HttpRoute, Redirect, Rewrite } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';
import { checkExtAuthz, type AuthzDecision } from './authz.ts';
import type { PolicyInput } from './policy.ts';
import { ERR, type GatewayError } from './errors.ts';
import type { RequestObserver, Telemetry } from './telemetry/hooks.ts';
import { decideFault, GRPC_CODES, grpcStatusForHttp } from './fault.ts';
import { contained, failRequest } from './contain.ts';
import { forwardRequest, joinFlags, prepareBody, type DownstreamRequest, type DownstreamResponse, type ForwardResult, type RequestBody } from './forward.ts';
import { sendMirrors } from './mirror.ts';
import { checkRateLimits } from './ratelimit.ts';
import { applyHeaderOps, peerAddress, upstreamRequestHeaders, type HeaderMap, type HeaderPolicy } from './headers.ts';
import { compileStringMatch, hostOnly, type MatchInput, type StringPredicate } from './matchers.ts';
import { normalizePath, splitTarget } from './path.ts';
import type { UpstreamPools } from './pools.ts';
import { matchRoute, type CompiledRoute, type PortTable, type RouteTable, type RuntimeVirtualHost } from './router.ts';

/** One finished request, for access logs and metrics. */
export interface RequestRecord {
  readonly method: string;
  readonly authority: string;
  /** The request target as received (path and query). */
  readonly path: string;
  readonly status: number;
  /** Envoy response flags, comma separated, `-` for none. */
  readonly flag: string;
  /** performance.now() at the start of the request. */
  readonly startMs: number;
  readonly durationMs: number;
  /** `HTTP/1.1`, `HTTP/2`. */
  readonly protocol: string;
  readonly grpc: boolean;
  readonly route?: CompiledRoute;
  /** Upstream cluster name (`outbound|port|subset|host`) when the request was forwarded. */
  readonly cluster?: string;
  /** `address:port` of the last upstream endpoint tried. */
  readonly upstream?: string;
  readonly attempts?: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

export interface ProxyDeps {
  table(): RouteTable;
  readonly balancer: Balancer;
  readonly pools: UpstreamPools;
  readonly headerPolicy: HeaderPolicy;
  /** Called after each request; absent = no per-request bookkeeping at all. */
  readonly onRequest?: (record: RequestRecord) => void;
  /** Metrics/tracing; absent = none. */
  readonly telemetry?: Telemetry;
  /** Sidecar outbound: this workload's labels/namespace, for `sourceLabels`/`sourceNamespace` matches. */
  readonly source?: { readonly labels: Readonly<Record<string, string>>; readonly namespace: string };
}

/** Where the request came in: resolved once per listener. */
export interface ListenerInfo {
  readonly bindPort: number;
  /** The Gateway's declared port number (what `match.port` compares with). */
  readonly number: number;
  readonly scheme: 'http' | 'https';
}

const TEXT_HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' } as const;

function isGrpc(req: DownstreamRequest): boolean {
  const ct = req.headers['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

/**
 * A trailers-only gRPC reply (HTTP 200, `grpc-status`, `grpc-message`), which gRPC clients read;
 * they would see only "unknown" for a plain HTTP error.
 */
function sendGrpcStatus(res: DownstreamResponse, code: number, message: string): number {
  res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message), 'content-length': '0' });
  res.end();
  return 0;
}

/** Body bytes of replies the gateway generated itself, for %BYTES_SENT% and istio_response_bytes. */
const localReplyBytes = new WeakMap<DownstreamResponse, number>();

/** Ends `res` with a locally generated body, remembering its size for the request record. */
function endLocal(res: DownstreamResponse, body: string | Buffer): void {
  localReplyBytes.set(res, Buffer.byteLength(body));
  res.end(body);
}

/** Answers with a gateway error; returns the body bytes written. */
export function sendGatewayError(res: DownstreamResponse, err: GatewayError, detail?: string, req?: DownstreamRequest): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  if (req && isGrpc(req)) return sendGrpcStatus(res, grpcStatusForHttp(err.status), err.message);
  const body = `${err.message}${detail ? `: ${detail}` : ''}\n`;
  res.writeHead(err.status, { ...TEXT_HEADERS, 'content-length': Buffer.byteLength(body) });
  endLocal(res, body);
  return Buffer.byteLength(body);
}

function authorityOf(req: DownstreamRequest): string {
  const h = req.headers;
  const a = h[':authority'] ?? h.host;
  return typeof a === 'string' ? a : '';
}

function servernameOf(req: DownstreamRequest): string | undefined {
  const sock = req.socket as TLSSocket | undefined;
  const name = sock?.servername;
  return typeof name === 'string' && name ? name.toLowerCase() : undefined;
}

/** Finds the virtual host for `host`; on TLS ports also checks the connection's certificate covers it. */
function resolveVirtualHost(
  pt: PortTable,
  host: string,
  authority: string,
  req: DownstreamRequest,
): RuntimeVirtualHost | GatewayError {
  const vh = pt.hosts.lookup(host) ?? serviceDefault(pt, host, authority);
  if (!vh) return ERR.NO_ROUTE;
  if (pt.tls) {
    const sni = servernameOf(req);
    const idx = (sni !== undefined ? pt.sni.lookup(sni) : undefined) ?? 0;
    // RFC 9110 §15.5.20: a reused (HTTP/2) connection whose certificate was chosen for another
    // server must not be used for this host. The client retries on a new connection.
    if (!vh.servers.has(idx)) return ERR.MISDIRECTED;
  }
  return vh;
}

/** Mesh outbound: the registry service's own route, on the port the Host names (or its only port). */
function serviceDefault(pt: PortTable, host: string, authority: string): RuntimeVirtualHost | undefined {
  const byPort = pt.services?.lookup(host);
  if (!byPort) return undefined;
  const colon = authority.lastIndexOf(':');
  const port = colon > 0 && !authority.endsWith(']') ? Number(authority.slice(colon + 1)) : NaN;
  if (!Number.isNaN(port)) return byPort.get(port);
  return byPort.size === 1 ? byPort.values().next().value : byPort.get(80);
}

function redirectLocation(r: Redirect, input: MatchInput, host: string, listener: ListenerInfo): string {
  const scheme = r.scheme ?? input.scheme;
  let authority = r.authority ?? host;
  let port: number | undefined = r.port;
  if (port === undefined && r.derivePort === 'FROM_REQUEST_PORT') port = listener.number;
  if (port === undefined && r.authority === undefined && r.scheme === undefined) {
    // Keep the port the client used when nothing about the origin changes.
    const colon = input.authority.lastIndexOf(':');
    if (colon > 0 && !input.authority.endsWith(']')) authority = `${authority}${input.authority.slice(colon)}`;
  }
  if (port !== undefined && !((scheme === 'https' && port === 443) || (scheme === 'http' && port === 80))) {
    authority = `${authority.replace(/:\d+$/, '')}:${port}`;
  }
  let path = r.uri ?? input.path;
  if (input.query && !path.includes('?')) path += `?${input.query}`;
  return `${scheme}://${authority}${path}`;
}

const regexCache = new WeakMap<Rewrite, RegExp>();

function rewritePath(rw: Rewrite | undefined, route: CompiledRoute, input: MatchInput): string {
  let path = input.path;
  if (rw?.uriRegex) {
    let re = regexCache.get(rw);
    if (!re) {
      re = new RegExp(rw.uriRegex.match, 'gu');
      regexCache.set(rw, re);
    }
    re.lastIndex = 0;
    path = path.replace(re, rw.uriRegex.rewrite);
  } else if (rw?.uri !== undefined) {
    const matched = route.route.match.find((m) => m.uri !== undefined && 'prefix' in m.uri && (m.ignoreUriCase ? path.toLowerCase().startsWith(m.uri.prefix.toLowerCase()) : path.startsWith(m.uri.prefix)));
    if (matched && matched.uri && 'prefix' in matched.uri) {
      path = rw.uri + path.slice(matched.uri.prefix.length);
      if (path.startsWith('//')) path = path.slice(1);
      if (path === '') path = '/';
    } else {
      path = rw.uri;
    }
  }
  return input.query ? `${path}?${input.query}` : path;
}

const corsCache = new WeakMap<CorsPolicy, StringPredicate[]>();

function corsOriginAllowed(cors: CorsPolicy, origin: string): boolean {
  let preds = corsCache.get(cors);
  if (!preds) {
    preds = cors.allowOrigins.map((m) => compileStringMatch(m));
    corsCache.set(cors, preds);
  }
  return preds.some((p) => p(origin));
}

/** Adds CORS response headers for an allowed origin (simple and actual requests). */
function corsResponseHeaders(cors: CorsPolicy, origin: string, headers: HeaderMap): void {
  headers['access-control-allow-origin'] = origin;
  headers['vary'] = headers['vary'] ? `${String(headers['vary'])}, Origin` : 'Origin';
  if (cors.allowCredentials) headers['access-control-allow-credentials'] = 'true';
  if (cors.exposeHeaders.length) headers['access-control-expose-headers'] = cors.exposeHeaders.join(',');
}

/** Answers a CORS preflight when the policy covers it; false to pass the request on. */
function handlePreflight(cors: CorsPolicy, req: DownstreamRequest, res: DownstreamResponse, origin: string): boolean {
  if (!corsOriginAllowed(cors, origin)) return cors.unmatchedPreflights === 'IGNORE' ? respondEmpty(res, 200) : false;
  const headers: HeaderMap = {};
  corsResponseHeaders(cors, origin, headers);
  if (cors.allowMethods.length) headers['access-control-allow-methods'] = cors.allowMethods.join(',');
  const requested = req.headers['access-control-request-headers'];
  if (cors.allowHeaders.length) headers['access-control-allow-headers'] = cors.allowHeaders.join(',');
  else if (typeof requested === 'string') headers['access-control-allow-headers'] = requested;
  if (cors.maxAgeSeconds !== undefined) headers['access-control-max-age'] = String(cors.maxAgeSeconds);
  headers['content-length'] = '0';
  res.writeHead(200, headers as Record<string, string>);
  res.end();
  return true;
}

function respondEmpty(res: DownstreamResponse, status: number): true {
  res.writeHead(status, { 'content-length': '0' });
  res.end();
  return true;
}

/**
 * Parses the request target. Origin-form is the norm; absolute-form (`GET http://host/path`) is
 * what HTTP proxies receive (a sidecar's outbound listener) and carries the authority itself.
 */
function parseTarget(url: string): { authority?: string; path: string; query: string } | undefined {
  if (url.charCodeAt(0) === 47) return splitTarget(url);
  if (url.startsWith('http://') || url.startsWith('https://')) {
    const start = url.indexOf('//') + 2;
    const slash = url.indexOf('/', start);
    const q = url.indexOf('?', start);
    const end = slash >= 0 ? slash : q >= 0 ? q : url.length;
    const authority = url.slice(start, end);
    const rest = slash >= 0 ? url.slice(slash) : `/${url.slice(end)}`;
    return { authority, ...splitTarget(rest) };
  }
  if (url === '*') return { path: '*', query: '' };
  return undefined;
}

export interface RoutedRequest {
  readonly table: RouteTable;
  readonly route: CompiledRoute;
  readonly input: MatchInput;
  readonly host: string;
  readonly vh: RuntimeVirtualHost;
}

/**
 * Routing shared by plain requests and websocket upgrades. Returns the error to answer with
 * when the request cannot be routed (or a redirect for httpsRedirect servers).
 */
export function routeRequest(
  deps: ProxyDeps,
  listener: ListenerInfo,
  req: DownstreamRequest,
): RoutedRequest | { error: GatewayError; detail?: string } | { redirect: string; status: number } {
  const table = deps.table();
  const pt = table.ports.get(listener.bindPort);
  if (!pt) return { error: ERR.NO_ROUTE, detail: `port ${listener.bindPort} is no longer served` };
  const target = parseTarget(req.url ?? '');
  if (!target) return { error: ERR.BAD_REQUEST, detail: 'malformed request target' };
  const authority = target.authority ?? authorityOf(req);
  if (!authority) return { error: ERR.BAD_REQUEST, detail: 'missing Host header' };
  const path = normalizePath(target.path);
  if (path === undefined) return { error: ERR.BAD_PATH };
  const host = hostOnly(authority);
  const input: MatchInput = {
    method: req.method ?? 'GET',
    path,
    query: target.query,
    scheme: listener.scheme,
    authority,
    headers: req.headers,
    port: listener.number,
    sourceLabels: deps.source?.labels,
    sourceNamespace: deps.source?.namespace,
  };

  if (!pt.tls) {
    const idx = pt.sni.lookup(host);
    const server = idx === undefined ? undefined : pt.servers[idx];
    if (server?.httpsRedirect) {
      const httpsPort = httpsPortFor(table, host);
      const portPart = httpsPort === undefined || httpsPort === 443 ? '' : `:${httpsPort}`;
      const q = target.query ? `?${target.query}` : '';
      return { redirect: `https://${host}${portPart}${path}${q}`, status: 301 };
    }
  }

  const vh = resolveVirtualHost(pt, host, authority, req);
  if ('code' in vh) return { error: vh, detail: vh === ERR.NO_ROUTE ? `${input.method} ${host}${path}` : host };
  const route = matchRoute(vh, input);
  if (!route) return { error: ERR.NO_ROUTE, detail: `${input.method} ${host}${path}` };
  route.hits++;
  return { table, route, input, host, vh };
}

/** The HTTPS port (as declared) of a selected Gateway serving `host`, for httpsRedirect. */
function httpsPortFor(table: RouteTable, host: string): number | undefined {
  for (const gw of table.gateways) {
    for (const p of gw.ports) {
      if (p.protocol !== 'HTTPS') continue;
      for (const s of p.servers) {
        if (s.hosts.some((h) => h === '*' || h === host || (h.startsWith('*.') && host.endsWith(h.slice(1))))) return p.number;
      }
    }
  }
  return undefined;
}

function applyRouteResponseOps(route: HttpRoute, destHeaders: HttpRoute['headers'], headers: HeaderMap): void {
  applyHeaderOps(headers, destHeaders?.response);
  applyHeaderOps(headers, route.headers?.response);
}

/** The `request` listener of every HTTP/HTTPS port. */
const vhostNameCache = new WeakMap<RuntimeVirtualHost, string[]>();

/** Envoy's names for a gateway virtual host: `domain:port` for each domain. */
function vhostNames(vh: RuntimeVirtualHost, port: number): string[] {
  let names = vhostNameCache.get(vh);
  if (!names) {
    names = vh.domains.map((d) => `${d}:${port}`);
    vhostNameCache.set(vh, names);
  }
  return names;
}

/** One request in flight past routing: what every later stage needs. */
interface Exchange {
  readonly deps: ProxyDeps;
  readonly listener: ListenerInfo;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly routed: RoutedRequest;
  readonly done: Done;
  /** Response flags so far (`DI` after an injected delay). */
  flags: string;
  /**
   * The request headers as the upstream will get them, computed once right after routing (as
   * Envoy's connection manager does before its filters): identity and hop-by-hop headers gone,
   * x-forwarded-*, x-request-id set. ext_authz checks and the forwarded request both use them.
   */
  readonly headers: HeaderMap;
  /** The ext_authz verdict when one allowed the request. */
  authz?: Extract<AuthzDecision, { kind: 'allow' }>;
  readonly observer?: RequestObserver;
}

type Done = (status: number, flag: string, route?: CompiledRoute, forwarded?: ForwardResult & { cluster: string }) => void;

function addFlag(flags: string, flag: string): string {
  if (flag === '-') return flags;
  return flags === '-' ? flag : `${flags},${flag}`;
}

/** The `request` listener of every HTTP/HTTPS port. */
export function handleRequest(deps: ProxyDeps, listener: ListenerInfo, req: DownstreamRequest, res: DownstreamResponse): void {
  const observer = deps.telemetry?.begin(req, listener);
  const record = deps.onRequest !== undefined || observer !== undefined;
  const started = record ? performance.now() : 0;
  const done: Done = (status, flag, route, forwarded) => {
    if (!record) return;
    const rec: RequestRecord = {
      method: req.method ?? '',
      authority: authorityOf(req),
      path: req.url ?? '',
      status,
      flag,
      startMs: started,
      durationMs: performance.now() - started,
      protocol: req.httpVersion === '2.0' ? 'HTTP/2' : 'HTTP/1.1',
      grpc: isGrpc(req),
      route,
      cluster: forwarded?.cluster,
      upstream: forwarded?.upstream,
      attempts: forwarded?.attempts,
      requestBytes: Number(req.headers['content-length'] ?? 0) || 0,
      // writeHead(status, headers) leaves getHeader() empty on HTTP/1.1: local replies record their size.
      responseBytes: forwarded?.responseBytes ?? localReplyBytes.get(res) ?? 0,
    };
    observer?.end(rec);
    deps.onRequest?.(rec);
  };

  const routed = routeRequest(deps, listener, req);
  if ('redirect' in routed) {
    res.writeHead(routed.status, { location: routed.redirect, 'content-length': '0' });
    res.end();
    return done(routed.status, '-');
  }
  if ('error' in routed) {
    sendGatewayError(res, routed.error, routed.detail, req);
    return done(routed.error.status, routed.error.flag);
  }
  const headers = upstreamRequestHeaders(req.headers, { remoteAddress: req.socket?.remoteAddress ?? '', scheme: listener.scheme, authority: routed.input.authority }, deps.headerPolicy);
  // Trace context goes in now, so an ext_authz check carries it too (its span joins the trace).
  observer?.upstreamHeaders?.(headers);
  const ex: Exchange = { deps, listener, req, res, routed, done, flags: '-', observer, headers };
  const r = routed.route.route;

  if (routed.table.rateLimits.length > 0) {
    const refused = checkRateLimits(routed.table.rateLimits, { port: listener.number, vhostNames: vhostNames(routed.vh, listener.number), routeName: r.name });
    if (refused) {
      const body = 'local_rate_limited';
      res.writeHead(ERR.RATE_LIMITED.status, { ...TEXT_HEADERS, ...refused, 'content-length': Buffer.byteLength(body) });
      endLocal(res, body);
      return done(ERR.RATE_LIMITED.status, ERR.RATE_LIMITED.flag, routed.route);
    }
  }

  // Envoy's filter order: CORS answers preflights before ext_authz sees them.
  const origin = req.headers.origin;
  if (r.cors && typeof origin === 'string' && routed.input.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
    if (handlePreflight(r.cors, req, res, origin)) return done(res.statusCode, '-', routed.route);
  }

  const filters = routed.table.extAuthz;
  if (filters.length === 0) return afterAuthz(ex);
  const { input, host } = routed;
  const remote = peerAddress(req.socket?.remoteAddress);
  const policyInput: PolicyInput = { path: input.path, host, method: input.method, port: listener.number, headers: req.headers, sourceIp: remote, remoteIp: remote };
  checkExtAuthz(
    filters,
    policyInput,
    { method: input.method, pathAndQuery: input.query ? `${input.path}?${input.query}` : input.path, authority: input.authority, headers },
    deps,
  ).then(
    (decision) => {
      if (res.destroyed) return;
      if (decision?.kind === 'deny') {
        res.writeHead(decision.status, decision.headers);
        endLocal(res, decision.body);
        return done(decision.status, 'UAEX', routed.route);
      }
      ex.authz = decision;
      afterAuthz(ex);
    },
    () => {
      sendGatewayError(res, ERR.AUTHZ_ERROR, undefined, req);
      done(ERR.AUTHZ_ERROR.status, ERR.AUTHZ_ERROR.flag, routed.route);
    },
  ).catch((err: unknown) => failRequest(res, err)); // a bug past this point ends this request only
}

function addClientHeaders(ex: Exchange, headers: HeaderMap): void {
  if (ex.authz) for (const [k, v] of ex.authz.clientHeaders) headers[k] = v;
}

function afterAuthz(ex: Exchange): void {
  const { routed, res, listener, done } = ex;
  const { route, input, host } = routed;
  const r = route.route;
  const action = r.action;
  if (action.kind === 'redirect') {
    const location = redirectLocation(action.redirect, input, host, listener);
    const headers: HeaderMap = { location, 'content-length': '0' };
    applyHeaderOps(headers, r.headers?.response);
    addClientHeaders(ex, headers);
    res.writeHead(action.redirect.redirectCode, headers as Record<string, string>);
    res.end();
    return done(action.redirect.redirectCode, '-', route);
  }
  if (action.kind === 'direct') {
    const body = action.response.body ?? '';
    const headers: HeaderMap = { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) };
    applyHeaderOps(headers, r.headers?.response);
    addClientHeaders(ex, headers);
    res.writeHead(action.response.status, headers as Record<string, string>);
    endLocal(res, body);
    return done(action.response.status, '-', route);
  }
  const fault = decideFault(r.fault);
  if (fault.delayMs > 0) {
    const timer = setTimeout(() => {
      if (res.writableEnded || res.destroyed) return;
      ex.flags = addFlag(ex.flags, 'DI');
      contained(res, () => proceed(ex, fault.abort));
    }, fault.delayMs);
    res.once('close', () => clearTimeout(timer));
    return;
  }
  proceed(ex, fault.abort);
}

function proceed(ex: Exchange, abort: { httpStatus?: number; grpcStatus?: string } | undefined): void {
  const { deps, req, res, routed, done } = ex;
  const { route, input, table } = routed;
  const r = route.route;
  const action = r.action;
  if (action.kind !== 'route') return;
  if (abort) {
    const flags = addFlag(ex.flags, 'FI');
    if (abort.grpcStatus !== undefined) {
      sendGrpcStatus(res, GRPC_CODES[abort.grpcStatus] ?? 2, 'fault filter abort');
      return done(200, flags, route);
    }
    const status = abort.httpStatus ?? 500;
    const body = 'fault filter abort';
    res.writeHead(status, { ...TEXT_HEADERS, 'content-length': Buffer.byteLength(body) });
    endLocal(res, body);
    return done(status, flags, route);
  }
  const origin = req.headers.origin;
  const cors = r.cors && typeof origin === 'string' ? r.cors : undefined;
  const dest = route.pick();
  const cluster = dest ? table.clusters.get(dest.cluster) : undefined;
  if (!dest || !cluster) {
    sendGatewayError(res, ERR.NO_CLUSTER, dest?.cluster, req);
    return done(ERR.NO_CLUSTER.status, ERR.NO_CLUSTER.flag, route);
  }

  const headers = ex.headers;
  headers['host'] = action.rewrite?.authority ?? input.authority;
  // ext_authz results land after client identity headers were stripped, before route ops.
  if (ex.authz) for (const [k, v] of ex.authz.upstreamHeaders) headers[k] = v;
  applyHeaderOps(headers, r.headers?.request);
  applyHeaderOps(headers, dest.headers?.request);

  const path = rewritePath(action.rewrite, route, input);
  const send = (body: RequestBody): void => {
    if (action.mirrors.length > 0) sendMirrors(action.mirrors, table.clusters, deps, { method: input.method, path, headers, body });
    // perf: callback form of forward() (no Promise per request); the result carries the cluster name.
    forwardRequest(
      {
        req,
        res,
        cluster,
        method: input.method,
        path,
        headers,
        body,
        timeoutMs: action.timeoutMs,
        retries: action.retries,
        pools: deps.pools,
        balancer: deps.balancer,
        pickRequest: { headers: req.headers, sourceIp: peerAddress(req.socket?.remoteAddress), query: input.query },
        sendError: (err) => sendGatewayError(res, err, undefined, req),
        onResponseHeaders: (h) => {
          applyRouteResponseOps(r, dest.headers, h);
          if (cors && corsOriginAllowed(cors, origin as string)) corsResponseHeaders(cors, origin as string, h);
          addClientHeaders(ex, h);
        },
      },
      (result) => done(result.status, joinFlags(ex.flags, result.flag), route, result),
    );
  };
  const body = prepareBody(req, action.retries);
  if ('then' in body) {
    body
      .then(send, () => {
        // Cut short or malformed (e.g. h2 DATA beyond content-length): never sent upstream.
        sendGatewayError(res, ERR.BAD_REQUEST, 'request body could not be read', req);
        done(400, 'DPE', route);
      })
      .catch((err: unknown) => failRequest(res, err));
  } else send(body);
}
