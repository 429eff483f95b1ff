/**
 * The route table as the user wrote it (VirtualService, rule, match, destinations, file:line)
 * with each rule's live hit count, and upstream health (clusters → endpoints), read from the
 * running proxies. Plain data for the dashboard's JSON; nothing here is on the request path.
 */
import { relative, isAbsolute } from 'node:path';
import type { NamedMatch, RouteMatch, StringMatch, ValueMatch } from '../../config/snapshot.ts';
import type { ClusterStats } from '../balancer.ts';
import type { RouteTable } from '../router.ts';

/** What the dashboard reads from a gateway runtime (GatewayRuntime satisfies it). */
export interface DashboardRuntime {
  table(): RouteTable;
  readonly balancer?: { stats?(): readonly ClusterStats[] };
}

export type RouteActionView =
  | { readonly kind: 'route'; readonly destinations: readonly { readonly host: string; readonly subset?: string; readonly port?: number; readonly weight: number }[] }
  | { readonly kind: 'redirect'; readonly to: string; readonly code: number }
  | { readonly kind: 'direct'; readonly status: number };

export interface RouteView {
  readonly proxy: string;
  /** `ns/name`. */
  readonly virtualService: string;
  readonly index: number;
  readonly name?: string;
  /** `file:line` (relative to the working directory when inside it). */
  readonly source: string;
  /** Listener ports (or the mesh outbound port) the rule is served on. */
  readonly ports: readonly number[];
  readonly domains: readonly string[];
  /** One line per ORed match entry; conditions inside a line are ANDed. Empty = matches everything. */
  readonly match: readonly string[];
  readonly action: RouteActionView;
  readonly hits: number;
}

export interface EndpointView {
  readonly address: string;
  readonly port: number;
  readonly version?: string;
  readonly workload?: string;
  readonly health: 'HEALTHY' | 'EJECTED' | 'UNHEALTHY';
  readonly active: number;
  readonly ejections: number;
  readonly ejectedForMs?: number;
}

export interface ClusterView {
  readonly proxy: string;
  readonly name: string;
  readonly host: string;
  readonly subset?: string;
  readonly active: number;
  readonly pending: number;
  readonly overflows: number;
  readonly panic: boolean;
  readonly outlierDetection: boolean;
  readonly endpoints: readonly EndpointView[];
}

function stringMatch(field: string, m: StringMatch): string {
  if ('exact' in m) return `${field} = ${m.exact}`;
  if ('prefix' in m) return `${field} starts with ${m.prefix}`;
  return `${field} ~ /${m.regex}/${m.ignoreCase ? 'i' : ''}`;
}

function valueMatch(field: string, m: ValueMatch): string {
  return 'present' in m ? `${field} present` : stringMatch(field, m);
}

function named(kind: string, list: readonly NamedMatch[], negate = false): string[] {
  return list.map((n) => (negate ? `not ${valueMatch(`${kind}[${n.name}]`, n.match)}` : valueMatch(`${kind}[${n.name}]`, n.match)));
}

/** A one-line reading of one `match[]` entry, e.g. `uri = /productpage and header[end-user] = jason`. */
export function matchSummary(m: RouteMatch): string {
  const parts: string[] = [];
  if (m.uri) parts.push(stringMatch(m.ignoreUriCase ? 'uri (any case)' : 'uri', m.uri));
  if (m.method) parts.push(stringMatch('method', m.method));
  if (m.authority) parts.push(stringMatch('authority', m.authority));
  if (m.scheme) parts.push(stringMatch('scheme', m.scheme));
  parts.push(...named('header', m.headers), ...named('header', m.withoutHeaders, true), ...named('query', m.queryParams));
  if (m.port !== undefined) parts.push(`port = ${m.port}`);
  if (m.sourceLabels) parts.push(`source labels ${Object.entries(m.sourceLabels).map(([k, v]) => `${k}=${v}`).join(',')}`);
  if (m.sourceNamespace) parts.push(`source namespace = ${m.sourceNamespace}`);
  if (m.gateways?.length) parts.push(`gateways ${m.gateways.join(',')}`);
  return parts.length ? parts.join(' and ') : 'any request';
}

