/**
 * A whole Kubeflow-style stack in-process, from config/examples/kubeflow as written: the IdP
 * (real Dex, or the dev IdP), Portico's authservice configured from the example's params.env,
 * the demo apps (httpbin, Bookinfo productpage) and a real GatewayRuntime serving the example's
 * Gateway, VirtualServices, ServiceEntries and one of the two ext_authz forms.
 *
 * The only edits to the example are ports: every WorkloadEntry gets the port its process really
 * bound (port 0), the Gateway's targetPorts become free ports, and the authservice's OIDC_PROVIDER
 * / OIDC_AUTH_URL point at where the IdP and the gateway really are. Everything is stopped by
 * `t.after`.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { isMap, parseAllDocuments, parseDocument } from 'yaml';
import { loadAuthserviceConfig } from '../../authservice/config.ts';
import { buildAuthservice } from '../../authservice/server.ts';
import { loadOrCreateGatewayCa, writeHostCert } from '../../certs/host-certs.ts';
import { buildSnapshot, formatIssue } from '../../config/index.ts';
import { startProductpage } from '../../demo/bookinfo/productpage.ts';
import { startHttpbin } from '../../demo/httpbin.ts';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { SessionFastPath } from '../../dataplane/filters/session-cache.ts';
import { startDex, startTestDevIdp, type DexHandle, type DexUser } from './dex.ts';
import { freePort } from './net.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const KUBEFLOW_EXAMPLE = join(REPO, 'config/examples/kubeflow');

/** Which ext_authz configuration the gateway gets. */
/**
 * `envoy-filter`: Kubeflow ≤ 1.8's EnvoyFilter; `istio-custom`: a CUSTOM AuthorizationPolicy;
 * `istio-jwt`: Kubeflow ≥ 1.9's gateway policies (CUSTOM + RequestAuthentication + require-jwt DENY).
 */
export type AuthzForm = 'envoy-filter' | 'istio-custom' | 'istio-jwt';
export type IdpKind = 'dex' | 'devidp';

export interface KubeflowStackOptions {
  form: AuthzForm;
  idp: IdpKind;
  /** Extra redirect URIs to register with the IdP's client (e.g. a script's callback server). */
  extraRedirectURIs?: string[];
  /** Extra authservice env, applied over params.env. */
  env?: Record<string, string>;
  /** Which gateway origin the browser uses for an absolute OIDC_AUTH_URL (default http; a relative one follows the request). */
  browserScheme?: 'http' | 'https';
  /**
   * envoy-filter form only: drop the allowed_headers the example adds (marked `# Portico:`), so the
   * gateway runs Kubeflow's authn-filter exactly as Kubeflow ships it (authorization, cookie, x-auth-token).
   */
  kubeflowFilterAsWritten?: boolean;
  /** More Istio YAML (file name → text), loaded after the example (e.g. a catch-all app route). */
  extraConfig?: Record<string, string>;
  /**
   * The in-gateway session fast path: the authservice gets PORTICO_GATEWAY_SESSION_TTL=`ttl`
   * (when given) and the gateway the authservice's cookie secret (when `gatewayKey` is not false).
   */
  fastPath?: { ttl?: number; gatewayKey?: boolean; now?: () => number };
}

export interface KubeflowStack {
  /** `http://127.0.0.1:<port>` — the gateway's port-80 server. */
  http: string;
  /** `https://localhost:<port>` — the gateway's port-443 server (self-signed CA in `caFile`). */
  https: string;
  caFile: string;
  idp: DexHandle;
  idpKind: IdpKind;
  users: readonly DexUser[];
  /** The authservice env actually used (params.env + ports). */
  env: Readonly<Record<string, string>>;
  authservice: FastifyInstance;
  /** The authservice's probe listener (/healthz, /readyz, /metrics), e.g. `http://127.0.0.1:<port>`. */
  health: string;
  gateway: GatewayRuntime;
}

/** The example's authservice environment (Kubeflow's params.env form). */
export function exampleEnv(): Record<string, string> {
  const parsed = parseEnv(readFileSync(join(KUBEFLOW_EXAMPLE, 'authservice/params.env'), 'utf8')) as Record<string, string>;
  return { ...parsed };
}

/** The Dex config inside the example's `ConfigMap dex` (data."config.yaml"). */
export function exampleDexConfig(): Record<string, unknown> {
  for (const doc of parseAllDocuments(readFileSync(join(KUBEFLOW_EXAMPLE, 'dex/config-map.yaml'), 'utf8'))) {
    const cm = doc.toJS() as { kind?: string; data?: Record<string, string> };
    const text = cm.kind === 'ConfigMap' ? cm.data?.['config.yaml'] : undefined;
    if (text) return parseDocument(text).toJS() as Record<string, unknown>;
  }
  throw new Error('config/examples/kubeflow/dex/config-map.yaml has no ConfigMap with data."config.yaml"');
}

