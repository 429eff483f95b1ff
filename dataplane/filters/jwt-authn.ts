/**
 * envoy.filters.http.jwt_authn as Istio configures it from RequestAuthentication: a request
 * carrying a token must carry a valid one (401 otherwise); a request without one passes with no
 * request principal (an AuthorizationPolicy with `requestPrincipals` then refuses it). A valid
 * token sets `request.auth.*` and the headers the rule asks for (`outputClaimToHeaders`,
 * `outputPayloadToHeader`), and is removed unless `forwardOriginalToken`.
 * https://istio.io/latest/docs/reference/config/security/request_authentication/
 */
import type { Snapshot } from '../../config/snapshot.ts';
import { applyJwtHeaders, authenticateJwt, hasCandidateToken, selectRequestAuthn, type JwksCache } from '../../gateway/jwt-authn.ts';
import type { ChainOwner } from './chain.ts';
import type { FilterResult, HttpFilter } from './types.ts';

export function jwtAuthnFilter(snapshot: Snapshot, owner: ChainOwner, jwks: JwksCache): HttpFilter | undefined {
  const policies = selectRequestAuthn(snapshot.security, owner);
  if (policies.length === 0) return undefined;
  return {
    name: 'envoy.filters.http.jwt_authn',
    onRequest(x) {
      const r = x.request;
      // bypass_cors_preflight: browsers send preflights without credentials (istio/istio#36911).
      if (r.method === 'OPTIONS' && r.headers.origin !== undefined && r.headers['access-control-request-method'] !== undefined) return undefined;
      // The request headers as the filters before this one left them (ext_authz may have set
      // Authorization, as Kubeflow's oauth2-proxy setup relies on), as Envoy's jwt_authn sees them.
      const headers = x.upstreamHeaders;
      if (!hasCandidateToken(policies, headers, r.query)) return undefined;
      return authenticateJwt(policies, headers, r.query, jwks).then((jwt): FilterResult => {
        if (jwt.kind === 'none') return undefined;
        if (jwt.kind === 'invalid') {
          return {
            status: 401,
            body: jwt.reason,
            flag: '-',
            headers: { 'content-type': 'text/plain', 'www-authenticate': `Bearer realm="${r.scheme}://${r.authority}${r.path}", error="invalid_token"` },
          };
        }
        const aud = jwt.claims.aud;
        x.auth = {
          principal: jwt.principal,
          claims: jwt.claims,
          audiences: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [],
          presenter: typeof jwt.claims['azp'] === 'string' ? jwt.claims['azp'] : undefined,
        };
        applyJwtHeaders(jwt, x.upstreamHeaders);
        return undefined;
      });
    },
  };
}
