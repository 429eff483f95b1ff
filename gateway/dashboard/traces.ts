/**
 * Recent and slow traces from the embedded trace store(s), summarised for the dashboard list, and
 * one trace's spans for the waterfall (times relative to the trace start, tree order).
 */
import type { SpanData } from '../../telemetry/otlp.ts';
import type { TraceStore } from '../telemetry/trace-store.ts';

export interface TraceSummary {
  readonly traceId: string;
  /** The root span's operation (Istio's `host:port/*`). */
  readonly root: string;
  readonly rootService: string;
  /** The root span's request, e.g. `GET http://localhost:8443/productpage`. */
  readonly request?: string;
  readonly status?: number;
  readonly error: boolean;
  /** Start in ms since the epoch. */
  readonly startMs: number;
  readonly durationMs: number;
  readonly spans: number;
  readonly services: number;
}

export interface WaterfallSpan {
  readonly spanId: string;
  readonly parentId?: string;
  readonly depth: number;
  readonly name: string;
  readonly service: string;
  /** µs from the trace start. */
  readonly offsetUs: number;
  readonly durationUs: number;
  readonly error: boolean;
  readonly status?: number;
  readonly url?: string;
  readonly cluster?: string;
  readonly flags?: string;
}

export interface TraceDetail {
  readonly traceId: string;
  readonly startMs: number;
  readonly durationUs: number;
  readonly spans: readonly WaterfallSpan[];
}

function attr(s: SpanData, key: string): string | number | boolean | undefined {
  for (const [k, v] of s.attributes) if (k === key) return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : undefined;
  return undefined;
}

function bounds(spans: readonly SpanData[]): { start: number; end: number } {
  let start = Infinity;
  let end = -Infinity;
  for (const s of spans) {
    if (s.startUs < start) start = s.startUs;
    if (s.startUs + s.durationUs > end) end = s.startUs + s.durationUs;
  }
  return { start, end };
}

/** The span with no parent in the trace (the earliest such, when spans are missing). */
function rootOf(spans: readonly SpanData[]): SpanData {
  const ids = new Set(spans.map((s) => s.spanId));
  const roots = spans.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId));
  return (roots.length ? roots : spans).reduce((a, b) => (b.startUs < a.startUs ? b : a));
}

export function summarise(spans: readonly SpanData[]): TraceSummary {
  const root = rootOf(spans);
  const { start, end } = bounds(spans);
  const status = attr(root, 'http.status_code');
  const method = attr(root, 'http.method');
  const url = attr(root, 'http.url');
  return {
    traceId: root.traceId,
    root: root.name,
    rootService: root.service,
    request: typeof url === 'string' ? `${typeof method === 'string' ? `${method} ` : ''}${url}` : undefined,
    status: typeof status === 'number' ? status : undefined,
    error: spans.some((s) => s.error === true),
    startMs: Math.round(start / 1000),
    durationMs: Math.round((end - start) / 10) / 100,
    spans: spans.length,
    services: new Set(spans.map((s) => s.service)).size,
  };
}

/** Every distinct trace in the stores, most recent first, at most `limit` per store and service. */
export function recentTraces(stores: readonly TraceStore[], limit = 200): TraceSummary[] {
  const seen = new Map<string, TraceSummary>();
  for (const store of stores) {
    for (const service of store.services()) {
      for (const spans of store.find({ service, limit })) {
        if (spans.length === 0) continue;
        const id = spans[0]!.traceId;
        if (!seen.has(id)) seen.set(id, summarise(spans));
      }
    }
  }
  return [...seen.values()].sort((a, b) => b.startMs - a.startMs || (a.traceId < b.traceId ? -1 : 1));
}

/** One trace for the waterfall: spans in tree order (children by start time), depth for indenting. */
export function traceDetail(stores: readonly TraceStore[], traceId: string): TraceDetail | undefined {
  let spans: SpanData[] = [];
  for (const store of stores) {
    const got = store.get(traceId);
    if (got) spans = spans.concat(got);
  }
  if (spans.length === 0) return undefined;
  const unique = [...new Map(spans.map((s) => [s.spanId, s])).values()];
  const { start, end } = bounds(unique);
  const ids = new Set(unique.map((s) => s.spanId));
  const children = new Map<string, SpanData[]>();
  const roots: SpanData[] = [];
  for (const s of unique) {
    if (s.parentSpanId && ids.has(s.parentSpanId)) {
      const list = children.get(s.parentSpanId) ?? [];
      list.push(s);
      children.set(s.parentSpanId, list);
    } else roots.push(s);
  }
  const byStart = (a: SpanData, b: SpanData): number => a.startUs - b.startUs;
  const out: WaterfallSpan[] = [];
  const visit = (s: SpanData, depth: number): void => {
    const status = attr(s, 'http.status_code');
    const url = attr(s, 'http.url');
    const cluster = attr(s, 'upstream_cluster');
    const flags = attr(s, 'response_flags');
    out.push({
      spanId: s.spanId,
      parentId: s.parentSpanId,
      depth,
      name: s.name,
      service: s.service,
      offsetUs: s.startUs - start,
      durationUs: s.durationUs,
      error: s.error === true,
      status: typeof status === 'number' ? status : undefined,
      url: typeof url === 'string' ? url : undefined,
      cluster: typeof cluster === 'string' && cluster !== '-' ? cluster : undefined,
      flags: typeof flags === 'string' ? flags : undefined,
    });
    for (const c of (children.get(s.spanId) ?? []).sort(byStart)) if (depth < 64) visit(c, depth + 1);
  };
  for (const r of roots.sort(byStart)) visit(r, 0);
  return { traceId: unique[0]!.traceId, startMs: Math.round(start / 1000), durationUs: end - start, spans: out };
}
