/**
 * The authservice HTTP server: an Envoy ext_authz (HTTP service) check endpoint plus the
 * authservice's own endpoints. Composition root: builds the store, the OIDC relying party and
 * the routes, and closes everything in onClose.
 *
 * Every request is dispatched by its (prefix-stripped, normalised) path:
 *   GET  <prefix>/oidc/callback   finish a login
 *   POST <prefix>/logout          log out (CSRF-protected); other methods 405
 *   GET  /healthz, /readyz        health (only when not a forwarded check request, see docs)
 *   anything else                 ext_authz check: 2xx allow (+identity headers), else deny as is
 * The own endpoints work both when the gateway routes them here directly and when they arrive
 * as check requests (Kubeflow's setup): they never answer 2xx, so a check can't turn into "allow".
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { fastify, LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as client from 'openid-client';
import type { Logger } from 'pino';
import type { AuthserviceConfig } from './config.ts';
import { printableConfig } from './config.ts';
import {
  deriveCookieKeys,
  LOGIN_STATE_TTL_SECONDS,
  loginCookieName,
  openLoginState,
  parseCookies,
  sealLoginState,
  serializeCookie,
  verifySessionCookie,
} from './cookies.ts';
import type { CookieKeys } from './cookies.ts';
import { AUTHSERVICE_ERRORS, AuthserviceError } from './errors.ts';
import type { AuthserviceErrorCode } from './errors.ts';
import { groupsAllowed, identityFromClaims, identityHeaders, isApiRequest } from './identity.ts';
import { createAuthserviceLogger } from './logger.ts';
import { errorText, OidcRelyingParty, oauthErrorCode } from './oidc.ts';
import { PAGE_CSP, renderPage } from './pages/index.ts';
import { matchesAny, normalisePath, safeReturnPath } from './paths.ts';
import { registerAuthserviceMetrics } from './metrics.ts';
import { MemorySessionStore } from './session/memory.ts';
import { issueSession, sessionTtlMs } from './session/issue.ts';
import { RedisSessionStore } from './session/redis.ts';
import type { SessionRecord, SessionStore } from './session/store.ts';

export interface AuthserviceRuntime {
  config: AuthserviceConfig;
  oidc: OidcRelyingParty;
  store: SessionStore;
  keys: CookieKeys;
}

declare module 'fastify' {
  interface FastifyInstance {
    authservice: AuthserviceRuntime;
  }
}

export interface BuildOptions {
  /** Use this store instead of the one SESSION_STORE_TYPE names (it is still closed on app close). */
  store?: SessionStore;
  logger?: Logger;
}

/** Where the original request came from, per the check request's forwarded headers. */
interface Origin {
  proto: 'http' | 'https';
  host: string | undefined;
}

const HOST_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

function firstHeader(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s?.split(',')[0]?.trim() || undefined;
}

function sameString(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

/** Errors that come from the Redis client (connection refused, retries exhausted, cluster down). */
function isStoreError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const name = err.name;
  const code = (err as { code?: unknown }).code;
  return (
    name === 'MaxRetriesPerRequestError' ||
    name === 'ReplyError' ||
    name === 'ClusterAllFailedError' ||
    /Connection is closed|ECONNREFUSED|Stream isn't writeable/.test(err.message) ||
    code === 'ECONNREFUSED'
  );
}

