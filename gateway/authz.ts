/**
 * The ext_authz client: Envoy's HTTP external authorization protocol, as configured by the
 * Kubeflow EnvoyFilter or by a CUSTOM AuthorizationPolicy + MeshConfig extension provider.
 *
 * For each applicable filter, in order, the gateway sends a check request: the original method,
 * `pathPrefix` + the (normalised) path and query, only the allowed request headers plus Host,
 * Method, Path, Content-Length: 0 and Authorization, and no body. A 2xx allows the request and
 * copies the allowed response headers onto the upstream request (overwriting); any other status is
 * returned to the client with its body and allowed headers; no answer (error, timeout) gives
 * `statusOnError` unless the filter fails open.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/ext_authz_filter
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Cluster, ExtAuthzFilter, Snapshot, StringMatcher } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';
import { compileRegex } from './matchers.ts';
import { compileRules, policySelects, type PolicyInput } from './policy.ts';
import { SESSION_CACHE_HEADER } from '../lib/session-cookie.ts';
import type { FilterSessions, SessionFastPath } from '../dataplane/filters/session-cache.ts';
import type { UpstreamPools } from './pools.ts';
import type { CheckAnswerHandler } from '../dataplane/filters/check-client.ts';

type NamePredicate = (lowerName: string) => boolean;

export interface CompiledExtAuthz {
  readonly filter: ExtAuthzFilter;
  readonly cluster: Cluster | undefined;
  readonly applies: (input: PolicyInput) => boolean;
  readonly requestHeader: NamePredicate;
  readonly upstreamHeader: NamePredicate;
  /** Undefined = Envoy's default (every header but Host). */
  readonly clientHeader: NamePredicate | undefined;
  readonly clientHeaderOnSuccess: NamePredicate;
  /** Names in `headers_to_add`: they replace the client's values (Envoy: "client request of the same key will be overridden"). */
  readonly added: ReadonlySet<string>;
}

function compileMatcher(m: StringMatcher): NamePredicate {
  // Header names are case-insensitive; values of names are compared lower-cased.
  if ('exact' in m) {
    const v = m.exact.toLowerCase();
    return (n) => n === v;
  }
  if ('prefix' in m) {
    const v = m.prefix.toLowerCase();
    return (n) => n.startsWith(v);
  }
  if ('suffix' in m) {
    const v = m.suffix.toLowerCase();
    return (n) => n.endsWith(v);
  }
  if ('contains' in m) {
    const v = m.contains.toLowerCase();
    return (n) => n.includes(v);
  }
  return compileRegex(m.regex, true);
}

function anyOf(list: readonly StringMatcher[]): NamePredicate {
  if (list.length === 0) return () => false;
  const preds = list.map(compileMatcher);
  const cache = new Map<string, boolean>();
  return (n) => {
    let hit = cache.get(n);
    if (hit === undefined) {
      hit = preds.some((p) => p(n));
      if (cache.size < 1024) cache.set(n, hit);
    }
    return hit;
  };
}

/** Headers Envoy's deny path always lets through when `allowed_client_headers` is set. */
const IMPLIED_CLIENT = new Set([':path', ':status', 'content-length', 'www-authenticate', 'location', 'status', 'path']);
/**
 * Headers the check request always carries besides the allowed ones: Authorization (Envoy), and
 * the trace context, so the authorization server's span joins the request's trace.
 */
const ALWAYS_SENT = new Set(['authorization', 'traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags', 'x-request-id']);
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer', 'host']);

export interface ProxyIdentity {
  readonly labels: Readonly<Record<string, string>>;
  readonly namespace: string;
  readonly context: 'GATEWAY' | 'SIDECAR_INBOUND';
  readonly workloadName?: string;
}

/** The ext_authz filters that apply to this proxy, compiled; evaluated in snapshot order. */
export function selectExtAuthz(snapshot: Snapshot, who: ProxyIdentity): CompiledExtAuthz[] {
  const clusters = new Map(snapshot.clusters.map((c) => [c.name, c] as const));
  const out: CompiledExtAuthz[] = [];
  for (const f of snapshot.extAuthz) {
    if (f.context !== 'ANY' && f.context !== who.context) continue;
    if (!policySelects(f, who)) continue;
    out.push({
      filter: f,
      cluster: clusters.get(f.server.cluster),
      applies: f.applyTo.kind === 'all' ? () => true : compileRules(f.applyTo.rules),
      requestHeader: anyOf(f.allowedRequestHeaders),
      upstreamHeader: anyOf(f.allowedUpstreamHeaders),
      clientHeader: f.allowedClientHeaders ? anyOf(f.allowedClientHeaders) : undefined,
      clientHeaderOnSuccess: anyOf(f.allowedClientHeadersOnSuccess),
      added: new Set(f.headersToAdd.map(([k]) => k.toLowerCase())),
    });
  }
  return out;
}

