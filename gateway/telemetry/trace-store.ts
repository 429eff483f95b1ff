/**
 * An in-memory, bounded trace store answering Jaeger's query API (the calls Istio's Jaeger task
 * and the Jaeger UI make) and accepting OTLP/HTTP JSON at `/v1/traces`, so several processes
 * (gateway, sidecars, authservice, demo apps) can export into one store.
 *
 *   GET  /api/services
 *   GET  /api/services/{service}/operations     (also /api/operations?service=)
 *   GET  /api/traces?service=&operation=&start=&end=&lookback=&limit=&minDuration=&maxDuration=&tags=
 *   GET  /api/traces/{traceID}
 *   POST /v1/traces                              (OTLP/HTTP JSON)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeOtlp, type AttrValue, type SpanData } from '../../telemetry/otlp.ts';

interface StoredTrace {
  readonly traceId: string;
  readonly spans: SpanData[];
  /** Last time a span arrived (ms), for eviction. */
  updated: number;
}

export interface TraceQuery {
  readonly service: string;
  readonly operation?: string;
  /** µs since epoch. */
  readonly startUs?: number;
  readonly endUs?: number;
  readonly minDurationUs?: number;
  readonly maxDurationUs?: number;
  readonly tags?: Readonly<Record<string, string>>;
  readonly limit?: number;
}

export interface TraceStoreOptions {
  /** Traces kept (oldest evicted first). Default 2000. */
  readonly maxTraces?: number;
  /** Spans kept per trace. Default 1000. */
  readonly maxSpansPerTrace?: number;
}

/** Jaeger duration strings: `1.5s`, `100ms`, `250us`/`250µs`, `2m`, `1h`. */
export function parseJaegerDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit: Record<string, number> = { ns: 0.001, us: 1, µs: 1, ms: 1000, s: 1e6, m: 60e6, h: 3600e6 };
  return n * unit[m[2]!]!;
}

/** Jaeger lookback: `1h`, `2d`, `custom`. Returns µs. */
function parseLookback(text: string): number | undefined {
  const m = /^(\d+)(m|h|d)$/.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * { m: 60e6, h: 3600e6, d: 86400e6 }[m[2] as 'm' | 'h' | 'd'];
}

function tagType(v: AttrValue): 'string' | 'bool' | 'int64' | 'float64' {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  return Number.isInteger(v) ? 'int64' : 'float64';
}

export interface JaegerTag {
  key: string;
  type: string;
  value: AttrValue;
}

export class TraceStore {
  private readonly traces = new Map<string, StoredTrace>();
  private readonly maxTraces: number;
  private readonly maxSpans: number;
  /** service → operation → span kind. */
  private readonly ops = new Map<string, Map<string, string>>();

  constructor(opts: TraceStoreOptions = {}) {
    this.maxTraces = opts.maxTraces ?? 2000;
    this.maxSpans = opts.maxSpansPerTrace ?? 1000;
  }

  add(span: SpanData): void {
    let t = this.traces.get(span.traceId);
    if (!t) {
      t = { traceId: span.traceId, spans: [], updated: Date.now() };
      this.traces.set(span.traceId, t);
      if (this.traces.size > this.maxTraces) this.traces.delete(this.traces.keys().next().value as string);
    }
    if (t.spans.length >= this.maxSpans) return;
    t.spans.push(span);
    t.updated = Date.now();
    let ops = this.ops.get(span.service);
    if (!ops) {
      if (this.ops.size >= 1000) return;
      this.ops.set(span.service, (ops = new Map()));
    }
    if (ops.size < 1000 && !ops.has(span.name)) ops.set(span.name, span.kind.toLowerCase());
  }

  size(): number {
    return this.traces.size;
  }

  services(): string[] {
    const live = new Set<string>();
    for (const t of this.traces.values()) for (const s of t.spans) live.add(s.service);
    return [...live].sort();
  }

