import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadAuthserviceConfig, parseRedisUrl, printableConfig } from '../../authservice/config.ts';
import { AuthserviceConfigError } from '../../authservice/errors.ts';

const base = { OIDC_PROVIDER: 'http://127.0.0.1:5556/dex', CLIENT_ID: 'kubeflow-oidc-authservice', CLIENT_SECRET: 'pUBnBOY80SnXgjibTYM9ZWNzY2xreNGQok' };

test('defaults follow oidc-authservice', () => {
  const c = loadAuthserviceConfig(base);
  assert.equal(c.issuer.href, 'http://127.0.0.1:5556/dex');
  assert.deepEqual(c.scopes, ['openid', 'email']);
  assert.equal(c.urlPrefix, '/authservice');
  assert.equal(c.redirectUrl, '/authservice/oidc/callback');
  assert.equal(c.useridClaim, 'email');
  assert.equal(c.useridHeader, 'kubeflow-userid');
  assert.equal(c.groupsHeader, 'kubeflow-groups');
  assert.equal(c.groupsAllowlist, '*');
  assert.equal(c.session.storeType, 'memory');
  assert.equal(c.session.maxAgeSeconds, 86400);
  assert.equal(c.session.sameSite, 'Lax');
  assert.equal(c.session.cookieName, 'authservice_session');
  assert.equal(c.port, 8080);
  assert.equal(c.healthPort, 8081, "oidc-authservice's READINESS_PROBE_PORT default");
  assert.equal(c.cookieSecretGenerated, true);
  assert.equal(c.cookieSecret.length, 32);
});

test('Kubeflow-style values: space separated scopes, absolute prefix, allowlist', () => {
  const c = loadAuthserviceConfig({
    ...base,
    OIDC_SCOPES: 'profile email groups offline_access',
    AUTHSERVICE_URL_PREFIX: 'https://kf.example.com/authservice/',
    GROUPS_ALLOWLIST: 'admins, ml',
    USERID_PREFIX: 'oidc:',
    SERVER_PORT: '8081',
    READINESS_PROBE_PORT: '8082',
  });
  assert.deepEqual(c.scopes, ['openid', 'profile', 'email', 'groups', 'offline_access']);
  assert.equal(c.urlPrefix, '/authservice');
  assert.equal(c.redirectUrl, 'https://kf.example.com/authservice/oidc/callback');
  assert.deepEqual(c.groupsAllowlist, ['admins', 'ml']);
  assert.equal(c.useridPrefix, 'oidc:');
  assert.equal(c.port, 8081);
});

test('every problem is reported at once, naming the env var, without secrets', () => {
  const secret = 'short-secret-value';
  let err: unknown;
  try {
    loadAuthserviceConfig({
      OIDC_PROVIDER: 'http://dex.example.com/dex',
      SESSION_MAX_AGE: 'soon',
      SESSION_SAME_SITE: 'Sideways',
      SESSION_STORE_TYPE: 'boltdb',
      SKIP_AUTH_URLS: 'public/,/a/../b',
      USERID_HEADER: 'bad header',
      PORTICO_COOKIE_SECRET: secret,
    });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof AuthserviceConfigError);
  const text = err.problems.join('\n');
  for (const name of ['CLIENT_ID', 'OIDC_PROVIDER', 'SESSION_MAX_AGE', 'SESSION_SAME_SITE', 'SESSION_STORE_TYPE', 'SKIP_AUTH_URLS', 'USERID_HEADER', 'PORTICO_COOKIE_SECRET']) {
    assert.match(text, new RegExp(`^${name}:`, 'm'), `expected a problem for ${name} in:\n${text}`);
  }
  assert.ok(!text.includes(secret), 'the cookie secret must not appear in errors');
});

