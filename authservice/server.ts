/**
 * The authservice HTTP server: an Envoy ext_authz (HTTP service) check endpoint plus the
 * authservice's own endpoints. Composition root: builds the store, the OIDC relying party and
 * the routes, and closes everything in onClose.
 *
 * Every request is dispatched by its (prefix-stripped, normalised) path:
 *   GET  <prefix>/oidc/callback   finish a login (302 or an error page); other methods 405
 *   POST <prefix>/logout          log out (CSRF-protected): 303 for pages, 401 JSON for scripts; other methods 405
 *   anything else                 ext_authz check: 2xx allow (+identity headers), else deny as is
 * The own endpoints work both when the gateway routes them here directly and when they arrive
 * as check requests (Kubeflow's setup): they never answer 2xx, so a check can't turn into "allow"
 * and lose the answer's Set-Cookie. Health and metrics are on another port (health.ts).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fastify, LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as client from 'openid-client';
import type { Logger } from 'pino';
import type { AuthserviceConfig } from './config.ts';
import { printableConfig } from './config.ts';
import {
  deriveCookieKeys,
  LOGIN_SLOTS,
  LOGIN_STATE_TTL_SECONDS,
  loginCookieName,
  loginId,
  loginMarkerName,
  openLoginState,
  cookieValue,
  parseCookies,
  pendingLogins,
  sealLoginState,
  serializeCookie,
  verifySessionCookie,
} from './cookies.ts';
import { formatSessionCacheDirective, SESSION_CACHE_HEADER, VerifiedSessionCookies } from '../lib/session-cookie.ts';
import type { CookieKeys } from './cookies.ts';
import { AUTHSERVICE_ERRORS, AuthserviceError } from './errors.ts';
import type { AuthserviceErrorCode } from './errors.ts';
import { groupsAllowed, identityFromClaims, identityHeaders, isApiRequest, mayStartLogin } from './identity.ts';
import { createAuthserviceLogger } from './logger.ts';
import { errorText, OidcRelyingParty, oauthErrorCode, staleLoginReason } from './oidc.ts';
import { PAGE_CSP, renderPage } from './pages/index.ts';
import { asDirectories, belowAny, normalisePath, safeReturnPath } from './paths.ts';
import { listenHealth } from './health.ts';
import type { HealthListener } from './health.ts';
import { registerAuthserviceMetrics } from './metrics.ts';
import { registerAuthserviceTracing } from './tracing.ts';
import type { AuthserviceMetrics } from './metrics.ts';
import { MemorySessionStore } from './session/memory.ts';
import { issueSession, sessionTtlMs } from './session/issue.ts';
import { RedisSessionStore } from './session/redis.ts';
import type { SessionRecord, SessionStore } from './session/store.ts';

export interface AuthserviceRuntime {
  config: AuthserviceConfig;
  oidc: OidcRelyingParty;
  store: SessionStore;
  keys: CookieKeys;
  metrics: AuthserviceMetrics;
  /**
   * Starts the probe listener (/healthz, /readyz, /metrics) on its own port; defaults to
   * READINESS_PROBE_PORT and SERVER_HOSTNAME. Closed with the app.
   */
  listenHealth(opts?: { port?: number; host?: string }): Promise<HealthListener>;
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
  /** False when neither x-forwarded-proto nor the configured public origin told us the scheme. */
  protoKnown: boolean;
  host: string | undefined;
}

/**
 * Logout's answer to scripts. Not 2xx (a 2xx on the check path means "allow"); 401 because the
 * caller is no longer authenticated. The body says it was a logout, not a failure.
 */
export const LOGOUT_API_STATUS = 401;

