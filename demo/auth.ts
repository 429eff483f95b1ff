/**
 * The demo's login pieces: an identity provider (a real `dex` when one is on PATH or $DEX_BIN
 * names it, else the built-in development IdP reading the same Dex config file) and the
 * authservice with in-memory sessions. The gateway reaches both through config/examples/demo/auth.yaml.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { buildAuthservice } from '../authservice/server.ts';
import { loadAuthserviceConfig } from '../authservice/config.ts';
import { startDevIdp } from './devidp/server.ts';

export const DEMO_AUTHSERVICE_PORT = 18081;
export const DEMO_AUTHSERVICE_HEALTH_PORT = 18082;

export interface DemoUser {
  readonly email: string;
  readonly username: string;
}

export interface DemoAuth {
  /** `dex <version path>` or `built-in development IdP`. */
  readonly idp: string;
  readonly issuer: string;
  readonly users: readonly DemoUser[];
  close(): Promise<void>;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** `$DEX_BIN`, else `dex` on PATH (issue: "a real dex binary when one is on PATH or DEX_BIN points to it"). */
export function findDexBinary(): string | undefined {
  const env = process.env.DEX_BIN;
  if (env) return existsSync(env) ? env : undefined;
  return findOnPath('dex');
}

async function waitForDiscovery(issuer: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`dex exited with ${child.exitCode}:\n${output()}`);
    try {
      const res = await fetch(`${issuer}/.well-known/openid-configuration`);
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`dex did not serve ${issuer}/.well-known/openid-configuration within 15 s:\n${output()}`);
}

/** Runs real Dex on the demo's Dex config (frontend assets from $DEX_WEB_DIR or `web/` beside the binary). */
async function startRealDex(bin: string, configFile: string, host: string): Promise<{ issuer: string; close(): Promise<void> }> {
  const config = parse(readFileSync(configFile, 'utf8')) as Record<string, unknown> & { issuer: string; frontend?: { dir?: string }; web?: { http?: string } };
  // Dex binds web.http as written; the demo's passwords are public, so it binds the demo's host.
  const port = /:(\d+)$/.exec(config.web?.http ?? '')?.[1] ?? '5556';
  config.web = { ...config.web, http: `${host.includes(':') ? `[${host}]` : host}:${port}` };
  const web = [process.env.DEX_WEB_DIR, join(dirname(bin), '../web'), resolve('.dex/web')].find((d) => d && existsSync(join(d, 'templates', 'login.html')));
  if (web) config.frontend = { ...config.frontend, dir: web };
  const dir = mkdtempSync(join(tmpdir(), 'portico-demo-dex-'));
  const file = join(dir, 'dex.yaml');
  writeFileSync(file, stringify(config));
  const child = spawn(bin, ['serve', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  try {
    await waitForDiscovery(config.issuer, child, () => out);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    issuer: config.issuer,
    close: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startDemoAuth(opts: { dexConfig: string; otlpEndpoint?: string; host?: string }): Promise<DemoAuth> {
  const raw = parse(readFileSync(opts.dexConfig, 'utf8')) as { staticClients: { id: string; secret: string }[]; staticPasswords: DemoUser[] };
  const client = raw.staticClients[0]!;
  const dexBin = findDexBinary();
  const idp = dexBin ? await startRealDex(dexBin, opts.dexConfig, opts.host ?? '127.0.0.1') : await startDevIdp({ configFile: opts.dexConfig, host: opts.host ?? '127.0.0.1' });
  try {
    const config = loadAuthserviceConfig({
      OIDC_PROVIDER: idp.issuer,
      // The browser reaches the IdP through the gateway's /dex route, on whatever origin it used.
      OIDC_AUTH_URL: '/dex/auth',
      OIDC_SCOPES: 'openid,profile,email',
      CLIENT_ID: client.id,
      CLIENT_SECRET: client.secret,
      REDIRECT_URL: '/authservice/oidc/callback',
      AUTHSERVICE_URL_PREFIX: '/authservice/',
      SKIP_AUTH_URLS: '/dex',
      // Bookinfo's routing matches `end-user: jason`, so the demo identifies people by name.
      USERID_CLAIM: 'name',
      USERID_HEADER: 'kubeflow-userid',
      AFTER_LOGOUT_URL: '/productpage',
      SESSION_STORE_TYPE: 'memory',
      // Sessions last as long as this demo process; a fresh secret per run is fine.
      PORTICO_COOKIE_SECRET: randomBytes(32).toString('base64url'),
      PORT: String(DEMO_AUTHSERVICE_PORT),
      READINESS_PROBE_PORT: String(DEMO_AUTHSERVICE_HEALTH_PORT),
      SERVER_HOSTNAME: '127.0.0.1',
      LOG_LEVEL: process.env.PORTICO_DEMO_LOG ?? 'warn',
      ...(opts.otlpEndpoint ? { PORTICO_OTLP_ENDPOINT: opts.otlpEndpoint } : {}),
    });
    const app = buildAuthservice(config);
    await app.listen({ port: config.port, host: config.host });
    await app.authservice.listenHealth();
    return {
      idp: dexBin ? `dex (${dexBin})` : 'built-in development IdP (no dex binary on PATH or in $DEX_BIN)',
      issuer: idp.issuer,
      users: raw.staticPasswords.map((u) => ({ email: u.email, username: u.username })),
      close: async () => {
        await app.close();
        await idp.close();
      },
    };
  } catch (err) {
    await idp.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new Error(`authservice port ${DEMO_AUTHSERVICE_PORT} or ${DEMO_AUTHSERVICE_HEALTH_PORT} is already in use (is another demo running?)`);
    throw err;
  }
}
