/**
 * Portico's development identity provider: a small OpenID Provider that reads Dex's config file
 * format and serves Dex's URL layout under the issuer path (`/dex/auth`, `/dex/token`, `/dex/keys`,
 * `/dex/.well-known/openid-configuration`, plus `/dex/userinfo`), so `npm start` can log people
 * in without a Dex binary and the authservice cannot tell the difference.
 *
 * Implements the authorization code flow (RFC 6749 4.1) with PKCE S256 (RFC 7636), refresh
 * tokens (rotated on use), client_secret_basic and client_secret_post, RS256 ID tokens from a key
 * generated at start. Everything is in memory; restarting logs everybody out.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import bcrypt from 'bcryptjs';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { loadDexConfig, validateDexConfig } from './config.ts';
import type { DexConfig, DexStaticClient, DexStaticPassword } from './config.ts';
import { errorPage, loginPage } from './pages.ts';

export interface DevIdpOptions {
  /** Path of a Dex config file (YAML). One of configFile/config is required. */
  configFile?: string;
  /** A Dex config as an object (the shape the YAML parses to). */
  config?: unknown;
  /** Port to listen on. Default: the port of `web.http`, else of the issuer URL. */
  port?: number;
  /** Address to listen on. Default: the host of `web.http`, else 127.0.0.1. */
  host?: string;
  /**
   * Issuer to publish instead of the config's. When omitted and `port` is given, the config
   * issuer is used with its port replaced by the bound one (so `port: 0` works in tests).
   */
  publicIssuer?: string;
  /** Lifetime of authorization codes, seconds (default 60). */
  codeTTLSeconds?: number;
  /** One line per event; never receives passwords, secrets, codes or tokens. Default: silent. */
  log?: (line: string) => void;
}

export interface DevIdp {
  issuer: string;
  port: number;
  host: string;
  close(): Promise<void>;
}

/** The scopes Dex 2.x recognises; anything else is `invalid_scope`, as in Dex. */
const KNOWN_SCOPES = new Set(['openid', 'email', 'profile', 'groups', 'offline_access', 'federated:id']);
const AUTH_REQUEST_TTL_S = 600;
const ACCESS_TOKEN_TTL_S = 3600;
const MAX_ENTRIES = 10_000;
const MAX_BODY_BYTES = 64 * 1024;
const PKCE_CHARS = /^[A-Za-z0-9\-._~]{43,128}$/;
/** A valid bcrypt hash of a random string: unknown logins pay the same bcrypt cost as known ones. */
const DUMMY_HASH = bcrypt.hashSync(randomBytes(16).toString('hex'), 10);

interface AuthRequest {
  client: DexStaticClient;
  redirectURI: string;
  scopes: readonly string[];
  state: string | undefined;
  nonce: string | undefined;
  codeChallenge: string | undefined;
  expiresAt: number;
}

interface Grant {
  client: DexStaticClient;
  user: DexStaticPassword;
  scopes: readonly string[];
  authTime: number;
}

interface CodeEntry extends Grant {
  redirectURI: string;
  nonce: string | undefined;
  codeChallenge: string | undefined;
  expiresAt: number;
}

interface AccessEntry extends Grant {
  expiresAt: number;
}

