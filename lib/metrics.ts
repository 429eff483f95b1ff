/**
 * A small Prometheus registry: counters, gauges and histograms whose series are created once per
 * label set and cached by the caller, so the request path only does `series.inc()` /
 * `series.observe(v)` (find bucket index + increment). Rendered in the text exposition format
 * 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/
 */
import { readdirSync, readFileSync } from 'node:fs';

export type Labels = Readonly<Record<string, string>>;

/** Escapes a label value as the text format requires (`\`, `"`, newline). */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `{a="1",b="2"}` without the closing brace (histograms append `le`), or '' for no labels. */
function labelBody(labels: Labels, names: readonly string[]): string {
  if (names.length === 0) return '';
  return names.map((n) => `${n}="${escapeLabelValue(labels[n] ?? '')}"`).join(',');
}

function formatNumber(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

export class CounterSeries {
  value = 0;
  constructor(readonly labelText: string) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class HistogramSeries {
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labelBody: string,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  render(out: string[]): void;
}

function checkNames(name: string, labelNames: readonly string[]): void {
  if (!NAME_RE.test(name)) throw new Error(`metric name '${name}' is not a valid Prometheus name`);
  for (const l of labelNames) if (!LABEL_RE.test(l) || l.startsWith('__')) throw new Error(`metric ${name}: label '${l}' is not a valid label name`);
}

export class Counter implements Family {
  readonly type = 'counter' as const;
  private readonly series = new Map<string, CounterSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    checkNames(name, labelNames);
  }
  /** The series for these labels (created on first use). Cache the result on hot paths. */
  with(labels: Labels = {}): CounterSeries {
    const body = labelBody(labels, this.labelNames);
    let s = this.series.get(body);
    if (!s) {
      s = new CounterSeries(body ? `{${body}}` : '');
      this.series.set(body, s);
    }
    return s;
  }
  inc(labels: Labels = {}, by = 1): void {
    this.with(labels).inc(by);
  }
  render(out: string[]): void {
    for (const s of this.series.values()) out.push(`${this.name}${s.labelText} ${formatNumber(s.value)}`);
  }
  size(): number {
    return this.series.size;
  }
}

/**
 * A gauge whose values are set directly or read at scrape time from `collect`. With type
 * `counter` it exposes a monotonic value kept elsewhere (e.g. the balancer's ejection totals).
 */
export class Gauge implements Family {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly collect?: (set: (labels: Labels, value: number) => void) => void,
    readonly type: 'gauge' | 'counter' = 'gauge',
  ) {
    checkNames(name, labelNames);
  }
  set(labels: Labels, value: number): void {
    this.values.set(labelBody(labels, this.labelNames), value);
  }
  render(out: string[]): void {
    const values = new Map(this.values);
    this.collect?.((labels, value) => values.set(labelBody(labels, this.labelNames), value));
    for (const [body, v] of values) out.push(`${this.name}${body ? `{${body}}` : ''} ${formatNumber(v)}`);
  }
}

export class Histogram implements Family {
  readonly type = 'histogram' as const;
  private readonly series = new Map<string, HistogramSeries>();
  private readonly bounds: Float64Array;
  private readonly leText: string[];
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    checkNames(name, labelNames);
    if (labelNames.includes('le')) throw new Error(`histogram ${name}: 'le' is reserved`);
    for (let i = 1; i < buckets.length; i++) if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`histogram ${name}: buckets must increase`);
    this.bounds = Float64Array.from(buckets);
    this.leText = [...buckets.map(formatNumber), '+Inf'];
  }
  with(labels: Labels = {}): HistogramSeries {
    const body = labelBody(labels, this.labelNames);
    let s = this.series.get(body);
    if (!s) {
      s = new HistogramSeries(body, this.bounds);
      this.series.set(body, s);
    }
    return s;
  }
  observe(labels: Labels, v: number): void {
    this.with(labels).observe(v);
  }
  render(out: string[]): void {
    for (const s of this.series.values()) {
      const pre = s.labelBody ? `${s.labelBody},` : '';
      const plain = s.labelBody ? `{${s.labelBody}}` : '';
      let cum = 0;
      for (let i = 0; i < this.leText.length; i++) {
        cum += s.counts[i]!;
        out.push(`${this.name}_bucket{${pre}le="${this.leText[i]}"} ${cum}`);
      }
      out.push(`${this.name}_sum${plain} ${formatNumber(s.sum)}`);
      out.push(`${this.name}_count${plain} ${s.count}`);
    }
  }
}

