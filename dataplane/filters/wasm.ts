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
 *
 * Bodies and trailers (only for a module that exports proxy_on_request_body/_trailers or
 * proxy_on_response_body/_trailers; other plugins never make the proxy read a body), as Envoy's
 * wasm filter decodeData/encodeData: each chunk is passed with end_of_stream; StopIterationAndBuffer
 * keeps it, and the next call sees the held bytes plus the new chunk (proxy_get_buffer_bytes /
 * proxy_set_buffer_bytes on HttpRequestBody / HttpResponseBody); Continue lets the buffer go on.
 * A headers callback answering StopIteration is continued by a later body Continue (headers and
 * body then go on together). With trailers, the last data call has end_of_stream false and the
 * trailers callback follows (Envoy's order). Past BODY_BUFFER_LIMIT: 413 for a request, 500 for
 * a response. Unlike Envoy, which streams what a plugin continues, Portico reads such a request
 * body whole before the rest of the chain runs, and holds the response headers until the body
 * has passed the plugin (so a changed body gets its right content-length); the limit then
 * applies to the whole body.
 */
import type { Snapshot, WasmPluginConfig } from '../../config/snapshot.ts';
import { bodyTruncated, requestHasBody } from '../../gateway/forward.ts';
import type { HeaderMap } from '../../gateway/headers.ts';
import { policySelects } from '../../gateway/policy.ts';
import type { LocalReplyData, Outcome } from '../../wasm/engine.ts';
import { WasmVmError } from '../../wasm/errors.ts';
import type { Pairs } from '../../wasm/pairs.ts';
import type { PluginHandle, WasmManager } from '../../wasm/plugins.ts';
import type { StreamInfo } from '../../wasm/properties.ts';
import type { Resumption, Vm } from '../../wasm/vm.ts';
import { BODY_BUFFER_LIMIT, type ChainOwner, type PhasedFilter, type WasmPhase } from './chain.ts';
import type { BodyFilter, FilterExchange, FilterResult, HttpFilter, LocalReply } from './types.ts';

const FETCH_DENIED: LocalReply = { status: 403, body: 'RBAC: access denied\n', flag: 'RBAC' };
/** Envoy's local reply when a Wasm VM fails on a stream (response code details `wasm_fail_stream`). */
const FAIL_STREAM: LocalReply = { status: 503, body: '', flag: '-' };
/** Envoy's local replies when a filter buffered a body beyond the limit (request/response_payload_too_large). */
const REQUEST_TOO_LARGE: LocalReply = { status: 413, body: 'Payload Too Large', flag: '-' };
const RESPONSE_TOO_LARGE: LocalReply = { status: 500, body: 'Internal Server Error', flag: '-' };
const EMPTY: Buffer = Buffer.alloc(0);
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
  if (x.body !== undefined) return x.body.length > 0;
  if (x.bodySource) return requestHasBody(x.bodySource);
  const h = x.request.headers;
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}

function headerPairs(h: Readonly<Record<string, string | readonly string[] | undefined>>): Pairs {
  const pairs: Pairs = [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (typeof v === 'string') pairs.push([k, v]);
    else for (const one of v) pairs.push([k, one]);
  }
  return pairs;
}

function concat(a: Buffer, b: Buffer): Buffer {
  return a.length === 0 ? b : b.length === 0 ? a : Buffer.concat([a, b]);
}

/**
 * One direction's body as Envoy's filter manager feeds a wasm filter: `held` is what the plugin
 * asked to buffer; `give` runs the body callback over held + chunk and returns what goes on.
 */
class BodyBuffer {
  held: Buffer = EMPTY;
  constructor(
    private readonly call: (buf: Buffer, end: boolean) => Outcome,
    private readonly exported: boolean,
    private readonly tooLarge: LocalReply,
    private readonly onHeaders: (p: Pairs) => void,
    private readonly x: FilterExchange,
  ) {}

  /** Released bytes, or a reply (local response, overflow). Throws WasmVmError. */
  give(chunk: Buffer, end: boolean): Buffer | LocalReply {
    let buf = concat(this.held, chunk);
    this.held = EMPTY;
    if (!this.exported) return buf;
    const o = this.call(buf, end);
    if (o.streamHeaders) this.onHeaders(o.streamHeaders);
    if (o.status === 'reply' && o.reply) return localReply(this.x, o.reply);
    if (o.body) buf = Buffer.from(o.body.buffer, o.body.byteOffset, o.body.byteLength);
    if (o.status === 'stop' && !end) {
      if (!o.noBuffer) this.held = buf;
      if (this.held.length > BODY_BUFFER_LIMIT) return this.tooLarge;
      return EMPTY;
    }
    // Stopped at the end of the stream: nothing more will come, so it goes on as it is.
    return o.noBuffer && o.status === 'stop' ? EMPTY : buf;
  }

