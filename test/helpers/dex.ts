/**
 * Test helpers for the identity provider: start real Dex (built by scripts/build-dex.sh) or the
 * dev IdP (demo/devidp) from the same Dex config, and drive a password login the way a browser
 * does, with plain fetch. The same login code runs against both, which is what proves the dev
 * IdP is a stand-in for Dex.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { stringify } from 'yaml';
import { dexSubject, startDevIdp } from '../../demo/devidp/server.ts';
import { missing, which } from './external.ts';

export interface DexUser {
  email: string;
  username: string;
  password: string;
  userID: string;
  /** Only the dev IdP honours this (a Portico extension); Dex's static passwords have no groups. */
  groups?: string[];
}

export interface DexHandle {
  issuer: string;
  port: number;
  clientId: string;
  clientSecret: string;
  users: DexUser[];
  stop(): Promise<void>;
}

export interface StartIdpOptions {
  redirectURIs: string[];
  clientId?: string;
  clientSecret?: string;
  /** Path of the issuer URL, default `/dex`. */
  issuerPath?: string;
  /** Address to bind and to put in the issuer URL, default 127.0.0.1. */
  host?: string;
  /**
   * A Dex config as shipped (e.g. deploy/kubernetes/dex.yaml's), run as written but for the issuer,
   * the listen address, the web assets and `redirectURIs` added to its first static client; its
   * client and `users` replace the test ones.
   */
  shipped?: { config: Record<string, unknown>; users: DexUser[] };
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The users every test IdP knows. alice's groups reach tokens only from the dev IdP. */
export const TEST_USERS: readonly DexUser[] = Object.freeze([
  { email: 'jason@example.com', username: 'jason', password: 'password', userID: '08a8684b-db88-4b73-90a9-3cd1661f5466' },
  {
    email: 'alice@example.com',
    username: 'alice',
    password: 'alice-Secret-1',
    userID: 'a11ce000-0000-4000-8000-000000000001',
    groups: ['admins', 'kubeflow-users'],
  },
]);

// Cost 10 is the lowest Dex accepts (it refuses the login, "Login error", below that).
const HASHES = new Map(TEST_USERS.map((u) => [u.email, bcrypt.hashSync(u.password, 10)]));

/** Where the Dex binary is: $DEX_BIN, then `dex` on PATH, then <repo>/.dex/bin/dex. */
export function findDex(): string | undefined {
  const env = process.env.DEX_BIN;
  if (env) return which(env);
  return which('dex') ?? which(join(REPO_ROOT, '.dex/bin/dex'));
}

/** Dex's web assets: $DEX_WEB_DIR, else `web/` beside the binary's directory (as build-dex.sh lays out). */
export function findDexWebDir(bin: string): string | undefined {
  const candidates = [process.env.DEX_WEB_DIR, join(dirname(bin), '../web'), join(REPO_ROOT, '.dex/web')];
  return candidates.find((d): d is string => d !== undefined && existsSync(join(d, 'templates', 'login.html')));
}

/** A Dex config (the object form of dex.yaml) for the test client and users. */
export function testDexConfig(opts: {
  issuer: string;
  listen: string;
  clientId: string;
  clientSecret: string;
  redirectURIs: string[];
  webDir?: string;
  withGroups: boolean;
}): Record<string, unknown> {
  return {
    issuer: opts.issuer,
    storage: { type: 'memory' },
    web: { http: opts.listen },
    ...(opts.webDir ? { frontend: { dir: opts.webDir } } : {}),
    oauth2: { skipApprovalScreen: true },
    expiry: { idTokens: '10m' },
    logger: { level: 'debug' },
    staticClients: [{ id: opts.clientId, secret: opts.clientSecret, name: 'Portico test', redirectURIs: opts.redirectURIs }],
    enablePasswordDB: true,
    staticPasswords: TEST_USERS.map((u) => ({
      email: u.email,
      hash: HASHES.get(u.email),
      username: u.username,
      userID: u.userID,
      ...(opts.withGroups && u.groups ? { groups: u.groups } : {}),
    })),
  };
}

/**
 * Starts real Dex on a free port with the test client and users; stopped by `t.after`.
 * Returns undefined (test skipped, or failed under PORTICO_REQUIRE=dex) when Dex is not built.
 */
export async function startDex(t: TestContext, opts: StartIdpOptions): Promise<DexHandle | undefined> {
  const bin = findDex();
  if (!bin) {
    missing(t, 'dex', 'no dex binary ($DEX_BIN, PATH, .dex/bin/dex); run scripts/build-dex.sh');
    return undefined;
  }
  const webDir = findDexWebDir(bin);
  if (!webDir) {
    missing(t, 'dex', `found ${bin} but not its web assets ($DEX_WEB_DIR or .dex/web); run scripts/build-dex.sh`);
    return undefined;
  }
  const host = opts.host ?? '127.0.0.1';
  const clientId = opts.clientId ?? 'portico-test';
  const clientSecret = opts.clientSecret ?? randomBytes(18).toString('base64url');
  const dir = mkdtempSync(join(tmpdir(), 'portico-dex-'));
  let lastError: Error | undefined;
  // A free port can be taken between probing and Dex binding it; try a few times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(host);
    const issuer = `http://${hostForURL(host)}:${port.toString()}${opts.issuerPath ?? '/dex'}`;
    const configFile = join(dir, 'config.yaml');
    const listen = `${hostForURL(host)}:${port.toString()}`;
    writeFileSync(configFile, stringify(opts.shipped ? shippedConfig(opts.shipped.config, issuer, listen, webDir, opts.redirectURIs) : testDexConfig({ issuer, listen, clientId, clientSecret, redirectURIs: opts.redirectURIs, webDir, withGroups: false })));
    const child = spawn(bin, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const stop = async (): Promise<void> => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await waitForDiscovery(issuer, child, () => output);
    } catch (err) {
      await stopChild(child);
      lastError = err as Error;
      continue;
    }
    t.after(stop);
    if (opts.shipped) {
      const client = (opts.shipped.config.staticClients as { id: string; secret: string }[])[0]!;
      return { issuer, port, clientId: client.id, clientSecret: client.secret, users: opts.shipped.users, stop };
    }
    return { issuer, port, clientId, clientSecret, users: TEST_USERS.map(({ groups: _g, ...u }) => ({ ...u })), stop };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error('dex did not start');
}

function shippedConfig(config: Record<string, unknown>, issuer: string, listen: string, webDir: string, redirectURIs: string[]): Record<string, unknown> {
  const clients = (config.staticClients as { redirectURIs?: string[] }[]).map((c, i) => (i === 0 ? { ...c, redirectURIs: [...(c.redirectURIs ?? []), ...redirectURIs] } : c));
  return { ...config, issuer, web: { ...(config.web as object), http: listen }, frontend: { dir: webDir }, staticClients: clients };
}

/** Starts the dev IdP from the same kind of Dex config as startDex; stopped by `t.after`. */
export async function startTestDevIdp(t: TestContext, opts: StartIdpOptions): Promise<DexHandle> {
  const host = opts.host ?? '127.0.0.1';
  const clientId = opts.clientId ?? 'portico-test';
  const clientSecret = opts.clientSecret ?? randomBytes(18).toString('base64url');
  const issuer = `http://${hostForURL(host)}:1${opts.issuerPath ?? '/dex'}`; // port replaced once bound
  const idp = await startDevIdp({
    config: testDexConfig({ issuer, listen: `${hostForURL(host)}:0`, clientId, clientSecret, redirectURIs: opts.redirectURIs, withGroups: true }),
    host,
    port: 0,
  });
  t.after(() => idp.close());
  return { issuer: idp.issuer, port: idp.port, clientId, clientSecret, users: TEST_USERS.map((u) => ({ ...u })), stop: () => idp.close() };
}

function hostForURL(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

async function freePort(host: string): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok, fail) => srv.once('error', fail).listen(0, host, ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

async function waitForDiscovery(issuer: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`dex exited (${String(child.exitCode ?? child.signalCode)}) before serving:\n${output()}`);
    }
    try {
      const res = await fetch(`${issuer}/.well-known/openid-configuration`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`dex did not serve discovery within 20 s:\n${output()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

// -------------------------------------------------------------------------------------------------
// A browser-like password login, with plain fetch.

export interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  [key: string]: unknown;
}

export async function discover(issuer: string): Promise<Discovery> {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`discovery: HTTP ${res.status.toString()}`);
  return (await res.json()) as Discovery;
}

/** A local redirect target on port 0 that records each query string it receives. */
export async function startCallbackServer(t: TestContext, path = '/callback'): Promise<{ url: string; received: URLSearchParams[] }> {
  const received: URLSearchParams[] = [];
  const srv = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === path) received.push(u.searchParams);
    res.writeHead(u.pathname === path ? 200 : 404, { 'content-type': 'text/plain' }).end('callback');
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  t.after(() => new Promise<void>((ok) => srv.close(() => ok())));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port.toString()}${path}`, received };
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface AuthParams {
  clientId: string;
  redirectURI: string;
  scope?: string;
  state?: string;
  nonce?: string;
  codeChallenge?: string;
  extra?: Record<string, string>;
}

export function authURL(d: Discovery, p: AuthParams): string {
  const u = new URL(d.authorization_endpoint);
  u.searchParams.set('client_id', p.clientId);
  u.searchParams.set('redirect_uri', p.redirectURI);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('scope', p.scope ?? 'openid email profile groups offline_access');
  if (p.state !== undefined) u.searchParams.set('state', p.state);
  if (p.nonce !== undefined) u.searchParams.set('nonce', p.nonce);
  if (p.codeChallenge !== undefined) {
    u.searchParams.set('code_challenge', p.codeChallenge);
    u.searchParams.set('code_challenge_method', 'S256');
  }
  for (const [k, v] of Object.entries(p.extra ?? {})) u.searchParams.set(k, v);
  return u.toString();
}

export interface LoginForm {
  /** URL of the page that showed the form. */
  pageURL: string;
  /** Absolute URL the form posts to. */
  action: string;
  html: string;
}

/**
 * Follows redirects (manually, staying on the IdP's origin) from `url` to the password form.
 * Throws when the chain leaves the IdP or ends somewhere that is not a login form.
 */
export async function openLoginForm(url: string): Promise<LoginForm> {
  const origin = new URL(url).origin;
  let current = url;
  for (let hops = 0; hops < 10; hops++) {
    const res = await fetch(current, { redirect: 'manual' });
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, current);
      if (next.origin !== origin) throw new Error(`redirected off the IdP to ${next.toString()} before the login form`);
      current = next.toString();
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`login page: HTTP ${res.status.toString()}: ${html.slice(0, 300)}`);
    return { pageURL: current, action: formAction(html, current), html };
  }
  throw new Error('too many redirects before the login form');
}

