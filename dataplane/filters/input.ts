/** The AuthorizationPolicy view of a request, built once per request and only when a policy needs it. */
import type { PolicyInput } from '../../gateway/policy.ts';
import type { FilterExchange } from './types.ts';

const INPUT = Symbol('policyInput');

export function policyInput(x: FilterExchange): PolicyInput {
  const cached = x.state.get(INPUT) as PolicyInput | undefined;
  // jwt_authn runs before the policy filters; the cache is only reused once auth is settled.
  if (cached && cached.requestPrincipal === x.auth?.principal) return cached;
  const r = x.request;
  const input: PolicyInput = {
    path: r.path,
    host: r.host,
    method: r.method,
    port: r.port,
    // As Envoy's rbac sees them: after the connection manager (x-forwarded-for, x-request-id) and
    // the filters before (ext_authz results, jwt_authn's claim headers).
    headers: x.upstreamHeaders,
    sourceIp: r.peerIp,
    remoteIp: r.remoteIp,
    principal: r.principal,
    sourceNamespace: r.peerNamespace,
    requestPrincipal: x.auth?.principal,
    claims: x.auth?.claims,
  };
  x.state.set(INPUT, input);
  return input;
}
