/**
 * Span names as Istio names them: the Envoy route decorator `operation` that pilot's
 * `getRouteOperation` (pilot/pkg/networking/core/route/route.go) sets on every route built from a
 * VirtualService `http[].match[]` entry:
 *
 *   path = exact uri → the path;  prefix → `<prefix>*`;  regex → the regex;  no uri → `/*`
 *   one destination → `<host>:<port><path>` (from the `outbound|port|subset|host` cluster)
 *   several (weighted) → `<VirtualService name>:<listener port><path>`
 *
 * Istio emits one Envoy route per `match[]` entry, so the name depends on which entry fired; the
 * router's compiled routes are per entry too and say which one it was.
 */
import type { HttpRoute, RouteMatch } from '../../config/snapshot.ts';

interface RouteNames {
  /** `host:port` when the route has one destination. */
  readonly hostPort?: string;
  readonly vsName: string;
}

const names = new WeakMap<HttpRoute, RouteNames>();
const paths = new WeakMap<RouteMatch, string>();

function pathOf(m: RouteMatch | undefined): string {
  const u = m?.uri;
  if (!u) return '/*';
  let p = paths.get(m!);
  if (p === undefined) {
    p = 'exact' in u ? u.exact : 'prefix' in u ? `${u.prefix}*` : u.regex;
    paths.set(m!, p);
  }
  return p;
}

/** `outbound|9080|v1|reviews.default.svc.cluster.local` → `reviews.default.svc.cluster.local:9080`. */
export function clusterHostPort(cluster: string): string | undefined {
  const parts = cluster.split('|');
  if (parts.length !== 4 || !parts[3] || !/^\d+$/.test(parts[1]!)) return undefined;
  return `${parts[3]}:${parts[1]}`;
}

function namesOf(route: HttpRoute): RouteNames {
  let n = names.get(route);
  if (!n) {
    const dests = route.action.kind === 'route' ? route.action.destinations : [];
    const vs = route.virtualService;
    n = { hostPort: dests.length === 1 ? clusterHostPort(dests[0]!.cluster) : undefined, vsName: vs.slice(vs.indexOf('/') + 1) };
    names.set(route, n);
  }
  return n;
}

/**
 * Istio's operation name for a request that `route` matched through `match` (the compiled
 * route's own entry: Istio, like the router, builds one route per entry); `port` is the
 * listener's declared port (used for routes split over several destinations).
 */
export function routeOperation(route: HttpRoute, match: RouteMatch | undefined, port: number): string {
  const n = namesOf(route);
  return `${n.hostPort ?? `${n.vsName}:${port}`}${pathOf(match)}`;
}
