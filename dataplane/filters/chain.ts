/**
 * Builds the HTTP filter chain for one proxy from a snapshot, and runs it per request.
 *
 * The same builder serves the edge gateway and the sidecar's inbound side: what differs is only
 * who the proxy is (`ChainOwner`), which decides the policies that select it. Only filters that
 * something configures are in the chain; with nothing configured the chain is empty and a
 * request costs one loop that does not iterate.
 */
import type { Snapshot } from '../../config/snapshot.ts';
import type { JwksCache } from '../../gateway/jwt-authn.ts';
import type { Balancer } from '../../gateway/balancer.ts';
import type { UpstreamPools } from '../../gateway/pools.ts';
import type { CompiledRateLimit } from '../../gateway/ratelimit.ts';
import { corsFilter } from './cors.ts';
import { extAuthzFilter } from './ext-authz.ts';
import type { SessionFastPath } from './session-cache.ts';
import { faultFilter } from './fault.ts';
import { jwtAuthnFilter } from './jwt-authn.ts';
import { rateLimitFilter } from './ratelimit.ts';
import { rbacFilter } from './rbac.ts';
import type { BodyFilter, FilterExchange, HttpFilter, LocalReply } from './types.ts';

/** Who the chain is for: decides which policies select it. */
export interface ChainOwner {
  readonly mode: 'edge' | 'sidecar';
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The workload's name (the gateway Deployment's, `istio-ingressgateway` by default), for
   * policies that select it by `targetRefs` instead of `selector`.
   */
  readonly workloadName?: string;
  /** EnvoyFilter `match.context` this proxy answers to. */
  readonly context: 'GATEWAY' | 'SIDECAR_INBOUND';
}

/** WasmPlugin phases (extensions.istio.io PluginPhase); `UNSPECIFIED` sits just before the router. */
export type WasmPhase = 'AUTHN' | 'AUTHZ' | 'STATS' | 'UNSPECIFIED_PHASE';

/** A filter placed by phase and priority (higher priority first within a phase, as Istio). */
export interface PhasedFilter {
  readonly phase: WasmPhase;
  readonly priority: number;
  readonly filter: HttpFilter;
}

/** Long-lived state the filters share across snapshots. */
export interface ChainDeps {
  readonly jwks: JwksCache;
  readonly pools: UpstreamPools;
  readonly balancer: Balancer;
  /** Local rate limits selected for this proxy (compiled with the route table). */
  readonly rateLimits?: readonly CompiledRateLimit[];
  /** Listener/vhost names for rate-limit descriptors. */
  readonly log?: (msg: string, fields: Record<string, unknown>) => void;
  /** The ext_authz session fast path (session-cache.ts), when the proxy holds the authservice's cookie key. */
  readonly sessions?: SessionFastPath;
  /** Extension filters (WasmPlugins) for this proxy, placed by phase. */
  readonly extensions?: (snapshot: Snapshot, owner: ChainOwner) => readonly PhasedFilter[];
}

function phase(list: readonly PhasedFilter[], p: WasmPhase): HttpFilter[] {
  return list
    .filter((x) => x.phase === p)
    .sort((a, b) => b.priority - a.priority)
    .map((x) => x.filter);
}

/**
 * The chain in the order istiod actually builds it (pilot/pkg/networking/core/listener_builder.go
 * buildHTTPConnectionManager, and its test of a gateway with every kind configured):
 *
 *   ext_authz (CUSTOM) · wasm(AUTHN) · jwt_authn · wasm(AUTHZ) · rbac · wasm(STATS) ·
 *   wasm(unset) · fault · cors · local ratelimit · router
 *
 * This differs from the aspirational order in istio/istio architecture/datapath/
 * http-filter-chain.md (cors first, ext_authz just before rbac), which that document itself lists
 * as not yet done. Real configs depend on the real order: Kubeflow ≥ 1.9's `require-jwt` DENY
 * policy relies on the CUSTOM provider's injected `Authorization` being verified by jwt_authn
 * AFTER ext_authz. EnvoyFilter-inserted ext_authz (Kubeflow ≤ 1.8: INSERT_BEFORE with no
 * sub-filter) lands first as well. Local rate limits sit where Istio's documented EnvoyFilter
 * puts them: just before the router.
 */
export function buildHttpChain(snapshot: Snapshot, owner: ChainOwner, deps: ChainDeps): HttpFilter[] {
  const ext = deps.extensions?.(snapshot, owner) ?? [];
  const candidates: (HttpFilter | undefined)[] = [
    extAuthzFilter(snapshot, owner, deps),
    ...phase(ext, 'AUTHN'),
    jwtAuthnFilter(snapshot, owner, deps.jwks),
    ...phase(ext, 'AUTHZ'),
    rbacFilter(snapshot, owner, deps.log),
    ...phase(ext, 'STATS'),
    ...phase(ext, 'UNSPECIFIED_PHASE'),
    faultFilter(snapshot),
    corsFilter(snapshot),
    rateLimitFilter(deps.rateLimits ?? []),
  ];
  return candidates.filter((f): f is HttpFilter => f !== undefined);
}

/** What a chain run ends with: a local reply, or `undefined` to go on to the router. */
export type ChainDone = (reply: LocalReply | undefined) => void;

/** A filter that threw or rejected ends its request with a 500, never the process. */
const FILTER_ERROR: LocalReply = { status: 500, body: 'filter error\n', flag: '-' };

/**
 * Runs the request callbacks from `start`. Synchronous filters run in one loop; the first
 * Promise suspends the loop until it settles.
 */
