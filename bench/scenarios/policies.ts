/**
 * The plain route with edge security configured (issue: Istio fidelity), to report what one
 * policy costs per request next to `plain-http`:
 * - `plain-http-authz`: one AuthorizationPolicy ALLOW rule (paths + methods) selecting the gateway;
 * - `plain-http-jwt`: one RequestAuthentication rule (inline JWKS) and every request carrying a
 *   valid ES256 token, which the gateway verifies and maps to a header.
 * nginx gets the plain route: it has no equivalent, and the number to read is Portico vs
 * Portico's own plain-http.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { plainHttp } from './plain-http.ts';
import type { Scenario } from './types.ts';

const AUTHZ = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-bench
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: [GET]
        paths: ["/bench/*"]
`;

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'bench', alg: 'ES256', use: 'sig' };
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const signingInput = `${b64({ alg: 'ES256', kid: 'bench', typ: 'JWT' })}.${b64({ iss: 'https://bench.example.com', sub: 'bench-user', aud: 'bench', email: 'bench@example.com', iat: now, exp: now + 86_400 })}`;
const TOKEN = `${signingInput}.${sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;

const JWT = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: bench-jwt
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  jwtRules:
  - issuer: https://bench.example.com
    audiences: [bench]
    jwks: '${JSON.stringify({ keys: [jwk] })}'
    outputClaimToHeaders:
    - header: x-user-email
      claim: email
`;

export const plainHttpAuthz: Scenario = {
  ...plainHttp,
  name: 'plain-http-authz',
  title: 'plain HTTP route + one AuthorizationPolicy rule',
  portico: (ctx) => {
    const base = plainHttp.portico(ctx);
    return { ...base, files: { ...base.files, 'authz.yaml': AUTHZ } };
  },
};

export const plainHttpJwt: Scenario = {
  ...plainHttp,
  name: 'plain-http-jwt',
  title: 'plain HTTP route + one RequestAuthentication rule (valid token on every request)',
  headers: { authorization: `Bearer ${TOKEN}` },
  portico: (ctx) => {
    const base = plainHttp.portico(ctx);
    return { ...base, files: { ...base.files, 'jwt.yaml': JWT } };
  },
};