/** The resolved `action` of the first `<form method="post">` in a page. */
export function formAction(html: string, pageURL: string): string {
  const m = /<form[^>]*method="post"[^>]*action="([^"]*)"/i.exec(html) ?? /<form[^>]*action="([^"]*)"[^>]*method="post"/i.exec(html);
  if (!m) throw new Error(`no POST form in page ${pageURL}: ${html.slice(0, 300)}`);
  const action = (m[1] ?? '').replace(/&amp;/g, '&').replace(/&#43;/g, '+').replace(/&#61;/g, '=');
  return new URL(action || pageURL, pageURL).toString();
}

/**
 * Posts the login form, then follows same-origin redirects (Dex passes through /approval) until a
 * redirect leaves the IdP. Returns that final location, or the page when the IdP answers with HTML
 * (a wrong password shows the form again).
 */
export async function submitLogin(form: LoginForm, login: string, password: string): Promise<{ location?: string; status: number; html?: string }> {
  const origin = new URL(form.action).origin;
  let res = await fetch(form.action, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login, password }).toString(),
  });
  let base = form.action;
  for (let hops = 0; hops < 10; hops++) {
    const location = res.headers.get('location');
    if (!(res.status >= 300 && res.status < 400 && location)) return { status: res.status, html: await res.text() };
    const next = new URL(location, base);
    if (next.origin !== origin) return { status: res.status, location: next.toString() };
    base = next.toString();
    res = await fetch(base, { redirect: 'manual' });
  }
  throw new Error('too many redirects after login');
}

