/**
 * The web dashboard: `GET /dashboard` is one self-contained page (inline CSS and JS, no CDN)
 * that polls `GET /dashboard/data`, a JSON document assembled here from the proxies' own
 * metrics (service graph), route tables (rules with hit counts), balancers (upstream health) and
 * trace stores (recent and slow traces); `GET /dashboard/data?trace=ID` answers one trace's spans
 * for the waterfall. Works with telemetry off: those sections say so.
 *
 * The page is served with a strict Content-Security-Policy (its own script and style by hash,
 * same-origin fetches only), and renders every value as text, never as markup.
 *
 *   const dashboard = createDashboard({ proxies: [{ name: 'gateway', runtime, telemetry }] });
 *   if (url.pathname.startsWith('/dashboard') && dashboard.handle(req, res, url)) return;
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TraceStore } from '../telemetry/trace-store.ts';
import { GraphHistory, type ServiceGraph } from './graph.ts';
import { clusterViews, routeViews, type ClusterView, type DashboardRuntime, type RouteView } from './tables.ts';
import { recentTraces, traceDetail, type TraceSummary } from './traces.ts';

export type { DashboardRuntime } from './tables.ts';

/** What the dashboard reads from a proxy's telemetry (PorticoTelemetry satisfies it). */
export interface DashboardTelemetry {
  readonly registry: { render(): string };
  readonly traces?: TraceStore;
}

/** One proxy the dashboard shows (a gateway, a mesh listener, a sidecar). */
export interface DashboardProxy {
  /** Shown in the route and upstream tables, e.g. `gateway`, `mesh`, `productpage sidecar`. */
  readonly name: string;
  readonly runtime?: DashboardRuntime;
  /** Absent = telemetry is off for this proxy. */
  readonly telemetry?: DashboardTelemetry;
}

export interface DashboardSources {
  readonly proxies: readonly DashboardProxy[];
}

/** The document at /dashboard/data. */
export interface DashboardData {
  /** ms since the epoch. */
  readonly generatedAt: number;
  readonly proxies: readonly string[];
  /** null when no proxy has telemetry. */
  readonly graph: ServiceGraph | null;
  /** Seconds the graph's rates are computed over (the window target). */
  readonly rateWindowSeconds: number;
  readonly routes: readonly RouteView[];
  readonly clusters: readonly ClusterView[];
  /** null when no proxy keeps traces. */
  readonly traces: { readonly recent: readonly TraceSummary[]; readonly slow: readonly TraceSummary[]; readonly kept: number } | null;
}

export interface Dashboard {
  /** The data document now (also advances the rate history). */
  data(): DashboardData;
  /** Serves `/dashboard` and `/dashboard/data`; false for other paths. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
}

export interface DashboardOptions {
  /** Rate window (default 30 s). */
  readonly windowMs?: number;
  /** Traces listed as recent (default 25) and as slow (default 8). */
  readonly recent?: number;
  readonly slow?: number;
  readonly now?: () => number;
}

const HERE = new URL('.', import.meta.url);

interface Page {
  readonly html: string;
  readonly csp: string;
}

let page: Page | undefined;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/** Builds the page once: page.html with style.css and client.js inlined, and a CSP naming their hashes. */
function loadPage(): Page {
  if (page) return page;
  const template = readFileSync(new URL('page.html', HERE), 'utf8');
  const css = readFileSync(new URL('style.css', HERE), 'utf8');
  const js = readFileSync(new URL('client.js', HERE), 'utf8');
  const html = template.replace('/*STYLE*/', () => css).replace('/*SCRIPT*/', () => js);
  const csp = [`default-src 'none'`, `script-src ${sha256(js)}`, `style-src ${sha256(css)}`, `connect-src 'self'`, `img-src 'self' data:`, `base-uri 'none'`, `form-action 'none'`, `frame-ancestors 'none'`].join('; ');
  page = { html, csp };
  return page;
}

const TRACE_ID = /^[0-9a-fA-F]{1,32}$/;

export function createDashboard(sources: DashboardSources | (() => DashboardSources), opts: DashboardOptions = {}): Dashboard {
  const get = typeof sources === 'function' ? sources : () => sources;
  const windowMs = opts.windowMs ?? 30_000;
  const history = new GraphHistory(windowMs, opts.now);
  const expositions = (proxies: readonly DashboardProxy[]): string[] => proxies.flatMap((p) => (p.telemetry ? [p.telemetry.registry.render()] : []));
  const stores = (proxies: readonly DashboardProxy[]): TraceStore[] => [...new Set(proxies.flatMap((p) => (p.telemetry?.traces ? [p.telemetry.traces] : [])))];
  // The first sample: rates are then available from the first poll.
  history.graph(expositions(get().proxies));

  const data = (): DashboardData => {
    const { proxies } = get();
    const expo = expositions(proxies);
    const ts = stores(proxies);
    let traces: DashboardData['traces'] = null;
    if (ts.length) {
      const all = recentTraces(ts);
      const slow = [...all].sort((a, b) => b.durationMs - a.durationMs).slice(0, opts.slow ?? 8);
      traces = { recent: all.slice(0, opts.recent ?? 25), slow, kept: all.length };
    }
    return {
      generatedAt: (opts.now ?? Date.now)(),
      proxies: proxies.map((p) => p.name),
      graph: expo.length ? history.graph(expo) : null,
      rateWindowSeconds: windowMs / 1000,
      routes: routeViews(proxies),
      clusters: clusterViews(proxies),
      traces,
    };
  };

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string>): void => {
    res.writeHead(status, { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
    res.end(body);
  };
  const json = (res: ServerResponse, status: number, body: unknown): void => send(res, status, JSON.stringify(body), { 'content-type': 'application/json' });

  return {
    data,
    handle(req, res, url) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        json(res, 405, { error: 'method not allowed' });
        return true;
      }
      if (url.pathname === '/dashboard' || url.pathname === '/dashboard/') {
        const p = loadPage();
        send(res, 200, p.html, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': p.csp, 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' });
        return true;
      }
      if (url.pathname !== '/dashboard/data') return false;
      const traceId = url.searchParams.get('trace');
      if (traceId !== null) {
        if (!TRACE_ID.test(traceId)) {
          json(res, 400, { error: 'trace must be a hex trace id of at most 32 digits' });
          return true;
        }
        const detail = traceDetail(stores(get().proxies), traceId);
        if (!detail) json(res, 404, { error: `trace ${traceId} is not in the store (evicted, or never sampled)` });
        else json(res, 200, detail);
        return true;
      }
      json(res, 200, data());
      return true;
    },
  };
}
