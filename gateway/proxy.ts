/**
 * The per-request path of the gateway: parse and normalise, find the virtual host and route,
 * then redirect, answer directly, or forward. Reads exactly one RouteTable per request, so a
 * swap mid-request never mixes two configurations.
 */
import type { TLSSocket } from 'node:tls';
import type { HttpRoute, Redirect, Rewrite } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';
import { bodyHook, doneOnClose, runRequestFilters, runResponseFilters } from '../dataplane/filters/chain.ts';
import type { FilterExchange, HttpFilter, LocalReply } from '../dataplane/filters/types.ts';
import { ERR, type GatewayError } from './errors.ts';
import type { RequestObserver, Telemetry } from './telemetry/hooks.ts';
import { grpcStatusForHttp } from './fault.ts';
import { contained, failRequest } from './contain.ts';
import { forwardRequest, joinFlags, prepareBody, type DownstreamRequest, type DownstreamResponse, type ForwardResult, type RequestBody } from './forward.ts';
import { sendMirrors } from './mirror.ts';
import { applyHeaderOps, clientAddress, peerAddress, upstreamRequestHeaders, type HeaderMap, type HeaderPolicy } from './headers.ts';
import { hostOnly, type MatchInput } from './matchers.ts';
import { normalizePath, splitTarget } from '../lib/path.ts';
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
  /** A filter threw or rejected (the request got a 500); for the log. */
  readonly onFilterError?: (err: unknown, filter: string) => void;
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
function sendGrpcStatus(res: DownstreamResponse, code: number, message: string): void {
  res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message), 'content-length': '0' });
  res.end();
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
  if (req && isGrpc(req)) {
    sendGrpcStatus(res, grpcStatusForHttp(err.status), err.message);
    return 0;
  }
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

