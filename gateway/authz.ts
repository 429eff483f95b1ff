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
import type { Dispatcher } from 'undici';
import type { Cluster, ExtAuthzFilter, Snapshot, StringMatcher } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';
import { compileRegex } from './matchers.ts';
import { compileRules, policySelects, type PolicyInput } from './policy.ts';
import type { UpstreamPools } from './pools.ts';

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
  readonly authority: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface AuthzDeps {
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
}

const ALLOW_NOTHING: AuthzDecision = Object.freeze({ kind: 'allow', upstreamHeaders: [], clientHeaders: [] });

async function checkOne(f: CompiledExtAuthz, req: CheckRequest, deps: AuthzDeps): Promise<AuthzDecision> {
  const cfg = f.filter;
  const fail = (): AuthzDecision =>
    cfg.failureModeAllow ? ALLOW_NOTHING : { kind: 'deny', status: cfg.statusOnError, headers: { 'content-length': '0' }, body: Buffer.alloc(0), error: true };
  const picked = f.cluster ? deps.balancer.pick(f.cluster) : undefined;
  if (!f.cluster || !picked) return fail();

  const headers: Record<string, string | string[]> = {};
  for (const name in req.headers) {
    const v = req.headers[name];
    if (v === undefined || name.charCodeAt(0) === 58 || HOP_BY_HOP.has(name)) continue;
    if (ALWAYS_SENT.has(name) || f.requestHeader(name)) headers[name] = v;
  }
  for (const [k, v] of cfg.headersToAdd) headers[k] = v;
  headers['host'] = req.authority;
  headers['content-length'] = '0';

  let res: Dispatcher.ResponseData;
  try {
    res = await deps.pools.get(f.cluster, picked.endpoint).request({
      method: req.method as Dispatcher.HttpMethod,
      path: cfg.pathPrefix + req.pathAndQuery,
      headers,
      // Empty, never the client's body. undici omits `content-length: 0` on GET/HEAD/OPTIONS
      // (RFC 9110 §8.6); other methods carry it, as Envoy's check does.
      body: '',
      // undici's own timers bound the check (no AbortSignal per request: it showed in profiles).
      headersTimeout: cfg.timeoutMs,
      bodyTimeout: cfg.timeoutMs,
    });
  } catch {
    return fail();
  }
  let body: Buffer;
  try {
    body = Buffer.from(await res.body.arrayBuffer());
  } catch {
    return fail();
  }
  const status = res.statusCode;
  if (status >= 200 && status < 300) {
    const upstreamHeaders: [string, string | string[]][] = [];
    const clientHeaders: [string, string | string[]][] = [];
    for (const [name, v] of Object.entries(res.headers)) {
      if (v === undefined || HOP_BY_HOP.has(name)) continue;
      if (f.upstreamHeader(name)) upstreamHeaders.push([name, v]);
      if (f.clientHeaderOnSuccess(name)) clientHeaders.push([name, v]);
    }
    return { kind: 'allow', upstreamHeaders, clientHeaders };
  }
  const out: Record<string, string | string[]> = {};
  for (const [name, v] of Object.entries(res.headers)) {
    if (v === undefined || HOP_BY_HOP.has(name)) continue;
    if (f.clientHeader === undefined || IMPLIED_CLIENT.has(name) || f.clientHeader(name)) out[name] = v;
  }
  out['content-length'] = String(body.length);
  return { kind: 'deny', status, headers: out, body, error: false };
}

/**
 * Runs every applicable filter in order; the first denial wins. Allowed results accumulate
 * (later filters' headers overwrite earlier ones).
 */
export async function checkExtAuthz(filters: readonly CompiledExtAuthz[], input: PolicyInput, req: CheckRequest, deps: AuthzDeps): Promise<AuthzDecision | undefined> {
  let decision: AuthzDecision | undefined;
  for (const f of filters) {
    if (!f.applies(input)) continue;
    const d = await checkOne(f, req, deps);
    if (d.kind === 'deny') return d;
    decision = decision && decision.kind === 'allow' ? { kind: 'allow', upstreamHeaders: [...decision.upstreamHeaders, ...d.upstreamHeaders], clientHeaders: [...decision.clientHeaders, ...d.clientHeaders] } : d;
  }
  return decision;
}
