/**
 * AuthorizationPolicy and RequestAuthentication at the edge, against Portico's own gateway: the
 * policies Istio applies to `istio: ingressgateway` workloads apply here the same way (before
 * this, the edge ignored them: a DENY-all policy had no effect and a garbage bearer token reached
 * the app).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { makeHeaderPolicy } from '../../gateway/headers.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Echo } from '../helpers/upstream.ts';

async function gateway(t: TestContext, policies: string, opts: { trustedHops?: number } = {}): Promise<{ port: number; seen: Echo[] }> {
  const app = await startEcho(t, 'app');
  const port = await freePort();
  await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: apps}
spec:
  hosts: [app.apps.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app.port}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: apps}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /app/}}]
    route: [{destination: {host: app.apps.svc.cluster.local}}]
---
${policies}`,
    { headerPolicy: makeHeaderPolicy({ trustedHops: opts.trustedHops ?? 0 }) },
  );
  return { port, seen: app.seen };
}

async function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'apps.example.com', ...headers } });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

test('a DENY-all policy selecting the ingress gateway refuses everything, routed or not', async (t) => {
  const g = await gateway(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{}]`,
  );
  const r = await get(g.port, '/app/x');
  assert.equal(r.status, 403);
  assert.equal(r.body, 'RBAC: access denied');
  assert.equal((await get(g.port, '/nowhere')).status, 403, 'rbac runs before the router, as in Envoy');
  assert.equal(g.seen.length, 0);
});

test('an empty ALLOW policy (allow-nothing) in the root namespace denies; a policy for another workload does not apply', async (t) => {
  const nothing = await gateway(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}`,
  );
  assert.equal((await get(nothing.port, '/app/x')).status, 403);
  const other = await gateway(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: apps}
spec:
  action: DENY
  rules: [{}]`,
  );
  assert.equal((await get(other.port, '/app/x')).status, 200, 'a policy in another namespace does not select the gateway');
});

test('ALLOW by methods and path templates; DENY wins over ALLOW; targetRefs select the gateway by name', async (t) => {
  const g = await gateway(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-reads, namespace: istio-system}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: istio-ingressgateway}]
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: [GET]
        paths: ["/app/{*}/status", "/app/public/{**}"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-secret, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istio-ingressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/app/public/secret*]}}]`,
  );
  assert.equal((await get(g.port, '/app/one/status')).status, 200);
  assert.equal((await get(g.port, '/app/one/two/status')).status, 403, '{*} is exactly one segment');
  assert.equal((await get(g.port, '/app/public/a/b/c')).status, 200, '{**} is the rest');
  assert.equal((await get(g.port, '/app/public/secret-plans')).status, 403, 'DENY before ALLOW');
  assert.equal((await get(g.port, '/app/other')).status, 403, 'no ALLOW rule matched');
  assert.equal((await get(g.port, '/app/one/%2e%2e/status')).status, 403, 'normalised before matching: /app/status');
});

test('ipBlocks match the peer, remoteIpBlocks the client behind numTrustedProxies', async (t) => {
  const g = await gateway(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: block, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]
  - from: [{source: {notIpBlocks: [127.0.0.0/8]}}]`,
    { trustedHops: 1 },
  );
  assert.equal((await get(g.port, '/app/x', { 'x-forwarded-for': '203.0.113.9' })).status, 403);
  assert.equal((await get(g.port, '/app/x', { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' })).status, 403, 'the rightmost entry is the trusted hop\'s client');
  assert.equal((await get(g.port, '/app/x', { 'x-forwarded-for': '203.0.113.9, 198.51.100.1' })).status, 200, 'an earlier, client-written entry is not trusted');
  assert.equal((await get(g.port, '/app/x')).status, 200);
});

async function signer(): Promise<{ jwks: string; sign: (claims: Record<string, unknown>, exp?: number | string) => Promise<string> }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  return {
    jwks: JSON.stringify({ keys: [jwk] }),
    sign: (claims, exp = '5m') =>
      new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuedAt().setExpirationTime(exp).sign(privateKey),
  };
}

test('RequestAuthentication at the edge: garbage, expired, foreign and wrong-audience tokens get 401; a valid one passes with claim headers', async (t) => {
  const k = await signer();
  const g = await gateway(
    t,
    `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: https://issuer.example.com
    audiences: [portico]
    jwks: '${k.jwks}'
    outputClaimToHeaders:
    - {header: kubeflow-userid, claim: email}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example.com/*"]}}]
    when:
    - key: request.auth.claims[groups]
      values: [admins]`,
  );
  const other = await signer();
  const good = await k.sign({ iss: 'https://issuer.example.com', sub: 'u1', aud: 'portico', email: 'jason@example.com', groups: ['admins'] });
  const notAdmin = await k.sign({ iss: 'https://issuer.example.com', sub: 'u2', aud: 'portico', email: 'eve@example.com', groups: ['users'] });
  const wrongAud = await k.sign({ iss: 'https://issuer.example.com', sub: 'u1', aud: 'someone-else', groups: ['admins'] });
  const expired = await k.sign({ iss: 'https://issuer.example.com', sub: 'u1', aud: 'portico', groups: ['admins'] }, Math.floor(Date.now() / 1000) - 120);
  const foreign = await other.sign({ iss: 'https://issuer.example.com', sub: 'u1', aud: 'portico', groups: ['admins'] });

  const garbage = await get(g.port, '/app/x', { authorization: 'Bearer not-a-jwt' });
  assert.equal(garbage.status, 401);
  assert.match(String(garbage.headers['www-authenticate']), /invalid_token/);
  assert.equal((await get(g.port, '/app/x', { authorization: `Bearer ${foreign}` })).status, 401, 'signed by another key');
  const exp = await get(g.port, '/app/x', { authorization: `Bearer ${expired}` });
  assert.equal(exp.status, 401, 'expired');
  assert.equal(exp.body, 'Jwt is expired');
  assert.equal((await get(g.port, '/app/x', { authorization: `Bearer ${wrongAud}` })).status, 401, 'wrong audience');
  assert.equal((await get(g.port, '/app/x')).status, 403, 'no token: no principal, the ALLOW policy does not match');
  assert.equal((await get(g.port, '/app/x', { authorization: `Bearer ${notAdmin}` })).status, 403, 'claims condition');
  assert.equal(g.seen.length, 0);

  const ok = await get(g.port, '/app/x', { authorization: `Bearer ${good}`, 'kubeflow-userid': 'mallory@evil.example' });
  assert.equal(ok.status, 200, ok.body);
  const seen = g.seen.at(-1)!;
  assert.equal(seen.headers['kubeflow-userid'], 'jason@example.com', 'the claim, never the client\'s value');
  assert.equal(seen.headers['authorization'], undefined, 'the token is not forwarded without forwardOriginalToken');
});
