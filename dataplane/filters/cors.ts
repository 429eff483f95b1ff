/**
 * envoy.filters.http.cors, configured per route by VirtualService `corsPolicy`: answers
 * preflights the policy covers, and adds the CORS headers to responses of allowed origins.
 * It runs after the security filters, as istiod places it; jwt_authn lets preflights through
 * (Envoy's `bypass_cors_preflight`), but a DENY/ALLOW policy sees them, as in Istio.
 */
import type { CorsPolicy, Snapshot } from '../../config/snapshot.ts';
import type { HeaderMap } from '../../gateway/headers.ts';
import { compileStringMatch, type StringPredicate } from '../../gateway/matchers.ts';
import type { FilterExchange, HttpFilter, LocalReply } from './types.ts';

const corsCache = new WeakMap<CorsPolicy, StringPredicate[]>();

export function corsOriginAllowed(cors: CorsPolicy, origin: string): boolean {
  let preds = corsCache.get(cors);
  if (!preds) {
    preds = cors.allowOrigins.map((m) => compileStringMatch(m));
    corsCache.set(cors, preds);
  }
  return preds.some((p) => p(origin));
}

/** Adds CORS response headers for an allowed origin (simple and actual requests). */
export function corsResponseHeaders(cors: CorsPolicy, origin: string, headers: HeaderMap): void {
  headers['access-control-allow-origin'] = origin;
  headers['vary'] = headers['vary'] ? `${String(headers['vary'])}, Origin` : 'Origin';
  if (cors.allowCredentials) headers['access-control-allow-credentials'] = 'true';
  if (cors.exposeHeaders.length) headers['access-control-expose-headers'] = cors.exposeHeaders.join(',');
}

/** The preflight answer when the policy covers it; undefined to pass the request on. */
function preflight(cors: CorsPolicy, x: FilterExchange, origin: string): LocalReply | undefined {
  if (!corsOriginAllowed(cors, origin)) return cors.unmatchedPreflights === 'IGNORE' ? { status: 200, body: '', flag: '-', headers: { 'content-length': '0' } } : undefined;
  const headers: HeaderMap = {};
  corsResponseHeaders(cors, origin, headers);
  if (cors.allowMethods.length) headers['access-control-allow-methods'] = cors.allowMethods.join(',');
  const requested = x.request.headers['access-control-request-headers'];
  if (cors.allowHeaders.length) headers['access-control-allow-headers'] = cors.allowHeaders.join(',');
  else if (typeof requested === 'string') headers['access-control-allow-headers'] = requested;
  if (cors.maxAgeSeconds !== undefined) headers['access-control-max-age'] = String(cors.maxAgeSeconds);
  headers['content-length'] = '0';
  return { status: 200, body: '', flag: '-', headers };
}

function anyCors(snapshot: Snapshot): boolean {
  const has = (vhs: readonly { routes: readonly { cors?: CorsPolicy }[] }[]): boolean => vhs.some((vh) => vh.routes.some((r) => r.cors !== undefined));
  return snapshot.gateways.some((g) => g.ports.some((p) => has(p.virtualHosts))) || has(snapshot.mesh.virtualHosts);
}

export function corsFilter(snapshot: Snapshot): HttpFilter | undefined {
  if (!anyCors(snapshot)) return undefined;
  return {
    name: 'envoy.filters.http.cors',
    onRequest(x) {
      const cors = x.route?.route.cors;
      const origin = x.request.headers.origin;
      if (!cors || typeof origin !== 'string') return undefined;
      if (x.request.method === 'OPTIONS' && x.request.headers['access-control-request-method'] !== undefined) return preflight(cors, x, origin);
      return undefined;
    },
    onResponse(x, _status, headers) {
      const cors = x.route?.route.cors;
      const origin = x.request.headers.origin;
      if (cors && typeof origin === 'string' && corsOriginAllowed(cors, origin)) corsResponseHeaders(cors, origin, headers);
    },
  };
}