export interface TokenRequest {
  clientId: string;
  clientSecret: string;
  auth?: 'basic' | 'post';
  params: Record<string, string>;
}

/** POSTs to the token endpoint; returns status and parsed JSON body. */
export async function tokenRequest(d: Discovery, r: TokenRequest): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = new URLSearchParams(r.params);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if ((r.auth ?? 'basic') === 'basic') {
    const enc = (s: string): string => encodeURIComponent(s);
    headers.authorization = `Basic ${Buffer.from(`${enc(r.clientId)}:${enc(r.clientSecret)}`).toString('base64')}`;
  } else {
    form.set('client_id', r.clientId);
    form.set('client_secret', r.clientSecret);
  }
  const res = await fetch(d.token_endpoint, { method: 'POST', headers, body: form.toString() });
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body };
}

/**
 * Runs the authorization request and password login up to the redirect back to `redirectURI`,
 * then delivers that redirect to the callback server (as the browser would) and returns the query.
 */
export async function loginForCode(
  d: Discovery,
  p: AuthParams & { login: string; password: string },
  callback: { received: URLSearchParams[] },
): Promise<URLSearchParams> {
  const form = await openLoginForm(authURL(d, p));
  const result = await submitLogin(form, p.login, p.password);
  if (!result.location) throw new Error(`login did not redirect (HTTP ${result.status.toString()}): ${(result.html ?? '').slice(0, 300)}`);
  if (!result.location.startsWith(p.redirectURI)) throw new Error(`login redirected to ${result.location}, not ${p.redirectURI}`);
  const before = callback.received.length;
  const res = await fetch(result.location);
  await res.text();
  const got = callback.received[before];
  if (!got) throw new Error('callback server did not receive the redirect');
  return got;
}

