/**
 * Test support for the authservice (it encodes the ext_authz contract the authservice serves):
 *  - `startMiniGateway`: the smallest honest ext_authz HTTP client (what Envoy/Portico's gateway
 *    does): routes `<prefix>/*` to the authservice, asks the check endpoint about everything else,
 *    answers 200 with the identity headers it was allowed to see, or relays the denial as is.
 *  - `Browser`: fetch with a cookie jar and manual redirects, and `loginWithPassword` that fills
 *    Dex's (or the dev IdP's) login and approval forms like a person would.
 * Test-only: lives under test/helpers so nothing in authservice/ ships it.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import bcrypt from 'bcryptjs';
import { loadAuthserviceConfig } from '../../authservice/config.ts';
import { buildAuthservice } from '../../authservice/server.ts';
import { issueSession } from '../../authservice/session/issue.ts';
import type { SessionStore } from '../../authservice/session/store.ts';
import { startDevIdp } from '../../demo/devidp/server.ts';
import { startDex } from './dex.ts';

/** Request headers the mini gateway forwards on a check (the Kubeflow EnvoyFilter's list, plus fetch metadata). */
export const CHECK_ALLOWED_HEADERS = ['cookie', 'authorization', 'accept', 'x-requested-with', 'origin', 'sec-fetch-site', 'sec-fetch-dest', 'x-portico-csrf', 'kubeflow-userid', 'kubeflow-groups'];

export interface MiniGateway {
  url: string;
  port: number;
  /** Every check response status, in order (for assertions). */
  checks: { path: string; status: number }[];
  close(): Promise<void>;
}

/**
 * Starts the gateway stand-in on 127.0.0.1:0. `authservice()` returns the authservice base URL
 * (resolved per request, so the authservice may start after the gateway). Client-sent identity
 * headers are deliberately forwarded to the check, so tests can prove the authservice never
 * echoes them.
 */
export async function startMiniGateway(opts: { authservice: () => string; prefix?: string }): Promise<MiniGateway> {
  const prefix = opts.prefix ?? '/authservice';
  const checks: MiniGateway['checks'] = [];
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`mini gateway: ${String(err)}`);
    });
  });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    const host = req.headers.host ?? '';
    const base = opts.authservice();
    if (path === prefix || path.startsWith(`${prefix}/`)) {
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers.set(k, v);
      headers.set('x-forwarded-proto', 'http');
      headers.set('x-forwarded-host', host);
      const r = await fetch(`${base}${path}`, { method: req.method ?? 'GET', headers, redirect: 'manual', body: req.method === 'POST' ? '' : null });
      return relay(r, res);
    }
    const headers = new Headers({ 'x-forwarded-proto': 'http', 'x-forwarded-host': host });
    for (const name of CHECK_ALLOWED_HEADERS) {
      const v = req.headers[name];
      if (typeof v === 'string') headers.set(name, v);
    }
    const r = await fetch(`${base}${path}`, { method: req.method ?? 'GET', headers, redirect: 'manual' });
    checks.push({ path, status: r.status });
    if (r.status >= 200 && r.status < 300) {
      await r.arrayBuffer();
      // The upstream "app": echoes what identity it received from the authz result only.
      const body = JSON.stringify({ path, userid: r.headers.get('kubeflow-userid'), groups: r.headers.get('kubeflow-groups') });
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(body);
    }
    return relay(r, res);
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    checks,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function relay(r: Response, res: ServerResponse): Promise<void> {
  const body = Buffer.from(await r.arrayBuffer());
  const headers: Record<string, string | string[]> = {};
  r.headers.forEach((v, k) => {
    if (k !== 'set-cookie' && k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection') headers[k] = v;
  });
  const cookies = r.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  res.writeHead(r.status, headers);
  res.end(body);
}

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  host: string;
}

export interface BrowserResponse {
  status: number;
  url: string;
  headers: Headers;
  body: string;
}

/** A cookie-jar client that behaves like a browser for redirects and cookies (hosts, not ports, scope cookies). */
export class Browser {
  readonly jar: StoredCookie[] = [];
  /** Every URL visited, in order. */
  readonly visited: string[] = [];