export type AuthzDecision =
  | {
      readonly kind: 'allow';
      /** Set on the upstream request, overwriting. */
      readonly upstreamHeaders: readonly (readonly [string, string | string[]])[];
      /** Added to the client response. */
      readonly clientHeaders: readonly (readonly [string, string | string[]])[];
      /** The authservice's SESSION_CACHE_HEADER (the session fast path), never forwarded. */
      readonly sessionDirective?: string;
    }
  | {
      readonly kind: 'deny';
      readonly status: number;
      readonly headers: Record<string, string | string[]>;
      readonly body: Buffer;
      /** True when the authz server could not answer (flag UAEX either way). */
      readonly error: boolean;
    };

export interface CheckRequest {
  readonly method: string;
  /** Normalised path plus `?query`. */
  readonly pathAndQuery: string;
  /** The normalised path alone. */
  readonly path: string;
  readonly authority: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface AuthzDeps {
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  /** The in-gateway session fast path, when the gateway holds the authservice's cookie key. */
  readonly sessions?: SessionFastPath;
}

const ALLOW_NOTHING: AuthzDecision = Object.freeze({ kind: 'allow', upstreamHeaders: [], clientHeaders: [] });
const NO_HEADERS: readonly (readonly [string, string | string[]])[] = Object.freeze([]);
/** A denial's body is relayed to the client; more than this from an authorization server is an error. */
const MAX_DENY_BODY = 1024 * 1024;

function failed(cfg: ExtAuthzFilter): AuthzDecision {
  return cfg.failureModeAllow ? ALLOW_NOTHING : { kind: 'deny', status: cfg.statusOnError, headers: { 'content-length': '0' }, body: Buffer.alloc(0), error: true };
}

/**
 * The check's answer, read with undici's dispatch handler API (Dispatcher.DispatchHandler):
 * no body stream and no promise per chunk, as `request()` has. Only the response headers the
 * filter forwards are kept. An allow's body is discarded as it arrives (never buffered); a
 * denial's body is collected to relay it, up to MAX_DENY_BODY.
 */
class CheckAnswer implements Dispatcher.DispatchHandler, CheckAnswerHandler {
  private status = 0;
  private allowed = false;
  private upstream: [string, string | string[]][] | undefined;
  private client: [string, string | string[]][] | undefined;
  private denyHeaders: Record<string, string | string[]> | undefined;
  private chunks: Buffer[] | undefined;
  private bytes = 0;
  private directive: string | undefined;

  constructor(
    private readonly f: CompiledExtAuthz,
    private readonly resolve: (d: AuthzDecision) => void,
  ) {}

  /** Present so undici treats this as a controller-style handler (it checks for this method). */
  onRequestStart(): void {}

  // The check client's interface (dataplane/filters/check-client.ts): the body comes whole.
  onHead(status: number, headers: Record<string, string | string[]>): boolean {
    this.onResponseStart(undefined, status, headers);
    return !this.allowed;
  }

  onEnd(body: Buffer | undefined): void {
    if (body !== undefined && body.length > 0 && this.chunks) this.chunks.push(body);
    this.onResponseEnd();
  }

  onError(): void {
    this.resolve(failed(this.f.filter));
  }

  onResponseStart(_controller: Dispatcher.DispatchController | undefined, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: wait for the final answer
    this.status = statusCode;
    this.allowed = statusCode < 300;
    const f = this.f;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      if (this.allowed) {
        if (name === SESSION_CACHE_HEADER) {
          if (typeof value === 'string') this.directive = value;
          continue;
        }
        if (f.upstreamHeader(name)) (this.upstream ??= []).push([name, value]);
        if (f.clientHeaderOnSuccess(name)) (this.client ??= []).push([name, value]);
      } else if (f.clientHeader === undefined || IMPLIED_CLIENT.has(name) || f.clientHeader(name)) {
        (this.denyHeaders ??= {})[name] = value;
      }
    }
    if (!this.allowed) this.chunks = [];
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.chunks === undefined) return; // allowed: the body is not needed
    this.bytes += chunk.length;
    if (this.bytes > MAX_DENY_BODY) {
      this.chunks = undefined;
      controller.abort(new Error('ext_authz denial body too large'));
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.allowed) {
      if (this.directive !== undefined) this.resolve({ kind: 'allow', upstreamHeaders: this.upstream ?? NO_HEADERS, clientHeaders: this.client ?? NO_HEADERS, sessionDirective: this.directive });
      else this.resolve(this.upstream || this.client ? { kind: 'allow', upstreamHeaders: this.upstream ?? NO_HEADERS, clientHeaders: this.client ?? NO_HEADERS } : ALLOW_NOTHING);
      return;
    }
    const chunks = this.chunks ?? [];
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const headers = this.denyHeaders ?? {};
    headers['content-length'] = String(body.length);
    this.resolve({ kind: 'deny', status: this.status, headers, body, error: false });
  }

  onResponseError(): void {
    this.resolve(failed(this.f.filter));
  }
}

