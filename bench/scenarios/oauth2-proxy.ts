/**
 * (e) Portico's authenticated route next to what Kubeflow ≥ 1.9 users run: nginx `auth_request`
 * to oauth2-proxy v7.15.6 (built from the Go module proxy by scripts/build-oauth2-proxy.sh, cached
 * outside the repo), both logging in against the same real Dex (scripts/build-dex.sh or DEX_BIN).
 *
 *  - the `nginx` target is nginx + oauth2-proxy: `auth_request /oauth2/auth` (a subrequest per
 *    request), the user's email copied upstream from `X-Auth-Request-Email` (`--set-xauthrequest`),
 *    as oauth2-proxy's nginx integration documents;
 *  - the `portico` target is Portico's gateway with Kubeflow's ext_authz EnvoyFilter (as in
 *    auth.ts) to `portico authservice`;
 *  - `oauth2-proxy-memory`: oauth2-proxy's default cookie sessions (the session is the cookie)
 *    vs the authservice's in-memory store; `oauth2-proxy-redis`: both keep sessions in one Redis.
 *
 * Both session cookies ride on every request, so both stacks see the same request. The probes load
 * each stack's check endpoint alone (`authz-check`: the authservice; `oauth2-auth`: oauth2-proxy's
 * /oauth2/auth). CPU per request is reported for every process of both stacks; the idle stack's
 * processes show ~0. Request logging is off on both sides (nginx `access_log off`, oauth2-proxy
 * `--request-logging=false`, the authservice's request logging is off by default).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { oidcLogin } from '../lib/login.ts';
import { ensureOauth2Proxy, findDex } from '../lib/tools.ts';
import { CLIENT_ID, CLIENT_SECRET, COOKIE_SECRET, PATH, SESSION_COOKIE, USER, authservice, authserviceEntry, redis, routeYaml, waitReady } from './auth.ts';
import { NGINX_PROXY, firstUpstream, gatewayYaml, nginxListen, nginxUpstreams, registryYaml } from './common.ts';
import { readFileSync } from 'node:fs';
import type { Scenario, ScenarioContext, ScenarioSetup, ServiceSpec } from './types.ts';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const O2P_CLIENT = 'oauth2-proxy-bench';
/** Bench-only throwaway values: every process lives on 127.0.0.1 for one run. */
const O2P_SECRET = 'oauth2-proxy-bench-client-secret-not-real';
/** oauth2-proxy wants 16, 24 or 32 bytes. */
const O2P_COOKIE_SECRET = 'bench-o2p-cookie-secret-32bytes!';
const O2P_COOKIE = '_oauth2_proxy';

const dex: ServiceSpec = {
  name: 'dex',
  command: (ctx, port) => {
    const { bin, webDir } = findDex();
    const config = {
      issuer: `http://127.0.0.1:${port}/dex`,
      storage: { type: 'memory' },
      web: { http: `127.0.0.1:${port}` },
      frontend: { dir: webDir },
      oauth2: { skipApprovalScreen: true },
      enablePasswordDB: true,
      staticClients: [
        { id: CLIENT_ID, secret: CLIENT_SECRET, name: 'Portico bench', redirectURIs: [`http://127.0.0.1:${ctx.services.authservice}/authservice/oidc/callback`] },
        { id: O2P_CLIENT, secret: O2P_SECRET, name: 'oauth2-proxy bench', redirectURIs: [`http://127.0.0.1:${ctx.services['oauth2-proxy']}/oauth2/callback`] },
      ],
      staticPasswords: [{ email: USER.email, hash: bcrypt.hashSync(USER.password, 10), username: 'bench', userID: '00000000-bench-0000-0000-000000000000' }],
    };
    const file = join(ctx.dir, 'dex.yaml');
    writeFileSync(file, JSON.stringify(config, null, 2)); // JSON is YAML
    return { cmd: bin, args: ['serve', file] };
  },
};

function oauth2Proxy(store: 'cookie' | 'redis'): ServiceSpec {
  return {
    name: 'oauth2-proxy',
    command: (ctx, port) => ({
      cmd: ensureOauth2Proxy(),
      args: [
        '--provider=oidc',
        `--oidc-issuer-url=http://127.0.0.1:${ctx.services.dex}/dex`,
        `--client-id=${O2P_CLIENT}`,
        `--client-secret=${O2P_SECRET}`,
        `--redirect-url=http://127.0.0.1:${port}/oauth2/callback`,
        `--http-address=127.0.0.1:${port}`,
        `--cookie-secret=${O2P_COOKIE_SECRET}`,
        `--cookie-name=${O2P_COOKIE}`,
        '--cookie-secure=false',
        '--email-domain=*',
        '--upstream=static://200',
        '--set-xauthrequest=true',
        '--skip-provider-button=true',
        '--reverse-proxy=true',
        '--scope=openid email profile',
        '--request-logging=false',
        '--auth-logging=false',
        `--session-store-type=${store}`,
        ...(store === 'redis' ? [`--redis-connection-url=redis://127.0.0.1:${ctx.services.redis}`] : []),
      ],
    }),
  };
}

