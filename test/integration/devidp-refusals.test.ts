/**
 * What the dev IdP must refuse: bad PKCE, code replay, wrong client credentials, unregistered
 * redirect URIs, expired codes, cross-client codes. Each case is one real login against a real
 * server on port 0.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { startDevIdp } from '../../demo/devidp/server.ts';
import {
  authURL,
  discover,
  loginForCode,
  openLoginForm,
  pkcePair,
  startCallbackServer,
  startTestDevIdp,
  submitLogin,
  testDexConfig,
  tokenRequest,
} from '../helpers/dex.ts';
import type { DexHandle, Discovery } from '../helpers/dex.ts';

interface Env {
  idp: DexHandle;
  d: Discovery;
  callback: { url: string; received: URLSearchParams[] };
}

async function setup(t: TestContext): Promise<Env> {
  const callback = await startCallbackServer(t);
  const idp = await startTestDevIdp(t, { redirectURIs: [callback.url] });
  return { idp, d: await discover(idp.issuer), callback };
}

async function codeFor(env: Env, opts: { challenge?: string; user?: number; scope?: string } = {}): Promise<string> {
  const user = env.idp.users[opts.user ?? 0];
  assert.ok(user);
  const q = await loginForCode(
    env.d,
    {
      clientId: env.idp.clientId,
      redirectURI: env.callback.url,
      state: 's1',
      login: user.email,
      password: user.password,
      ...(opts.challenge !== undefined ? { codeChallenge: opts.challenge } : {}),
      ...(opts.scope !== undefined ? { scope: opts.scope } : {}),
    },
    env.callback,
  );
  const code = q.get('code');
  assert.ok(code);
  return code;
}

function exchange(env: Env, params: Record<string, string>, auth: 'basic' | 'post' = 'basic', secret?: string) {
  return tokenRequest(env.d, {
    clientId: env.idp.clientId,
    clientSecret: secret ?? env.idp.clientSecret,
    auth,
    params: { grant_type: 'authorization_code', redirect_uri: env.callback.url, ...params },
  });
}

test('PKCE: a wrong code_verifier is rejected and burns the code', async (t) => {
  const env = await setup(t);
  const pkce = pkcePair();
  const code = await codeFor(env, { challenge: pkce.challenge });
  const bad = await exchange(env, { code, code_verifier: pkcePair().verifier });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, 'invalid_grant');
  assert.match(String(bad.body.error_description), /code_verifier/);
  // Single use even after a failure: the right verifier no longer helps.
  const retry = await exchange(env, { code, code_verifier: pkce.verifier });
  assert.equal(retry.status, 400);
  assert.equal(retry.body.error, 'invalid_grant');
});

test('PKCE: a missing verifier is rejected; a verifier without a challenge is rejected (downgrade)', async (t) => {
  const env = await setup(t);
  const missingVerifier = await exchange(env, { code: await codeFor(env, { challenge: pkcePair().challenge }) });
  assert.equal(missingVerifier.status, 400);
  assert.equal(missingVerifier.body.error, 'invalid_grant');

  const downgrade = await exchange(env, { code: await codeFor(env), code_verifier: pkcePair().verifier });
  assert.equal(downgrade.status, 400);
  assert.equal(downgrade.body.error, 'invalid_grant');

  const ok = await exchange(env, { code: await codeFor(env) });
  assert.equal(ok.status, 200, 'no PKCE at all is still allowed, as in Dex');
});

test('PKCE: plain and malformed challenges are refused at the authorization endpoint', async (t) => {
  const env = await setup(t);
  const extras: Record<string, string>[] = [
    { code_challenge: pkcePair().verifier, code_challenge_method: 'plain' },
    { code_challenge: 'short', code_challenge_method: 'S256' },
    { code_challenge_method: 'S256' },
  ];
  for (const extra of extras) {
    const res = await fetch(authURL(env.d, { clientId: env.idp.clientId, redirectURI: env.callback.url, state: 'st', extra }), { redirect: 'manual' });
    assert.equal(res.status, 302);
    const loc = new URL(res.headers.get('location') ?? '');
    assert.equal(loc.origin + loc.pathname, env.callback.url);
    assert.equal(loc.searchParams.get('error'), 'invalid_request');
    assert.equal(loc.searchParams.get('state'), 'st');
  }
});

test('code replay is rejected and revokes the tokens the code issued', async (t) => {
  const env = await setup(t);
  const code = await codeFor(env);
  const first = await exchange(env, { code });
  assert.equal(first.status, 200);
  const replay = await exchange(env, { code });
  assert.equal(replay.status, 400);
  assert.equal(replay.body.error, 'invalid_grant');

  const refresh = await tokenRequest(env.d, {
    clientId: env.idp.clientId,
    clientSecret: env.idp.clientSecret,
    params: { grant_type: 'refresh_token', refresh_token: String(first.body.refresh_token) },
  });
  assert.equal(refresh.status, 400, 'refresh token from a replayed code is revoked');
  const userinfo = await fetch(`${env.idp.issuer}/userinfo`, { headers: { authorization: `Bearer ${String(first.body.access_token)}` } });
  assert.equal(userinfo.status, 401, 'access token from a replayed code is revoked');
});

test('client authentication: wrong secret, unknown client, both methods at once', async (t) => {
  const env = await setup(t);
  for (const auth of ['basic', 'post'] as const) {
    const res = await exchange(env, { code: await codeFor(env) }, auth, 'not-the-secret');
    assert.equal(res.status, 401, auth);
    assert.equal(res.body.error, 'invalid_client');
  }
  const unknown = await tokenRequest(env.d, { clientId: 'nobody', clientSecret: env.idp.clientSecret, params: { grant_type: 'authorization_code', code: 'x' } });
  assert.equal(unknown.status, 401);

  const both = await fetch(env.d.token_endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${env.idp.clientId}:${env.idp.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_secret: env.idp.clientSecret }).toString(),
  });
  assert.equal(both.status, 400);

  const json = await fetch(env.d.token_endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(json.status, 400);
  assert.equal(((await json.json()) as { error: string }).error, 'invalid_request');
});

test('redirect_uri: unregistered ones get an error page, never a redirect; the token request must repeat it', async (t) => {
  const env = await setup(t);
  for (const uri of ['https://evil.example/cb', `${env.callback.url}/extra`, `${env.callback.url}?x=1`, '']) {
    const res = await fetch(authURL(env.d, { clientId: env.idp.clientId, redirectURI: uri, state: 's' }), { redirect: 'manual' });
    assert.equal(res.status, 400, uri);
    assert.equal(res.headers.get('location'), null, uri);
    assert.match(await res.text(), /not registered/);
  }
  const unknownClient = await fetch(authURL(env.d, { clientId: 'nobody', redirectURI: env.callback.url }), { redirect: 'manual' });
  assert.equal(unknownClient.status, 400);
  assert.equal(unknownClient.headers.get('location'), null);
  await unknownClient.text();

  const mismatch = await exchange(env, { code: await codeFor(env), redirect_uri: 'https://evil.example/cb' });
  assert.equal(mismatch.status, 400);
  assert.equal(mismatch.body.error, 'invalid_grant');
});

test('authorization errors after the redirect_uri is trusted go back to it with state', async (t) => {
  const env = await setup(t);
  const cases: [Record<string, string>, string][] = [
    [{ scope: 'email' }, 'invalid_scope'],
    [{ scope: 'openid admin' }, 'invalid_scope'],
    [{ response_type: 'token' }, 'unsupported_response_type'],
    [{ prompt: 'none' }, 'login_required'],
  ];
  for (const [extra, error] of cases) {
    const res = await fetch(authURL(env.d, { clientId: env.idp.clientId, redirectURI: env.callback.url, state: 'keep', extra }), { redirect: 'manual' });
    assert.equal(res.status, 302, JSON.stringify(extra));
    const loc = new URL(res.headers.get('location') ?? '');
    assert.equal(loc.searchParams.get('error'), error);
    assert.equal(loc.searchParams.get('state'), 'keep');
  }
});

test('expired codes and codes of another client are rejected', async (t) => {
  const callback = await startCallbackServer(t);
  const cfg = testDexConfig({
    issuer: 'http://127.0.0.1:1/dex',
    listen: '127.0.0.1:0',
    clientId: 'a',
    clientSecret: 'secret-a',
    redirectURIs: [callback.url],
    withGroups: true,
  });
  const clients = cfg.staticClients as Record<string, unknown>[];
  clients.push({ id: 'b', secret: 'secret-b', name: 'B', redirectURIs: [callback.url] });
  const idp = await startDevIdp({ config: cfg, port: 0, codeTTLSeconds: 0 });
  t.after(() => idp.close());
  const d = await discover(idp.issuer);
  const q = await loginForCode(d, { clientId: 'a', redirectURI: callback.url, login: 'jason@example.com', password: 'password' }, callback);
  const expired = await tokenRequest(d, {
    clientId: 'a',
    clientSecret: 'secret-a',
    params: { grant_type: 'authorization_code', code: q.get('code') ?? '', redirect_uri: callback.url },
  });
  assert.equal(expired.status, 400);
  assert.match(String(expired.body.error_description), /expired/);

  const idp2 = await startDevIdp({ config: cfg, port: 0 });
  t.after(() => idp2.close());
  const d2 = await discover(idp2.issuer);
  const q2 = await loginForCode(d2, { clientId: 'a', redirectURI: callback.url, login: 'jason@example.com', password: 'password' }, callback);
  const stolen = await tokenRequest(d2, {
    clientId: 'b',
    clientSecret: 'secret-b',
    params: { grant_type: 'authorization_code', code: q2.get('code') ?? '', redirect_uri: callback.url },
  });
  assert.equal(stolen.status, 400);
  assert.equal(stolen.body.error, 'invalid_grant');
});

test('wrong password and unknown email look the same; the form keeps the login, escaped', async (t) => {
  const env = await setup(t);
  const form = await openLoginForm(authURL(env.d, { clientId: env.idp.clientId, redirectURI: env.callback.url }));
  const wrong = await submitLogin(form, 'jason@example.com', 'nope');
  const unknown = await submitLogin(form, '"><script>alert(1)</script>', 'nope');
  for (const r of [wrong, unknown]) {
    assert.equal(r.status, 200);
    assert.equal(r.location, undefined);
    assert.match(r.html ?? '', /Invalid Email Address and password/);
  }
  assert.ok(!(unknown.html ?? '').includes('<script>alert'), 'login is HTML-escaped');
  // The same form still works after failures.
  const ok = await submitLogin(form, 'JASON@example.com', 'password');
  assert.ok(ok.location?.startsWith(env.callback.url), 'email match is case-insensitive');
  // ...and only once.
  const again = await submitLogin(form, 'jason@example.com', 'password');
  assert.equal(again.status, 400);
});

test('groups (Portico extension), userinfo, and scope-dependent claims', async (t) => {
  const env = await setup(t);
  const alice = await exchange(env, { code: await codeFor(env, { user: 1 }) });
  assert.equal(alice.status, 200);
  const claims = JSON.parse(Buffer.from(String(alice.body.id_token).split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
  assert.deepEqual(claims.groups, ['admins', 'kubeflow-users']);
  assert.equal(claims.preferred_username, 'alice');
  assert.equal(typeof claims.at_hash, 'string');

  const info = await fetch(`${env.idp.issuer}/userinfo`, { headers: { authorization: `Bearer ${String(alice.body.access_token)}` } });
  assert.equal(info.status, 200);
  const body = (await info.json()) as Record<string, unknown>;
  assert.equal(body.sub, claims.sub);
  assert.equal(body.email, 'alice@example.com');

  const minimal = await exchange(env, { code: await codeFor(env, { user: 1, scope: 'openid' }) });
  const mc = JSON.parse(Buffer.from(String(minimal.body.id_token).split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
  assert.equal(mc.email, undefined);
  assert.equal(mc.groups, undefined);
  assert.equal(minimal.body.refresh_token, undefined, 'no offline_access, no refresh token');

  const noToken = await fetch(`${env.idp.issuer}/userinfo`);
  assert.equal(noToken.status, 401);
  assert.match(noToken.headers.get('www-authenticate') ?? '', /invalid_token/);
});
