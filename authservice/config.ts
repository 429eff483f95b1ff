/**
 * Authservice configuration from environment variables. Names and meanings follow
 * arrikto/oidc-authservice (so Kubeflow users can switch without relearning); Portico's own
 * additions start with PORTICO_. Parsing is pure: `env` in, a frozen config out, or one
 * AuthserviceConfigError listing every problem with the variable that caused it.
 * Secrets never appear in error messages.
 */
import { DEFAULT_PATH_NORMALIZATION, parsePathNormalization, PATH_NORMALIZATIONS, type PathNormalization } from '../lib/path.ts';
import { randomBytes } from 'node:crypto';
import { AuthserviceConfigError } from './errors.ts';

export type SameSite = 'Lax' | 'Strict' | 'None';

export interface HostPort {
  host: string;
  port: number;
}

/** Where the Redis session store lives. See docs/authservice.md for the URL forms. */
export type RedisTarget =
  | ({ mode: 'single'; tls: boolean; db: number } & HostPort & RedisAuth)
  | ({ mode: 'sentinel'; sentinels: HostPort[]; name: string; tls: boolean; db: number; sentinelPassword?: string } & RedisAuth)
  | ({ mode: 'cluster'; nodes: HostPort[]; tls: boolean } & RedisAuth);

export interface RedisAuth {
  username?: string;
  password?: string;
}

export interface AuthserviceConfig {
  /** OIDC issuer (OIDC_PROVIDER); discovery reads `<issuer>/.well-known/openid-configuration`. */
  issuer: URL;
  /**
   * Browser-facing authorization endpoint override (OIDC_AUTH_URL): an absolute URL, or a path
   * (Kubeflow's `/dex/auth`) resolved per request against the original request's origin.
   */
  authUrl?: string;
  /**
   * Origin of the protected site when the configuration names one (absolute REDIRECT_URL, else
   * absolute AUTHSERVICE_URL_PREFIX): the fallback origin when a check request has no usable
   * Host, and the scheme when it has no x-forwarded-proto but the same host.
   */
  publicOrigin?: { proto: 'http' | 'https'; host: string };
  /** Allow plain-http issuers (loopback issuers are always allowed). */
  allowInsecureIssuer: boolean;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
  /** REDIRECT_URL: absolute URL, or a path resolved against each request's forwarded origin. */
  redirectUrl: string;
  /** Path part of AUTHSERVICE_URL_PREFIX without trailing slash, e.g. `/authservice`. */
  urlPrefix: string;
  /** Prefix the gateway puts in front of the original path on check requests (ext_authz path_prefix). */
  checkPathPrefix: string;
  skipAuthPrefixes: readonly string[];
  apiPathPrefixes: readonly string[];
  /**
   * PORTICO_PATH_NORMALIZATION: how request paths are normalised before SKIP_AUTH_URLS and the
   * callback/logout paths are matched. Must equal the gateway's MeshConfig
   * `pathNormalization.normalization` (same values, default BASE as in Istio) so both see one path.
   */
  pathNormalization: PathNormalization;
  useridClaim: string;
  useridHeader: string;
  useridPrefix: string;
  groupsClaim: string;
  groupsHeader: string;
  /**
   * ID_TOKEN_HEADER: when set, an allowed check also passes the session's ID token upstream in
   * this header as `Bearer <token>` (oauth2-proxy's `--set-authorization-header`), so a
   * RequestAuthentication behind the gateway (Kubeflow ≥ 1.9's `require-jwt` policy) sees a
   * verified principal for browser sessions too.
   */
  idTokenHeader?: string;
  /** `'*'` allows everyone. */
  groupsAllowlist: '*' | readonly string[];
  afterLoginUrl?: string;
  afterLogoutUrl: string;
  session: {
    storeType: 'memory' | 'redis';
    redis?: RedisTarget;
    redisKeyPrefix: string;
    maxAgeSeconds: number;
    /** 0 disables the idle timeout. */
    idleTimeoutSeconds: number;
    sameSite: SameSite;
    cookieName: string;
    memoryMaxEntries: number;
    /** Refresh the ID token this many seconds before it expires. */
    refreshSkewSeconds: number;
    /** PORTICO_GATEWAY_SESSION_TTL: seconds a gateway holding the cookie key may reuse a session's allow (0: never; lib/session-cookie.ts). */
    gatewayTtlSeconds: number;
  };
  cookieSecret: Uint8Array;
  /** True when PORTICO_COOKIE_SECRET was absent and a random one was generated. */
  cookieSecretGenerated: boolean;
  host: string;
  port: number;
  /** READINESS_PROBE_PORT (oidc-authservice's name): /healthz, /readyz and /metrics, never on `port`. */
  healthPort: number;
  logLevel: string;
  /** PORTICO_OTLP_ENDPOINT (else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): where check spans go; absent = no tracing. */
  otlpEndpoint?: string;
}

