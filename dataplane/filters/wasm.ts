/**
 * WasmPlugins as HTTP filters: one filter per plugin that selects this proxy, placed by the
 * chain builder from `phase` and `priority` (ChainDeps.extensions = wasmExtensions(manager)).
 *
 * Failure behaviour, as Istio/Envoy:
 * - module not fetched yet, or its fetch/digest check failed: FAIL_CLOSE answers 403 (Istio
 *   installs a deny-all RBAC filter in its place); FAIL_OPEN skips the plugin;
 * - VM failed to start (including proxy_on_configure → false) or trapped/looped at run time:
 *   FAIL_CLOSE answers 503 `wasm_fail_stream`; FAIL_OPEN skips; FAIL_RELOAD starts a fresh VM
 *   and runs the request on it (503 when that fails too).
 * Request pseudo-headers (`:path`, `:method`, `:authority`, `:scheme`) are visible to the plugin;
 * changes to them are not applied (routing is already decided). Response callbacks see `:status`.
 */
import type { Snapshot, WasmPluginConfig } from '../../config/snapshot.ts';
import type { HeaderMap } from '../../gateway/headers.ts';
import { policySelects } from '../../gateway/policy.ts';
import type { LocalReplyData, Outcome } from '../../wasm/engine.ts';
import { WasmVmError } from '../../wasm/errors.ts';
import type { Pairs } from '../../wasm/pairs.ts';
import type { PluginHandle, WasmManager } from '../../wasm/plugins.ts';
import type { StreamInfo } from '../../wasm/properties.ts';
import type { Resumption, Vm } from '../../wasm/vm.ts';
import type { ChainOwner, PhasedFilter, WasmPhase } from './chain.ts';
import type { FilterExchange, FilterResult, HttpFilter, LocalReply } from './types.ts';

const FETCH_DENIED: LocalReply = { status: 403, body: 'RBAC: access denied\n', flag: 'RBAC' };
/** Envoy's local reply when a Wasm VM fails on a stream (response code details `wasm_fail_stream`). */
const FAIL_STREAM: LocalReply = { status: 503, body: '', flag: '-' };
/** How long a request paused by a plugin (StopIteration) may wait for it to resume. */
const PAUSE_TIMEOUT_MS = 60_000;

interface Stream {
  readonly vm: Vm;
  readonly ctx: number;
}

/** ChainDeps.extensions for a process's plugins. */
export function wasmExtensions(manager: WasmManager): (snapshot: Snapshot, owner: ChainOwner) => readonly PhasedFilter[] {
  return (snapshot, owner) => wasmFilters(manager, snapshot, owner);
}

/** Whether a plugin applies to this proxy: selector/targetRefs, EnvoyFilter context, match.mode. */
export function pluginSelects(p: WasmPluginConfig, owner: ChainOwner): boolean {
  if (p.context !== 'ANY' && p.context !== owner.context) return false;
  if (!policySelects(p, owner)) return false;
  if (p.match.length === 0) return true;
  // A gateway is a CLIENT (it originates requests to services); a sidecar's inbound side a SERVER.
  const mode = owner.mode === 'edge' ? 'CLIENT' : 'SERVER';
  return p.match.some((m) => m.mode === 'UNDEFINED' || m.mode === 'CLIENT_AND_SERVER' || m.mode === mode);
}

export function wasmFilters(manager: WasmManager, snapshot: Snapshot, owner: ChainOwner): PhasedFilter[] {
  const out: PhasedFilter[] = [];
  for (const p of snapshot.wasmPlugins ?? []) {
    if (!pluginSelects(p, owner)) continue;
    const phase: WasmPhase = p.phase === 'UNSPECIFIED' ? 'UNSPECIFIED_PHASE' : p.phase;
    out.push({ phase, priority: p.priority, filter: wasmFilter(manager.plugin(p, snapshot)) });
  }
  return out;
}

function hasBody(x: FilterExchange): boolean {
  const h = x.request.headers;
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}

function toPairs(x: FilterExchange): Pairs {
  const r = x.request;
  const pairs: Pairs = [
    [':authority', r.authority],
    [':path', r.query ? `${r.path}?${r.query}` : r.path],
    [':method', r.method],
    [':scheme', r.scheme],
  ];
  const h = x.upstreamHeaders;
  for (const k in h) {
    const v = h[k]!;
    if (typeof v === 'string') pairs.push([k, v]);
    else for (const one of v) pairs.push([k, one]);
  }
  return pairs;
}

