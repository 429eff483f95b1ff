/**
 * Spans as Portico keeps them, and their OTLP/HTTP JSON form
 * (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding: trace and span ids are hex
 * strings, 64-bit integers are decimal strings, enums are integers). The exporter batches spans
 * off the request path and POSTs them to `<endpoint>` (e.g. `http://jaeger:4318/v1/traces`).
 */

export type AttrValue = string | number | boolean;
export type SpanKind = 'INTERNAL' | 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER';

export interface SpanData {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: SpanKind;
  /** Microseconds since the epoch. */
  readonly startUs: number;
  readonly durationUs: number;
  /** The reporting process (Jaeger's `process.serviceName`, OTLP `service.name`). */
  readonly service: string;
  readonly attributes: readonly (readonly [string, AttrValue])[];
  readonly error?: boolean;
  /**
   * Tags of the reporting process (Jaeger's `processes[].tags`, OTLP resource attributes besides
   * `service.name`): `hostname` and `ip`, as Jaeger clients report them.
   */
  readonly process?: readonly (readonly [string, AttrValue])[];
}

const KIND_NUM: Readonly<Record<SpanKind, number>> = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 };
const NUM_KIND: readonly SpanKind[] = ['INTERNAL', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];

interface OtlpAnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

function toAny(v: AttrValue): OtlpAnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function usToNanos(us: number): string {
  // Exact for µs values below 2^53: append three zeros instead of multiplying.
  return `${Math.round(us)}000`;
}

/** One OTLP ExportTraceServiceRequest (JSON) for spans, grouped by service. */
export function encodeOtlp(spans: readonly SpanData[], resource: Readonly<Record<string, AttrValue>> = {}): unknown {
  const byService = new Map<string, SpanData[]>();
  for (const s of spans) {
    let list = byService.get(s.service);
    if (!list) byService.set(s.service, (list = []));
    list.push(s);
  }
  return {
    resourceSpans: [...byService].map(([service, list]) => ({
      resource: { attributes: Object.entries({ ...resource, ...Object.fromEntries(list[0]!.process ?? []), 'service.name': service }).map(([key, v]) => ({ key, value: toAny(v) })) },
      scopeSpans: [
        {
          scope: { name: 'portico', version: '0.1.0' },
          spans: list.map((s) => ({
            traceId: s.traceId,
            spanId: s.spanId,
            ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
            name: s.name,
            kind: KIND_NUM[s.kind],
            startTimeUnixNano: usToNanos(s.startUs),
            endTimeUnixNano: usToNanos(s.startUs + s.durationUs),
            attributes: s.attributes.map(([key, v]) => ({ key, value: toAny(v) })),
            status: s.error ? { code: 2 } : { code: 0 },
          })),
        },
      ],
    })),
  };
}

const HEX = /^[0-9a-f]+$/;

function fromAny(v: OtlpAnyValue | undefined): AttrValue | undefined {
  if (!v || typeof v !== 'object') return undefined;
  if (typeof v.stringValue === 'string') return v.stringValue;
  if (typeof v.boolValue === 'boolean') return v.boolValue;
  if (v.intValue !== undefined) {
    const n = Number(v.intValue);
    return Number.isFinite(n) ? n : undefined;
  }
  if (typeof v.doubleValue === 'number') return v.doubleValue;
  return undefined;
}

function attrs(list: unknown): [string, AttrValue][] {
  if (!Array.isArray(list)) return [];
  const out: [string, AttrValue][] = [];
  for (const kv of list as OtlpKeyValue[]) {
    if (!kv || typeof kv.key !== 'string') continue;
    const v = fromAny(kv.value);
    if (v !== undefined) out.push([kv.key.slice(0, 256), typeof v === 'string' ? v.slice(0, 4096) : v]);
  }
  return out.slice(0, 128);
}

function nanosToUs(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return Math.floor(v / 1000);
  if (typeof v === 'string' && /^\d{1,25}$/.test(v)) return v.length <= 3 ? 0 : Number(v.slice(0, -3));
  return undefined;
}

function kindOf(v: unknown): SpanKind {
  if (typeof v === 'number') return NUM_KIND[v] ?? 'INTERNAL';
  if (typeof v === 'string') {
    const k = v.replace(/^SPAN_KIND_/, '') as SpanKind;
    return k in KIND_NUM ? k : 'INTERNAL';
  }
  return 'INTERNAL';
}