/** Starts the dev IdP. Resolves once it is listening. */
export async function startDevIdp(opts: DevIdpOptions): Promise<DevIdp> {
  const config = resolveConfig(opts);
  const log = opts.log ?? (() => {});
  const codeTTL = opts.codeTTLSeconds ?? 60;
  const configured = new URL(config.issuer);
  const [webHost, webPort] = splitHostPort(config.webHTTP);
  const host = opts.host ?? webHost ?? '127.0.0.1';
  const port = opts.port ?? webPort ?? (Number(configured.port) || (configured.protocol === 'https:' ? 443 : 80));

  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk: JWK = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  const jwks = JSON.stringify({ keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] });

  const state = new State();
  const sweeper = setInterval(() => state.sweep(), 30_000);
  sweeper.unref();

  // The issuer is only known once the port is bound; handlers read it through `ctx`.
  const ctx: Ctx = { config, issuer: config.issuer, basePath: '', privateKey, kid, jwks, state, codeTTL, log, discovery: '' };
  const server = createServer((req, res) => {
    handle(ctx, req, res).catch((err: unknown) => {
      log(`devidp: internal error: ${(err as Error).message}`);
      if (!res.headersSent) sendJSON(res, 500, { error: 'server_error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  let issuer = config.issuer;
  if (opts.publicIssuer) issuer = opts.publicIssuer;
  else if (opts.port !== undefined) {
    const u = new URL(config.issuer);
    u.port = bound.toString();
    issuer = u.toString();
  }
  issuer = issuer.replace(/\/+$/, '');
  ctx.issuer = issuer;
  ctx.basePath = new URL(issuer).pathname.replace(/\/+$/, '');
  ctx.discovery = JSON.stringify(discoveryDocument(issuer), null, 2);
  log(`devidp: listening on ${host}:${bound.toString()}, issuer ${issuer}`);

  return {
    issuer,
    port: bound,
    host,
    close: () => closeServer(server, sweeper),
  };
}

function resolveConfig(opts: DevIdpOptions): DexConfig {
  if (opts.config !== undefined) return validateDexConfig(opts.config, '<config option>');
  if (opts.configFile) return loadDexConfig(opts.configFile);
  throw new Error('startDevIdp: pass configFile or config');
}

function splitHostPort(hp: string | undefined): [string | undefined, number | undefined] {
  if (!hp) return [undefined, undefined];
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(hp);
  if (!m) return [undefined, undefined];
  return [m[1] || undefined, Number(m[2])];
}

async function closeServer(server: Server, sweeper: NodeJS.Timeout): Promise<void> {
  clearInterval(sweeper);
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** In-memory grants. Maps keep insertion order, so the oldest entry is evicted first at the cap. */
class State {
  readonly authRequests = new Map<string, AuthRequest>();
  readonly codes = new Map<string, CodeEntry>();
  /** Codes already redeemed, remembered until they would have expired, to revoke on replay. */
  readonly usedCodes = new Map<string, { expiresAt: number; accessToken: string; refreshToken?: string }>();
  readonly accessTokens = new Map<string, AccessEntry>();
  readonly refreshTokens = new Map<string, Grant>();

  put<V>(map: Map<string, V>, key: string, value: V): void {
    if (map.size >= MAX_ENTRIES) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(key, value);
  }

  sweep(): void {
    const now = Date.now();
    for (const m of [this.authRequests, this.codes, this.usedCodes, this.accessTokens] as Map<string, { expiresAt: number }>[]) {
      for (const [k, v] of m) if (v.expiresAt <= now) m.delete(k);
    }
  }
}

interface Ctx {
  config: DexConfig;
  issuer: string;
  basePath: string;
  privateKey: CryptoKey;
  kid: string;
  jwks: string;
  discovery: string;
  state: State;
  codeTTL: number;
  log: (line: string) => void;
}

function discoveryDocument(issuer: string): Record<string, unknown> {
  return {
    issuer,
    authorization_endpoint: `${issuer}/auth`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/keys`,
    userinfo_endpoint: `${issuer}/userinfo`,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    code_challenge_methods_supported: ['S256'],
    scopes_supported: ['openid', 'email', 'groups', 'profile', 'offline_access'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    claims_supported: [
      'iss', 'sub', 'aud', 'iat', 'exp', 'nonce', 'at_hash', 'email', 'email_verified', 'name', 'preferred_username', 'groups',
    ],
  };
}

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://devidp.invalid');
  if (!url.pathname.startsWith(`${ctx.basePath}/`)) return notFound(res);
  const route = url.pathname.slice(ctx.basePath.length);
  const method = req.method ?? 'GET';
  switch (route) {
    case '/.well-known/openid-configuration':
      return onlyGet(method, res, () => sendRaw(res, 200, 'application/json', ctx.discovery, { 'access-control-allow-origin': '*' }));
    case '/keys':
      return onlyGet(method, res, () =>
        sendRaw(res, 200, 'application/json', ctx.jwks, { 'cache-control': 'max-age=60', 'access-control-allow-origin': '*' }),
      );
    case '/healthz':
      return onlyGet(method, res, () => sendRaw(res, 200, 'text/plain', 'Health check passed'));
    case '/auth':
      if (method !== 'GET' && method !== 'POST') return methodNotAllowed(res, 'GET, POST');
      return authorize(ctx, method === 'POST' ? new URLSearchParams(await readBody(req)) : url.searchParams, res);
    case '/auth/local':
      if (method === 'GET') return showLogin(ctx, url, res);
      if (method === 'POST') return submitLogin(ctx, url, await readBody(req), res);
      return methodNotAllowed(res, 'GET, POST');
    case '/token':
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      return token(ctx, req, await readBody(req), res);
    case '/userinfo':
      if (method !== 'GET' && method !== 'POST') return methodNotAllowed(res, 'GET, POST');
      return userinfo(ctx, req, res);
    default:
      return notFound(res);
  }
}

// ---------------------------------------------------------------------------------------------
// Authorization endpoint (RFC 6749 4.1.1, OIDC Core 3.1.2)

function authorize(ctx: Ctx, q: URLSearchParams, res: ServerResponse): void {
  const clientId = q.get('client_id') ?? '';
  const client = ctx.config.staticClients.find((c) => c.id === clientId);
  // Until client and redirect_uri are known good, errors are shown here, never redirected
  // (RFC 6749 4.1.2.1): redirecting to an unchecked URI is an open redirect.
  if (!client) return sendHTML(res, 400, errorPage('Bad request', `Unknown client_id ${JSON.stringify(clientId)}.`));
  const redirectURI = q.get('redirect_uri') ?? '';
  if (!client.redirectURIs.includes(redirectURI)) {
    return sendHTML(res, 400, errorPage('Bad request', `redirect_uri ${JSON.stringify(redirectURI)} is not registered for client ${JSON.stringify(client.id)}.`));
  }
  const stateParam = q.get('state') ?? undefined;
  const fail = (error: string, description: string): void =>
    redirectTo(res, 302, redirectURI, { error, error_description: description, state: stateParam });

  if (q.get('response_type') !== 'code') return fail('unsupported_response_type', 'only response_type=code is supported');
  const scopes = (q.get('scope') ?? '').split(' ').filter(Boolean);
  if (!scopes.includes('openid')) return fail('invalid_scope', 'missing required scope "openid"');
  const unknown = scopes.filter((s) => !KNOWN_SCOPES.has(s));
  if (unknown.length > 0) return fail('invalid_scope', `unrecognized scope(s) ${JSON.stringify(unknown)}`);
  if (q.get('request') !== null || q.get('request_uri') !== null) {
    return fail('request_not_supported', 'request objects are not supported');
  }
  if (q.get('prompt')?.split(' ').includes('none')) return fail('login_required', 'the dev IdP keeps no login session');

  const challenge = q.get('code_challenge') ?? undefined;
  const method = q.get('code_challenge_method') ?? undefined;
  if (challenge === undefined && method !== undefined) return fail('invalid_request', 'code_challenge_method without code_challenge');
  if (challenge !== undefined) {
    // plain is refused: it protects nothing once the challenge is seen (RFC 7636 7.2).
    if (method !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256');
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) return fail('invalid_request', 'code_challenge must be a base64url SHA-256 (43 characters)');
  }
  if (!ctx.config.enablePasswordDB) {
    return sendHTML(res, 500, errorPage('No login method', 'enablePasswordDB is false and the dev IdP has no other connectors.'));
  }

  const id = newId();
  ctx.state.put(ctx.state.authRequests, id, {
    client,
    redirectURI,
    scopes,
    state: stateParam,
    nonce: q.get('nonce') ?? undefined,
    codeChallenge: challenge,
    expiresAt: Date.now() + AUTH_REQUEST_TTL_S * 1000,
  });
  // Dex redirects to its only connector's login page the same way.
  res.writeHead(302, { location: `${ctx.basePath}/auth/local?req=${id}`, 'cache-control': 'no-store' });
  res.end();
}

function pendingRequest(ctx: Ctx, url: URL, res: ServerResponse): [string, AuthRequest] | undefined {
  const id = url.searchParams.get('req') ?? '';
  const ar = ctx.state.authRequests.get(id);
  if (!ar || ar.expiresAt <= Date.now()) {
    if (ar) ctx.state.authRequests.delete(id);
    sendHTML(res, 400, errorPage('Login expired', 'This login request is unknown or has expired. Go back to the application and sign in again.'));
    return undefined;
  }
  return [id, ar];
}

function showLogin(ctx: Ctx, url: URL, res: ServerResponse): void {
  const pending = pendingRequest(ctx, url, res);
  if (!pending) return;
  sendHTML(res, 200, loginPage({ postURL: `${ctx.basePath}/auth/local?req=${pending[0]}`, clientName: pending[1].client.name }));
}

async function submitLogin(ctx: Ctx, url: URL, body: string, res: ServerResponse): Promise<void> {
  const pending = pendingRequest(ctx, url, res);
  if (!pending) return;
  const [id, ar] = pending;
  const form = new URLSearchParams(body);
  const login = (form.get('login') ?? '').trim();
  const password = form.get('password') ?? '';
  const user = ctx.config.staticPasswords.find((u) => u.email.toLowerCase() === login.toLowerCase());
  // Always run bcrypt so response time does not reveal which emails exist.
  const ok = (await bcrypt.compare(password, user?.hash ?? DUMMY_HASH)) && user !== undefined;
  if (!ok) {
    ctx.log(`devidp: failed login for client ${ar.client.id}`);
    return sendHTML(res, 200, loginPage({ postURL: `${ctx.basePath}/auth/local?req=${id}`, clientName: ar.client.name, login, invalid: true }));
  }
  if (!ctx.state.authRequests.delete(id)) {
    // A concurrent submit of the same form already used this request.
    return sendHTML(res, 400, errorPage('Login expired', 'This login request was already used. Go back to the application and sign in again.'));
  }
  const code = newId();
  ctx.state.put(ctx.state.codes, code, {
    client: ar.client,
    user,
    scopes: ar.scopes,
    authTime: Math.floor(Date.now() / 1000),
    redirectURI: ar.redirectURI,
    nonce: ar.nonce,
    codeChallenge: ar.codeChallenge,
    expiresAt: Date.now() + ctx.codeTTL * 1000,
  });
  ctx.log(`devidp: login successful: username=${JSON.stringify(user.username)} client=${ar.client.id}`);
  redirectTo(res, 303, ar.redirectURI, { code, state: ar.state });
}

// ---------------------------------------------------------------------------------------------
// Token endpoint (RFC 6749 3.2, 4.1.3, 6; RFC 7636 4.6)

class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

async function token(ctx: Ctx, req: IncomingMessage, body: string, res: ServerResponse): Promise<void> {
  try {
    const ctype = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (ctype !== 'application/x-www-form-urlencoded') {
      throw new OAuthError(400, 'invalid_request', 'content-type must be application/x-www-form-urlencoded');
    }
    const form = new URLSearchParams(body);
    const client = authenticateClient(ctx, req, form);
    const grantType = form.get('grant_type');
    if (grantType === 'authorization_code') return sendTokens(res, await redeemCode(ctx, client, form));
    if (grantType === 'refresh_token') return sendTokens(res, await refresh(ctx, client, form));
    throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${JSON.stringify(grantType ?? '')} is not supported`);
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    sendJSON(res, err.status, { error: err.error, error_description: err.message }, { ...err.headers, 'cache-control': 'no-store' });
  }
}

function authenticateClient(ctx: Ctx, req: IncomingMessage, form: URLSearchParams): DexStaticClient {
  const header = req.headers.authorization;
  let id: string;
  let secret: string;
  const viaBasic = header !== undefined && /^basic /i.test(header);
  if (viaBasic) {
    if (form.has('client_secret')) throw new OAuthError(400, 'invalid_request', 'use one client authentication method, not two');
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw invalidClient(true);
    try {
      // RFC 6749 2.3.1: both parts are form-urlencoded before base64.
      id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
    } catch {
      throw invalidClient(true);
    }
    const bodyId = form.get('client_id');
    if (bodyId !== null && bodyId !== id) throw new OAuthError(400, 'invalid_request', 'client_id in body and Authorization header differ');
  } else {
    id = form.get('client_id') ?? '';
    secret = form.get('client_secret') ?? '';
    if (!id || !secret) throw invalidClient(false);
  }
  const client = ctx.config.staticClients.find((c) => c.id === id);
  const ok = safeEqual(secret, client?.secret ?? randomBytes(16).toString('hex')) && client !== undefined;
  if (!ok) {
    ctx.log(`devidp: client authentication failed for client_id ${JSON.stringify(id.slice(0, 64))}`);
    throw invalidClient(viaBasic);
  }
  return client;
}

function invalidClient(basic: boolean): OAuthError {
  return new OAuthError(401, 'invalid_client', 'client authentication failed', basic ? { 'www-authenticate': 'Basic realm="devidp"' } : {});
}

interface Issued {
  grant: Grant;
  accessToken: string;
  idToken: string;
  refreshToken?: string;
  expiresIn: number;
}

async function redeemCode(ctx: Ctx, client: DexStaticClient, form: URLSearchParams): Promise<Issued> {
  const code = form.get('code') ?? '';
  const entry = ctx.state.codes.get(code);
  if (!entry) {
    const used = ctx.state.usedCodes.get(code);
    if (used) {
      // RFC 6749 4.1.2: a replayed code revokes what it issued.
      ctx.state.usedCodes.delete(code);
      ctx.state.accessTokens.delete(used.accessToken);
      if (used.refreshToken) ctx.state.refreshTokens.delete(used.refreshToken);
      ctx.log('devidp: authorization code replayed; tokens issued from it revoked');
    }
    throw new OAuthError(400, 'invalid_grant', 'authorization code is invalid, expired or already used');
  }
  ctx.state.codes.delete(code); // single use, whatever happens next
  if (entry.expiresAt <= Date.now()) throw new OAuthError(400, 'invalid_grant', 'authorization code expired');
  if (entry.client.id !== client.id) throw new OAuthError(400, 'invalid_grant', 'authorization code was issued to another client');
  if (form.get('redirect_uri') !== entry.redirectURI) {
    throw new OAuthError(400, 'invalid_grant', 'redirect_uri does not match the one used in the authorization request');
  }
  const verifier = form.get('code_verifier');
  if (entry.codeChallenge !== undefined) {
    if (verifier === null || !PKCE_CHARS.test(verifier)) throw new OAuthError(400, 'invalid_grant', 'code_verifier missing or malformed');
    const computed = createHash('sha256').update(verifier, 'ascii').digest('base64url');
    if (!safeEqual(computed, entry.codeChallenge)) throw new OAuthError(400, 'invalid_grant', 'code_verifier does not match code_challenge');
  } else if (verifier !== null) {
    // Prevents a PKCE downgrade (RFC 9700 2.1.1): a verifier for a request that had no challenge.
    throw new OAuthError(400, 'invalid_grant', 'code_verifier sent but the authorization request had no code_challenge');
  }
  const issued = await issue(ctx, entry, entry.nonce);
  ctx.state.put(ctx.state.usedCodes, code, {
    expiresAt: entry.expiresAt,
    accessToken: issued.accessToken,
    ...(issued.refreshToken ? { refreshToken: issued.refreshToken } : {}),
  });
  return issued;
}

async function refresh(ctx: Ctx, client: DexStaticClient, form: URLSearchParams): Promise<Issued> {
  const presented = form.get('refresh_token') ?? '';
  const grant = ctx.state.refreshTokens.get(presented);
  if (!grant || grant.client.id !== client.id) throw new OAuthError(400, 'invalid_grant', 'refresh token is invalid or revoked');
  let scopes = grant.scopes;
  const requested = form.get('scope');
  if (requested !== null) {
    const asked = requested.split(' ').filter(Boolean);
    const extra = asked.filter((s) => !grant.scopes.includes(s));
    if (extra.length > 0) throw new OAuthError(400, 'invalid_scope', `scope(s) ${JSON.stringify(extra)} were not originally granted`);
    scopes = asked;
  }
  ctx.state.refreshTokens.delete(presented); // rotated, as Dex does
  // The user may have been removed from the config since (not possible at run time today, but cheap).
  const user = ctx.config.staticPasswords.find((u) => u.userID === grant.user.userID);
  if (!user) throw new OAuthError(400, 'invalid_grant', 'user no longer exists');
  return issue(ctx, { ...grant, user, scopes: scopes.includes('offline_access') ? scopes : [...scopes, 'offline_access'] }, undefined);
}

async function issue(ctx: Ctx, grant: Grant, nonce: string | undefined): Promise<Issued> {
  const accessToken = newId();
  const expiresIn = ctx.config.idTokenTTLSeconds;
  ctx.state.put(ctx.state.accessTokens, accessToken, { ...grant, expiresAt: Date.now() + Math.min(expiresIn, ACCESS_TOKEN_TTL_S) * 1000 });
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    ...userClaims(grant.user, grant.scopes),
    at_hash: createHash('sha256').update(accessToken).digest().subarray(0, 16).toString('base64url'),
    auth_time: grant.authTime,
  };
  if (nonce !== undefined) claims.nonce = nonce;
  const idToken = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: ctx.kid, typ: 'JWT' })
    .setIssuer(ctx.issuer)
    .setSubject(dexSubject(grant.user.userID, 'local'))
    .setAudience(grant.client.id)
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn)
    .sign(ctx.privateKey);
  let refreshToken: string | undefined;
  if (grant.scopes.includes('offline_access')) {
    refreshToken = newId();
    ctx.state.put(ctx.state.refreshTokens, refreshToken, { client: grant.client, user: grant.user, scopes: grant.scopes, authTime: grant.authTime });
  }
  return { grant, accessToken, idToken, expiresIn: Math.min(expiresIn, ACCESS_TOKEN_TTL_S), ...(refreshToken ? { refreshToken } : {}) };
}

function userClaims(user: DexStaticPassword, scopes: readonly string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  if (scopes.includes('email')) {
    claims.email = user.email;
    claims.email_verified = true;
  }
  if (scopes.includes('profile')) {
    claims.name = user.username;
    claims.preferred_username = user.username;
  }
  if (scopes.includes('groups') && user.groups.length > 0) claims.groups = [...user.groups];
  return claims;
}

function sendTokens(res: ServerResponse, t: Issued): void {
  sendJSON(
    res,
    200,
    {
      access_token: t.accessToken,
      token_type: 'bearer',
      expires_in: t.expiresIn,
      id_token: t.idToken,
      ...(t.refreshToken ? { refresh_token: t.refreshToken } : {}),
    },
    { 'cache-control': 'no-store', pragma: 'no-cache' },
  );
}

// ---------------------------------------------------------------------------------------------
// UserInfo (OIDC Core 5.3)

function userinfo(ctx: Ctx, req: IncomingMessage, res: ServerResponse): void {
  const m = /^bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  const entry = m?.[1] ? ctx.state.accessTokens.get(m[1]) : undefined;
  if (!entry || entry.expiresAt <= Date.now()) {
    return sendJSON(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  sendJSON(res, 200, { sub: dexSubject(entry.user.userID, 'local'), ...userClaims(entry.user, entry.scopes) }, { 'cache-control': 'no-store' });
}

// ---------------------------------------------------------------------------------------------
// helpers

/**
 * Dex's `sub`: base64url (no padding) of the protobuf message IDTokenSubject{user_id=1, conn_id=2}.
 * Matching it keeps sessions and USERID_CLAIM=sub stable when switching between Dex and the dev IdP.
 */
export function dexSubject(userID: string, connectorID: string): string {
  const field = (tag: number, value: string): Buffer => {
    const bytes = Buffer.from(value, 'utf8');
    const len: number[] = [];
    let n = bytes.length;
    while (n >= 0x80) {
      len.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    len.push(n);
    return Buffer.concat([Buffer.from([(tag << 3) | 2, ...len]), bytes]);
  };
  return Buffer.concat([field(1, userID), field(2, connectorID)]).toString('base64url');
}

function newId(): string {
  return randomBytes(24).toString('base64url');
}

/** Constant-time string comparison (hashing first hides length differences). */
function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function redirectTo(res: ServerResponse, status: 302 | 303, base: string, params: Record<string, string | undefined>): void {
  const u = new URL(base);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  res.writeHead(status, { location: u.toString(), 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
  res.end();
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error(`request body larger than ${MAX_BODY_BYTES.toString()} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendRaw(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': `${type}; charset=utf-8`, 'content-length': Buffer.byteLength(body).toString(), ...headers });
  res.end(body);
}

function sendJSON(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendRaw(res, status, 'application/json', JSON.stringify(body), headers);
}

function sendHTML(res: ServerResponse, status: number, html: string): void {
  sendRaw(res, status, 'text/html', html, {
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    'referrer-policy': 'no-referrer',
  });
}

function onlyGet(method: string, res: ServerResponse, fn: () => void): void {
  if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET');
  fn();
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  sendJSON(res, 405, { error: 'method_not_allowed', error_description: `use ${allow}` }, { allow });
}

function notFound(res: ServerResponse): void {
  sendRaw(res, 404, 'text/plain', 'Not found\n');
}
