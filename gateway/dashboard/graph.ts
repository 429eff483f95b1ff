/**
 * The dashboard's service graph, read from the proxies' own Istio metrics (the Prometheus text
 * each proxy serves at /stats/prometheus), the way Kiali reads them from Prometheus: nodes are
 * canonical services (the `app` of a workload), edges are `istio_requests_total` series from
 * `source_canonical_service` to `destination_canonical_service`, with a 5xx share and a p99 from
 * the `istio_request_duration_milliseconds` buckets.
 *
 * Rates need two samples: `GraphHistory` keeps a few recent cumulative samples and compares the
 * newest with one about `windowMs` old, so every viewer (and every poll) sees a steady window.
 * Where one request is reported by both ends (a source proxy and a destination sidecar), only the
 * `reporter="source"` series count, as Kiali does.
 */

export interface EdgeTotals {
  readonly requests: number;
  readonly errors: number;
  /** Cumulative bucket counts, aligned with `bounds` (last = +Inf). */
  readonly buckets: readonly number[];
}

interface EdgeSample {
  readonly source: string;
  readonly target: string;
  readonly sourceLabel: string;
  readonly targetLabel: string;
  readonly services: Set<string>;
  readonly reporter: string;
  requests: number;
  errors: number;
  buckets: number[];
}

export interface GraphNode {
  /** `namespace/name`. */
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  /** `ingress` when the node only ever calls (a gateway or a client), else `service`. */
  readonly kind: 'ingress' | 'service';
}

export interface EdgeWindow {
  readonly seconds: number;
  readonly requests: number;
  readonly rps: number;
  /** 5xx share 0..1, null without requests in the window. */
  readonly errorRate: number | null;
  readonly p99Ms: number | null;
}

export interface GraphEdge {
  readonly source: string;
  readonly target: string;
  /** Destination service hosts behind this edge (`reviews.default.svc.cluster.local`). */
  readonly services: readonly string[];
  /** Since the proxies started. */
  readonly total: { readonly requests: number; readonly errorRate: number | null; readonly p99Ms: number | null };
  /** Over the recent window; null until a second sample exists. */
  readonly window: EdgeWindow | null;
}

export interface ServiceGraph {
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
}

const UNKNOWN = 'unknown';

/** Parses `a="x",b="y\"z"` (the inside of `{}` in the text format). */
export function parseLabels(body: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const eq = body.indexOf('="', i);
    if (eq < 0) throw new Error(`bad label set: ${body.slice(i, i + 40)}`);
    const name = body.slice(i, eq);
    let j = eq + 2;
    let value = '';
    while (j < body.length && body[j] !== '"') {
      if (body[j] === '\\' && j + 1 < body.length) {
        const c = body[j + 1];
        value += c === 'n' ? '\n' : c;
        j += 2;
      } else {
        value += body[j];
        j++;
      }
    }
    if (j >= body.length) throw new Error(`unterminated label value for ${name}`);
    out[name] = value;
    i = j + 1;
    if (body[i] === ',') i++;
  }
  return out;
}

/** `{labels} value` → [labels text, value]; undefined for lines that are not that shape. */
function splitSample(line: string, nameLength: number): [string, number] | undefined {
  if (line[nameLength] !== '{') return undefined;
  const close = line.lastIndexOf('} ');
  if (close < 0) return undefined;
  const v = line.slice(close + 2);
  const value = v === '+Inf' ? Infinity : Number(v);
  if (Number.isNaN(value)) return undefined;
  return [line.slice(nameLength + 1, close), value];
}

function nodeOf(name: string | undefined, fallback: string | undefined, ns: string | undefined): { id: string; name: string; namespace: string } {
  const n = name && name !== UNKNOWN ? name : fallback && fallback !== UNKNOWN ? fallback : UNKNOWN;
  const namespace = ns && ns !== UNKNOWN ? ns : '';
  return { id: `${namespace}/${n}`, name: n, namespace };
}

/**
 * Reads the request counters and duration buckets of every proxy's exposition text into
 * cumulative per-edge totals (source reporter preferred; see the module comment).
 */