function rewritePath(rw: Rewrite | undefined, route: CompiledRoute, input: MatchInput): string {
  let path = input.path;
  if (rw?.uriRegex && route.regexRewrite) {
    // RE2 global replace, compiled once per route table (router.ts).
    path = route.regexRewrite(path);
  } else if (route.rewritePath) {
    // Precompiled for the match entry that fired (router.ts compilePrefixRewrite).
    path = route.rewritePath(path);
  }
  return input.query ? `${path}?${input.query}` : path;
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

/** A well-formed request no route matched: what the filters still see. */
export interface Unrouted {
  readonly input: MatchInput;
  readonly host: string;
  readonly vh?: RuntimeVirtualHost;
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
): RoutedRequest | { error: GatewayError; detail?: string; unrouted?: Unrouted } | { redirect: string; status: number } {
  const table = deps.table();
  const pt = table.ports.get(listener.bindPort);
  if (!pt) return { error: ERR.NO_ROUTE, detail: `port ${listener.bindPort} is no longer served` };
  const target = parseTarget(req.url ?? '');
  if (!target) return { error: ERR.BAD_REQUEST, detail: 'malformed request target' };
  const authority = target.authority ?? authorityOf(req);
  if (!authority) return { error: ERR.BAD_REQUEST, detail: 'missing Host header' };
  const path = normalizePath(target.path, table.snapshot.meshConfig.pathNormalization);
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
  if ('code' in vh) return { error: vh, detail: vh === ERR.NO_ROUTE ? `${input.method} ${host}${path}` : host, unrouted: vh === ERR.NO_ROUTE ? { input, host } : undefined };
  const route = matchRoute(vh, input);
  if (!route) return { error: ERR.NO_ROUTE, detail: `${input.method} ${host}${path}`, unrouted: { input, host, vh } };
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
  /** The filter chain's view of the request (flags, identity, headers to add). */
  readonly fx: FilterExchange;
  readonly observer?: RequestObserver;
}

/** `forwarded` is the forward's result, or only the cluster the route chose (fault aborts: Istio labels them with it). */
type Done = (status: number, flag: string, route?: CompiledRoute, forwarded?: Partial<ForwardResult> & { cluster: string }) => void;

/**
 * A fault abort is recorded with the cluster its route picks: Envoy chose it at route match,
 * before the fault filter ran, so Istio's metrics and spans name the route's destination.
 */
function faultTarget(route: CompiledRoute, reply: LocalReply): { cluster: string } | undefined {
  if (!reply.flag.split(',').includes('FI')) return undefined;
  const d = route.pick();
  return d ? { cluster: d.cluster } : undefined;
}

function addFlag(flags: string, flag: string): string {
  if (flag === '-') return flags;
  return flags === '-' ? flag : `${flags},${flag}`;
}

const NO_NAMES: readonly string[] = [];

/**
 * Shared, never written: with an empty chain no filter adds response headers or keeps state, so
 * a request on an unconfigured gateway allocates neither.
 */
const NO_RESPONSE_HEADERS: [string, string][] = [];
const NO_STATE = new Map<object | symbol, unknown>();

function filterExchange(deps: ProxyDeps, listener: ListenerInfo, req: DownstreamRequest, input: MatchInput, host: string, route: CompiledRoute | undefined, vh: RuntimeVirtualHost | undefined, headers: HeaderMap, filters: number): FilterExchange {
  const peer = peerAddress(req.socket?.remoteAddress);
  return {
    request: {
      method: input.method,
      path: input.path,
      query: input.query,
      authority: input.authority,
      host: host.toLowerCase(),
      scheme: listener.scheme,
      port: listener.number,
      headers: req.headers,
      peerIp: peer,
      remoteIp: clientAddress(req.headers['x-forwarded-for'], peer, deps.headerPolicy.trustedHops),
      protocol: req.httpVersion === '2.0' ? 'HTTP/2' : 'HTTP/1.1',
    },
    route,
    vhostNames: vh ? vhostNames(vh, listener.number) : NO_NAMES,
    upstreamHeaders: headers,
    responseHeaders: filters > 0 ? [] : NO_RESPONSE_HEADERS,
    flags: '-',
    state: filters > 0 ? new Map() : NO_STATE,
    bodySource: req,
  };
}

/** Sends a filter's local reply, with the response filters run over its headers. */
function sendLocalReply(chain: readonly HttpFilter[], fx: FilterExchange, req: DownstreamRequest, res: DownstreamResponse, reply: LocalReply): number {
  if (res.headersSent) {
    res.destroy();
    return reply.status;
  }
  if (reply.grpcStatus !== undefined || (reply.status >= 400 && isGrpc(req) && reply.headers?.['content-type'] === undefined)) {
    sendGrpcStatus(res, reply.grpcStatus ?? grpcStatusForHttp(reply.status), typeof reply.body === 'string' ? reply.body : 'denied');
    return 200;
  }
  const headers: HeaderMap = {};
  if (reply.headers) for (const k in reply.headers) headers[k] = reply.headers[k] as string | string[];
  headers['content-length'] = String(Buffer.byteLength(reply.body));
  runResponseFilters(chain, fx, reply.status, headers);
  res.writeHead(reply.status, headers as Record<string, string>);
  endLocal(res, reply.body);
  return reply.status;
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
    const chain = deps.table().chain;
    // No route: the filters still run first (Envoy's router is the last filter), so a DENY policy
    // or an invalid token is answered as such rather than with 404.
    if (chain.length === 0 || !routed.unrouted) {
      sendGatewayError(res, routed.error, routed.detail, req);
      return done(routed.error.status, routed.error.flag);
    }
    const u = routed.unrouted;
    const headers = upstreamRequestHeaders(req.headers, { remoteAddress: req.socket?.remoteAddress ?? '', scheme: listener.scheme, authority: u.input.authority }, deps.headerPolicy);
    const fx = filterExchange(deps, listener, req, u.input, u.host, undefined, u.vh, headers, chain.length);
    doneOnClose(chain, fx, res);
    runRequestFilters(chain, fx, (reply) => {
      if (res.destroyed) return;
      if (reply) return done(sendLocalReply(chain, fx, req, res, reply), reply.flag);
      sendGatewayError(res, routed.error, routed.detail, req);
      done(routed.error.status, routed.error.flag);
    });
    return;
  }
  const headers = upstreamRequestHeaders(req.headers, { remoteAddress: req.socket?.remoteAddress ?? '', scheme: listener.scheme, authority: routed.input.authority }, deps.headerPolicy);
  // Trace context goes in now, so an ext_authz check carries it too (its span joins the trace).
  observer?.upstreamHeaders?.(headers);
  const fx = filterExchange(deps, listener, req, routed.input, routed.host, routed.route, routed.vh, headers, routed.table.chain.length);
  const ex: Exchange = { deps, listener, req, res, routed, done, fx, observer };
  const chain = routed.table.chain;
  if (chain.length === 0) return router(ex);
  doneOnClose(chain, fx, res);
  runRequestFilters(
    chain,
    fx,
    (reply) => {
      if (res.destroyed) return;
      if (reply) return done(sendLocalReply(chain, fx, req, res, reply), reply.flag, routed.route, faultTarget(routed.route, reply));
      // May run from a filter's promise: a throw must end this request, not the process.
      contained(res, () => router(ex));
    },
    0,
    (err, f) => deps.onFilterError?.(err, f.name),
  );
}