export function runRequestFilters(chain: readonly HttpFilter[], x: FilterExchange, done: ChainDone, start = 0, onError?: (err: unknown, filter: HttpFilter) => void): void {
  for (let i = start; i < chain.length; i++) {
    const f = chain[i]!;
    let r;
    try {
      r = f.onRequest(x);
    } catch (err) {
      onError?.(err, f);
      return done(FILTER_ERROR);
    }
    if (r === undefined) continue;
    if ('then' in r) {
      r.then(
        (v) => (v === undefined ? runRequestFilters(chain, x, done, i + 1, onError) : done(v)),
        (err: unknown) => {
          onError?.(err, f);
          done(FILTER_ERROR);
        },
      );
      return;
    }
    return done(r);
  }
  done(undefined);
}

/** Response callbacks, in reverse chain order, then the headers filters asked to add. */
export function runResponseFilters(chain: readonly HttpFilter[], x: FilterExchange, status: number, headers: Record<string, string | string[]>): void {
  for (let i = chain.length - 1; i >= 0; i--) chain[i]!.onResponse?.(x, status, headers);
  for (const [k, v] of x.responseHeaders) {
    const prev = headers[k];
    headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
}

export function runDoneFilters(chain: readonly HttpFilter[], x: FilterExchange, status: number): void {
  for (const f of chain) f.onDone?.(x, status);
}

/** The downstream response as doneOnClose needs it (ServerResponse and Http2ServerResponse). */
interface ClosingResponse {
  once(event: 'close', fn: () => void): unknown;
  readonly headersSent: boolean;
  readonly statusCode: number;
}

/**
 * Runs the chain's onDone callbacks once the downstream exchange is over: the response finished
 * or the stream was reset (status 0 when no response was sent, as Envoy's %RESPONSE_CODE%).
 * Only chains with an onDone filter pay for the listener. Without this a wasm plugin's stream
 * context is never ended (proxy_on_done/log/delete), so SDKs keep one context per request ever
 * served: the VM's memory grows without bound and SDKs that walk their contexts get slower with
 * every request.
 */
export function doneOnClose(chain: readonly HttpFilter[], x: FilterExchange, res: ClosingResponse): void {
  let any = false;
  for (const f of chain) if (f.onDone) any = true;
  if (!any) return;
  res.once('close', () => runDoneFilters(chain, x, res.headersSent ? res.statusCode : 0));
}

const NO_BYTES: Buffer = Buffer.alloc(0);

/**
 * Most body bytes a filter may hold (Envoy's default per_connection_buffer_limit_bytes, 1 MiB,
 * which bounds what decodeData/encodeData may buffer); past it Envoy answers 413 for a request
 * and 500 for a response whose headers are not sent yet.
 */
export const BODY_BUFFER_LIMIT = 1 << 20;

/** A LocalReply as the bytes the proxy writes. */
function replyBytes(r: LocalReply): { status: number; headers: Record<string, string | string[]>; body: Buffer } {
  const headers: Record<string, string | string[]> = {};
  if (r.headers) for (const k in r.headers) headers[k] = r.headers[k] as string | string[];
  return { status: r.status, headers, body: typeof r.body === 'string' ? Buffer.from(r.body) : r.body };
}

/**
 * The body hook (gateway/forward.ts BodyHook) for body filters of one exchange. `holdHeaders`:
 * a filter's headers callback stopped, so the headers wait for the body's first release.
 */
export function bodyHook(filters: readonly BodyFilter[], holdHeaders: boolean): {
  data(chunk: Buffer, end: boolean): Buffer | ReturnType<typeof replyBytes>;
  trailers(t: Record<string, string>): Buffer | ReturnType<typeof replyBytes>;
  readonly limit: number;
  readonly holdHeaders: boolean;
} {
  return {
    holdHeaders,
    data(chunk, end) {
      const r = pipeBodyData(filters, chunk, end);
      return Buffer.isBuffer(r) ? r : replyBytes(r);
    },
    trailers(t) {
      const r = pipeBodyTrailers(filters, t);
      return Buffer.isBuffer(r) ? r : replyBytes(r);
    },
    limit: BODY_BUFFER_LIMIT,
  };
}

/** One body chunk through the body filters (in their order); a filter still buffering ends the pass. */
export function pipeBodyData(filters: readonly BodyFilter[], chunk: Buffer, end: boolean): Buffer | LocalReply {
  let data = chunk;
  for (const f of filters) {
    const r = f.data(data, end);
    if (!Buffer.isBuffer(r)) return r;
    data = r;
    if (data.length === 0 && !end) break;
  }
  return data;
}

/**
 * The trailers through the body filters: each first gets the data the ones before it
 * released at the trailers (its last data, not end of stream: Envoy's encodeData then
 * encodeTrailers), then the trailers; returns the data released at the end.
 */
export function pipeBodyTrailers(filters: readonly BodyFilter[], trailers: Record<string, string>): Buffer | LocalReply {
  let carry: Buffer = NO_BYTES;
  for (const f of filters) {
    let d: Buffer = NO_BYTES;
    if (carry.length > 0) {
      const r = f.data(carry, false);
      if (!Buffer.isBuffer(r)) return r;
      d = r;
    }
    const t = f.trailers(trailers);
    if (!Buffer.isBuffer(t)) return t;
    carry = d.length === 0 ? t : t.length === 0 ? d : Buffer.concat([d, t]);
  }
  return carry;
}