export function readEdges(expositions: readonly string[]): { edges: Map<string, EdgeSample>; bounds: number[] } {
  const bySeries = new Map<string, EdgeSample>();
  let bounds: number[] = [];
  const boundIndex = new Map<number, number>();
  const REQ = 'istio_requests_total';
  const BUCKET = 'istio_request_duration_milliseconds_bucket';
  const edgeFor = (l: Record<string, string>): EdgeSample | undefined => {
    if ((l.destination_service ?? UNKNOWN) === UNKNOWN) return undefined; // answered by the proxy itself (404 NR, redirects)
    const src = nodeOf(l.source_canonical_service, l.source_workload, l.source_workload_namespace);
    const dst = nodeOf(l.destination_canonical_service, l.destination_service_name, l.destination_service_namespace);
    const reporter = l.reporter ?? 'source';
    const key = `${reporter}\u0000${src.id}\u0000${dst.id}`;
    let e = bySeries.get(key);
    if (!e) {
      e = { source: src.id, target: dst.id, sourceLabel: src.name, targetLabel: dst.name, services: new Set(), reporter, requests: 0, errors: 0, buckets: [] };
      bySeries.set(key, e);
    }
    e.services.add(l.destination_service!);
    return e;
  };
  for (const text of expositions) {
    for (const line of text.split('\n')) {
      if (line.startsWith(REQ)) {
        const s = splitSample(line, REQ.length);
        if (!s) continue;
        const l = parseLabels(s[0]);
        const e = edgeFor(l);
        if (!e) continue;
        e.requests += s[1];
        if (/^5\d\d$/.test(l.response_code ?? '') || l.response_code === '0') e.errors += s[1];
      } else if (line.startsWith(BUCKET)) {
        const s = splitSample(line, BUCKET.length);
        if (!s) continue;
        const l = parseLabels(s[0]);
        const le = l.le === '+Inf' ? Infinity : Number(l.le);
        if (Number.isNaN(le)) continue;
        let bi = boundIndex.get(le);
        if (bi === undefined) {
          bounds = [...bounds, le].sort((a, b) => a - b);
          boundIndex.clear();
          bounds.forEach((b, i) => boundIndex.set(b, i));
          for (const e of bySeries.values()) if (e.buckets.length) e.buckets.splice(bounds.indexOf(le), 0, 0);
          bi = boundIndex.get(le)!;
        }
        const e = edgeFor(l);
        if (!e) continue;
        while (e.buckets.length < bounds.length) e.buckets.push(0);
        e.buckets[bi]! += s[1];
      }
    }
  }
  // Source-reported series win; destination-reported ones fill in callers with no source proxy.
  const edges = new Map<string, EdgeSample>();
  for (const e of bySeries.values()) {
    const key = `${e.source}\u0000${e.target}`;
    const have = edges.get(key);
    if (!have || (have.reporter !== 'source' && e.reporter === 'source')) edges.set(key, e);
  }
  return { edges, bounds };
}

/**
 * Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank; a
 * rank in the +Inf bucket answers the highest finite bound. Null without observations.
 */
export function quantile(q: number, bounds: readonly number[], cumulative: readonly number[]): number | null {
  const n = bounds.length;
  if (n === 0 || cumulative.length < n) return null;
  const total = cumulative[n - 1]!;
  if (!(total > 0)) return null;
  const rank = q * total;
  let i = 0;
  while (i < n - 1 && cumulative[i]! < rank) i++;
  if (bounds[i] === Infinity) return i > 0 ? bounds[i - 1]! : null;
  const lower = i === 0 ? 0 : bounds[i - 1]!;
  const below = i === 0 ? 0 : cumulative[i - 1]!;
  const inBucket = cumulative[i]! - below;
  if (inBucket <= 0) return bounds[i]!;
  return lower + (bounds[i]! - lower) * ((rank - below) / inBucket);
}

interface Sample {
  readonly at: number;
  readonly edges: ReadonlyMap<string, EdgeTotals>;
}

const share = (errors: number, requests: number): number | null => (requests > 0 ? errors / requests : null);

/** Keeps recent samples so rates are computed over a steady window, whoever polls and how often. */
export class GraphHistory {
  private samples: Sample[] = [];
  constructor(
    private readonly windowMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the expositions now and returns the graph with totals and windowed rates. */
  graph(expositions: readonly string[]): ServiceGraph {
    const at = this.now();
    const { edges, bounds } = readEdges(expositions);
    const current = new Map<string, EdgeTotals>();
    for (const [k, e] of edges) current.set(k, { requests: e.requests, errors: e.errors, buckets: e.buckets });
    // The baseline: the newest sample at least a window old, else the oldest we have.
    let base: Sample | undefined;
    for (const s of this.samples) if (at - s.at >= this.windowMs) base = s;
    base ??= this.samples[0];
    const last = this.samples.at(-1);
    if (!last || at - last.at >= 1000) this.samples.push({ at, edges: current });
    // Keep one sample older than the window (the next baseline) and the ones inside it.
    while (this.samples.length > 2 && at - this.samples[1]!.at >= this.windowMs) this.samples.shift();
    if (this.samples.length > 120) this.samples.splice(1, this.samples.length - 120);

    const nodes = new Map<string, GraphNode>();
    const targets = new Set<string>();
    for (const e of edges.values()) targets.add(e.target);
    const out: GraphEdge[] = [];
    for (const [k, e] of [...edges].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      for (const [id, name] of [
        [e.source, e.sourceLabel],
        [e.target, e.targetLabel],
      ] as const) {
        if (!nodes.has(id)) nodes.set(id, { id, name, namespace: id.slice(0, id.indexOf('/')), kind: targets.has(id) ? 'service' : 'ingress' });
      }
      let window: EdgeWindow | null = null;
      const seconds = base ? (at - base.at) / 1000 : 0;
      if (base && seconds > 0) {
        const b = base.edges.get(k);
        const requests = Math.max(0, e.requests - (b?.requests ?? 0));
        const errors = Math.max(0, e.errors - (b?.errors ?? 0));
        const delta = e.buckets.map((c, i) => Math.max(0, c - (b?.buckets[i] ?? 0)));
        window = { seconds: Math.round(seconds * 10) / 10, requests, rps: requests / seconds, errorRate: share(errors, requests), p99Ms: quantile(0.99, bounds, delta) };
      }
      out.push({
        source: e.source,
        target: e.target,
        services: [...e.services].sort(),
        total: { requests: e.requests, errorRate: share(e.errors, e.requests), p99Ms: quantile(0.99, bounds, e.buckets) },
        window,
      });
    }
    return { nodes: [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1)), edges: out };
  }
}