/**
 * The whole password login against an IdP, asserting what Portico's authservice relies on.
 * Runs unchanged against real Dex and the dev IdP (test/integration/dex-smoke.test.ts and
 * test/integration/devidp-login.test.ts), which is the compatibility proof.
 */
export async function assertFullPasswordLogin(idp: DexHandle, callback: { url: string; received: URLSearchParams[] }): Promise<void> {
  const d = await discover(idp.issuer);
  assert.equal(d.issuer, idp.issuer);
  for (const ep of [d.authorization_endpoint, d.token_endpoint, d.jwks_uri]) assert.ok(ep.startsWith(`${idp.issuer}/`), ep);

  const jwksRes = await fetch(d.jwks_uri);
  assert.equal(jwksRes.status, 200);
  const jwks = (await jwksRes.json()) as { keys: { kty: string; kid?: string }[] };
  assert.ok(jwks.keys.some((k) => k.kty === 'RSA' && k.kid), 'JWKS has an RSA key with a kid');

  const user = idp.users[0];
  assert.ok(user);
  const state = randomBytes(12).toString('base64url');
  const nonce = randomBytes(12).toString('base64url');
  const pkce = pkcePair();
  const q = await loginForCode(
    d,
    { clientId: idp.clientId, redirectURI: callback.url, state, nonce, codeChallenge: pkce.challenge, login: user.email, password: user.password },
    callback,
  );
  assert.equal(q.get('state'), state, 'state is echoed');
  const code = q.get('code');
  assert.ok(code, `callback got a code: ${q.toString()}`);

  const exchanged = await tokenRequest(d, {
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    auth: 'basic',
    params: { grant_type: 'authorization_code', code, redirect_uri: callback.url, code_verifier: pkce.verifier },
  });
  assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
  assert.equal(String(exchanged.body.token_type).toLowerCase(), 'bearer');
  assert.equal(typeof exchanged.body.access_token, 'string');
  assert.equal(typeof exchanged.body.refresh_token, 'string', 'offline_access gives a refresh token');

  const keySet = createRemoteJWKSet(new URL(d.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(String(exchanged.body.id_token), keySet, {
    issuer: idp.issuer,
    audience: idp.clientId,
    algorithms: ['RS256'],
  });
  assert.equal(protectedHeader.alg, 'RS256');
  assert.equal(payload.nonce, nonce);
  assert.equal(payload.email, user.email);
  assert.equal(payload.email_verified, true);
  assert.equal(payload.name, user.username);
  assert.equal(payload.sub, dexSubject(user.userID, 'local'), 'sub has Dex encoding of userID + connector "local"');
  assert.ok(typeof payload.exp === 'number' && typeof payload.iat === 'number' && payload.exp > payload.iat);

  // Refresh with client_secret_post.
  const refreshed = await tokenRequest(d, {
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    auth: 'post',
    params: { grant_type: 'refresh_token', refresh_token: String(exchanged.body.refresh_token) },
  });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  const again = await jwtVerify(String(refreshed.body.id_token), keySet, { issuer: idp.issuer, audience: idp.clientId });
  assert.equal(again.payload.sub, payload.sub);
  assert.notEqual(refreshed.body.refresh_token, exchanged.body.refresh_token, 'refresh tokens rotate');

  // The code is single use (the dev IdP also revokes what it issued; Dex 2.13 does not).
  const replay = await tokenRequest(d, {
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    params: { grant_type: 'authorization_code', code, redirect_uri: callback.url, code_verifier: pkce.verifier },
  });
  assert.equal(replay.status, 400, JSON.stringify(replay.body));
  assert.equal(typeof replay.body.error, 'string');

  // Wrong client secret.
  const badSecret = await tokenRequest(d, {
    clientId: idp.clientId,
    clientSecret: `${idp.clientSecret}x`,
    params: { grant_type: 'refresh_token', refresh_token: String(refreshed.body.refresh_token) },
  });
  assert.equal(badSecret.status, 401);
  assert.equal(badSecret.body.error, 'invalid_client');

  // Wrong password: the form comes back with an error, no redirect.
  const form = await openLoginForm(authURL(d, { clientId: idp.clientId, redirectURI: callback.url, state }));
  const wrong = await submitLogin(form, user.email, `${user.password}-wrong`);
  assert.equal(wrong.location, undefined);
  assert.equal(wrong.status, 200);
  assert.match(wrong.html ?? '', /id="login-error"/);
  assert.match(wrong.html ?? '', /name="password"/);

  // An unregistered redirect_uri is refused on the IdP's own page, never redirected to.
  const evil = await fetch(authURL(d, { clientId: idp.clientId, redirectURI: 'https://evil.example/cb', state }), { redirect: 'manual' });
  assert.equal(evil.status, 400);
  assert.ok(!(evil.headers.get('location') ?? '').includes('evil.example'));
  await evil.text();
}
