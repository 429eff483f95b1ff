/**
 * Trace context in and out: W3C Trace Context (`traceparent`, `tracestate`,
 * https://www.w3.org/TR/trace-context/) and B3 (multi `x-b3-*` and single `b3`,
 * https://github.com/openzipkin/b3-propagation), plus the sampling decision Envoy makes:
 * an incoming sampled flag wins, `x-client-trace-id` forces a trace, else a percentage.
 */
import { randomFillSync } from 'node:crypto';
/** Outgoing headers (the gateway's HeaderMap shape). */
type HeaderMap = Record<string, string | string[]>;

type IncomingHeaders = Readonly<Record<string, string | string[] | undefined>>;

export interface TraceContext {
  /** 32 lower-case hex. */
  readonly traceId: string;
  /** The caller's span id (16 hex), absent when this hop starts the trace. */
  readonly parentSpanId?: string;
  /** The caller's decision; undefined = no decision (this hop decides). */
  readonly sampled?: boolean;
  /** The incoming request used the `b3` single header (so we answer in kind). */
  readonly b3Single?: boolean;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = '0'.repeat(32);
const ZERO16 = '0'.repeat(16);

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** B3 trace ids may be 64-bit; W3C needs 128: left-pad with zeros as the B3 spec says. */
function traceId128(id: string): string | undefined {
  const lower = id.toLowerCase();
  if (HEX32.test(lower)) return lower === ZERO32 ? undefined : lower;
  if (HEX16.test(lower)) return lower === ZERO16 ? undefined : ZERO16 + lower;
  return undefined;
}

function spanId(id: string | undefined): string | undefined {
  if (id === undefined) return undefined;
  const lower = id.toLowerCase();
  return HEX16.test(lower) && lower !== ZERO16 ? lower : undefined;
}

function b3Sampled(v: string | undefined): boolean | undefined {
  if (v === '1' || v === 'true' || v === 'd') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}

/** Reads the incoming context: traceparent first, then `b3`, then `x-b3-*`. Invalid ones are ignored. */
export function extractContext(h: IncomingHeaders): TraceContext | undefined {
  const tp = one(h['traceparent']);
  if (tp !== undefined) {
    // version-traceid-parentid-flags; version ff is invalid; future versions may append fields.
    const parts = tp.trim().split('-');
    if (parts.length >= 4 && /^[0-9a-f]{2}$/.test(parts[0]!) && parts[0] !== 'ff' && (parts[0] !== '00' || parts.length === 4)) {
      const traceId = HEX32.test(parts[1]!) && parts[1] !== ZERO32 ? parts[1]! : undefined;
      const parent = spanId(parts[2]);
      const flags = /^[0-9a-f]{2}$/.test(parts[3]!) ? parseInt(parts[3]!, 16) : NaN;
      if (traceId && parent && !Number.isNaN(flags)) return { traceId, parentSpanId: parent, sampled: (flags & 1) === 1 };
    }
  }
  const single = one(h['b3']);
  if (single !== undefined) {
    const parts = single.trim().split('-');
    if (parts.length === 1) {
      const s = b3Sampled(parts[0]);
      // A lone sampling decision: no ids to continue, only the decision.
      if (s !== undefined) return { traceId: '', sampled: s, b3Single: true };
    } else {
      const traceId = traceId128(parts[0]!);
      const parent = spanId(parts[1]);
      if (traceId && parent) return { traceId, parentSpanId: parent, sampled: b3Sampled(parts[2]), b3Single: true };
    }
  }
  const b3t = one(h['x-b3-traceid']);
  const flags = one(h['x-b3-flags']);
  const sampled = flags === '1' ? true : b3Sampled(one(h['x-b3-sampled']));
  if (b3t !== undefined) {
    const traceId = traceId128(b3t);
    const parent = spanId(one(h['x-b3-spanid']));
    if (traceId && parent) return { traceId, parentSpanId: parent, sampled };
  }
  if (sampled !== undefined) return { traceId: '', sampled };
  return undefined;
}

// Ids come from a pooled random buffer: one randomFillSync per 512 ids instead of one per id.
const pool = Buffer.allocUnsafe(4096);
let poolPos = pool.length;

function randomHex(bytes: number): string {
  if (poolPos + bytes > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const s = pool.toString('hex', poolPos, poolPos + bytes);
  poolPos += bytes;
  return s;
}

export function newTraceId(): string {
  const id = randomHex(16);
  return id === ZERO32 ? newTraceId() : id;
}

export function newSpanId(): string {
  const id = randomHex(8);
  return id === ZERO16 ? newSpanId() : id;
}

/**
 * Envoy's decision: the caller's flag when it sent one; `x-client-trace-id` forces sampling;
 * otherwise `percent` (0..100) of requests.
 */
export function decideSampling(ctx: TraceContext | undefined, h: IncomingHeaders, percent: number): boolean {
  if (ctx?.sampled !== undefined) return ctx.sampled;
  if (h['x-client-trace-id'] !== undefined) return true;
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return Math.random() * 100 < percent;
}

/** Writes this hop's context onto the upstream request (both W3C and B3; `tracestate` passes through). */
export function injectContext(headers: HeaderMap, traceId: string, spanIdHex: string, parentSpanId: string | undefined, sampled: boolean, b3Single: boolean): void {
  headers['traceparent'] = `00-${traceId}-${spanIdHex}-${sampled ? '01' : '00'}`;
  headers['x-b3-traceid'] = traceId;
  headers['x-b3-spanid'] = spanIdHex;
  if (parentSpanId) headers['x-b3-parentspanid'] = parentSpanId;
  else delete headers['x-b3-parentspanid'];
  headers['x-b3-sampled'] = sampled ? '1' : '0';
  delete headers['x-b3-flags'];
  if (b3Single) headers['b3'] = `${traceId}-${spanIdHex}-${sampled ? '1' : '0'}${parentSpanId ? `-${parentSpanId}` : ''}`;
  else delete headers['b3'];
}