/** Writes a plugin's header map back, leaving pseudo-headers alone. */
function applyPairs(target: HeaderMap, pairs: Pairs): void {
  for (const k of Object.keys(target)) delete target[k];
  for (const [k, v] of pairs) {
    if (k.startsWith(':')) continue;
    const prev = target[k];
    target[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
}

/** Envoy applies a plugin's grpc_status only when the request is gRPC. */
function isGrpc(x: FilterExchange): boolean {
  const ct = x.request.headers['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

function localReply(x: FilterExchange, r: LocalReplyData): LocalReply {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of r.headers) {
    const prev = headers[k];
    headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return { status: r.status, body: Buffer.from(r.body), headers, flag: '-', ...(r.grpcStatus >= 0 && isGrpc(x) ? { grpcStatus: r.grpcStatus } : {}) };
}

function streamInfo(x: FilterExchange): StreamInfo {
  const r = x.request;
  return {
    path: r.query ? `${r.path}?${r.query}` : r.path,
    method: r.method,
    authority: r.authority,
    scheme: r.scheme,
    protocol: r.protocol,
    timeMs: Date.now(),
    sourceAddress: r.peerIp,
    destinationPort: r.port,
    mtls: r.principal !== undefined,
    peerPrincipal: r.principal,
    routeName: x.route?.route.name,
  };
}

export function wasmFilter(plugin: PluginHandle): HttpFilter {
  const cfg = plugin.cfg;
  const key = Symbol(cfg.id);
  const ports = new Set(cfg.match.flatMap((m) => m.ports));

  const onFailure = (x: FilterExchange, retry: boolean): FilterResult | Promise<FilterResult> => {
    if (cfg.failStrategy === 'FAIL_OPEN') return undefined;
    if (cfg.failStrategy === 'FAIL_RELOAD' && retry) return plugin.restart().then(() => run(x, false));
    return FAIL_STREAM;
  };

  const afterRequest = (x: FilterExchange, vm: Vm, o: Outcome & { ctx: number }): FilterResult | Promise<FilterResult> => {
    x.state.set(key, { vm, ctx: o.ctx } satisfies Stream);
    if (o.headers) applyPairs(x.upstreamHeaders, o.headers);
    if (o.status === 'reply' && o.reply) return localReply(x, o.reply);
    if (o.status === 'stop') {
      return vm.waitResume(o.ctx, PAUSE_TIMEOUT_MS).then((r: Resumption): FilterResult => {
        if (r.kind === 'continue') {
          if (r.requestHeaders) applyPairs(x.upstreamHeaders, r.requestHeaders);
          return undefined;
        }
        if (r.kind === 'reply') return localReply(x, r.reply);
        if (r.kind === 'close') return FAIL_STREAM;
        x.state.delete(key);
        return cfg.failStrategy === 'FAIL_OPEN' ? undefined : FAIL_STREAM;
      });
    }
    return undefined;
  };

  const run = (x: FilterExchange, retry: boolean): FilterResult | Promise<FilterResult> => {
    const s = plugin.state;
    switch (s.kind) {
      case 'loading':
      case 'fetch-failed':
        // While a FAIL_CLOSE module is being fetched (or after its fetch failed) the requests it covers are refused.
        return cfg.failStrategy === 'FAIL_OPEN' ? undefined : FETCH_DENIED;
      case 'vm-failed':
        return onFailure(x, retry);
      case 'ready': {
        let o: Outcome & { ctx: number };
        try {
          o = s.vm.requestHeaders(streamInfo(x), toPairs(x), !hasBody(x));
        } catch (e) {
          if (!(e instanceof WasmVmError)) throw e;
          plugin.vmFailed(e.message);
          return onFailure(x, retry);
        }
        return afterRequest(x, s.vm, o);
      }
    }
  };

  return {
    name: `envoy.filters.http.wasm/${cfg.id}`,
    onRequest(x) {
      if (ports.size > 0 && !ports.has(x.request.port)) return undefined;
      return run(x, true);
    },
    onResponse(x, status, headers) {
      const st = x.state.get(key) as Stream | undefined;
      if (!st || st.vm.failed) return;
      const pairs: Pairs = [[':status', String(status)]];
      for (const k in headers) {
        const v = headers[k]!;
        if (typeof v === 'string') pairs.push([k, v]);
        else for (const one of v) pairs.push([k, one]);
      }
      try {
        const o = st.vm.responseHeaders(st.ctx, { code: status }, pairs, false);
        if (o.headers) applyPairs(headers, o.headers);
      } catch (e) {
        // Headers are about to be sent; Envoy would reset the stream. The failure is recorded
        // (the next request applies the failure strategy) and this response goes out as is.
        if (e instanceof WasmVmError) plugin.vmFailed(e.message);
        else throw e;
      }
    },
    onDone(x, status) {
      const st = x.state.get(key) as Stream | undefined;
      if (st) st.vm.streamDone(st.ctx, { code: status });
    },
  };
}