test('redis: SESSION_STORE_REDIS_ADDR form and REDIS_URL forms', () => {
  const c = loadAuthserviceConfig({ ...base, SESSION_STORE_TYPE: 'redis', SESSION_STORE_REDIS_ADDR: 'redis.kubeflow:6380', SESSION_STORE_REDIS_PWD: 'pw', SESSION_STORE_REDIS_DB: '2' });
  assert.deepEqual(c.session.redis, { mode: 'single', host: 'redis.kubeflow', port: 6380, tls: false, db: 2, password: 'pw' });
  assert.deepEqual(parseRedisUrl('rediss://user:p%40ss@r.example:6390/3'), { mode: 'single', host: 'r.example', port: 6390, tls: true, db: 3, username: 'user', password: 'p@ss' });
  assert.deepEqual(parseRedisUrl('redis+sentinel://:pw@s1:26379,s2/mymaster/1?sentinelPassword=sp'), {
    mode: 'sentinel',
    sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }],
    name: 'mymaster',
    tls: false,
    db: 1,
    password: 'pw',
    sentinelPassword: 'sp',
  });
  assert.deepEqual(parseRedisUrl('redis+cluster://n1:7000,n2:7001'), { mode: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }], tls: false });
  assert.throws(() => parseRedisUrl('redis+sentinel://s1,s2'), /master name/);
  assert.throws(() => parseRedisUrl('redis://a,b'), /sentinel|cluster/);
  assert.throws(() => parseRedisUrl('http://x'), /redis:\/\//);
  const printable = JSON.stringify(printableConfig(loadAuthserviceConfig({ ...base, SESSION_STORE_TYPE: 'redis', REDIS_URL: 'redis://:hunter2@r:1/0', PORTICO_COOKIE_SECRET: 'x'.repeat(40) })));
  assert.ok(!printable.includes('hunter2') && !printable.includes('x'.repeat(40)) && !printable.includes(base.CLIENT_SECRET));
});

test("relative URLs as Kubeflow's params.env writes them: OIDC_AUTH_URL=/dex/auth, REDIRECT_URL and AFTER_LOGOUT_URL paths", () => {
  const c = loadAuthserviceConfig({ ...base, OIDC_AUTH_URL: '/dex/auth', REDIRECT_URL: '/authservice/oidc/callback', AFTER_LOGOUT_URL: '/' });
  assert.equal(c.authUrl, '/dex/auth');
  assert.equal(c.redirectUrl, '/authservice/oidc/callback');
  assert.equal(c.afterLogoutUrl, '/');
  assert.equal(c.publicOrigin, undefined);
  const abs = loadAuthserviceConfig({ ...base, OIDC_AUTH_URL: 'https://dex.example.com/dex/auth', REDIRECT_URL: 'https://KF.example.com/authservice/oidc/callback' });
  assert.equal(abs.authUrl, 'https://dex.example.com/dex/auth');
  assert.deepEqual(abs.publicOrigin, { proto: 'https', host: 'kf.example.com' });
  for (const [name, value] of [['OIDC_AUTH_URL', '//evil.example/auth'], ['OIDC_AUTH_URL', 'dex/auth'], ['OIDC_AUTH_URL', '/\\evil.example'], ['OIDC_AUTH_URL', 'javascript:alert(1)'], ['REDIRECT_URL', '//evil.example/cb'], ['AFTER_LOGOUT_URL', 'bye']] as const) {
    assert.throws(() => loadAuthserviceConfig({ ...base, [name]: value }), (e: unknown) => e instanceof AuthserviceConfigError && e.problems.some((p) => p.startsWith(`${name}:`)), `${name}=${value}`);
  }
});

test('READINESS_PROBE_PORT: its own port, never the check port', () => {
  assert.equal(loadAuthserviceConfig({ ...base, READINESS_PROBE_PORT: '9000' }).healthPort, 9000);
  assert.equal(loadAuthserviceConfig({ ...base, READINESS_PROBE_PORT: '0', SERVER_PORT: '0' }).healthPort, 0, 'both ephemeral is fine');
  for (const env of [{ SERVER_PORT: '8081' }, { PORT: '9000', READINESS_PROBE_PORT: '9000' }]) {
    assert.throws(() => loadAuthserviceConfig({ ...base, ...env }), (e: unknown) => e instanceof AuthserviceConfigError && e.problems.some((p) => p.startsWith('READINESS_PROBE_PORT:')), JSON.stringify(env));
  }
});
