/**
 * The gateway's ext_authz client against a recording authz server: Envoy's HTTP protocol as
 * configured by Kubeflow's EnvoyFilter and by MeshConfig + a CUSTOM AuthorizationPolicy.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

interface Check {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

async function startAuthz(t: TestContext, decide: (c: Check, res: ServerResponse) => void): Promise<{ port: number; checks: Check[] }> {
  const checks: Check[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      const c = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      checks.push(c);
      decide(c, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return { port: (server.address() as { port: number }).port, checks };
}

function common(port: number, app: number, authz: number): string {
  return `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: kubeflow-gateway, namespace: kubeflow}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: kubeflow}
spec:
  hosts: ["*"]
  gateways: [kubeflow/kubeflow-gateway]
  http:
  - route: [{destination: {host: app.kubeflow.svc.cluster.local, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: kubeflow}
spec:
  hosts: [app.kubeflow.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: authservice, namespace: istio-system}
spec:
  hosts: [authservice.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${authz}}}]
`;
}

const kubeflowFilter = (extra = '') => `
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: authn-filter, namespace: istio-system}
spec:
  workloadSelector:
    labels: {istio: ingressgateway}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.ext_authz
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri:
              uri: http://authservice.istio-system.svc.cluster.local
              cluster: outbound|8080||authservice.istio-system.svc.cluster.local
              timeout: 10s
            authorization_request:
              allowed_headers:
                patterns:
                - exact: cookie
                - exact: X-Auth-Token
                - prefix: x-forwarded-
            authorization_response:
              allowed_upstream_headers:
                patterns:
                - exact: kubeflow-userid
                - exact: kubeflow-groups
${extra}`;

async function get(port: number, path: string, headers: Record<string, string> = {}) {
  const r = await request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'kf.example.com', ...headers } });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

test('Kubeflow EnvoyFilter form: check request follows Envoy, allow copies identity upstream, spoofed identity never passes', async (t) => {
  const app = await startEcho(t, 'app');
  const authz = await startAuthz(t, (c, res) => {
    if (String(c.headers.cookie ?? '').includes('session=good')) {
      res.writeHead(200, { 'kubeflow-userid': 'jason@example.com', 'kubeflow-groups': 'admins', 'x-not-allowed': 'secret' });
      res.end();
    } else {
      res.writeHead(302, { location: 'http://dex.example/auth?state=x', 'set-cookie': 'oidc_state=abc; HttpOnly' });
      res.end('to login');
    }
  });
  const port = await freePort();
  await startGateway(t, common(port, app.port, authz.port) + kubeflowFilter());

  const denied = await get(port, '/notebook/x?y=1', { 'kubeflow-userid': 'admin', accept: 'text/html' });
  assert.equal(denied.status, 302, 'non-2xx from authz goes back to the client');
  assert.equal(denied.headers.location, 'http://dex.example/auth?state=x');
  assert.match(String(denied.headers['set-cookie']), /oidc_state=abc/);
  assert.equal(denied.text, 'to login');
  assert.equal(app.seen.length, 0);

  const check = authz.checks[0]!;
  assert.equal(check.method, 'GET');
  assert.equal(check.url, '/notebook/x?y=1');
  assert.equal(check.headers.host, 'kf.example.com');
  // Envoy sends `content-length: 0`; undici leaves it out of bodyless GETs (RFC 9110 §8.6
  // SHOULD NOT). Either way the check carries no body.
  assert.equal(check.headers['content-length'] ?? '0', '0');
  assert.equal(check.headers['transfer-encoding'], undefined);
  assert.equal(check.body, '');
  assert.equal(check.headers['accept'], undefined, 'only allowed headers are sent');
  assert.equal(check.headers['kubeflow-userid'], undefined, 'client identity headers never reach the check');
  assert.equal(check.headers['x-forwarded-proto'], 'http', 'prefix pattern lets x-forwarded-* through');

  const allowed = await get(port, '/notebook/x', { cookie: 'session=good', 'kubeflow-userid': 'admin@evil', Kubeflow_Groups: 'root' });
  assert.equal(allowed.status, 200);
  const seen = app.seen.at(-1)!;
  assert.equal(seen.headers['kubeflow-userid'], 'jason@example.com');
  assert.equal(seen.headers['kubeflow-groups'], 'admins');
  assert.equal(seen.headers['x-not-allowed'], undefined, 'only allowed upstream headers are copied');
  assert.equal(seen.headers['kubeflow_groups'], undefined);
});

test('authz server down: status_on_error (default 403) unless failure_mode_allow', async (t) => {
  const app = await startEcho(t, 'app');
  const dead = await freePort();
  const port = await freePort();
  await startGateway(t, common(port, app.port, dead) + kubeflowFilter());
  const r = await get(port, '/');
  assert.equal(r.status, 403);
  assert.equal(app.seen.length, 0);

  const port2 = await freePort();
  const open = (common(port2, app.port, dead) + kubeflowFilter()).replace('http_service:', 'failure_mode_allow: true\n          http_service:');
  await startGateway(t, open);
  const r2 = await get(port2, '/');
  assert.equal(r2.status, 200, 'fails open');
  assert.equal(app.seen.at(-1)!.headers['kubeflow-userid'], undefined);
});

test('MeshConfig envoyExtAuthzHttp + CUSTOM AuthorizationPolicy: only the paths the policy names are checked', async (t) => {
  const app = await startEcho(t, 'app');
  const authz = await startAuthz(t, (c, res) => {
    if (c.headers['x-user'] === 'ok') {
      res.writeHead(200, { 'kubeflow-userid': 'alice@example.com', 'x-auth-note': 'hello' });
      res.end();
    } else {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
      res.end('{"error":"login required"}');
    }
  });
  const port = await freePort();
  const yaml =
    common(port, app.port, authz.port) +
    `
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: portico-authservice
      envoyExtAuthzHttp:
        service: authservice.istio-system.svc.cluster.local
        port: 8080
        pathPrefix: /check
        includeRequestHeadersInCheck: [x-user]
        headersToUpstreamOnAllow: [kubeflow-userid]
        headersToDownstreamOnAllow: [x-auth-note]
        headersToDownstreamOnDeny: [content-type, www-authenticate]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  action: CUSTOM
  provider: {name: portico-authservice}
  rules:
  - to:
    - operation:
        paths: ["/private/*"]
        notPaths: ["/private/public-readme"]
`;
  await startGateway(t, yaml);
  assert.equal((await get(port, '/public')).status, 200, 'not under the policy: no check');
  assert.equal(authz.checks.length, 0);
  assert.equal((await get(port, '/private/public-readme')).status, 200, 'notPaths excluded');
  assert.equal(authz.checks.length, 0);

  const denied = await get(port, '/private/data');
  assert.equal(denied.status, 401);
  assert.equal(denied.text, '{"error":"login required"}');
  assert.equal(denied.headers['www-authenticate'], 'Bearer');
  assert.equal(authz.checks.at(-1)!.url, '/check/private/data', 'pathPrefix + original path');

  const ok = await get(port, '/private/data', { 'x-user': 'ok' });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-auth-note'], 'hello', 'headersToDownstreamOnAllow');
  assert.equal(app.seen.at(-1)!.headers['kubeflow-userid'], 'alice@example.com');

  // The path is normalised before the policy sees it.
  assert.equal((await get(port, '/public/../private/data')).status, 401);
});

test('an authz server that does not answer within server_uri.timeout gives status_on_error', async (t) => {
  const app = await startEcho(t, 'app');
  const authz = await startAuthz(t, () => undefined); // never answers
  const port = await freePort();
  const yaml = (common(port, app.port, authz.port) + kubeflowFilter())
    .replace('timeout: 10s', 'timeout: 0.2s')
    .replace('http_service:', 'status_on_error: {code: 503}\n          http_service:');
  await startGateway(t, yaml);
  const started = performance.now();
  const r = await get(port, '/');
  assert.equal(r.status, 503);
  assert.ok(performance.now() - started < 5000, 'the check timed out instead of waiting for ever');
  assert.equal(app.seen.length, 0);
});

test("the check's answer: an allow's body is never relayed or kept; a denial body over 1 MiB is an authz error, not relayed", async (t) => {
  const app = await startEcho(t, 'app');
  const big = Buffer.alloc(2 * 1024 * 1024, 'x');
  const authz = await startAuthz(t, (c, res) => {
    if (c.headers.cookie === 'session=good') {
      res.writeHead(200, { 'kubeflow-userid': 'jason@example.com', 'content-length': String(big.length) });
      res.end(big);
    } else {
      res.writeHead(401, { 'content-type': 'text/plain', 'content-length': String(big.length) });
      res.end(big);
    }
  });
  const port = await freePort();
  await startGateway(t, common(port, app.port, authz.port) + kubeflowFilter());
  const ok = await get(port, '/a', { cookie: 'session=good' });
  assert.equal(ok.status, 200);
  assert.equal(app.seen.at(-1)!.headers['kubeflow-userid'], 'jason@example.com');
  const denied = await get(port, '/b', { cookie: 'session=bad' });
  assert.equal(denied.status, 403, 'status_on_error: the authorization server answered more than the gateway relays');
  assert.ok(denied.text.length < 1024, `no 2 MiB body relayed (${denied.text.length} bytes)`);
});

test('concurrent checks pipelined to the authz server each get their own answer: identities never cross requests', async (t) => {
  const app = await startEcho(t, 'app');
  // Answers each check with the user its cookie names, the later-arriving ones sooner: a client
  // that matched answers to checks by arrival instead of by order would hand out the wrong identity.
  let round = 0;
  const perConnection = new Map<Socket, number>();
  const server = createServer((req, res) => {
    if (round === 2) perConnection.set(req.socket, (perConnection.get(req.socket) ?? 0) + 1);
    const user = /user=(\d+)/.exec(String(req.headers.cookie))?.[1] ?? 'none';
    setTimeout(() => {
      res.writeHead(200, { 'kubeflow-userid': `user-${user}@example.com` });
      res.end();
    }, Math.max(0, 30 - Number(user)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const port = await freePort();
  await startGateway(t, common(port, app.port, (server.address() as { port: number }).port) + kubeflowFilter());

  // Thirty connected keep-alive clients send at once, twice (the first round warms the gateway
  // up), so the gateway reads a round's requests together and their checks go out together.
  const n = 30;
  const sockets = await Promise.all(Array.from({ length: n }, () => new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  })));
  t.after(() => sockets.forEach((s) => s.destroy()));
  const sendRound = (r: number): Promise<string[]> => {
    round = r;
    const answers = sockets.map((s) => new Promise<string>((resolve) => {
      let text = '';
      const onData = (b: Buffer): void => {
        text += b.toString();
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
        if (text.length - end - 4 < length) return;
        s.off('data', onData);
        resolve(text);
      };
      s.on('data', onData);
    }));
    sockets.forEach((s, i) => s.write(`GET /r${r}/u/${i} HTTP/1.1\r\nhost: kf.example.com\r\ncookie: user=${i}\r\nkubeflow-userid: admin@example.com\r\n\r\n`));
    return Promise.all(answers);
  };
  for (const r of [1, 2]) {
    const results = await sendRound(r);
    results.forEach((text, i) => assert.match(text, /^HTTP\/1\.1 200 /, `round ${r} request ${i}`));
  }
  const byPath = new Map(app.seen.map((s) => [s.url, s.headers['kubeflow-userid']]));
  for (const r of [1, 2]) for (let i = 0; i < n; i++) assert.equal(byPath.get(`/r${r}/u/${i}`), `user-${i}@example.com`, `round ${r} request ${i} carries its own identity`);
  assert.ok(Math.max(...perConnection.values()) > 1, `checks shared a connection in round 2 (${[...perConnection.values()].join(', ')})`);
});