/** The families one process exposes, rendered in registration order. */
export class Registry {
  private readonly families = new Map<string, Family>();

  private add<F extends Family>(f: F): F {
    if (this.families.has(f.name)) throw new Error(`metric ${f.name} registered twice`);
    this.families.set(f.name, f);
    return f;
  }
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = [], collect?: (set: (labels: Labels, value: number) => void) => void): Gauge {
    return this.add(new Gauge(name, help, labelNames, collect));
  }
  /** A counter whose value is read at scrape time from state kept elsewhere. */
  collectedCounter(name: string, help: string, labelNames: readonly string[], collect: (set: (labels: Labels, value: number) => void) => void): Gauge {
    return this.add(new Gauge(name, help, labelNames, collect, 'counter'));
  }
  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  /** Text exposition format 0.0.4. A family whose collector throws is skipped, not the scrape. */
  render(): string {
    const out: string[] = [];
    for (const f of this.families.values()) {
      const lines: string[] = [];
      try {
        f.render(lines);
      } catch {
        continue;
      }
      if (lines.length === 0) continue;
      out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`);
      for (const l of lines) out.push(l);
    }
    return out.length ? `${out.join('\n')}\n` : '';
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

// ---------------------------------------------------------------------------------------------
// Process metrics every Portico process exposes (gateway, sidecar, control plane, authservice):
// the standard `process_*` families of Prometheus client libraries
// (https://prometheus.io/docs/instrumenting/writing_clientlibs/#process-metrics), a few
// `nodejs_*` heap gauges, and Istio's `istio_build{component,tag}` that Istio's dashboards read
// to show which versions run. All are read at scrape time: nothing runs between scrapes.
// ---------------------------------------------------------------------------------------------

/** Portico's version (package.json), the `tag` of `istio_build`. */
export const PORTICO_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
})();

/** Field 23 (vsize, bytes) of /proc/self/stat; undefined off Linux. */
function virtualMemoryBytes(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: count after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[20]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function openFds(): number | undefined {
  try {
    // readdir opens the directory itself: one fd more than the process holds otherwise.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

function maxFds(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const registeredProcess = new WeakSet<Registry>();

/**
 * Adds `process_cpu_seconds_total` (and its user/system parts), `process_resident_memory_bytes`,
 * `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
 * `process_start_time_seconds`, `nodejs_heap_size_{total,used}_bytes`, `nodejs_external_memory_bytes`
 * and `istio_build{component,tag}` to `r`. Istio's components are `proxy` (gateways and sidecars)
 * and `pilot` (the control plane); the authservice reports `authservice`. Idempotent per registry.
 */
export function registerProcessMetrics(r: Registry, component: string): void {
  if (registeredProcess.has(r)) return;
  registeredProcess.add(r);
  r.gauge('istio_build', 'Istio component build info (value is always 1).', ['component', 'tag'], (set) => set({ component, tag: PORTICO_VERSION }, 1));
  const cpu = (pick: (u: NodeJS.CpuUsage) => number) => (set: (labels: Labels, value: number) => void) => set({}, pick(process.cpuUsage()) / 1e6);
  r.collectedCounter('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', [], cpu((u) => u.user));
  r.collectedCounter('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', [], cpu((u) => u.system));
  r.collectedCounter('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', [], cpu((u) => u.user + u.system));
  r.gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', [], (set) => set({}, Math.round(performance.timeOrigin) / 1000));
  r.gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', [], (set) => set({}, process.memoryUsage.rss()));
  r.gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', [], (set) => {
    const v = virtualMemoryBytes();
    if (v !== undefined) set({}, v);
  });
  r.gauge('process_open_fds', 'Number of open file descriptors.', [], (set) => {
    const n = openFds();
    if (n !== undefined) set({}, n);
  });
  const max = maxFds();
  r.gauge('process_max_fds', 'Maximum number of open file descriptors.', [], (set) => {
    if (max !== undefined) set({}, max);
  });
  const heap = (pick: (m: NodeJS.MemoryUsage) => number) => (set: (labels: Labels, value: number) => void) => set({}, pick(process.memoryUsage()));
  r.gauge('nodejs_heap_size_total_bytes', 'V8 heap size in bytes.', [], heap((m) => m.heapTotal));
  r.gauge('nodejs_heap_size_used_bytes', 'V8 heap used in bytes.', [], heap((m) => m.heapUsed));
  r.gauge('nodejs_external_memory_bytes', 'Memory of C++ objects bound to JavaScript objects (Buffers) in bytes.', [], heap((m) => m.external));
}
