/**
 * The check's fast path (authservice/server.ts fastCheck): a check with a valid session, or on a
 * skip-auth path, is answered on node:http without entering Fastify (no routing, request/reply
 * objects, child logger or hooks), with the same answer the Fastify path gives; everything else
 * still goes through Fastify.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { loadAuthserviceConfig } from '../../authservice/config.ts';
import { buildAuthservice } from '../../authservice/server.ts';
import { rawRequest, sessionFor } from '../helpers/authservice-harness.ts';

test('checks with a valid session are answered before Fastify, with the same identity headers; the rest reach Fastify', async (t) => {
  // Session checks need no IdP: discovery fails quietly in the background (port 9 answers nothing).
  const app = buildAuthservice(
    loadAuthserviceConfig({
      OIDC_PROVIDER: 'http://127.0.0.1:9/dex',
      CLIENT_ID: 'c',
      PORTICO_COOKIE_SECRET: 'test-cookie-secret-0123456789abcdef0123456789',
      SKIP_AUTH_URLS: '/public',
      GROUPS_ALLOWLIST: 'ml-team',
      ID_TOKEN_HEADER: 'x-id-token',
      LOG_LEVEL: 'silent',
    }),
  );
  t.after(() => app.close());
  let reachedFastify = 0;
  app.addHook('onRequest', async () => {
    reachedFastify++;
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const health = await app.authservice.listenHealth({ port: 0, host: '127.0.0.1' });
  const stack = { app, authservice: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, health: health.url };
  const { cookie } = await sessionFor(stack.app, { email: 'jason@example.com', groups: ['ml-team', 'admins'] });
  const headers = { cookie, host: 'kf.example.com', accept: 'text/html', 'x-forwarded-proto': 'https' };

  const ok = await rawRequest(stack.authservice, '/notebooks/?ns=x', { headers });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['kubeflow-userid'], 'jason@example.com');
  assert.equal(ok.headers['kubeflow-groups'], 'ml-team,admins');
  assert.equal(ok.headers['x-id-token'], 'Bearer not-a-real-id-token', 'ID_TOKEN_HEADER on the fast path too');
  assert.equal(ok.headers['cache-control'], 'no-store');
  assert.equal(ok.headers['content-length'], '0');
  assert.equal(ok.body, '');
  const post = await rawRequest(stack.authservice, '/api/x', { method: 'POST', headers: { ...headers, 'content-length': '0' } });
  assert.equal(post.status, 200);
  const skip = await rawRequest(stack.authservice, '/public/logo.svg', { headers: { host: 'kf.example.com' } });
  assert.equal(skip.status, 200);
  assert.equal(skip.headers['kubeflow-userid'], undefined, 'skip-auth paths carry no identity');
  assert.equal(reachedFastify, 0, 'all three answered on the fast path');

  // Not for the fast path: no session, a tampered cookie, a group not allowed, own endpoints.
  const none = await rawRequest(stack.authservice, '/notebooks/', { headers: { host: 'kf.example.com', accept: 'application/json' } });
  assert.equal(none.status, 401);
  const tampered = await rawRequest(stack.authservice, '/notebooks/', { headers: { ...headers, accept: 'application/json', cookie: `${cookie.slice(0, -2)}xx` } });
  assert.equal(tampered.status, 401);
  const outsider = await sessionFor(stack.app, { email: 'mallory@example.com', groups: ['outsiders'] });
  const refused = await rawRequest(stack.authservice, '/notebooks/', { headers: { ...headers, cookie: outsider.cookie } });
  assert.equal(refused.status, 403);
  const logout = await rawRequest(stack.authservice, '/authservice/logout', { headers });
  assert.equal(logout.status, 405, 'GET on logout is refused by the Fastify path, even with a session');
  assert.equal(reachedFastify, 4);

  // The fast allows are counted like the others (logout is not a check).
  const metrics = await (await fetch(`${stack.health}/metrics`)).text();
  assert.match(metrics, /portico_authservice_checks_total\{result="allow"\} 3\n/);
  assert.match(metrics, /portico_authservice_checks_total\{result="deny"\} 3\n/);

  // A session deleted server side (logout) stops passing at once: the fast path reads the store.
  const { sid } = await sessionFor(stack.app, { email: 'jason@example.com', groups: ['ml-team'] }).then(async (s) => {
    const r = await rawRequest(stack.authservice, '/x', { headers: { ...headers, cookie: s.cookie } });
    assert.equal(r.status, 200);
    await stack.app.authservice.store.delete(s.sid);
    const gone = await rawRequest(stack.authservice, '/x', { headers: { ...headers, accept: 'application/json', cookie: s.cookie } });
    assert.equal(gone.status, 401);
    return s;
  });
  assert.ok(sid);
});
