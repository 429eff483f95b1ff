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
      if (!hasCandidateToken(policies, r.headers, r.query)) return undefined;
      return authenticateJwt(policies, r.headers, r.query, jwks).then((jwt): FilterResult => {
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