/** Builds the authservice. Discovery starts immediately in the background. */
export function buildAuthservice(cfg: AuthserviceConfig, options: BuildOptions = {}): FastifyInstance {
  const log = options.logger ?? createAuthserviceLogger(cfg.logLevel);
  const app = fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 8192 },
    bodyLimit: 64 * 1024,
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
  });

  const store: SessionStore =
    options.store ??
    (cfg.session.storeType === 'redis' && cfg.session.redis
      ? new RedisSessionStore(cfg.session.redis, {
          keyPrefix: cfg.session.redisKeyPrefix,
          onError: (err) => log.warn({ err: errorText(err) }, 'redis connection error'),
        })
      : new MemorySessionStore({ maxEntries: cfg.session.memoryMaxEntries }));
  const oidc = new OidcRelyingParty(cfg, log);
  const keys = deriveCookieKeys(cfg.cookieSecret);
  app.decorate('authservice', { config: cfg, oidc, store, keys });
  registerAuthserviceMetrics(app);
  if (cfg.cookieSecretGenerated) {
    log.warn('PORTICO_COOKIE_SECRET is not set: generated a random one; sessions will not survive a restart or be shared by replicas');
  }
  log.info({ config: printableConfig(cfg) }, 'authservice configured');
  void oidc.start();

  app.addHook('onClose', async () => {
    oidc.close();
    await store.close();
  });

  // The check API forwards no body; our own POST endpoints do not read one either.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => {
    payload.resume();
    payload.on('end', () => done(null, undefined));
    payload.on('error', (err) => done(err, undefined));
  });

  const callbackPath = new URL(cfg.redirectUrl, 'http://portico.invalid').pathname;
  const logoutPath = `${cfg.urlPrefix}/logout`;
  const inflightRefresh = new Map<string, Promise<SessionRecord | undefined>>();

  // ---- helpers ---------------------------------------------------------------------------

  const originOf = (req: FastifyRequest): Origin => {
    const proto = firstHeader(req.headers['x-forwarded-proto'])?.toLowerCase() === 'https' ? 'https' : 'http';
    const host = firstHeader(req.headers['x-forwarded-host']) ?? firstHeader(req.headers.host);
    return { proto, host: host && HOST_RE.test(host) ? host.toLowerCase() : undefined };
  };

  const absolute = (urlOrPath: string, o: Origin): string | undefined => {
    if (/^https?:\/\//i.test(urlOrPath)) return urlOrPath;
    return o.host ? `${o.proto}://${o.host}${urlOrPath}` : undefined;
  };

  const ttlFor = (rec: SessionRecord): number => sessionTtlMs(cfg, rec);

  const wantsHtml = (req: FastifyRequest): boolean => (firstHeader(req.headers.accept) ?? '').includes('text/html') || !req.headers.accept;

  const sendError = (reply: FastifyReply, code: AuthserviceErrorCode, html: boolean, detail?: string, extraHeaders: Record<string, string | string[]> = {}) => {
    const { status, message } = AUTHSERVICE_ERRORS[code];
    reply.code(status).header('cache-control', 'no-store');
    for (const [k, v] of Object.entries(extraHeaders)) reply.header(k, v);
    if (!html) return reply.type('application/json').send({ error: code, message: detail ?? message });
    const titles: Partial<Record<AuthserviceErrorCode, string>> = {
      PORTICO_ERR_LOGIN_STATE: 'Login link expired',
      PORTICO_ERR_FORBIDDEN_GROUP: 'Access denied',
      PORTICO_ERR_MISSING_CLAIM: 'Access denied',
      PORTICO_ERR_CSRF: 'Request refused',
      PORTICO_ERR_IDP_DENIED: 'Login not completed',
    };
    const restart = code === 'PORTICO_ERR_LOGIN_STATE' || code === 'PORTICO_ERR_IDP_DENIED';
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', PAGE_CSP)
      .header('x-frame-options', 'DENY')
      .send(
        renderPage({
          status,
          title: titles[code] ?? (status >= 500 ? 'Temporarily unavailable' : 'Something went wrong'),
          message: detail ?? message,
          code,
          ...(restart ? { action: { href: cfg.afterLoginUrl ?? '/', label: 'Start again' } } : {}),
        }),
      );
  };

  const sessionCookie = (value: string, o: Origin, maxAge: number): string =>
    serializeCookie(cfg.session.cookieName, value, { maxAge, path: '/', secure: o.proto === 'https', sameSite: cfg.session.sameSite });

  /** The live session behind the request's cookie, refreshed when its ID token is about to expire. */
  const loadSession = async (req: FastifyRequest): Promise<{ sid: string; record: SessionRecord } | undefined> => {
    const cookie = parseCookies(req.headers.cookie).get(cfg.session.cookieName);
    const claims = await verifySessionCookie(keys.session, cookie);
    if (!claims) return undefined;
    let record = await store.get(claims.sid);
    if (!record || !sameString(record.sub, claims.sub) || record.expiresAt <= Date.now()) return undefined;
    record = await maybeRefresh(claims.sid, record);
    if (!record) return undefined;
    if (cfg.session.idleTimeoutSeconds > 0) await store.touch(claims.sid, ttlFor(record));
    return { sid: claims.sid, record };
  };

  const maybeRefresh = (sid: string, rec: SessionRecord): Promise<SessionRecord | undefined> | SessionRecord => {
    if (!rec.refreshToken || !oidc.ready) return rec;
    if (rec.idTokenExp - Date.now() / 1000 > cfg.session.refreshSkewSeconds) return rec;
    let p = inflightRefresh.get(sid);
    if (!p) {
      p = refresh(sid, rec).finally(() => inflightRefresh.delete(sid));
      inflightRefresh.set(sid, p);
    }
    return p;
  };

  const fresh = (r: SessionRecord) => r.idTokenExp - Date.now() / 1000 > cfg.session.refreshSkewSeconds;

  /** Single-flight per session in this process, plus a short store lock across replicas. */
  const refresh = async (sid: string, rec: SessionRecord): Promise<SessionRecord | undefined> => {
    const release = await store.lock(`refresh:${sid}`, 10_000);
    if (!release) {
      // Another replica is refreshing: wait for its result, then keep serving the session we have.
      for (let i = 0; i < 30; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const now = await store.get(sid);
        if (!now) return undefined;
        if (fresh(now)) return now;
      }
      return rec;
    }
    let current: SessionRecord | undefined = rec;
    try {
      current = await store.get(sid);
      if (!current) return undefined;
      if (fresh(current) || !current.refreshToken) return current;
      const tokens = await oidc.refresh(current.refreshToken);
      const id = identityFromClaims(cfg, tokens.claims);
      if (id.sub !== current.sub) throw new Error('refreshed ID token has a different subject');
      const next: SessionRecord = {
        ...current,
        userid: id.userid,
        groups: id.groups,
        idToken: tokens.idToken,
        idTokenExp: typeof tokens.claims.exp === 'number' ? tokens.claims.exp : current.idTokenExp,
        ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
      };
      await store.set(sid, next, ttlFor(next));
      log.info({ sub: next.sub }, 'session refreshed');
      return next;
    } catch (err) {
      if (oauthErrorCode(err) === 'invalid_grant') {
        log.info({ sub: rec.sub }, 'refresh token rejected by the IdP; ending session');
        await store.delete(sid);
        return undefined;
      }
      log.warn({ err: errorText(err) }, 'token refresh failed; keeping the session');
      return current;
    } finally {
      await release();
    }
  };

  const allow = (reply: FastifyReply, headers: Record<string, string>) => {
    reply.code(200).header('cache-control', 'no-store');
    for (const [k, v] of Object.entries(headers)) reply.header(k, v);
    return reply.send();
  };

  // ---- login ------------------------------------------------------------------------------

  const startLogin = async (reply: FastifyReply, target: string, o: Origin) => {
    if (!oidc.ready) return sendError(reply, 'PORTICO_ERR_NOT_READY', true);
    const redirectUri = absolute(cfg.redirectUrl, o);
    if (!redirectUri) return sendError(reply, 'PORTICO_ERR_AUTHN_REQUIRED', true, 'cannot build the login redirect: the request has no valid Host');
    const state = client.randomState();
    const nonce = client.randomNonce();
    const codeVerifier = client.randomPKCECodeVerifier();
    const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
    const returnTo = safeReturnPath(target) ?? cfg.afterLoginUrl ?? '/';
    const sealed = await sealLoginState(keys.login, { state, nonce, codeVerifier, redirectUri, returnTo });
    const location = oidc.authorizationUrl({ redirectUri, state, nonce, codeChallenge });
    return reply
      .code(302)
      .header('cache-control', 'no-store')
      .header('location', location.href)
      .header(
        'set-cookie',
        serializeCookie(loginCookieName(state), sealed, {
          maxAge: LOGIN_STATE_TTL_SECONDS,
          path: new URL(redirectUri).pathname,
          secure: o.proto === 'https',
          sameSite: 'Lax', // must survive the top-level redirect back from the IdP
        }),
      )
      .send();
  };

  const callback = async (req: FastifyRequest, reply: FastifyReply, target: string, o: Origin) => {
    const query = new URL(target, 'http://portico.invalid').searchParams;
    const state = query.get('state');
    const clearLogin = (s: string) =>
      serializeCookie(loginCookieName(s), '', { maxAge: 0, path: callbackPath, secure: o.proto === 'https', sameSite: 'Lax' });
    if (query.get('error')) {
      const idpError = (query.get('error') ?? '').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64);
      log.info({ idpError }, 'IdP returned an error to the callback');
      return sendError(reply, 'PORTICO_ERR_IDP_DENIED', true, `The identity provider ended the login (${idpError}). Start again.`, state ? { 'set-cookie': clearLogin(state) } : {});
    }
    const code = query.get('code');
    if (!state || !code) return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true);
    const login = await openLoginState(keys.login, parseCookies(req.headers.cookie).get(loginCookieName(state)));
    if (!login || !sameString(login.state, state)) {
      log.info('callback without a matching login-state cookie (expired, replayed or forged)');
      return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true, undefined, { 'set-cookie': clearLogin(state) });
    }
    const stateKey = `state:${createHash('sha256').update(state).digest('base64url')}`;
    if (!(await store.claimOnce(stateKey, LOGIN_STATE_TTL_SECONDS * 1000))) {
      log.info('callback state already used (replay)');
      return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true, undefined, { 'set-cookie': clearLogin(state) });
    }
    const callbackUrl = new URL(login.redirectUri);
    for (const [k, v] of query) callbackUrl.searchParams.append(k, v);
    let tokens;
    try {
      tokens = await oidc.exchangeCode(callbackUrl, login);
    } catch (err) {
      if (err instanceof AuthserviceError) throw err;
      const oauthCode = oauthErrorCode(err);
      log.warn({ err: errorText(err), oauthCode }, 'authorization code exchange failed');
      if (oauthCode === 'invalid_grant') return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true, undefined, { 'set-cookie': clearLogin(state) });
      return sendError(reply, 'PORTICO_ERR_IDP', true);
    }
    const id = identityFromClaims(cfg, tokens.claims);
    if (!groupsAllowed(cfg, id.groups)) {
      log.info({ sub: id.sub }, 'login refused: no allowed group');
      return sendError(reply, 'PORTICO_ERR_FORBIDDEN_GROUP', true, undefined, { 'set-cookie': clearLogin(state) });
    }
    // Session fixation defence: always a fresh id; a session the browser already had is ended.
    const previous = await verifySessionCookie(keys.session, parseCookies(req.headers.cookie).get(cfg.session.cookieName));
    if (previous) await store.delete(previous.sid);
    const { cookie } = await issueSession(app.authservice, {
      identity: id,
      idToken: tokens.idToken,
      ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
      idTokenExp: typeof tokens.claims.exp === 'number' ? tokens.claims.exp : Math.floor(Date.now() / 1000) + 300,
    });
    log.info({ sub: id.sub, userid: id.userid }, 'login complete');
    return reply
      .code(302)
      .header('cache-control', 'no-store')
      .header('location', safeReturnPath(login.returnTo) ?? cfg.afterLoginUrl ?? '/')
      .header('set-cookie', [sessionCookie(cookie, o, cfg.session.maxAgeSeconds), clearLogin(state)])
      .send();
  };

  // ---- logout -----------------------------------------------------------------------------

  /** CSRF: the browser must prove the POST came from this origin (Fetch Metadata / Origin), or send a custom header. */
  const sameOriginProof = (req: FastifyRequest, o: Origin): boolean => {
    const origin = firstHeader(req.headers.origin);
    const site = firstHeader(req.headers['sec-fetch-site'])?.toLowerCase();
    if (origin !== undefined && (!o.host || origin.toLowerCase() !== `${o.proto}://${o.host}`)) return false;
    if (site !== undefined && site !== 'same-origin') return false;
    if (origin !== undefined || site !== undefined) return true;
    // Old clients with neither header: a custom header cannot be sent cross-site without a CORS preflight.
    return req.headers['x-requested-with'] !== undefined || req.headers['x-portico-csrf'] !== undefined;
  };

  const logout = async (req: FastifyRequest, reply: FastifyReply, o: Origin) => {
    const html = wantsHtml(req) && !req.headers['x-requested-with'];
    if (req.method !== 'POST') {
      return sendError(reply, 'PORTICO_ERR_METHOD', html, 'log out with POST (a link or GET cannot log you out)', { allow: 'POST' });
    }
    const claims = await verifySessionCookie(keys.session, parseCookies(req.headers.cookie).get(cfg.session.cookieName));
    if (!claims) return sendError(reply, 'PORTICO_ERR_AUTHN_REQUIRED', html, 'not logged in');
    if (!sameOriginProof(req, o)) {
      log.info({ origin: firstHeader(req.headers.origin), site: firstHeader(req.headers['sec-fetch-site']) }, 'logout refused: no same-origin proof');
      return sendError(reply, 'PORTICO_ERR_CSRF', html);
    }
    const record = await store.get(claims.sid);
    await store.delete(claims.sid);
    log.info({ sub: claims.sub }, 'logout');
    const after = absolute(cfg.afterLogoutUrl, o) ?? cfg.afterLogoutUrl;
    const target = oidc.endSessionUrl(record?.idToken, after)?.href ?? cfg.afterLogoutUrl;
    reply.header('set-cookie', sessionCookie('', o, 0)).header('cache-control', 'no-store');
    if (html) return reply.code(302).header('location', target).send();
    return reply.code(201).type('application/json').send({ afterLogoutURL: target });
  };

  // ---- check ------------------------------------------------------------------------------

  const check = async (req: FastifyRequest, reply: FastifyReply, target: string, path: string, o: Origin) => {
    const api = isApiRequest(cfg, {
      method: req.method,
      normalisedPath: path,
      accept: firstHeader(req.headers.accept),
      xRequestedWith: firstHeader(req.headers['x-requested-with']),
    });
    if (matchesAny(path, cfg.skipAuthPrefixes)) {
      req.log.debug({ path }, 'check: skip-auth path');
      return allow(reply, {});
    }
    const session = await loadSession(req);
    if (session) {
      if (!groupsAllowed(cfg, session.record.groups)) return sendError(reply, 'PORTICO_ERR_FORBIDDEN_GROUP', !api);
      req.log.debug({ path, sub: session.record.sub }, 'check: allowed by session');
      return allow(reply, identityHeaders(cfg, session.record));
    }
    const authz = firstHeader(req.headers.authorization);
    const bearer = authz && /^bearer\s+/i.test(authz) ? authz.replace(/^bearer\s+/i, '').trim() : undefined;
    if (bearer) {
      if (!oidc.ready) return sendError(reply, 'PORTICO_ERR_NOT_READY', false);
      const claims = await oidc.verifyIdToken(bearer);
      const id = identityFromClaims(cfg, claims);
      if (!groupsAllowed(cfg, id.groups)) return sendError(reply, 'PORTICO_ERR_FORBIDDEN_GROUP', false);
      req.log.debug({ path, sub: id.sub }, 'check: allowed by bearer ID token');
      return allow(reply, identityHeaders(cfg, id));
    }
    if (api) {
      return sendError(reply, 'PORTICO_ERR_AUTHN_REQUIRED', false, undefined, { 'www-authenticate': 'Bearer realm="portico"' });
    }
    return startLogin(reply, target, o);
  };

  // ---- dispatch ---------------------------------------------------------------------------

  const isForwarded = (req: FastifyRequest) => req.headers['x-forwarded-proto'] !== undefined || req.headers['x-forwarded-host'] !== undefined;

  app.all('*', async (req, reply) => {
    const raw = req.raw.url ?? '/';
    let target = raw;
    let stripped = false;
    if (cfg.checkPathPrefix && (raw === cfg.checkPathPrefix || raw.startsWith(`${cfg.checkPathPrefix}/`) || raw.startsWith(`${cfg.checkPathPrefix}?`))) {
      target = raw.slice(cfg.checkPathPrefix.length) || '/';
      if (!target.startsWith('/')) target = `/${target}`;
      stripped = true;
    }
    const path = normalisePath(target);
    const o = originOf(req);
    if (path === callbackPath && (req.method === 'GET' || req.method === 'HEAD')) return callback(req, reply, target, o);
    if (path === logoutPath) return logout(req, reply, o);
    if (!stripped && !isForwarded(req) && req.method === 'GET') {
      if (path === '/healthz') return reply.code(200).send({ status: 'ok' });
      if (path === '/readyz') {
        const storeOk = await store.ping();
        const ok = oidc.ready && storeOk;
        return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', oidc: oidc.ready, store: storeOk });
      }
    }
    return check(req, reply, target, path, o);
  });

  app.setErrorHandler((err, req, reply) => {
    const html = wantsHtml(req) && !req.headers['x-requested-with'];
    if (err instanceof AuthserviceError) {
      if (err.status >= 500) req.log.warn({ code: err.code }, err.message);
      return sendError(reply, err.code, html && err.code !== 'PORTICO_ERR_BAD_TOKEN', err.message);
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return reply.code(status).type('application/json').send({ error: 'PORTICO_ERR_BAD_REQUEST', message: 'bad request' });
    }
    if (isStoreError(err)) {
      req.log.warn({ err: errorText(err) }, 'session store unavailable');
      return sendError(reply, 'PORTICO_ERR_STORE', html);
    }
    req.log.error({ err: errorText(err) }, 'unexpected error');
    return sendError(reply, 'PORTICO_ERR_INTERNAL', html);
  });

  return app as unknown as FastifyInstance;
}
