/**
 * (d) The authenticated route (issue 4): the plain route behind Kubeflow's ext_authz EnvoyFilter
 * (config/examples/kubeflow/envoy-filter/authn-filter.yaml, unchanged), so every request costs a
 * check at the authservice (`portico authservice`, its own process) before it is proxied. wrk
 * carries a real session cookie, from one real OIDC login at the dev IdP during setup.
 *
 *  - `auth-none`:   the same route and the same request size (a dummy cookie), no ext_authz — the
 *                   reference the authenticated scenarios are divided by;
 *  - `auth-memory`: sessions in the authservice's in-memory store;
 *  - `auth-redis`:  sessions in Redis (`redis-server` on a free port, persistence off).
 *
 * The authenticated scenarios also load the authservice's check endpoint straight with wrk
 * (target `authz-check`: the headers the gateway sends — Host, Cookie, X-Forwarded-Proto), for
 * the check's own latency at 50 connections.
 *
 * nginx: `auth_request` to the same authservice (a subrequest with the original URI and all
 * client headers), the identity headers copied upstream with `auth_request_set`. It is the
 * closest nginx has; it cannot relay a 302 to the IdP (auth_request only passes 401/403), which
 * the benchmark never exercises (every request carries a valid session).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { oidcLogin } from '../lib/login.ts';
import { sleep } from '../lib/procs.ts';
import { ensureBinary } from '../lib/tools.ts';
import { porticoCli } from '../lib/targets.ts';
import { NGINX_PROXY, destination, firstUpstream, gatewayYaml, nginxListen, nginxUpstreams, registryYaml } from './common.ts';
import type { Scenario, ScenarioContext, ScenarioSetup, ServiceSpec } from './types.ts';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
export const PATH = '/bench/auth';
const AUTHSERVICE_HOST = 'authservice.istio-system.svc.cluster.local';
export const CLIENT_ID = 'portico-bench';
/** Bench-only throwaway values: every process here lives on 127.0.0.1 for one run. */
export const CLIENT_SECRET = 'portico-bench-client-secret-not-a-real-secret';
export const COOKIE_SECRET = 'portico-bench-cookie-secret-0123456789abcdef-not-real';
export const SESSION_COOKIE = 'authservice_session';
export const USER = { email: 'bench@example.com', password: 'bench-password', groups: ['bench'] };

/** What the gateway's check sends beside the allowed client headers (gateway/authz.ts + the filter's patterns). */
function checkHeaders(ctx: ScenarioContext, cookie: string): Record<string, string> {
  return { host: `127.0.0.1:${ctx.port}`, cookie, 'x-forwarded-proto': 'http' };
}

export const routeYaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench
  namespace: bench
spec:
  hosts: ["*"]
  gateways: [bench/bench-gateway]
  http:
  - match:
    - uri: { prefix: /bench }
    route:
    - destination: ${destination('v1')}
`;

/** The authservice registered the Istio way, at the address the Kubeflow filter names. */
export function authserviceEntry(port: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: authservice
  namespace: istio-system
spec:
  hosts: [${AUTHSERVICE_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - { number: 8080, name: http, protocol: HTTP }
  endpoints:
  - address: 127.0.0.1
    ports: { http: ${port} }
`;
}

const devIdp: ServiceSpec = {
  name: 'devidp',
  command: (ctx, port) => {
    const config = {
      issuer: `http://127.0.0.1:${port}/dex`,
      enablePasswordDB: true,
      oauth2: { skipApprovalScreen: true },
      staticClients: [{ id: CLIENT_ID, secret: CLIENT_SECRET, name: 'Portico bench', redirectURIs: [`http://127.0.0.1:${ctx.services.authservice}/authservice/oidc/callback`] }],
      staticPasswords: [{ email: USER.email, hash: bcrypt.hashSync(USER.password, 10), username: 'bench', userID: '00000000-bench-0000-0000-000000000000', groups: USER.groups }],
    };
    const file = join(ctx.dir, 'devidp.yaml');
    // JSON is YAML: the dev IdP reads it like Dex's config file.
    writeFileSync(file, JSON.stringify(config, null, 2));
    return { cmd: process.execPath, args: ['--import', 'tsx', join(REPO_ROOT, 'demo/devidp/main.ts'), '--config', file, '--port', String(port), '--host', '127.0.0.1'] };
  },
};

export const redis: ServiceSpec = {
  name: 'redis',
  command: (_ctx, port) => ({
    cmd: ensureBinary('redis-server', 'redis-server'),
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
  }),
};

export function authservice(store: 'memory' | 'redis', idp = 'devidp', idpPath = '/dex', extraEnv: Readonly<Record<string, string>> = {}): ServiceSpec {
  return {
    name: 'authservice',
    extraPorts: ['health'],
    command: (ctx, port) => ({
      cmd: process.execPath,
      args: [...porticoCli(), 'authservice', '--port', String(port), '--health-port', String(ctx.services['authservice.health']), '--host', '127.0.0.1'],
      env: {
        OIDC_PROVIDER: `http://127.0.0.1:${ctx.services[idp]}${idpPath}`,
        CLIENT_ID,
        CLIENT_SECRET,
        OIDC_SCOPES: 'openid,email,profile,groups',
        REDIRECT_URL: `http://127.0.0.1:${port}/authservice/oidc/callback`,
        PORTICO_COOKIE_SECRET: COOKIE_SECRET,
        SESSION_STORE_TYPE: store,
        ...(store === 'redis' ? { REDIS_URL: `redis://127.0.0.1:${ctx.services.redis}` } : {}),
        ...extraEnv,
      },
    }),
  };
}