/** The router: redirect, direct response, or forward to the route's destination. */
function router(ex: Exchange): void {
  const { routed, res, listener, done, fx } = ex;
  const { route, input, host } = routed;
  const r = route.route;
  const action = r.action;
  const chain = routed.table.chain;
  if (action.kind === 'redirect') {
    const location = redirectLocation(action.redirect, input, host, listener);
    const headers: HeaderMap = { location, 'content-length': '0' };
    applyHeaderOps(headers, r.headers?.response);
    runResponseFilters(chain, fx, action.redirect.redirectCode, headers);
    res.writeHead(action.redirect.redirectCode, headers as Record<string, string>);
    res.end();
    return done(action.redirect.redirectCode, fx.flags, route);
  }
  if (action.kind === 'direct') {
    const body = action.response.body ?? '';
    const headers: HeaderMap = { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) };
    applyHeaderOps(headers, r.headers?.response);
    runResponseFilters(chain, fx, action.response.status, headers);
    res.writeHead(action.response.status, headers as Record<string, string>);
    endLocal(res, body);
    return done(action.response.status, fx.flags, route);
  }
  forwardRoute(ex);
}

function forwardRoute(ex: Exchange): void {
  const { deps, req, res, routed, done, fx } = ex;
  const { route, input, table } = routed;
  const r = route.route;
  const action = r.action;
  if (action.kind !== 'route') return;
  const dest = route.pick();
  const cluster = dest ? table.clusters.get(dest.cluster) : undefined;
  if (!dest || !cluster) {
    sendGatewayError(res, ERR.NO_CLUSTER, dest?.cluster, req);
    return done(ERR.NO_CLUSTER.status, ERR.NO_CLUSTER.flag, route);
  }

  const headers = fx.upstreamHeaders;
  headers['host'] = action.rewrite?.authority ?? input.authority;
  applyHeaderOps(headers, r.headers?.request);
  applyHeaderOps(headers, dest.headers?.request);
  const chain = table.chain;

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
        onResponseHeaders: (h, status) => {
          applyRouteResponseOps(r, dest.headers, h);
          if (chain.length === 0) return;
          runResponseFilters(chain, fx, status, h);
          // A filter that asked for the body (wasm body callbacks) sees it before the client.
          if (fx.responseBody) return bodyHook(fx.responseBody, fx.holdResponseHeaders === true);
        },
      },
      (result) => done(result.status, joinFlags(fx.flags, result.flag), route, result),
    );
  };
  // A filter read the whole body (wasm body callbacks): send what it left, at its length.
  if (fx.body !== undefined) {
    headers['content-length'] = String(fx.body.length);
    delete headers['transfer-encoding'];
    return send({ kind: 'buffered', data: fx.body });
  }
  // Filters whose headers callback continued see the body as it streams upstream.
  if (fx.requestBody) return send({ kind: 'stream', hook: bodyHook(fx.requestBody, false) });
  const body = prepareBody(req, action.retries);
  if ('then' in body) {
    body
      .then(send, () => {
        // Cut short or malformed (e.g. h2 DATA beyond content-length): never sent upstream.
        sendGatewayError(res, ERR.BAD_REQUEST, 'request body could not be read', req);
        done(400, 'DPE', route);
      })
      .catch((err: unknown) => failRequest(res, err)); // a bug past this point ends this request only
  } else send(body);
}