  /** The trailers callback (it sees the held bytes as the body buffer); returns what it releases, or a reply. */
  trailers(run: (held: Buffer) => Outcome): Buffer | LocalReply {
    const held = this.held;
    this.held = EMPTY;
    const o = run(held);
    if (o.streamHeaders) this.onHeaders(o.streamHeaders);
    if (o.status === 'reply' && o.reply) return localReply(this.x, o.reply);
    return o.body ? Buffer.from(o.body.buffer, o.body.byteOffset, o.body.byteLength) : held;
  }
}

/** Reads the request body for a filter: chunks, then the end with trailers (none: undefined). */
function readRequestBody(x: FilterExchange, onData: (c: Buffer) => boolean, onEnd: (trailers: Pairs | undefined) => void, onError: () => void): void {
  if (x.body !== undefined) {
    // An earlier filter read it already.
    if (!onData(x.body)) return;
    const t = x.requestTrailers ? headerPairs(x.requestTrailers) : [];
    return onEnd(t.length > 0 ? t : undefined);
  }
  const req = x.bodySource!;
  const stop = (): void => {
    req.off('data', data);
    req.off('end', end);
    req.off('aborted', aborted);
    req.off('error', aborted);
  };
  const data = (c: Buffer): void => {
    if (!onData(c)) {
      stop();
      req.resume(); // the rest is read and dropped
    }
  };
  const end = (): void => {
    stop();
    if (bodyTruncated(req)) return onError();
    const t = headerPairs(req.trailers);
    onEnd(t.length > 0 ? t : undefined);
  };
  const aborted = (): void => {
    stop();
    onError();
  };
  req.on('data', data);
  req.once('end', end);
  req.once('aborted', aborted);
  req.once('error', aborted);
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
/**
 * Makes `target` hold what the plugin left in the map (pseudo-headers aside), touching only what
 * changed: a plugin that adds one header costs one assignment. Deleting every key and adding
 * them back would also turn the object into a slow dictionary-mode object for the rest of the
 * request (header writes, the upstream request).
 */
function applyPairs(target: HeaderMap, pairs: Pairs): void {
  const next = new Map<string, string | string[]>();
  for (const [k, v] of pairs) {
    if (k.charCodeAt(0) === 58 /* : */) continue;
    const prev = next.get(k);
    next.set(k, prev === undefined ? v : typeof prev === 'string' ? [prev, v] : (prev.push(v), prev));
  }
  for (const k in target) if (!next.has(k)) delete target[k];
  for (const [k, v] of next) if (!sameValue(target[k], v)) target[k] = v;
}

function sameValue(a: string | readonly string[] | undefined, b: string | readonly string[]): boolean {
  if (typeof a === 'string' || typeof b === 'string' || a === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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

  /** A runtime failure during a body or trailer callback. */
  const bodyFailure = (e: unknown): FilterResult => {
    if (!(e instanceof WasmVmError)) throw e;
    plugin.vmFailed(e.message);
    return cfg.failStrategy === 'FAIL_OPEN' ? undefined : FAIL_STREAM;
  };

  /** The request body and trailers through the plugin; then x.body is what goes upstream. */
  const requestBody = (x: FilterExchange, vm: Vm, ctx: number): Promise<FilterResult> =>
    new Promise((resolve) => {
      const out: Buffer[] = [];
      let size = 0;
      const cl = x.bodySource?.headers['content-length'];
      let remaining = x.body !== undefined ? x.body.length : cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
      let ended = false;
      let settled = false;
      const finish = (r: FilterResult): void => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const body = new BodyBuffer((b, end) => vm.requestBody(ctx, b, end), vm.callbacks.requestBody, REQUEST_TOO_LARGE, (p) => applyPairs(x.upstreamHeaders, p), x);
      const take = (r: Buffer | LocalReply): boolean => {
        if (!Buffer.isBuffer(r)) {
          finish(r);
          return false;
        }
        out.push(r);
        size += r.length;
        if (size + body.held.length > BODY_BUFFER_LIMIT) {
          finish(REQUEST_TOO_LARGE);
          return false;
        }
        return true;
      };
      readRequestBody(
        x,
        (chunk) => {
          if (settled) return false;
          if (remaining > 0) remaining -= chunk.length;
          const end = remaining === 0;
          ended ||= end;
          try {
            return take(body.give(chunk, end));
          } catch (e) {
            finish(bodyFailure(e));
            return false;
          }
        },
        (trailers) => {
          if (settled) return;
          try {
            if (trailers) {
              x.requestTrailers = Object.fromEntries(trailers);
              const run = (held: Buffer): Outcome => (vm.callbacks.requestTrailers ? vm.trailers(ctx, 'request', trailers, held) : { status: 'continue' });
              if (!take(body.trailers(run))) return;
            } else if (!ended && !take(body.give(EMPTY, true))) return;
          } catch (e) {
            return finish(bodyFailure(e));
          }
          const all = out.length === 1 ? out[0]! : Buffer.concat(out);
          x.body = all;
          x.upstreamHeaders['content-length'] = String(all.length);
          delete x.upstreamHeaders['transfer-encoding'];
          finish(undefined);
        },
        () => finish({ status: 400, body: 'request body could not be read\n', flag: 'DPE' }),
      );
    });

  /**
   * The plugin's body and trailer callbacks as a streaming body filter. Header changes they make
   * are not applied: the headers have gone on already (Envoy rejects them too).
   */
  const streamingBody = (x: FilterExchange, vm: Vm, ctx: number, dir: 'request' | 'response'): BodyFilter => {
    const cb = vm.callbacks;
    const body = new BodyBuffer(
      (b, end) => (dir === 'request' ? vm.requestBody(ctx, b, end) : vm.responseBody(ctx, b, end)),
      dir === 'request' ? cb.requestBody : cb.responseBody,
      dir === 'request' ? REQUEST_TOO_LARGE : RESPONSE_TOO_LARGE,
      () => undefined,
      x,
    );
    const hasTrailers = dir === 'request' ? cb.requestTrailers : cb.responseTrailers;
    return {
      data(chunk, end) {
        if (vm.failed) return concat(body.held, chunk);
        try {
          return body.give(chunk, end);
        } catch (e) {
          return bodyFailure(e) ?? chunk;
        }
      },
      trailers(t) {
        if (vm.failed || !hasTrailers) return body.trailers(() => ({ status: 'continue' }));
        try {
          return body.trailers((held) => {
            const o = vm.trailers(ctx, dir, headerPairs(t), held);
            if (o.trailers) {
              for (const k of Object.keys(t)) delete t[k];
              for (const [k, v] of o.trailers) t[k] = t[k] === undefined ? v : `${t[k]}, ${v}`;
            }
            return o;
          });
        } catch (e) {
          return bodyFailure(e) ?? body.held;
        }
      },
    };
  };

  const afterRequest = (x: FilterExchange, vm: Vm, o: Outcome & { ctx: number }): FilterResult | Promise<FilterResult> => {
    x.state.set(key, { vm, ctx: o.ctx } satisfies Stream);
    if (o.headers) applyPairs(x.upstreamHeaders, o.headers);
    if (o.status === 'reply' && o.reply) return localReply(x, o.reply);
    if ((vm.callbacks.requestBody || vm.callbacks.requestTrailers) && (x.bodySource || x.body !== undefined) && hasBody(x)) {
      // A body follows and the plugin wants it. Headers stopped: the body is read whole, and a
      // body Continue continues the headers too. Headers continued: the body streams through it.
      if ((o.status === 'stop' && !x.requestBody) || x.body !== undefined) return requestBody(x, vm, o.ctx);
      (x.requestBody ??= []).push(streamingBody(x, vm, o.ctx, 'request'));
      return undefined;
    }
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
        const cb = st.vm.callbacks;
        // No body to see: HEAD, 1xx/204/304, local replies (status known before the upstream answers).
        if ((cb.responseBody || cb.responseTrailers) && x.request.method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304) {
          (x.responseBody ??= []).push(streamingBody(x, st.vm, st.ctx, 'response'));
          // StopIteration: the headers wait for the body (Envoy continues them with the first body Continue).
          if (o.status === 'stop') x.holdResponseHeaders = true;
        }
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
