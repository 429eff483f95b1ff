/**
 * envoy.filters.http.rbac as Istio configures it from AuthorizationPolicy ALLOW / DENY / AUDIT:
 * the same evaluation for the edge gateway and the sidecar (gateway/rbac.ts), selected by the
 * proxy's namespace and labels (or `targetRefs`), with the root namespace mesh-wide.
 */
import type { Snapshot } from '../../config/snapshot.ts';
import { compileRbac, RBAC_DENIED_BODY } from '../../gateway/rbac.ts';
import type { ChainOwner } from './chain.ts';
import { policyInput } from './input.ts';
import type { HttpFilter } from './types.ts';

export function rbacFilter(snapshot: Snapshot, owner: ChainOwner, log?: (msg: string, fields: Record<string, unknown>) => void): HttpFilter | undefined {
  const rbac = compileRbac(snapshot.security, owner);
  if (!rbac.active) return undefined;
  return {
    name: 'envoy.filters.http.rbac',
    onRequest(x) {
      const input = policyInput(x);
      const d = rbac.evaluate(input);
      if (d.audited.length) log?.('AUTHZ audit', { policies: d.audited, method: input.method, path: input.path, principal: input.principal ?? '' });
      if (d.allowed) return undefined;
      log?.('AUTHZ denied', { reason: d.reason, method: input.method, path: input.path, principal: input.principal ?? '' });
      return { status: 403, body: RBAC_DENIED_BODY, flag: 'RBAC', headers: { 'content-type': 'text/plain' } };
    },
  };
}
