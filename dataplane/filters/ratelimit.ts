/**
 * envoy.filters.http.local_ratelimit from Istio EnvoyFilters (listener, vhost or route scope):
 * placed just before the router, where Istio's documented EnvoyFilter inserts it.
 * https://istio.io/latest/docs/tasks/policy-enforcement/rate-limit/#local-rate-limit
 */
import { checkRateLimits, type CompiledRateLimit } from '../../gateway/ratelimit.ts';
import type { HttpFilter } from './types.ts';

export function rateLimitFilter(limits: readonly CompiledRateLimit[]): HttpFilter | undefined {
  if (limits.length === 0) return undefined;
  return {
    name: 'envoy.filters.http.local_ratelimit',
    onRequest(x) {
      const refused = checkRateLimits(limits, { port: x.request.port, vhostNames: x.vhostNames, routeName: x.route?.route.name });
      if (!refused) return undefined;
      return { status: 429, body: 'local_rate_limited', flag: 'RL', headers: { 'content-type': 'text/plain; charset=utf-8', ...refused } };
    },
  };
}
