/**
 * envoy.filters.http.ext_authz: Istio CUSTOM AuthorizationPolicies and EnvoyFilter-inserted
 * ext_authz filters (the Kubeflow forms), through the check client in gateway/authz.ts. A request
 * no filter applies to stays synchronous.
 */
import type { Snapshot } from '../../config/snapshot.ts';
import { cachedAllow, checkExtAuthz, forgetOnBypass, selectExtAuthz } from '../../gateway/authz.ts';
import type { ChainDeps, ChainOwner } from './chain.ts';
import { policyInput } from './input.ts';
import type { FilterResult, HttpFilter } from './types.ts';

export function extAuthzFilter(snapshot: Snapshot, owner: ChainOwner, deps: Pick<ChainDeps, 'pools' | 'balancer' | 'sessions'>): HttpFilter | undefined {
  const filters = selectExtAuthz(snapshot, owner);
  if (filters.length === 0) return undefined;
  return {
    name: 'envoy.filters.http.ext_authz',
    onRequest(x) {
      const r = x.request;
      if (deps.sessions) forgetOnBypass(filters, r.path, x.upstreamHeaders.cookie, deps.sessions);
      const input = policyInput(x);
      if (!filters.some((f) => f.applies(input))) return undefined;
      if (deps.sessions) {
        const hit = cachedAllow(filters, input, { path: r.path, headers: x.upstreamHeaders }, deps);
        if (hit) {
          for (const [k, v] of hit) x.upstreamHeaders[k] = v;
          return undefined;
        }
      }
      const pathAndQuery = r.query ? `${r.path}?${r.query}` : r.path;
      return checkExtAuthz(filters, input, { method: r.method, pathAndQuery, path: r.path, authority: r.authority, headers: x.upstreamHeaders }, deps).then((d): FilterResult => {
        if (d === undefined) return undefined;
        if (d.kind === 'deny') return { status: d.status, body: d.body, headers: d.headers, flag: 'UAEX' };
        // Results land after client identity headers were stripped (upstreamHeaders), before route ops.
        for (const [k, v] of d.upstreamHeaders) x.upstreamHeaders[k] = v;
        for (const [k, v] of d.clientHeaders) {
          if (Array.isArray(v)) for (const one of v as string[]) x.responseHeaders.push([k, one]);
          else x.responseHeaders.push([k, v as string]);
        }
        return undefined;
      });
    },
  };
}