  cookieHeader(url: URL): string {
    return this.jar
      .filter((c) => c.host === url.hostname && (url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/'))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  cookie(name: string): string | undefined {
    return this.jar.find((c) => c.name === name)?.value;
  }

  setCookie(host: string, name: string, value: string, path = '/'): void {
    this.store(new URL(`http://${host}/`), `${name}=${value}; Path=${path}`);
  }

  store(url: URL, header: string): void {
    const [pair, ...attrs] = header.split(';');
    const eq = pair!.indexOf('=');
    const name = pair!.slice(0, eq).trim();
    const value = pair!.slice(eq + 1).trim();
    let path = '/';
    let expired = false;
    for (const a of attrs) {
      const [k, v = ''] = a.trim().split('=');
      if (k!.toLowerCase() === 'path') path = v;
      if (k!.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
    }
    const i = this.jar.findIndex((c) => c.name === name && c.path === path && c.host === url.hostname);
    if (i >= 0) this.jar.splice(i, 1);
    if (!expired) this.jar.push({ name, value, path, host: url.hostname });
  }

  /** One request, no redirect following. */
  async request(url: string | URL, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<BrowserResponse> {
    const u = new URL(url);
    this.visited.push(u.href);
    const headers = new Headers({ accept: 'text/html,application/xhtml+xml', ...init.headers });
    const cookie = this.cookieHeader(u);
    if (cookie) headers.set('cookie', cookie);
    const r = await fetch(u, { method: init.method ?? 'GET', headers, redirect: 'manual', ...(init.body !== undefined ? { body: init.body } : {}) });
    for (const c of r.headers.getSetCookie()) this.store(u, c);
    return { status: r.status, url: u.href, headers: r.headers, body: await r.text() };
  }

  /** Follows redirects (up to 20) like a browser: 303 and 302-after-POST become GET. */
  async navigate(url: string | URL, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<BrowserResponse> {
    let res = await this.request(url, init);
    for (let hops = 0; hops < 20 && res.status >= 300 && res.status < 400 && res.headers.get('location'); hops++) {
      res = await this.request(new URL(res.headers.get('location')!, res.url), { ...(init.headers ? { headers: init.headers } : {}) });
    }
    return res;
  }
}

function formOf(html: string, fieldName: string): { action: string; fields: Record<string, string> } | undefined {
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const body = m[2]!;
    if (!new RegExp(`name=["']?${fieldName}["'\\s>]`, 'i').test(body)) continue;
    const action = /action=["']([^"']*)["']/i.exec(m[1]!)?.[1]?.replace(/&amp;/g, '&') ?? '';
    const fields: Record<string, string> = {};
    for (const input of body.matchAll(/<(?:input|button)\b([^>]*)>/gi)) {
      const name = /name=["']([^"']*)["']/i.exec(input[1]!)?.[1];
      const value = /value=["']([^"']*)["']/i.exec(input[1]!)?.[1] ?? '';
      if (name && !(name in fields)) fields[name] = value.replace(/&amp;/g, '&');
    }
    return { action, fields };
  }
  return undefined;
}

/**
 * From a page showing Dex's (or the dev IdP's) login form, submits the credentials, approves
 * the grant if asked, and follows redirects until a non-redirect answer.
 */
export async function submitIdpLogin(browser: Browser, page: BrowserResponse, login: string, password: string): Promise<BrowserResponse> {
  let res = page;
  for (let step = 0; step < 4; step++) {
    const loginForm = formOf(res.body, 'password');
    const approval = formOf(res.body, 'approval');
    const form = loginForm ?? approval;
    if (!form) return res;
    const fields = { ...form.fields };
    if (loginForm) Object.assign(fields, { login, password });
    if (approval && !loginForm) fields.approval = 'approve';
    res = await browser.navigate(new URL(form.action || res.url, res.url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// A whole login stack: mini gateway + IdP (dev IdP, or real Dex when asked) + authservice.

export interface TestUser {
  email: string;
  password: string;
  groups: string[];
}

export const DEMO_USERS: readonly TestUser[] = [
  { email: 'jason@example.com', password: 'password', groups: ['ml-team', 'admins'] },
  { email: 'mallory@example.com', password: 'mallory-password', groups: ['outsiders'] },
];

/** bcrypt at Dex's minimum cost (10) is slow-ish: hash each demo password once per process. */
const hashCache: Record<string, string> = {};

export interface AuthStack {
  gateway: MiniGateway;
  app: FastifyInstance;
  /** Base URL of the authservice itself (for direct check requests). */
  authservice: string;
  /** Base URL of its probe listener (/healthz, /readyz, /metrics). */
  health: string;
  issuer: string;
  clientId: string;
  clientSecret: string;
  users: readonly TestUser[];
}

export interface AuthStackOptions {
  env?: Record<string, string>;
  /** 'devidp' (default, always available) or 'dex' (real binary through test/helpers/dex.ts). */
  idp?: 'devidp' | 'dex';
  /** Supply a session store (e.g. one Redis shared by two stacks). */
  store?: SessionStore;
  /** Dev IdP `expiry.idTokens` (Go duration, e.g. "10m"). */
  idTokenTTL?: string;
  /** Reuse another stack's gateway and IdP, adding a second authservice replica behind the same gateway port. */
  shareIdpWith?: AuthStack;
}

/** Starts the stack, all on 127.0.0.1 port 0, stopped in t.after. Undefined when the IdP is unavailable (already skipped). */
export async function startAuthStack(t: TestContext, opts: AuthStackOptions = {}): Promise<AuthStack | undefined> {
  let authBase = '';
  const gateway = opts.shareIdpWith?.gateway ?? (await startMiniGateway({ authservice: () => authBase }));
  if (!opts.shareIdpWith) t.after(() => gateway.close());
  const redirectURI = `${gateway.url}/authservice/oidc/callback`;
  const clientId = opts.shareIdpWith?.clientId ?? 'kubeflow-oidc-authservice';
  const clientSecret = opts.shareIdpWith?.clientSecret ?? 'pUBnBOY80SnXgjibTYM9ZWNzY2xreNGQok';
  let issuer = opts.shareIdpWith?.issuer;
  let users: readonly TestUser[] = opts.shareIdpWith?.users ?? DEMO_USERS;
  if (!issuer && opts.idp === 'dex') {
    const dex = await startDex(t, { redirectURIs: [redirectURI], clientId, clientSecret });
    if (!dex) return undefined;
    issuer = dex.issuer;
    users = dex.users.map((u) => ({ email: u.email, password: u.password, groups: [] }));
  } else if (!issuer) {
    const idp = await startDevIdp({
      port: 0,
      config: {
        issuer: 'http://127.0.0.1:5556/dex',
        enablePasswordDB: true,
        oauth2: { skipApprovalScreen: true },
        ...(opts.idTokenTTL ? { expiry: { idTokens: opts.idTokenTTL } } : {}),
        staticClients: [{ id: clientId, secret: clientSecret, name: 'Portico tests', redirectURIs: [redirectURI] }],
        staticPasswords: DEMO_USERS.map((u, i) => ({
          email: u.email,
          hash: (hashCache[u.password] ??= bcrypt.hashSync(u.password, 10)),
          username: u.email.split('@')[0],
          userID: `0000000${i}-aaaa-bbbb-cccc-000000000000`,
          groups: u.groups,
        })),
      },
    });
    t.after(() => idp.close());
    issuer = idp.issuer;
  }
  const config = loadAuthserviceConfig({
    OIDC_PROVIDER: issuer!,
    CLIENT_ID: clientId,
    CLIENT_SECRET: clientSecret,
    OIDC_SCOPES: 'openid,email,profile,groups,offline_access',
    PORTICO_COOKIE_SECRET: 'test-cookie-secret-0123456789abcdef0123456789',
    LOG_LEVEL: process.env.PORTICO_TEST_LOG ?? 'silent',
    ...opts.env,
  });
  const app = buildAuthservice(config, opts.store ? { store: opts.store } : {});
  t.after(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address() as AddressInfo;
  const authservice = `http://127.0.0.1:${address.port}`;
  authBase = authservice;
  const health = await app.authservice.listenHealth({ port: 0, host: '127.0.0.1' });
  await app.authservice.oidc.start();
  if (!app.authservice.oidc.ready) throw new Error(`authservice could not discover ${issuer}`);
  return { gateway, app, authservice, health: health.url, issuer: issuer!, clientId, clientSecret, users };
}

/** Browses to `url` on the gateway, logs in at the IdP, and returns the final page. */
export async function browseAndLogin(browser: Browser, url: string, user: { email: string; password: string }): Promise<BrowserResponse> {
  const loginPage = await browser.navigate(url);
  return submitIdpLogin(browser, loginPage, user.email, user.password);
}

/** Sends a request with the path exactly as given (fetch would normalise `..` and `\`). */
export async function rawRequest(
  base: string,
  path: string,
  init: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: import('node:http').IncomingHttpHeaders; body: string }> {
  const { request } = await import('node:http');
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: init.method ?? 'GET', path, headers: init.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Creates a logged-in session directly through the authservice's own session code (no IdP round trip). */
export async function sessionFor(app: FastifyInstance, user: { email: string; groups?: string[] }): Promise<{ sid: string; cookie: string }> {
  const issued = await issueSession(app.authservice, {
    identity: { sub: `sub-${user.email}`, userid: user.email, groups: user.groups ?? [] },
    idToken: 'not-a-real-id-token',
    idTokenExp: Math.floor(Date.now() / 1000) + 3600,
  });
  return { sid: issued.sid, cookie: `${app.authservice.config.session.cookieName}=${issued.cookie}` };
}