type Env = Record<string, string | undefined>;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const COOKIE_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parses the authservice configuration from `env` (usually process.env). */
export function loadAuthserviceConfig(env: Env): AuthserviceConfig {
  const problems: string[] = [];
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === '' ? undefined : v;
  };
  const required = (name: string): string => {
    const v = get(name);
    if (v === undefined) problems.push(`${name}: required but not set`);
    return v ?? '';
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name}: want an integer between ${min} and ${max}, got '${raw}'`);
      return fallback;
    }
    return Number(raw);
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = get(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
    if (['0', 'false', 'off', 'no'].includes(raw)) return false;
    problems.push(`${name}: want true or false, got '${raw}'`);
    return fallback;
  };
  const header = (name: string, fallback: string): string => {
    const v = (get(name) ?? fallback).toLowerCase();
    if (!HEADER_NAME.test(v)) problems.push(`${name}: '${v}' is not a valid HTTP header name`);
    return v;
  };
  const url = (name: string, value: string | undefined): URL | undefined => {
    if (value === undefined) return undefined;
    try {
      const u = new URL(value);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      return u;
    } catch {
      problems.push(`${name}: want an absolute http(s) URL, got '${value}'`);
      return undefined;
    }
  };

  const issuerRaw = required('OIDC_PROVIDER');
  const parsedIssuer = url('OIDC_PROVIDER', issuerRaw || undefined);
  const issuer = parsedIssuer ?? new URL('http://invalid.invalid');
  // oidc-authservice parses its URL settings with Go's url.Parse, so relative references work there;
  // Kubeflow's params.env sets OIDC_AUTH_URL=/dex/auth. A path is resolved per request.
  const urlOrPath = (name: string, value: string | undefined): string | undefined => {
    if (value === undefined) return undefined;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value)) return url(name, value)?.href;
    if (!value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\') || /[\s\\]/.test(value)) {
      problems.push(`${name}: want an absolute http(s) URL or a path starting with '/', got '${value}'`);
      return undefined;
    }
    return value;
  };
  const authUrl = urlOrPath('OIDC_AUTH_URL', get('OIDC_AUTH_URL'));
  const allowInsecureIssuer = bool('PORTICO_OIDC_ALLOW_INSECURE', false);
  if (issuer.protocol === 'http:' && !allowInsecureIssuer && !isLoopback(issuer.hostname) && parsedIssuer) {
    problems.push(
      `OIDC_PROVIDER: '${issuerRaw}' is plain http and not loopback; use https or set PORTICO_OIDC_ALLOW_INSECURE=true (development only)`,
    );
  }
  const clientId = required('CLIENT_ID');
  const clientSecret = get('CLIENT_SECRET') ?? '';

  // oidc-authservice: comma separated, default `openid,email`, `openid` always added. Kubeflow's
  // manifests set "profile email groups" (space separated), so both separators are accepted.
  const scopes = [...new Set(['openid', ...(get('OIDC_SCOPES') ?? 'openid,email').split(/[\s,]+/).filter(Boolean)])];

  // AUTHSERVICE_URL_PREFIX may be a path (`/authservice/`) or an absolute URL (`https://kf.example.com/authservice/`).
  const prefixRaw = get('AUTHSERVICE_URL_PREFIX') ?? '/authservice';
  let prefixOrigin: string | undefined;
  let urlPrefix = prefixRaw;
  if (/^https?:\/\//i.test(prefixRaw)) {
    const u = url('AUTHSERVICE_URL_PREFIX', prefixRaw);
    prefixOrigin = u?.origin;
    urlPrefix = u?.pathname ?? '/authservice';
  }
  urlPrefix = urlPrefix.replace(/\/+$/, '');
  if (!/^\/[A-Za-z0-9._~\/-]*$/.test(urlPrefix) || urlPrefix.includes('..') || urlPrefix.includes('//')) {
    problems.push(`AUTHSERVICE_URL_PREFIX: want a path like /authservice, got '${prefixRaw}'`);
    urlPrefix = '/authservice';
  }

  const redirectRaw = get('REDIRECT_URL') ?? `${prefixOrigin ?? ''}${urlPrefix}/oidc/callback`;
  urlOrPath('REDIRECT_URL', redirectRaw);
  const originOfUrl = (u: string | undefined): { proto: 'http' | 'https'; host: string } | undefined => {
    if (!u || !/^https?:\/\//i.test(u)) return undefined;
    try {
      const parsed = new URL(u);
      return { proto: parsed.protocol === 'https:' ? 'https' : 'http', host: parsed.host.toLowerCase() };
    } catch {
      return undefined;
    }
  };
  const publicOrigin = originOfUrl(redirectRaw) ?? originOfUrl(prefixOrigin);

  const checkPathPrefix = (get('PORTICO_CHECK_PATH_PREFIX') ?? '').replace(/\/+$/, '');
  if (checkPathPrefix && !/^\/[A-Za-z0-9._~\/-]*$/.test(checkPathPrefix)) {
    problems.push(`PORTICO_CHECK_PATH_PREFIX: want a path like /check, got '${checkPathPrefix}'`);
  }

  const pathList = (name: string): string[] => {
    const items = (get(name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    for (const p of items) {
      if (!p.startsWith('/') || p.includes('?') || p.includes('#') || /(^|\/)\.\.?(\/|$)/.test(p)) {
        problems.push(`${name}: '${p}' must be a plain path prefix starting with '/' (no query, no dot segments)`);
      }
    }
    return items;
  };
  const skipAuthPrefixes = pathList('SKIP_AUTH_URLS');
  const pathNormalization = parsePathNormalization(get('PORTICO_PATH_NORMALIZATION'));
  if (pathNormalization === undefined) {
    problems.push(`PORTICO_PATH_NORMALIZATION: want one of DEFAULT, ${PATH_NORMALIZATIONS.join(', ')} (MeshConfig pathNormalization), got '${get('PORTICO_PATH_NORMALIZATION')}'`);
  }
  const apiPathPrefixes = pathList('PORTICO_API_PATHS');

  const allowRaw = get('GROUPS_ALLOWLIST') ?? '*';
  const allowItems = allowRaw.split(',').map((s) => s.trim()).filter(Boolean);
  const groupsAllowlist: '*' | string[] = allowItems.includes('*') ? '*' : allowItems;

  const storeTypeRaw = (get('SESSION_STORE_TYPE') ?? 'memory').toLowerCase();
  let storeType: 'memory' | 'redis' = 'memory';
  if (storeTypeRaw === 'redis') storeType = 'redis';
  else if (storeTypeRaw === 'boltdb') {
    problems.push(`SESSION_STORE_TYPE: 'boltdb' is oidc-authservice's file store; Portico supports 'memory' or 'redis'`);
  } else if (storeTypeRaw !== 'memory') {
    problems.push(`SESSION_STORE_TYPE: want 'memory' or 'redis', got '${storeTypeRaw}'`);
  }

  let redis: RedisTarget | undefined;
  if (storeType === 'redis') {
    const redisUrl = get('REDIS_URL');
    const addr = get('SESSION_STORE_REDIS_ADDR');
    try {
      if (redisUrl) redis = parseRedisUrl(redisUrl);
      else {
        const hp = parseHostPort(addr ?? '127.0.0.1:6379', 6379);
        redis = {
          mode: 'single',
          ...hp,
          tls: false,
          db: int('SESSION_STORE_REDIS_DB', 0, 0, 1024),
          ...(get('SESSION_STORE_REDIS_PWD') ? { password: get('SESSION_STORE_REDIS_PWD') } : {}),
        };
      }
    } catch (err) {
      problems.push(`${redisUrl ? 'REDIS_URL' : 'SESSION_STORE_REDIS_ADDR'}: ${(err as Error).message}`);
    }
  }

  const sameSiteRaw = get('SESSION_SAME_SITE') ?? 'Lax';
  const sameSite = (['Lax', 'Strict', 'None'] as const).find((s) => s.toLowerCase() === sameSiteRaw.toLowerCase());
  if (!sameSite) problems.push(`SESSION_SAME_SITE: want Lax, Strict or None, got '${sameSiteRaw}'`);

  const cookieName = get('PORTICO_SESSION_COOKIE_NAME') ?? 'authservice_session';
  if (!COOKIE_NAME.test(cookieName)) problems.push(`PORTICO_SESSION_COOKIE_NAME: '${cookieName}' is not a valid cookie name`);

  let cookieSecret: Uint8Array;
  let cookieSecretGenerated = false;
  const secretRaw = env.PORTICO_COOKIE_SECRET;
  if (secretRaw === undefined || secretRaw === '') {
    cookieSecret = randomBytes(32);
    cookieSecretGenerated = true;
  } else {
    cookieSecret = new TextEncoder().encode(secretRaw);
    if (cookieSecret.length < 32) {
      problems.push(`PORTICO_COOKIE_SECRET: must be at least 32 bytes (it is ${cookieSecret.length}); generate one with \`openssl rand -base64 48\``);
    }
  }

  const portRaw = get('PORTICO_AUTHSERVICE_PORT') ? 'PORTICO_AUTHSERVICE_PORT' : get('SERVER_PORT') ? 'SERVER_PORT' : 'PORT';
  const port = int(portRaw, 8080, 0, 65535);
  // oidc-authservice serves its readiness probe on READINESS_PROBE_PORT (default 8081), apart
  // from the check port: a check for an app's /healthz must never be answered by our own probe.
  const healthPort = int('READINESS_PROBE_PORT', 8081, 0, 65535);
  if (healthPort !== 0 && healthPort === port) {
    const why = get('READINESS_PROBE_PORT') === undefined ? `defaults to ${healthPort}, which` : `${healthPort}:`;
    problems.push(`READINESS_PROBE_PORT: ${why} is also the check port (${portRaw}); /healthz, /readyz and /metrics need their own port, set READINESS_PROBE_PORT to another one`);
  }

  const afterLogoutName = get('AFTER_LOGOUT_URL') !== undefined ? 'AFTER_LOGOUT_URL' : 'STATIC_DESTINATION_URL';
  const afterLogoutUrl = urlOrPath(afterLogoutName, get('AFTER_LOGOUT_URL') ?? get('STATIC_DESTINATION_URL')) ?? '/';
  const afterLoginUrl = urlOrPath('AFTER_LOGIN_URL', get('AFTER_LOGIN_URL'));

  const useridHeader = header('USERID_HEADER', 'kubeflow-userid');
  const groupsHeader = header('GROUPS_HEADER', 'kubeflow-groups');
  const idTokenHeader = get('ID_TOKEN_HEADER') === undefined ? undefined : header('ID_TOKEN_HEADER', 'authorization');
  const maxAgeSeconds = int('SESSION_MAX_AGE', 86400, 60, 400 * 86400);
  const idleTimeoutSeconds = int('PORTICO_SESSION_IDLE_TIMEOUT', 0, 0, 400 * 86400);
  const memoryMaxEntries = int('PORTICO_SESSION_MAX_ENTRIES', 100_000, 1, 10_000_000);
  const refreshSkewSeconds = int('PORTICO_REFRESH_SKEW', 60, 0, 3600);
  // The bound on how long a revoked session can still pass a gateway's fast path: kept short.
  const gatewayTtlSeconds = int('PORTICO_GATEWAY_SESSION_TTL', 0, 0, 300);

  if (problems.length > 0) throw new AuthserviceConfigError(problems);
  return Object.freeze({
    issuer,
    ...(authUrl ? { authUrl } : {}),
    ...(publicOrigin ? { publicOrigin: Object.freeze(publicOrigin) } : {}),
    allowInsecureIssuer: allowInsecureIssuer || isLoopback(issuer.hostname),
    clientId,
    clientSecret,
    scopes: Object.freeze(scopes),
    redirectUrl: redirectRaw,
    urlPrefix,
    checkPathPrefix,
    skipAuthPrefixes: Object.freeze(skipAuthPrefixes),
    apiPathPrefixes: Object.freeze(apiPathPrefixes),
    pathNormalization: pathNormalization ?? DEFAULT_PATH_NORMALIZATION,
    useridClaim: get('USERID_CLAIM') ?? 'email',
    useridHeader,
    useridPrefix: get('USERID_PREFIX') ?? '',
    groupsClaim: get('GROUPS_CLAIM') ?? 'groups',
    groupsHeader,
    ...(idTokenHeader ? { idTokenHeader } : {}),
    groupsAllowlist: groupsAllowlist === '*' ? '*' : Object.freeze(groupsAllowlist),
    ...(afterLoginUrl ? { afterLoginUrl } : {}),
    afterLogoutUrl,
    session: Object.freeze({
      storeType,
      ...(redis ? { redis } : {}),
      redisKeyPrefix: get('PORTICO_REDIS_KEY_PREFIX') ?? 'portico:authservice:',
      maxAgeSeconds,
      idleTimeoutSeconds,
      sameSite: sameSite ?? 'Lax',
      cookieName,
      memoryMaxEntries,
      refreshSkewSeconds,
      gatewayTtlSeconds,
    }),
    cookieSecret,
    cookieSecretGenerated,
    host: get('SERVER_HOSTNAME') ?? '0.0.0.0',
    port,
    healthPort,
    logLevel: get('LOG_LEVEL')?.toLowerCase() ?? 'info',
    otlpEndpoint: get('PORTICO_OTLP_ENDPOINT') ?? get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'),
  });
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname === '::1' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function parseHostPort(raw: string, defaultPort: number): HostPort {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw.trim());
  if (!m) throw new Error(`'${raw}' is not host:port`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} out of range in '${raw}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * Redis URL forms:
 *   redis://[user:pass@]host[:port][/db]            one node (rediss:// for TLS)
 *   redis+sentinel://[user:pass@]h1:26379,h2:26379/<master>[/db][?sentinelPassword=…]
 *   redis+cluster://[user:pass@]h1:6379,h2:6379      cluster seed nodes (rediss+cluster:// for TLS)
 * Errors never include the password.
 */
export function parseRedisUrl(raw: string): RedisTarget {
  const m = /^(rediss?)(\+sentinel|\+cluster)?:\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/i.exec(raw.trim());
  if (!m) throw new Error(`want redis://host:port[/db], redis+sentinel://h1,h2/master or redis+cluster://h1,h2 (got a value of another form)`);
  const tls = m[1]!.toLowerCase() === 'rediss';
  const kind = (m[2] ?? '').toLowerCase();
  const auth: RedisAuth = {};
  if (m[3]) {
    const [user, ...rest] = m[3].split(':');
    if (rest.length > 0) {
      if (user) auth.username = decodeURIComponent(user);
      auth.password = decodeURIComponent(rest.join(':'));
    } else if (user) auth.password = decodeURIComponent(user); // redis://secret@host, as redis-cli accepts
  }
  const hosts = (m[4] ?? '').split(',').filter(Boolean);
  if (hosts.length === 0) throw new Error('no host in the Redis URL');
  const segments = (m[5] ?? '').split('/').filter(Boolean);
  const params = new URLSearchParams(m[6] ?? '');
  const dbOf = (s: string | undefined): number => {
    if (s === undefined) return 0;
    if (!/^\d+$/.test(s)) throw new Error(`database '${s}' is not a number`);
    return Number(s);
  };
  if (kind === '+sentinel') {
    const name = segments[0];
    if (!name) throw new Error('redis+sentinel:// needs the master name as the path: redis+sentinel://h1:26379,h2:26379/mymaster');
    const sentinelPassword = params.get('sentinelPassword') ?? undefined;
    return {
      mode: 'sentinel',
      sentinels: hosts.map((h) => parseHostPort(h, 26379)),
      name: decodeURIComponent(name),
      tls,
      db: dbOf(segments[1]),
      ...auth,
      ...(sentinelPassword ? { sentinelPassword } : {}),
    };
  }
  if (kind === '+cluster') {
    if (segments.length > 0) throw new Error('redis+cluster:// takes no database path (cluster mode has only db 0)');
    return { mode: 'cluster', nodes: hosts.map((h) => parseHostPort(h, 6379)), tls, ...auth };
  }
  if (hosts.length > 1) throw new Error('several hosts need redis+sentinel:// or redis+cluster://');
  return { mode: 'single', ...parseHostPort(hosts[0]!, 6379), tls, db: dbOf(segments[0]), ...auth };
}

/** A printable form of the config with secrets hidden (for logs and config dumps). */
export function printableConfig(c: AuthserviceConfig): Record<string, unknown> {
  const r = c.session.redis;
  const redis = r
    ? { ...r, ...(r.password ? { password: '[redacted]' } : {}), ...('sentinelPassword' in r && r.sentinelPassword ? { sentinelPassword: '[redacted]' } : {}) }
    : undefined;
  return {
    issuer: c.issuer.href,
    authUrl: c.authUrl,
    clientId: c.clientId,
    clientSecret: c.clientSecret ? '[redacted]' : '',
    scopes: c.scopes,
    redirectUrl: c.redirectUrl,
    urlPrefix: c.urlPrefix,
    checkPathPrefix: c.checkPathPrefix,
    skipAuthPrefixes: c.skipAuthPrefixes,
    apiPathPrefixes: c.apiPathPrefixes,
    pathNormalization: c.pathNormalization,
    useridHeader: c.useridHeader,
    groupsHeader: c.groupsHeader,
    idTokenHeader: c.idTokenHeader,
    groupsAllowlist: c.groupsAllowlist,
    session: { ...c.session, redis },
    cookieSecret: '[redacted]',
    port: c.port,
    healthPort: c.healthPort,
  };
}