/**
 * Reads an OTLP/HTTP JSON ExportTraceServiceRequest. Malformed spans are skipped; the count of
 * rejected spans is returned so the receiver can answer with `partialSuccess` as the spec says.
 */
export function decodeOtlp(body: unknown): { spans: SpanData[]; rejected: number } {
  const spans: SpanData[] = [];
  let rejected = 0;
  const rs = (body as { resourceSpans?: unknown })?.resourceSpans;
  if (!Array.isArray(rs)) throw new Error('body is not an OTLP ExportTraceServiceRequest: resourceSpans must be an array');
  for (const r of rs as { resource?: { attributes?: unknown }; scopeSpans?: unknown }[]) {
    const resAttrs = attrs(r?.resource?.attributes);
    const service = String(resAttrs.find(([k]) => k === 'service.name')?.[1] ?? 'unknown_service').slice(0, 256);
    const processTags = resAttrs.filter(([k]) => k !== 'service.name');
    const process = processTags.length > 0 ? processTags : undefined;
    const scopes = Array.isArray(r?.scopeSpans) ? (r.scopeSpans as { spans?: unknown }[]) : [];
    for (const sc of scopes) {
      for (const s of Array.isArray(sc?.spans) ? (sc.spans as Record<string, unknown>[]) : []) {
        const traceId = typeof s.traceId === 'string' ? s.traceId.toLowerCase() : '';
        const spanIdHex = typeof s.spanId === 'string' ? s.spanId.toLowerCase() : '';
        const parent = typeof s.parentSpanId === 'string' && s.parentSpanId ? s.parentSpanId.toLowerCase() : undefined;
        const start = nanosToUs(s.startTimeUnixNano);
        const end = nanosToUs(s.endTimeUnixNano);
        if (traceId.length !== 32 || !HEX.test(traceId) || spanIdHex.length !== 16 || !HEX.test(spanIdHex) || (parent !== undefined && (parent.length !== 16 || !HEX.test(parent))) || start === undefined || end === undefined) {
          rejected++;
          continue;
        }
        const status = s.status as { code?: unknown } | undefined;
        spans.push({
          traceId,
          spanId: spanIdHex,
          parentSpanId: parent,
          name: typeof s.name === 'string' ? s.name.slice(0, 512) : '',
          kind: kindOf(s.kind),
          startUs: start,
          durationUs: Math.max(0, end - start),
          service,
          attributes: attrs(s.attributes),
          error: status?.code === 2 || status?.code === 'STATUS_CODE_ERROR',
          process,
        });
      }
    }
  }
  return { spans, rejected };
}

export interface ExporterOptions {
  /** Full URL of the collector's traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. */
  readonly endpoint: string;
  readonly resource?: Readonly<Record<string, AttrValue>>;
  readonly batchSize?: number;
  readonly intervalMs?: number;
  /** Spans beyond this wait in memory are dropped (counted), never blocking requests. */
  readonly maxQueue?: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly onError?: (err: Error) => void;
}

/** Batches spans and POSTs them as OTLP/HTTP JSON, never on the request path. */
export class OtlpExporter {
  private queue: SpanData[] = [];
  private readonly timer: NodeJS.Timeout;
  private inflight: Promise<void> = Promise.resolve();
  dropped = 0;
  exported = 0;
  failed = 0;

  constructor(private readonly opts: ExporterOptions) {
    const url = new URL(opts.endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`OTLP endpoint '${opts.endpoint}' must be http or https`);
    this.timer = setInterval(() => void this.flush(), opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  add(span: SpanData): void {
    if (this.queue.length >= (this.opts.maxQueue ?? 2048)) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= (this.opts.batchSize ?? 512)) setImmediate(() => void this.flush());
  }

  /** Sends whatever is queued; resolves when the POST (and any earlier one) finished. */
  flush(): Promise<void> {
    if (this.queue.length === 0) return this.inflight;
    const batch = this.queue;
    this.queue = [];
    const body = JSON.stringify(encodeOtlp(batch, this.opts.resource));
    this.inflight = this.inflight.then(async () => {
      try {
        const res = await fetch(this.opts.endpoint, { method: 'POST', headers: { 'content-type': 'application/json', ...this.opts.headers }, body, signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        if (!res.ok) throw new Error(`OTLP collector answered ${res.status}`);
        this.exported += batch.length;
      } catch (err) {
        this.failed += batch.length;
        this.opts.onError?.(err as Error);
      }
    });
    return this.inflight;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
