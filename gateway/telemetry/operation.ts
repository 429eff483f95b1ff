/**
 * Span names as Istio names them: the Envoy route decorator `operation` that pilot's
 * `getRouteOperation` (pilot/pkg/networking/core/route/route.go) sets on every route built from a
 * VirtualService `http[].match[]` entry:
 *
 *   path = exact uri → the path;  prefix → `<prefix>*`;  regex → the regex;  no uri → `/*`
 *   one destination → `<host>:<port><path>` (from the `outbound|port|subset|host` cluster)
 *   several (weighted) → `<VirtualService name>:<listener port><path>`
 *
 * Istio emits one Envoy route per `match[]` entry, so the name depends on which entry fired. Only
 * sampled requests are named, so finding that entry here (instead of on every request) is cheap.
 */
import type { HttpRoute, RouteMatch } from '../../config/snapshot.ts';
import { compileStringMatch, type StringPredicate } from '../matchers.ts';

interface RouteNames {
  /** Per match[] entry (one entry `/*` when match is empty). */
  readonly paths: readonly string[];
  /** Uri predicates of the entries, to find which one fired. */
  readonly uris: readonly (StringPredicate | undefined)[];
  /** `host:port` when the route has one destination. */
  readonly hostPort?: string;
  readonly vsName: string;
}

const cache = new WeakMap<HttpRoute, RouteNames>();

function pathOf(m: RouteMatch | undefined): string {
  const u = m?.uri;
  if (!u) return '/*';
  if ('exact' in u) return u.exact;
  if ('prefix' in u) return `${u.prefix}*`;
  return u.regex;
}

/** `outbound|9080|v1|reviews.default.svc.cluster.local` → `reviews.default.svc.cluster.local:9080`. */
export function clusterHostPort(cluster: string): string | undefined {
  const parts = cluster.split('|');
  if (parts.length !== 4 || !parts[3] || !/^\d+$/.test(parts[1]!)) return undefined;
  return `${parts[3]}:${parts[1]}`;
}

function namesOf(route: HttpRoute): RouteNames {
  let n = cache.get(route);
  if (!n) {
    const entries = route.match.length > 0 ? route.match : [undefined];
    const dests = route.action.kind === 'route' ? route.action.destinations : [];
    const vs = route.virtualService;
    n = {
      paths: entries.map(pathOf),
      uris: entries.map((m) => (m?.uri ? compileStringMatch(m.uri, m.ignoreUriCase) : undefined)),
      hostPort: dests.length === 1 ? clusterHostPort(dests[0]!.cluster) : undefined,
      vsName: vs.slice(vs.indexOf('/') + 1),
    };
    cache.set(route, n);
  }
  return n;
}

/**
 * Istio's operation name for a request that `route` matched. `path` is the request path (query
 * ignored); `port` the listener's declared port (used for weighted routes).
 */
export function routeOperation(route: HttpRoute, path: string, port: number): string {
  const n = namesOf(route);
  let i = 0;
  if (n.paths.length > 1) {
    const q = path.indexOf('?');
    const p = q >= 0 ? path.slice(0, q) : path;
    // The first entry whose uri condition holds (or has none); its other conditions held too,
    // unless an earlier entry matched on them, which the uri check cannot tell apart: the name is
    // then that of the first entry with a matching uri, as close as the record allows.
    const found = n.uris.findIndex((u) => u === undefined || u(p));
    i = found >= 0 ? found : 0;
  }
  return `${n.hostPort ?? `${n.vsName}:${port}`}${n.paths[i]}`;
}