/** oauth2-proxy answers /ping once it has discovered the issuer and listens. */
async function waitO2p(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/ping`);
      last = `${r.status}`;
      await r.arrayBuffer();
      if (r.ok) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`oauth2-proxy not ready within 30 s (last /ping: ${last})`);
}

/** One real login per stack at the same Dex; both cookies then ride on every request. */
async function loginBoth(ctx: ScenarioContext): Promise<ScenarioSetup> {
  const port = ctx.services.authservice;
  const health = ctx.services['authservice.health'];
  const o2p = ctx.services['oauth2-proxy'];
  if (port === undefined || health === undefined || o2p === undefined) throw new Error('oauth2-proxy scenario: service ports missing');
  await Promise.all([waitReady(health), waitO2p(o2p)]);
  const forwarded = { 'x-forwarded-proto': 'http', 'x-forwarded-host': `127.0.0.1:${port}` };
  const portico = await oidcLogin({ authservice: `http://127.0.0.1:${port}`, path: PATH, login: USER.email, password: USER.password, sessionCookieName: SESSION_COOKIE, forwarded });
  const theirs = await oidcLogin({ authservice: `http://127.0.0.1:${o2p}`, path: `/oauth2/start?rd=${encodeURIComponent(PATH)}`, login: USER.email, password: USER.password, sessionCookieName: O2P_COOKIE, forwarded: {} });
  const cookie = `${portico.cookie}; ${theirs.cookie}`;
  // Each stack honours its own cookie before any load.
  const ours = await fetch(`http://127.0.0.1:${port}${PATH}`, { headers: { host: `127.0.0.1:${ctx.port}`, cookie, 'x-forwarded-proto': 'http' }, redirect: 'manual' });
  await ours.arrayBuffer();
  const auth = await fetch(`http://127.0.0.1:${o2p}/oauth2/auth`, { headers: { cookie }, redirect: 'manual' });
  await auth.arrayBuffer();
  if (ours.status !== 200 || ours.headers.get('kubeflow-userid') !== USER.email) throw new Error(`the authservice does not honour its session: ${ours.status}`);
  if (auth.status !== 202 || auth.headers.get('x-auth-request-email') !== USER.email) throw new Error(`oauth2-proxy does not honour its session: /oauth2/auth answered ${auth.status}`);
  process.stdout.write(`bench: logged in at Dex through both stacks (${portico.steps} + ${theirs.steps} requests); cookies ${portico.cookie.length} + ${theirs.cookie.length} bytes\n`);
  return {
    headers: { cookie },
    probes: [
      { target: 'authz-check', url: `http://127.0.0.1:${port}${PATH}`, headers: { host: `127.0.0.1:${ctx.port}`, cookie, 'x-forwarded-proto': 'http' } },
      { target: 'oauth2-auth', url: `http://127.0.0.1:${o2p}/oauth2/auth`, headers: { cookie } },
    ],
  };
}

/** nginx + oauth2-proxy as oauth2-proxy's docs integrate them (configuration/integrations/nginx). */
function nginxO2p(ctx: ScenarioContext): string {
  return `${nginxUpstreams(ctx.upstreams)}
  upstream oauth2proxy {
    server 127.0.0.1:${ctx.services['oauth2-proxy']};
    keepalive 64;
    keepalive_requests 100000;
  }
  server {
    ${nginxListen(ctx)}
    location /bench {
      auth_request /oauth2/auth;
      auth_request_set $email $upstream_http_x_auth_request_email;
      proxy_pass http://v1;
      ${NGINX_PROXY}
      proxy_set_header kubeflow-userid $email;
    }
    location = /oauth2/auth {
      internal;
      proxy_pass http://oauth2proxy;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Uri $request_uri;
    }
    location / { return 404; }
  }`;
}

/**
 * `fastPath`: the in-gateway session fast path on (issue 14.2): the authservice marks sessions
 * reusable for 30 s (PORTICO_GATEWAY_SESSION_TTL) and the gateway holds its cookie secret.
 */
function scenario(store: 'memory' | 'redis', fastPath = false): Scenario {
  return {
    name: `oauth2-proxy-${store}${fastPath ? '-fastpath' : ''}`,
    title: `Portico ext_authz → authservice${fastPath ? ' (session fast path on)' : ''} vs nginx auth_request → oauth2-proxy v7.15.6, ${store === 'memory' ? 'memory / cookie' : 'Redis'} sessions, real Dex`,
    scheme: 'http',
    path: PATH,
    services: [...(store === 'redis' ? [redis] : []), dex, oauth2Proxy(store === 'redis' ? 'redis' : 'cookie'), authservice(store, 'dex', '/dex', fastPath ? { PORTICO_GATEWAY_SESSION_TTL: '30' } : {})],
    setup: loginBoth,
    unloaded: true,
    portico: (ctx) => {
      const port = ctx.services.authservice;
      if (port === undefined) throw new Error('oauth2-proxy scenario: no authservice port');
      const secretFile = join(ctx.dir, 'authservice-cookie-secret');
      if (fastPath) writeFileSync(secretFile, COOKIE_SECRET, { mode: 0o600 });
      return {
        ...(fastPath ? { args: ['--authservice-cookie-secret-file', secretFile] } : {}),
        files: {
          'gateway.yaml': gatewayYaml(ctx),
          'registry.yaml': registryYaml(ctx.upstreams),
          'virtualservice.yaml': routeYaml,
          'authservice.yaml': authserviceEntry(port),
          'authn-filter.yaml': readFileSync(join(REPO_ROOT, 'config/examples/kubeflow/envoy-filter/authn-filter.yaml'), 'utf8'),
        },
      };
    },
    nginx: nginxO2p,
    direct: (ctx) => `http://127.0.0.1:${firstUpstream(ctx).http}${PATH}`,
  };
}

export const oauth2ProxyMemory: Scenario = scenario('memory');
export const oauth2ProxyRedis: Scenario = scenario('redis');
export const oauth2ProxyMemoryFastPath: Scenario = scenario('memory', true);
export const oauth2ProxyRedisFastPath: Scenario = scenario('redis', true);