/** Waits for the authservice's /readyz (OIDC discovered, store answers), up to 30 s. */
export async function waitReady(health: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${health}/readyz`);
      last = `${r.status} ${(await r.text()).slice(0, 200)}`;
      if (r.ok) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(200);
  }
  throw new Error(`authservice not ready within 30 s (last /readyz: ${last})`);
}

/** One real login, then proof that the cookie is honoured (200 with kubeflow-userid) before any load. */
async function loginSetup(ctx: ScenarioContext): Promise<ScenarioSetup> {
  const port = ctx.services.authservice;
  const health = ctx.services['authservice.health'];
  if (port === undefined || health === undefined) throw new Error('auth scenario: authservice ports missing');
  await waitReady(health);
  const forwarded = { 'x-forwarded-proto': 'http', 'x-forwarded-host': `127.0.0.1:${port}` };
  const { cookie, steps } = await oidcLogin({ authservice: `http://127.0.0.1:${port}`, path: PATH, login: USER.email, password: USER.password, sessionCookieName: SESSION_COOKIE, forwarded });
  const headers = checkHeaders(ctx, cookie);
  const check = await fetch(`http://127.0.0.1:${port}${PATH}`, { headers, redirect: 'manual' });
  await check.arrayBuffer();
  if (check.status !== 200 || check.headers.get('kubeflow-userid') !== USER.email) {
    throw new Error(`auth scenario: the session from login is not honoured: check answered ${check.status}, kubeflow-userid '${check.headers.get('kubeflow-userid') ?? ''}'`);
  }
  process.stdout.write(`bench: logged in as ${USER.email} in ${steps} requests; session cookie ${cookie.length} bytes\n`);
  return { headers: { cookie }, probes: [{ target: 'authz-check', url: `http://127.0.0.1:${port}${PATH}`, headers }] };
}

/** nginx: auth_request subrequest to the authservice, identity headers passed upstream. */
function nginxAuth(ctx: ScenarioContext): string {
  return `${nginxUpstreams(ctx.upstreams)}
  upstream authservice {
    server 127.0.0.1:${ctx.services.authservice};
    keepalive 64;
    keepalive_requests 100000;
  }
  server {
    ${nginxListen(ctx)}
    location /bench {
      auth_request /_portico_authz;
      auth_request_set $kf_userid $upstream_http_kubeflow_userid;
      auth_request_set $kf_groups $upstream_http_kubeflow_groups;
      proxy_pass http://v1;
      ${NGINX_PROXY}
      proxy_set_header kubeflow-userid $kf_userid;
      proxy_set_header kubeflow-groups $kf_groups;
    }
    location = /_portico_authz {
      internal;
      proxy_pass http://authservice$request_uri;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location / { return 404; }
  }`;
}

const nginxPlain = (ctx: ScenarioContext): string => `${nginxUpstreams(ctx.upstreams)}
  server {
    ${nginxListen(ctx)}
    location /bench {
      proxy_pass http://v1;
      ${NGINX_PROXY}
    }
    location / { return 404; }
  }`;

/** Same length as a real session cookie (334 bytes: an HS256 JWT with sid, sub, exp), so requests weigh the same. */
const DUMMY_COOKIE = `${SESSION_COOKIE}=${'x'.repeat(314)}`;

export const authNone: Scenario = {
  name: 'auth-none',
  title: 'same route, no ext_authz (reference)',
  scheme: 'http',
  path: PATH,
  headers: { cookie: DUMMY_COOKIE },
  portico: (ctx) => ({ files: { 'gateway.yaml': gatewayYaml(ctx), 'registry.yaml': registryYaml(ctx.upstreams), 'virtualservice.yaml': routeYaml } }),
  nginx: nginxPlain,
  direct: (ctx) => `http://127.0.0.1:${firstUpstream(ctx).http}${PATH}`,
};

function authScenario(store: 'memory' | 'redis'): Scenario {
  return {
    name: `auth-${store}`,
    title: `ext_authz → authservice, ${store} sessions`,
    scheme: 'http',
    path: PATH,
    services: store === 'redis' ? [redis, devIdp, authservice('redis')] : [devIdp, authservice('memory')],
    setup: loginSetup,
    portico: (ctx) => {
      const port = ctx.services.authservice;
      if (port === undefined) throw new Error('auth scenario: no authservice port');
      return {
        files: {
          'gateway.yaml': gatewayYaml(ctx),
          'registry.yaml': registryYaml(ctx.upstreams),
          'virtualservice.yaml': routeYaml,
          'authservice.yaml': authserviceEntry(port),
          // Kubeflow's filter exactly as shipped in the examples.
          'authn-filter.yaml': readFileSync(join(REPO_ROOT, 'config/examples/kubeflow/envoy-filter/authn-filter.yaml'), 'utf8'),
        },
      };
    },
    nginx: nginxAuth,
    direct: (ctx) => `http://127.0.0.1:${firstUpstream(ctx).http}${PATH}`,
  };
}

export const authMemory: Scenario = authScenario('memory');
export const authRedis: Scenario = authScenario('redis');