function sourceText(file: string, line: number): string {
  let f = file;
  if (isAbsolute(f)) {
    const rel = relative(process.cwd(), f);
    if (!rel.startsWith('..')) f = rel;
  }
  return `${f}:${line}`;
}

/** Every HTTP rule each proxy serves, grouped per (proxy, VirtualService, rule), hits summed over listeners. */
export function routeViews(proxies: readonly { readonly name: string; readonly runtime?: DashboardRuntime }[]): RouteView[] {
  const out: RouteView[] = [];
  for (const p of proxies) {
    if (!p.runtime) continue;
    const byRule = new Map<string, { view: Omit<RouteView, 'hits' | 'ports' | 'domains'>; hits: number; ports: Set<number>; domains: Set<string> }>();
    for (const port of p.runtime.table().ports.values()) {
      for (const vh of port.virtualHosts) {
        for (const cr of vh.routes) {
          const r = cr.route;
          const key = `${r.virtualService}#${r.index}`;
          let row = byRule.get(key);
          if (!row) {
            const a = r.action;
            const action: RouteActionView =
              a.kind === 'route'
                ? { kind: 'route', destinations: a.destinations.map((d) => ({ host: d.host, subset: d.subset, port: d.port, weight: d.weight })) }
                : a.kind === 'redirect'
                  ? { kind: 'redirect', to: `${a.redirect.scheme ? `${a.redirect.scheme}://` : ''}${a.redirect.authority ?? ''}${a.redirect.uri ?? ''}` || '(same URL)', code: a.redirect.redirectCode }
                  : { kind: 'direct', status: a.response.status };
            row = {
              view: { proxy: p.name, virtualService: r.virtualService, index: r.index, name: r.name, source: sourceText(r.source.file, r.source.line), match: r.match.map(matchSummary), action },
              hits: 0,
              ports: new Set(),
              domains: new Set(),
            };
            byRule.set(key, row);
          }
          row.hits += cr.hits;
          row.ports.add(port.bindPort);
          for (const d of vh.domains) row.domains.add(d);
        }
      }
    }
    const rows = [...byRule.values()].sort((a, b) => (a.view.virtualService < b.view.virtualService ? -1 : a.view.virtualService > b.view.virtualService ? 1 : a.view.index - b.view.index));
    for (const r of rows) out.push({ ...r.view, hits: r.hits, ports: [...r.ports].sort((a, b) => a - b), domains: [...r.domains].sort() });
  }
  return out;
}

/** Clusters → endpoints with live balancer health, ejections and in-flight counts. */
export function clusterViews(proxies: readonly { readonly name: string; readonly runtime?: DashboardRuntime }[]): ClusterView[] {
  const out: ClusterView[] = [];
  for (const p of proxies) {
    if (!p.runtime) continue;
    const stats = typeof p.runtime.balancer?.stats === 'function' ? p.runtime.balancer.stats() : [];
    const live = new Map(stats.map((c) => [c.name, c]));
    const clusters = [...p.runtime.table().clusters.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const c of clusters) {
      const st = live.get(c.name);
      out.push({
        proxy: p.name,
        name: c.name,
        host: c.host,
        subset: c.subset,
        active: st?.active ?? 0,
        pending: st?.pending ?? 0,
        overflows: st?.overflows ?? 0,
        panic: st?.panic ?? false,
        outlierDetection: st?.outlierDetection ?? false,
        endpoints: c.endpoints.map((e) => {
          const es = st?.endpoints.find((x) => x.address === e.address && x.port === e.port);
          return {
            address: e.address,
            port: e.port,
            version: e.labels.version,
            workload: e.workload,
            health: es?.health ?? 'HEALTHY',
            active: es?.active ?? 0,
            ejections: es?.ejections ?? 0,
            ...(es?.ejectedForMs !== undefined ? { ejectedForMs: es.ejectedForMs } : {}),
          };
        }),
      });
    }
  }
  return out;
}