interface PortMap {
  gatewayHttp: number;
  gatewayHttps: number;
  workloads: Record<string, number>;
}

/**
 * Copies `dirs` of the example into a temp dir, changing only ports: WorkloadEntry `ports.http`
 * by entry name, and the Gateway's `targetPort`s. Comments and everything else stay.
 */
function copyWithPorts(dirs: string[], ports: PortMap, filterAsWritten = false, issuer?: string): string {
  const out = mkdtempSync(join(tmpdir(), 'portico-kubeflow-'));
  for (const d of dirs) {
    const src = join(KUBEFLOW_EXAMPLE, d);
    cpSync(src, join(out, d), { recursive: true });
    for (const name of readdirSync(join(out, d), { recursive: true }).map(String).filter((f) => f.endsWith('.yaml'))) {
      const file = join(out, d, name);
      const docs = parseAllDocuments(readFileSync(file, 'utf8'));
      for (const doc of docs) {
        const kind = doc.get('kind');
        const meta = doc.get('metadata');
        const resName = isMap(meta) ? String(meta.get('name')) : '';
        if (filterAsWritten && kind === 'EnvoyFilter') {
          const patterns = ['spec', 'configPatches', 0, 'patch', 'value', 'typed_config', 'http_service', 'authorization_request', 'allowed_headers', 'patterns'];
          // The `# Portico:` marker trails the pattern's value, so yaml attaches it to that scalar.
          type Item = { items?: { value?: { comment?: string | null } }[] };
          const list = (doc.getIn(patterns) as { items: Item[] } | undefined)?.items;
          if (list) doc.setIn(patterns, list.filter((it) => !(it.items?.[0]?.value?.comment ?? '').includes('Portico:')));
        }
        if (kind === 'WorkloadEntry' && resName in ports.workloads) doc.setIn(['spec', 'ports', 'http'], ports.workloads[resName]);
        // The IdP's issuer is where the test runs it (in a cluster: dex.auth.svc.cluster.local:5556).
        if (kind === 'RequestAuthentication' && issuer) {
          const rules = (doc.toJS() as { spec: { jwtRules?: unknown[] } }).spec.jwtRules ?? [];
          rules.forEach((_r, i) => doc.setIn(['spec', 'jwtRules', i, 'issuer'], issuer));
        }
        if (kind === 'Gateway') {
          const servers = (doc.toJS() as { spec: { servers: { port: { targetPort?: number } }[] } }).spec.servers;
          servers.forEach((s, i) => {
            if (s.port.targetPort === 8080) doc.setIn(['spec', 'servers', i, 'port', 'targetPort'], ports.gatewayHttp);
            if (s.port.targetPort === 8443) doc.setIn(['spec', 'servers', i, 'port', 'targetPort'], ports.gatewayHttps);
          });
        }
      }
      writeFileSync(file, docs.map((d) => d.toString()).join(''));
    }
  }
  return out;
}