const HOST_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Trace context headers: a check carrying one goes through Fastify, where the span is recorded. */
const TRACE_HEADERS = ['traceparent', 'b3', 'x-b3-traceid'] as const;

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
  // Checks with a valid session are answered on node:http directly (see fastCheck below); all
  // else goes to Fastify. Set once the closures it needs exist.
  let fastCheck: ((req: IncomingMessage, res: ServerResponse, slow: NodeHandler) => void) | undefined;
  const app = fastify({
    serverFactory: (handler) => {
      const server = createServer((req, res) => (fastCheck ? fastCheck(req, res, handler) : handler(req, res)));
      server.keepAliveTimeout = 72_000; // Fastify's default, which it applies only to servers it creates
      return server;
    },
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
  /** Session cookie values that verified (signature memo; the store still decides every check). */
  const verifiedCookies = new VerifiedSessionCookies(keys.session, 10_000);
  const healthListeners: HealthListener[] = [];
  const runtime: Omit<AuthserviceRuntime, 'metrics'> & { metrics?: AuthserviceMetrics } = {
    config: cfg,
    oidc,
    store,
    keys,
    listenHealth: async (opts = {}) => {
      const metrics = app.authservice.metrics;
      const listener = await listenHealth(
        { oidcReady: () => oidc.ready, storePing: () => store.ping(), metrics: () => metrics.render() },
        { port: opts.port ?? cfg.healthPort, host: opts.host ?? cfg.host },
      );
      healthListeners.push(listener);
      return listener;
    },
  };
  app.decorate('authservice', runtime as AuthserviceRuntime);
  runtime.metrics = registerAuthserviceMetrics(app);
  if (cfg.otlpEndpoint) registerAuthserviceTracing(app, { endpoint: cfg.otlpEndpoint });
  if (cfg.cookieSecretGenerated) {
    log.warn('PORTICO_COOKIE_SECRET is not set: generated a random one; sessions will not survive a restart or be shared by replicas');
  }
  log.info({ config: printableConfig(cfg) }, 'authservice configured');
  void oidc.start();

  app.addHook('onClose', async () => {
    await Promise.all(healthListeners.map((l) => l.close()));
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
  const skipAuthDirs = asDirectories(cfg.skipAuthPrefixes);
  /** Paths whose answer does not depend on the session alone: a gateway's fast path always asks about them. */
  const gatewayBypass: readonly string[] = Object.freeze([callbackPath, logoutPath, ...skipAuthDirs]);

  /**
   * The SESSION_CACHE_HEADER value for an allow by `record` (lib/session-cookie.ts), or undefined
   * when a gateway must not reuse it. The TTL (PORTICO_GATEWAY_SESSION_TTL) is cut so that the
   * next check reaches the authservice before anything it would decide differently: the session's
   * absolute expiry, a due refresh, a forwarded ID token's expiry, and (at half) the idle timeout,
   * which slides only on checks that reach the store.
   */
  const gatewayDirective = (record: SessionRecord): string | undefined => {
    if (cfg.session.gatewayTtlSeconds <= 0) return undefined;
    const now = Date.now() / 1000;
    let ttl = Math.min(cfg.session.gatewayTtlSeconds, record.expiresAt / 1000 - now);
    if (record.refreshToken !== undefined) ttl = Math.min(ttl, record.idTokenExp - cfg.session.refreshSkewSeconds - now);
    if (cfg.idTokenHeader) ttl = Math.min(ttl, record.idTokenExp - now);
    if (cfg.session.idleTimeoutSeconds > 0) ttl = Math.min(ttl, cfg.session.idleTimeoutSeconds / 2);
    ttl = Math.floor(ttl);
    return ttl >= 1 ? formatSessionCacheDirective({ ttl, cookie: cfg.session.cookieName, bypass: gatewayBypass }) : undefined;
  };

  // ---- helpers ---------------------------------------------------------------------------

  /**
   * The original request's origin: x-forwarded-proto + x-forwarded-host, else Host (Envoy and
   * Portico send the original authority as the check's Host), else the configured public origin
   * (absolute REDIRECT_URL / AUTHSERVICE_URL_PREFIX). Without x-forwarded-proto the scheme comes
   * from the public origin when the host is the same, else it is unknown and taken as http.
   */
  const originOf = (req: FastifyRequest): Origin => {
    const validHost = (h: string | undefined) => (h && HOST_RE.test(h) ? h.toLowerCase() : undefined);
    const host = validHost(firstHeader(req.headers['x-forwarded-host'])) ?? validHost(firstHeader(req.headers.host)) ?? cfg.publicOrigin?.host;
    const xfp = firstHeader(req.headers['x-forwarded-proto'])?.toLowerCase();
    if (xfp === 'https' || xfp === 'http') return { proto: xfp, protoKnown: true, host };
    if (cfg.publicOrigin && host === cfg.publicOrigin.host) return { proto: cfg.publicOrigin.proto, protoKnown: true, host };
    return { proto: 'http', protoKnown: false, host };
  };

  /** A configured URL made absolute for this request (relative values are paths on the request's origin). */
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

  const fresh = (r: SessionRecord) => r.idTokenExp - Date.now() / 1000 > cfg.session.refreshSkewSeconds;

  /**
   * The live session a Cookie header names, without refreshing it; `stale` when its ID token is
   * due for a refresh (refresh token held, issuer discovered). The cookie's `sub` is
   * authenticated by its HMAC, so tying it to the record is a plain compare: no secret is
   * compared there (the record's `sub` is ours too).
   */
  const sessionOf = async (cookieHeader: string | string[] | undefined): Promise<{ sid: string; record: SessionRecord; stale: boolean } | undefined> => {
    const claims = verifiedCookies.claims(cookieValue(cookieHeader, cfg.session.cookieName));
    if (!claims) return undefined;
    const record = await store.get(claims.sid);
    if (!record || record.sub !== claims.sub || record.expiresAt <= Date.now()) return undefined;
    return { sid: claims.sid, record, stale: record.refreshToken !== undefined && oidc.ready && !fresh(record) };
  };

  /** The live session behind the request's cookie, refreshed when its ID token is about to expire. */
  const loadSession = async (req: FastifyRequest): Promise<{ sid: string; record: SessionRecord } | undefined> => {
    const s = await sessionOf(req.headers.cookie);
    if (!s) return undefined;
    const record = s.stale ? await maybeRefresh(s.sid, s.record) : s.record;
    if (!record) return undefined;
    if (cfg.session.idleTimeoutSeconds > 0) await store.touch(s.sid, ttlFor(record));
    return { sid: s.sid, record };
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

  /** What an allow by session hands upstream: the identity headers, and the ID token when ID_TOKEN_HEADER asks. */
  const sessionHeaders = (record: SessionRecord): Record<string, string> => {
    const headers = identityHeaders(cfg, record);
    if (cfg.idTokenHeader) headers[cfg.idTokenHeader] = `Bearer ${record.idToken}`;
    return headers;
  };

  const allow = (reply: FastifyReply, headers: Record<string, string>) => {
    reply.code(200).header('cache-control', 'no-store');
    for (const [k, v] of Object.entries(headers)) reply.header(k, v);
    return reply.send();
  };

  // ---- login ------------------------------------------------------------------------------

  const startLogin = async (req: FastifyRequest, reply: FastifyReply, target: string, o: Origin) => {
    if (!oidc.ready) return sendError(reply, 'PORTICO_ERR_NOT_READY', true);
    const redirectUri = absolute(cfg.redirectUrl, o);
    const browserAuthUrl = cfg.authUrl === undefined ? undefined : absolute(cfg.authUrl, o);
    if (!redirectUri || (cfg.authUrl !== undefined && !browserAuthUrl)) {
      return sendError(reply, 'PORTICO_ERR_AUTHN_REQUIRED', true, 'cannot build the login redirect: the request has no valid Host or x-forwarded-host, and REDIRECT_URL is not absolute');
    }
    const state = client.randomState();
    const nonce = client.randomNonce();
    const codeVerifier = client.randomPKCECodeVerifier();
    const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
    const returnTo = safeReturnPath(target) ?? cfg.afterLoginUrl ?? '/';
    const sealed = await sealLoginState(keys.login, { state, nonce, codeVerifier, redirectUri, returnTo });
    const location = oidc.authorizationUrl({ redirectUri, state, nonce, codeChallenge }, browserAuthUrl);
    // Bounded: at most LOGIN_SLOTS attempts pending; the oldest are evicted to make room.
    const id = loginId(state);
    const secure = o.proto === 'https';
    const cookies: string[] = [];
    const pending = pendingLogins(parseCookies(req.headers.cookie));
    for (const old of pending.slice(0, Math.max(0, pending.length - LOGIN_SLOTS + 1))) cookies.push(...clearLoginCookies(old, secure));
    cookies.push(
      serializeCookie(loginCookieName(id), sealed, {
        maxAge: LOGIN_STATE_TTL_SECONDS,
        path: new URL(redirectUri).pathname,
        secure,
        sameSite: 'Lax', // must survive the top-level redirect back from the IdP
      }),
      serializeCookie(loginMarkerName(id), String(Date.now()), { maxAge: LOGIN_STATE_TTL_SECONDS, path: '/', secure, sameSite: 'Lax' }),
    );
    return reply.code(302).header('cache-control', 'no-store').header('location', location.href).header('set-cookie', cookies).send();
  };

  /** Set-Cookie values that end one login attempt (its state cookie and its marker). */
  const clearLoginCookies = (id: string, secure: boolean): string[] => [
    serializeCookie(loginCookieName(id), '', { maxAge: 0, path: callbackPath, secure, sameSite: 'Lax' }),
    serializeCookie(loginMarkerName(id), '', { maxAge: 0, path: '/', secure, sameSite: 'Lax' }),
  ];

  const callback = async (req: FastifyRequest, reply: FastifyReply, target: string, o: Origin) => {
    const query = new URL(target, 'http://portico.invalid').searchParams;
    const state = query.get('state');
    const clearing: Record<string, string[]> = state ? { 'set-cookie': clearLoginCookies(loginId(state), o.proto === 'https') } : {};
    if (query.get('error')) {
      const idpError = (query.get('error') ?? '').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64);
      log.info({ idpError }, 'IdP returned an error to the callback');
      return sendError(reply, 'PORTICO_ERR_IDP_DENIED', true, `The identity provider ended the login (${idpError}). Start again.`, clearing);
    }
    const code = query.get('code');
    if (!state || !code) return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true);
    const login = await openLoginState(keys.login, parseCookies(req.headers.cookie).get(loginCookieName(loginId(state))));
    if (!login || !sameString(login.state, state)) {
      log.info('callback without a matching login-state cookie (expired, evicted, replayed or forged)');
      return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true, undefined, clearing);
    }
    const stateKey = `state:${createHash('sha256').update(state).digest('base64url')}`;
    if (!(await store.claimOnce(stateKey, LOGIN_STATE_TTL_SECONDS * 1000))) {
      log.info('callback state already used (replay)');
      return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true, undefined, clearing);
    }
    const callbackUrl = new URL(login.redirectUri);
    for (const [k, v] of query) callbackUrl.searchParams.append(k, v);
    let tokens;
    try {
      tokens = await oidc.exchangeCode(callbackUrl, login);
    } catch (err) {
      if (err instanceof AuthserviceError) throw err;
      const stale = staleLoginReason(err);
      log.warn({ err: errorText(err), oauthCode: oauthErrorCode(err), stale }, 'authorization code exchange failed');
      if (stale) return sendError(reply, 'PORTICO_ERR_LOGIN_STATE', true, undefined, clearing);
      return sendError(reply, 'PORTICO_ERR_IDP', true);
    }
    const id = identityFromClaims(cfg, tokens.claims);
    if (!groupsAllowed(cfg, id.groups)) {
      log.info({ sub: id.sub }, 'login refused: no allowed group');
      return sendError(reply, 'PORTICO_ERR_FORBIDDEN_GROUP', true, undefined, clearing);
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
      .header('set-cookie', [sessionCookie(cookie, o, cfg.session.maxAgeSeconds), ...clearLoginCookies(loginId(state), o.proto === 'https')])
      .send();
  };

  // ---- logout -----------------------------------------------------------------------------

  /**
   * CSRF: proof that the POST came from a page of this origin. Returns undefined when proven,
   * else why not, naming the header that was missing or wrong (operators read this to fix their
   * ext_authz allowed_headers). Accepted, in order:
   *  - `Origin` equal to this origin (either scheme when the scheme is unknown, see originOf);
   *  - `Sec-Fetch-Site: same-origin` (a different value refuses, whatever else is sent);
   *  - when neither is sent: a header a cross-site page cannot send without a CORS preflight that
   *    nobody answers: `X-Requested-With`, `X-Portico-CSRF`, or `Authorization: Bearer …`
   *    (oidc-authservice's own logout convention; Kubeflow's filter forwards `authorization`).
   * The SameSite=Lax session cookie alone is not accepted: it does not stop same-site pages
   * (sibling subdomains) nor browsers that ignore SameSite. See docs/authservice.md.
   */
  const sameOriginProof = (req: FastifyRequest, o: Origin): string | undefined => {
    const origin = firstHeader(req.headers.origin)?.toLowerCase();
    const site = firstHeader(req.headers['sec-fetch-site'])?.toLowerCase();
    if (site !== undefined && site !== 'same-origin') return `Sec-Fetch-Site is '${site.slice(0, 20)}', not same-origin`;
    if (origin !== undefined) {
      if (!o.host) return 'Origin cannot be compared: the check request has neither x-forwarded-host nor a valid Host header';
      const want = o.protoKnown ? [`${o.proto}://${o.host}`] : [`https://${o.host}`, `http://${o.host}`];
      if (!want.includes(origin)) {
        return `Origin '${origin.slice(0, 100)}' is not this site (${want.join(' or ')})${o.protoKnown ? '' : '; x-forwarded-proto was not received'}`;
      }
      return undefined;
    }
    if (site === 'same-origin') return undefined;
    const authz = firstHeader(req.headers.authorization);
    if (req.headers['x-requested-with'] !== undefined || req.headers['x-portico-csrf'] !== undefined || (authz && /^bearer\s+\S/i.test(authz))) return undefined;
    return (
      'the request carried none of the headers that prove it came from this site: Origin, Sec-Fetch-Site ' +
      '(browsers send both on every POST, so if this request went through the gateway\'s ext_authz check, add "origin" and ' +
      '"sec-fetch-site" to its allowed_headers / includeRequestHeadersInCheck, or route the logout path to the authservice directly), ' +
      'or, from scripts, X-Requested-With or Authorization: Bearer'
    );
  };

  /**
   * Logout never answers 2xx: on the ext_authz check path any 2xx means "allow", and the request
   * would continue upstream without the cookie-clearing answer. Pages (Accept: text/html) get
   * 303 See Other to the after-logout URL; scripts get 401 (they are no longer authenticated) with
   * `{"loggedOut": true, "afterLogoutURL": …}`. oidc-authservice answers scripts 201; see docs.
   * Without a valid session there is nothing to end and no CSRF to fear: same answer (idempotent).
   */
  const logout = async (req: FastifyRequest, reply: FastifyReply, o: Origin) => {
    // A script: X-Requested-With, Accept without HTML, or oidc-authservice's `Authorization: Bearer`
    // logout convention (the one hint Kubeflow's filter as written forwards).
    const bearer = /^bearer\s+\S/i.test(firstHeader(req.headers.authorization) ?? '');
    const html = wantsHtml(req) && !req.headers['x-requested-with'] && !bearer;
    if (req.method !== 'POST') {
      return sendError(reply, 'PORTICO_ERR_METHOD', html, 'log out with POST (a link or GET cannot log you out)', { allow: 'POST' });
    }
    const claims = await verifySessionCookie(keys.session, parseCookies(req.headers.cookie).get(cfg.session.cookieName));
    let record: SessionRecord | undefined;
    if (claims) {
      const refusal = sameOriginProof(req, o);
      if (refusal) {
        log.info({ origin: firstHeader(req.headers.origin), site: firstHeader(req.headers['sec-fetch-site']), why: refusal }, 'logout refused: no same-origin proof');
        return sendError(reply, 'PORTICO_ERR_CSRF', html, `logout refused: ${refusal}`);
      }
      record = await store.get(claims.sid);
      await store.delete(claims.sid);
      log.info({ sub: claims.sub }, 'logout');
    }
    const after = absolute(cfg.afterLogoutUrl, o) ?? cfg.afterLogoutUrl;
    const target = (claims ? oidc.endSessionUrl(record?.idToken, after)?.href : undefined) ?? cfg.afterLogoutUrl;
    reply.header('set-cookie', sessionCookie('', o, 0)).header('cache-control', 'no-store');
    if (html) return reply.code(303).header('location', target).send();
    return reply
      .code(LOGOUT_API_STATUS)
      .header('www-authenticate', 'Bearer realm="portico"')
      .type('application/json')
      .send({ loggedOut: true, afterLogoutURL: target });
  };

  // ---- check ------------------------------------------------------------------------------

  const check = async (req: FastifyRequest, reply: FastifyReply, target: string, path: string, o: Origin) => {
    const api = isApiRequest(cfg, {
      method: req.method,
      normalisedPath: path,
      accept: firstHeader(req.headers.accept),
      xRequestedWith: firstHeader(req.headers['x-requested-with']),
    });
    if (belowAny(path, skipAuthDirs)) {
      req.log.debug({ path }, 'check: skip-auth path');
      return allow(reply, {});
    }
    const session = await loadSession(req);
    if (session) {
      if (!groupsAllowed(cfg, session.record.groups)) return sendError(reply, 'PORTICO_ERR_FORBIDDEN_GROUP', !api);
      req.log.debug({ path, sub: session.record.sub }, 'check: allowed by session');
      const directive = gatewayDirective(session.record);
      return allow(reply, directive ? { ...sessionHeaders(session.record), [SESSION_CACHE_HEADER]: directive } : sessionHeaders(session.record));
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
    // A script, or a page's sub-resource (an image, a stylesheet, a fetch): a redirect to the
    // login page cannot help it, and each attempt would evict a real navigation's login state.
    if (api || !mayStartLogin({ accept: req.headers.accept, secFetchDest: firstHeader(req.headers['sec-fetch-dest']) })) {
      return sendError(reply, 'PORTICO_ERR_AUTHN_REQUIRED', false, undefined, { 'www-authenticate': 'Bearer realm="portico"' });
    }
    return startLogin(req, reply, target, o);
  };

  // ---- dispatch ---------------------------------------------------------------------------

  /** The request target with PORTICO_CHECK_PATH_PREFIX removed, and its normalised path. */
  const routeOf = (raw: string): { target: string; path: string } => {
    let target = raw;
    if (cfg.checkPathPrefix && (raw === cfg.checkPathPrefix || raw.startsWith(`${cfg.checkPathPrefix}/`) || raw.startsWith(`${cfg.checkPathPrefix}?`))) {
      target = raw.slice(cfg.checkPathPrefix.length) || '/';
      if (!target.startsWith('/')) target = `/${target}`;
    }
    // Not normalisable (bad escapes): '' is under no skip prefix and is no login path, so it needs a session.
    return { target, path: normalisePath(target, cfg.pathNormalization) ?? '' };
  };

  app.all('*', async (req, reply) => {
    const { target, path } = routeOf(req.raw.url ?? '/');
    const o = originOf(req);
    if (path === callbackPath) {
      if (req.method === 'GET' || req.method === 'HEAD') return callback(req, reply, target, o);
      return sendError(reply, 'PORTICO_ERR_METHOD', wantsHtml(req), 'the login callback is reached by GET from the identity provider', { allow: 'GET, HEAD' });
    }
    if (path === logoutPath) return logout(req, reply, o);
    return check(req, reply, target, path, o);
  });

  // ---- the check's fast path -----------------------------------------------------------------

  /** A 200 without identity (skip-auth paths), as the Fastify path answers it. */
  const SKIP_ANSWER: readonly string[] = Object.freeze(['cache-control', 'no-store', 'content-length', '0']);
  /** The allow answer's headers per session record (the memory store hands out the same frozen record each time). */
  const answers = new WeakMap<SessionRecord, readonly string[]>();
  const allowAnswer = (record: SessionRecord): readonly string[] => {
    let a = answers.get(record);
    if (!a) {
      const list = ['cache-control', 'no-store', 'content-length', '0'];
      for (const [k, v] of Object.entries(sessionHeaders(record))) list.push(k, v);
      answers.set(record, (a = list));
    }
    return a;
  };

  /**
   * The answer to a check that the fast path can give, as flat response headers of a 200, or
   * undefined to leave the request to Fastify: the authservice's own endpoints, no or no valid
   * session, a session due for a refresh, a group that is not allowed, a traced request. The
   * decisions are the same functions the Fastify path uses (sessionOf, belowAny, groupsAllowed,
   * identityHeaders); only the per-request framework work (routing, request/reply objects,
   * child logger, hooks) is skipped.
   */
  const fastAnswer = async (req: IncomingMessage): Promise<readonly string[] | undefined> => {
    if (cfg.otlpEndpoint && TRACE_HEADERS.some((h) => req.headers[h] !== undefined)) return undefined;
    const { path } = routeOf(req.url ?? '/');
    if (path === callbackPath || path === logoutPath) return undefined;
    if (belowAny(path, skipAuthDirs)) return SKIP_ANSWER;
    const s = await sessionOf(req.headers.cookie);
    if (!s || s.stale || !groupsAllowed(cfg, s.record.groups)) return undefined;
    if (cfg.session.idleTimeoutSeconds > 0) await store.touch(s.sid, ttlFor(s.record));
    const directive = gatewayDirective(s.record);
    return directive ? [...allowAnswer(s.record), SESSION_CACHE_HEADER, directive] : allowAnswer(s.record);
  };

  fastCheck = (req, res, slow) => {
    fastAnswer(req).then(
      (headers) => {
        if (!headers) return slow(req, res);
        try {
          res.writeHead(200, headers as string[]);
        } catch {
          return slow(req, res); // a header value Node refuses: Fastify answers with its error path
        }
        res.end();
        runtime.metrics?.checks.allow.inc();
      },
      () => slow(req, res),
    );
  };

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