  operations(service: string): { name: string; spanKind: string }[] {
    return [...(this.ops.get(service) ?? new Map<string, string>())].map(([name, spanKind]) => ({ name, spanKind })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get(traceId: string): SpanData[] | undefined {
    const id = traceId.toLowerCase().padStart(32, '0');
    return this.traces.get(id)?.spans;
  }

  /** Traces with at least one span matching every condition, most recent first. */
  find(q: TraceQuery): SpanData[][] {
    const out: { start: number; spans: SpanData[] }[] = [];
    for (const t of this.traces.values()) {
      if (t.spans.some((s) => spanMatches(s, q))) out.push({ start: Math.min(...t.spans.map((s) => s.startUs)), spans: t.spans });
    }
    out.sort((a, b) => b.start - a.start);
    return out.slice(0, q.limit ?? 20).map((t) => t.spans);
  }

  /** Handles the Jaeger API and OTLP ingest paths; false when the path is not one of them. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    const p = url.pathname;
    if (p === '/v1/traces') {
      this.ingest(req, res);
      return true;
    }
    if (!p.startsWith('/api/')) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, envelope(null, [{ code: 405, msg: 'method not allowed' }]));
      return true;
    }
    if (p === '/api/services') return (sendJson(res, 200, envelope(this.services())), true);
    if (p === '/api/operations') {
      const service = url.searchParams.get('service') ?? '';
      return (sendJson(res, 200, envelope(this.operations(service))), true);
    }
    const ops = /^\/api\/services\/([^/]+)\/operations$/.exec(p);
    if (ops) return (sendJson(res, 200, envelope(this.operations(decodeURIComponent(ops[1]!)).map((o) => o.name))), true);
    const one = /^\/api\/traces\/([0-9a-fA-F]{1,32})$/.exec(p);
    if (one) {
      const spans = this.get(one[1]!);
      if (!spans) sendJson(res, 404, envelope(null, [{ code: 404, msg: 'trace not found' }]));
      else sendJson(res, 200, envelope([toJaeger(spans)]));
      return true;
    }
    if (p === '/api/traces') {
      const parsed = parseQuery(url.searchParams);
      if ('error' in parsed) sendJson(res, 400, envelope(null, [{ code: 400, msg: parsed.error }]));
      else {
        const found = this.find(parsed).map(toJaeger);
        sendJson(res, 200, { data: found, total: found.length, limit: parsed.limit ?? 0, offset: 0, errors: null });
      }
      return true;
    }
    sendJson(res, 404, envelope(null, [{ code: 404, msg: `no such endpoint ${p}` }]));
    return true;
  }

  private ingest(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return sendJson(res, 405, { code: 12, message: 'POST OTLP/HTTP JSON here' });
    const ct = String(req.headers['content-type'] ?? '');
    if (!ct.startsWith('application/json')) return sendJson(res, 415, { code: 3, message: 'only OTLP/HTTP JSON (application/json) is accepted' });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 4 * 1024 * 1024) {
        sendJson(res, 413, { code: 8, message: 'export request larger than 4 MiB' });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      try {
        const { spans, rejected } = decodeOtlp(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        for (const s of spans) this.add(s);
        sendJson(res, 200, rejected ? { partialSuccess: { rejectedSpans: String(rejected), errorMessage: 'spans with invalid ids or times were dropped' } } : {});
      } catch (err) {
        sendJson(res, 400, { code: 3, message: `invalid OTLP JSON: ${(err as Error).message}` });
      }
    });
  }
}

function spanMatches(s: SpanData, q: TraceQuery): boolean {
  if (s.service !== q.service) return false;
  if (q.operation !== undefined && s.name !== q.operation) return false;
  if (q.startUs !== undefined && s.startUs < q.startUs) return false;
  if (q.endUs !== undefined && s.startUs > q.endUs) return false;
  if (q.minDurationUs !== undefined && s.durationUs < q.minDurationUs) return false;
  if (q.maxDurationUs !== undefined && s.durationUs > q.maxDurationUs) return false;
  if (q.tags) {
    for (const [k, v] of Object.entries(q.tags)) {
      if (k === 'error' && v === 'true' && s.error) continue;
      const a = s.attributes.find(([ak]) => ak === k);
      if (!a || String(a[1]) !== v) return false;
    }
  }
  return true;
}

function parseQuery(sp: URLSearchParams): TraceQuery | { error: string } {
  const service = sp.get('service');
  if (!service) return { error: "parameter 'service' is required" };
  const num = (name: string): number | undefined | { error: string } => {
    const v = sp.get(name);
    if (v === null || v === '') return undefined;
    const n = Number(v);
    return Number.isFinite(n) && n >= 0 ? n : { error: `parameter '${name}' must be a non-negative number, got '${v}'` };
  };
  const start = num('start');
  const end = num('end');
  const limit = num('limit');
  for (const v of [start, end, limit]) if (typeof v === 'object') return v;
  let startUs = start as number | undefined;
  const endUs = end as number | undefined;
  const lookback = sp.get('lookback');
  if (startUs === undefined && lookback && lookback !== 'custom') {
    const lb = parseLookback(lookback);
    if (lb === undefined) return { error: `parameter 'lookback' must look like 1h or 2d, got '${lookback}'` };
    startUs = (endUs ?? Date.now() * 1000) - lb;
  }
  const dur = (name: string): number | undefined | { error: string } => {
    const v = sp.get(name);
    if (!v) return undefined;
    const d = parseJaegerDuration(v);
    return d === undefined ? { error: `parameter '${name}' must be a duration like 100ms or 1.5s, got '${v}'` } : d;
  };
  const minD = dur('minDuration');
  const maxD = dur('maxDuration');
  if (typeof minD === 'object') return minD;
  if (typeof maxD === 'object') return maxD;
  const tags: Record<string, string> = {};
  const tagsJson = sp.get('tags');
  if (tagsJson) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(tagsJson);
    } catch {
      return { error: "parameter 'tags' must be a JSON object of strings" };
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { error: "parameter 'tags' must be a JSON object of strings" };
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) tags[k] = String(v);
  }
  for (const t of sp.getAll('tag')) {
    const i = t.indexOf(':');
    if (i <= 0) return { error: `parameter 'tag' must be key:value, got '${t}'` };
    tags[t.slice(0, i)] = t.slice(i + 1);
  }
  return {
    service,
    operation: sp.get('operation') || undefined,
    startUs,
    endUs,
    minDurationUs: minD,
    maxDurationUs: maxD,
    tags: Object.keys(tags).length ? tags : undefined,
    limit: (limit as number | undefined) || undefined,
  };
}

function envelope(data: unknown, errors: { code: number; msg: string }[] | null = null): unknown {
  const total = Array.isArray(data) ? data.length : 0;
  return { data, total, limit: 0, offset: 0, errors };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** One trace in Jaeger's JSON (the shape of jaeger-query's `/api/traces` answers). */
export function toJaeger(spans: readonly SpanData[]): unknown {
  const processes: Record<string, { serviceName: string; tags: JaegerTag[] }> = {};
  const pids = new Map<string, string>();
  const traceID = spans[0]?.traceId ?? '';
  const ids = new Set(spans.map((s) => s.spanId));
  return {
    traceID,
    spans: spans.map((s) => {
      let pid = pids.get(s.service);
      if (!pid) {
        pid = `p${pids.size + 1}`;
        pids.set(s.service, pid);
        processes[pid] = { serviceName: s.service, tags: (s.process ?? []).map(([key, value]) => ({ key, type: tagType(value), value })) };
      }
      const tags: JaegerTag[] = s.attributes.map(([key, value]) => ({ key, type: tagType(value), value }));
      if (s.kind !== 'INTERNAL' && !s.attributes.some(([k]) => k === 'span.kind')) tags.push({ key: 'span.kind', type: 'string', value: s.kind.toLowerCase() });
      if (s.error && !s.attributes.some(([k]) => k === 'error')) tags.push({ key: 'error', type: 'bool', value: true });
      return {
        traceID: s.traceId,
        spanID: s.spanId,
        flags: 1,
        operationName: s.name,
        references: s.parentSpanId ? [{ refType: 'CHILD_OF', traceID: s.traceId, spanID: s.parentSpanId }] : [],
        startTime: s.startUs,
        duration: s.durationUs,
        tags,
        logs: [],
        processID: pid,
        warnings: s.parentSpanId && !ids.has(s.parentSpanId) ? [`invalid parent span IDs=${s.parentSpanId}; skipping clock skew adjustment`] : null,
      };
    }),
    processes,
    warnings: null,
  };
}