let certsOnce: { dir: string; caFile: string } | undefined;
/** One CA + `localhost-credential` per test process (RSA key generation is the slow part). */
function testCerts(): { dir: string; caFile: string } {
  if (!certsOnce) {
    const dir = mkdtempSync(join(tmpdir(), 'portico-kubeflow-certs-'));
    const ca = loadOrCreateGatewayCa(dir);
    writeHostCert(dir, ca, { host: 'localhost', ipAddresses: ['127.0.0.1'] });
    certsOnce = { dir, caFile: ca.certPath };
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return certsOnce;
}

/**
 * Starts the stack. Returns undefined when the IdP is unavailable (real Dex not built): the
 * test was already skipped loudly, or failed under PORTICO_REQUIRE=dex.
 */
export async function startKubeflowStack(t: TestContext, opts: KubeflowStackOptions): Promise<KubeflowStack | undefined> {
  const certs = testCerts();
  const gatewayHttp = await freePort();
  const gatewayHttps = await freePort();
  const http = `http://127.0.0.1:${gatewayHttp}`;
  const https = `https://localhost:${gatewayHttps}`;
  // Kubeflow ≥ 1.9's require-jwt policy needs a verified JWT on every request: the authservice
  // hands the session's ID token upstream, as oauth2-proxy does.
  const env: Record<string, string> = {
    ...exampleEnv(),
    ...(opts.form === 'istio-jwt' ? { ID_TOKEN_HEADER: 'authorization' } : {}),
    ...(opts.fastPath?.ttl !== undefined ? { PORTICO_GATEWAY_SESSION_TTL: String(opts.fastPath.ttl) } : {}),
    ...opts.env,
  };

  // The IdP, with the client and callback the example's params.env names.
  const callbackPath = `${(env.AUTHSERVICE_URL_PREFIX ?? '/authservice').replace(/\/+$/, '')}/oidc/callback`;
  const idpOpts = {
    clientId: env.CLIENT_ID!,
    clientSecret: env.CLIENT_SECRET!,
    redirectURIs: [`${http}${callbackPath}`, `${https}${callbackPath}`, `http://localhost:${gatewayHttp}${callbackPath}`, ...(opts.extraRedirectURIs ?? [])],
  };
  const idp = opts.idp === 'dex' ? await startDex(t, idpOpts) : await startTestDevIdp(t, idpOpts);
  if (!idp) return undefined;

  const httpbin = await startHttpbin({ port: 0, host: '127.0.0.1' });
  t.after(() => httpbin.close());
  const productpage = await startProductpage({ port: 0, host: '127.0.0.1', detailsUrl: 'http://127.0.0.1:9', reviewsUrl: 'http://127.0.0.1:9', ratingsUrl: 'http://127.0.0.1:9' });
  t.after(() => productpage.close());

  // The authservice from params.env; only where the IdP and the gateway are changes.
  const browserOrigin = opts.browserScheme === 'https' ? https : http;
  const authEnv: Record<string, string> = {
    ...env,
    OIDC_PROVIDER: idp.issuer,
    ...(env.OIDC_AUTH_URL && /^https?:/.test(env.OIDC_AUTH_URL) ? { OIDC_AUTH_URL: new URL(new URL(env.OIDC_AUTH_URL).pathname, browserOrigin).href } : {}),
    LOG_LEVEL: process.env.PORTICO_TEST_LOG ?? 'silent',
  };
  const authservice = buildAuthservice(loadAuthserviceConfig(authEnv));
  t.after(() => authservice.close());
  await authservice.listen({ port: 0, host: '127.0.0.1' });
  const health = await authservice.authservice.listenHealth({ port: 0, host: '127.0.0.1' });
  await authservice.authservice.oidc.start();
  if (!authservice.authservice.oidc.ready) throw new Error(`authservice could not discover ${idp.issuer}`);

  const dir = copyWithPorts(['base', opts.form], {
    gatewayHttp,
    gatewayHttps,
    workloads: {
      'authservice-0': (authservice.server.address() as AddressInfo).port,
      'dex-0': idp.port,
      'httpbin-0': httpbin.port,
      'productpage-0': productpage.port,
    },
  }, opts.kubeflowFilterAsWritten === true, idp.issuer);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const inputs = [join(dir, 'base'), join(dir, opts.form)];
  if (opts.extraConfig) {
    mkdirSync(join(dir, 'zz-extra'));
    for (const [name, text] of Object.entries(opts.extraConfig)) writeFileSync(join(dir, 'zz-extra', name), text);
    inputs.push(join(dir, 'zz-extra'));
  }
  const built = await buildSnapshot(inputs, { secretsDir: join(certs.dir, 'credentials'), cwd: dir });
  if (!built.ok) throw new Error(`example config does not compile:\n${built.issues.map((i) => formatIssue(i)).join('\n')}`);
  if (built.snapshot.extAuthz.length !== 1) {
    throw new Error(`want exactly one ext_authz filter from ${relative(REPO, join(KUBEFLOW_EXAMPLE, opts.form))}, compiled ${built.snapshot.extAuthz.length}`);
  }
  const fastPath = opts.fastPath && opts.fastPath.gatewayKey !== false ? new SessionFastPath(new TextEncoder().encode(env.PORTICO_COOKIE_SECRET), opts.fastPath.now ? { now: opts.fastPath.now } : {}) : undefined;
  const gateway = new GatewayRuntime(built.snapshot, { drainMs: 100, ...(fastPath ? { sessionFastPath: fastPath } : {}) });
  await gateway.start();
  t.after(() => gateway.close(100));

  return {
    http,
    https,
    caFile: certs.caFile,
    idp,
    idpKind: opts.idp,
    users: idp.users,
    env: Object.freeze(authEnv),
    authservice,
    health: health.url,
    gateway,
  };
}

/** The IdPs to run a scenario against: always the dev IdP, plus real Dex (skipped loudly when not built). */
export const IDPS: readonly IdpKind[] = ['devidp', 'dex'];