function checkOne(f: CompiledExtAuthz, req: CheckRequest, deps: AuthzDeps): Promise<AuthzDecision> {
  const cfg = f.filter;
  const picked = f.cluster ? deps.balancer.pick(f.cluster) : undefined;
  if (!f.cluster || !picked) return Promise.resolve(failed(cfg));

  // Envoy sends the allowed headers plus Host, Method, Path, Content-Length and Authorization
  // (AuthorizationRequest.allowed_headers, ext_authz.proto); we add the trace context (see ALWAYS_SENT).
  const headers: string[] = ['host', req.authority, 'content-length', '0'];
  const from = req.headers;
  for (const name in from) {
    const v = from[name];
    if (v === undefined || name.charCodeAt(0) === 58 || name === 'content-length' || HOP_BY_HOP.has(name)) continue;
    if ((!ALWAYS_SENT.has(name) && !f.requestHeader(name)) || f.added.has(name)) continue;
    if (typeof v === 'string') headers.push(name, v);
    else for (const one of v) headers.push(name, one);
  }
  for (const [k, v] of cfg.headersToAdd) headers.push(k, v);
  const client = deps.pools.checkClient(f.cluster, picked.endpoint);
  if (client) {
    // Envoy's check has Content-Length: 0 except where RFC 9110 §8.6 lets it go (GET, HEAD,
    // OPTIONS carry no body and need no length); the undici path below does the same.
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') headers.splice(2, 2);
    return new Promise<AuthzDecision>((resolve) => client.check(req.method, cfg.pathPrefix + req.pathAndQuery, headers, cfg.timeoutMs, new CheckAnswer(f, resolve)));
  }
  const pool = deps.pools.get(f.cluster, picked.endpoint);
  return new Promise<AuthzDecision>((resolve) => {
    pool.dispatch(
      {
        method: req.method as Dispatcher.HttpMethod,
        path: cfg.pathPrefix + req.pathAndQuery,
        headers,
        // Empty, never the client's body. undici omits `content-length: 0` on GET/HEAD/OPTIONS
        // (RFC 9110 §8.6); other methods carry it, as Envoy's check does.
        body: '',
        // undici's own timers bound the check (no AbortSignal per request: it showed in profiles).
        headersTimeout: cfg.timeoutMs,
        bodyTimeout: cfg.timeoutMs,
      },
      new CheckAnswer(f, resolve),
    );
  });
}

function sessionsOf(f: CompiledExtAuthz, deps: Pick<AuthzDeps, 'sessions'>): FilterSessions | undefined {
  return deps.sessions?.filter(f.filter.server.cluster, f.filter.pathPrefix);
}

/** A request to the authservice's logout (any bypass path) ends its session in every filter's cache, checked or not. */
export function forgetOnBypass(filters: readonly CompiledExtAuthz[], path: string, cookie: string | string[] | undefined, sessions: SessionFastPath): void {
  if (cookie === undefined) return;
  for (const f of filters) sessionsOf(f, { sessions })?.forget(path, cookie);
}

/**
 * The session fast path's answer when every applicable filter has the request's session cached
 * (synchronous: no check, no promise), else undefined.
 */
export function cachedAllow(filters: readonly CompiledExtAuthz[], input: PolicyInput, req: Pick<CheckRequest, 'path' | 'headers'>, deps: Pick<AuthzDeps, 'sessions'>): Headers | undefined {
  let out: Headers | undefined;
  for (const f of filters) {
    if (!f.applies(input)) continue;
    const hit = sessionsOf(f, deps)?.lookup(req.path, req.headers.cookie);
    if (!hit) return undefined;
    out = out === undefined ? hit : [...out, ...hit];
  }
  return out;
}

type Headers = readonly (readonly [string, string | string[]])[];

/**
 * Runs every applicable filter in order; the first denial wins. Allowed results accumulate
 * (later filters' headers overwrite earlier ones). With the session fast path, a filter whose
 * session answer is cached is not asked, and answers feed the cache (session-cache.ts).
 */
export async function checkExtAuthz(filters: readonly CompiledExtAuthz[], input: PolicyInput, req: CheckRequest, deps: AuthzDeps): Promise<AuthzDecision | undefined> {
  let decision: AuthzDecision | undefined;
  for (const f of filters) {
    if (!f.applies(input)) continue;
    const sessions = sessionsOf(f, deps);
    const cached = sessions?.lookup(req.path, req.headers.cookie);
    let d: AuthzDecision;
    if (cached) d = { kind: 'allow', upstreamHeaders: cached, clientHeaders: NO_HEADERS };
    else {
      d = await checkOne(f, req, deps);
      if (sessions) {
        // Only an answer the cache can replay whole (no client headers) is kept; an authz server
        // that could not answer says nothing about the session.
        if (d.kind === 'allow') sessions.record(req.path, req.headers.cookie, true, d.clientHeaders.length === 0 ? d.sessionDirective : undefined, d.upstreamHeaders);
        else if (!d.error) sessions.record(req.path, req.headers.cookie, false, undefined, NO_HEADERS);
      }
    }
    if (d.kind === 'deny') return d;
    decision = decision && decision.kind === 'allow' ? { kind: 'allow', upstreamHeaders: [...decision.upstreamHeaders, ...d.upstreamHeaders], clientHeaders: [...decision.clientHeaders, ...d.clientHeaders] } : d;
  }
  return decision;
}
