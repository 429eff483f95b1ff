/**
 * `portico demo` — what `npm start` runs: Istio's Bookinfo and httpbin behind Portico's HTTPS
 * gateway, on embedded defaults (no Docker, no Redis, no external IdP). Certificates are made on
 * first run under certs/out and reused after.
 *
 *   https://localhost:8443/productpage     Bookinfo (reviews routed by Istio's VirtualService)
 *   https://httpbin.example.com:8443/...   httpbin, by SNI (curl --resolve / --connect-to)
 *   http://localhost:8080/...              redirects to HTTPS
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureDemoCerts } from '../../certs/index.ts';
import { buildSnapshot, formatIssue } from '../../config/index.ts';
import { startDemoAuth } from '../../demo/auth.ts';
import { demoMeshCa, gatewayMeshIdentity, startDemoMesh } from '../../demo/mesh.ts';
import { meshUpstreamTls, wantsIstioMutual } from '../../gateway/mtls.ts';
import { startAdmin } from '../../gateway/admin.ts';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { createTelemetry, TraceStore } from '../../gateway/telemetry/index.ts';
import { consoleLogger } from './gateway.ts';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);

/** The embedded default config, relative to the package root. */
export const DEMO_CONFIG = [
  'config/examples/demo/gateway.yaml',
  'config/examples/demo/auth.yaml',
  'config/examples/bookinfo/registry.yaml',
  'config/examples/bookinfo/destination-rule-all.yaml',
  'config/examples/bookinfo/virtual-service-reviews-test-v2.yaml',
  'config/examples/httpbin-https/registry.yaml',
  'config/examples/bookinfo-mesh/peer-authentication-strict.yaml',
].map((p) => resolve(ROOT, p));

const USAGE = `usage: portico demo [--certs-dir DIR] [--admin-port N] [--host ADDR]
Runs Bookinfo and httpbin behind Portico's HTTPS gateway on https://localhost:8443.
  --host ADDR   address the gateway (8080, 8443) and the IdP (5556) listen on; default 127.0.0.1.
                The demo's passwords are public: only widen this on a network you trust.
`;

export interface DemoHandle {
  close(): Promise<void>;
}

export async function startDemo(opts: { certsDir?: string; adminPort?: number; metricsPort?: number; host?: string; log?: (line: string) => void } = {}): Promise<DemoHandle> {
  const host = opts.host ?? '127.0.0.1';
  const say = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const certsDir = resolve(opts.certsDir ?? resolve(ROOT, 'certs/out'));
  const certs = ensureDemoCerts(certsDir, ['localhost', 'httpbin.example.com']);
  const built = await buildSnapshot(DEMO_CONFIG, { secretsDir: resolve(certsDir, 'credentials'), cwd: ROOT });
  if (!built.ok) throw new Error(`demo config is invalid:\n${built.issues.map((i) => formatIssue(i)).join('\n')}`);

  const closers: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const log = consoleLogger('demo');
    // One trace store for every proxy (the sidecars export into it over OTLP), so a page load is
    // one trace; every request is traced.
    const traces = new TraceStore();
    // The gateway joins the mesh with its own SPIFFE identity; its reporter="source" series carry it
    // as source_principal on the endpoints it originates ISTIO_MUTUAL to.
    const gatewayIdentity = gatewayMeshIdentity(demoMeshCa(certsDir), built.snapshot);
    const edgeTelemetry = createTelemetry({
      proxy: { workload: 'istio-ingressgateway', namespace: 'istio-system', app: 'istio-ingressgateway', principal: gatewayIdentity.spiffeId },
      upstreamMtls: wantsIstioMutual,
      tracing: { sampling: 100, store: traces },
    });
    // The metrics server also hosts the trace store's OTLP ingest: the authservice and the
    // sidecars export their spans there.
    const metrics = await edgeTelemetry.listen(opts.metricsPort ?? 15020, '127.0.0.1');
    closers.push(() => edgeTelemetry.close());
    const otlpEndpoint = `http://127.0.0.1:${metrics.port}/v1/traces`;
    // Bookinfo and httpbin, each behind its own sidecar under STRICT mTLS: Istio's reviews
    // VirtualService (jason → v2) applies in productpage's sidecar.
    const mesh = await startDemoMesh({ config: DEMO_CONFIG, certsDir, logger: log, otlpEndpoint, logoutUrl: '/authservice/logout' });
    closers.push(() => mesh.close());
    const auth = await startDemoAuth({ dexConfig: resolve(ROOT, 'config/examples/dex.yaml'), otlpEndpoint, host });
    closers.push(() => auth.close());
    // Loopback by default: the demo's users have public passwords.
    const edge = new GatewayRuntime(built.snapshot, { logger: log, drainMs: 2000, telemetry: edgeTelemetry, listener: { host } });
    // The gateway joins the mesh: ISTIO_MUTUAL to the sidecars, with its own SPIFFE identity.
    edge.pools.tlsPolicy = meshUpstreamTls(gatewayIdentity, () => edge.table().snapshot);
    edgeTelemetry.attach(edge);
    await edge.start();
    closers.push(() => edge.close(2000));
    const dashboardProxies = [...mesh.sidecars].map(([name, h]) => ({ name, runtime: h.sidecar.outbound, telemetry: h.telemetry }));
    const admin = await startAdmin(edge, opts.adminPort ?? 15000, '127.0.0.1', () => true, { telemetry: edgeTelemetry, dashboardProxies });
    closers.push(() => admin.close());

    say('');
    say('Portico demo is running (Ctrl-C stops it).');
    say('');
    say('  Bookinfo      https://localhost:8443/productpage');
    say(`  log in        ${auth.users.map((u) => u.email).join(' or ')}, password "password" (${auth.idp})`);
    say('                as jason the reviews are v2 (black stars): Istio\'s virtual-service-reviews-test-v2.yaml');
    say('  httpbin       curl --cacert ' + certs.ca.certFile + ' --resolve httpbin.example.com:8443:127.0.0.1 https://httpbin.example.com:8443/status/418');
    say('  HTTP          http://localhost:8080/productpage redirects to HTTPS');
    say(`  mesh          ${mesh.sidecars.size} sidecars, STRICT mTLS (mesh CA ${resolve(certsDir, 'mesh-ca')})`);
    say(`  admin         http://127.0.0.1:${admin.port()}/config_dump  /clusters  /routes  /certs`);
    say(`  metrics       http://127.0.0.1:${metrics.port}/stats/prometheus`);
    say(`  traces        http://127.0.0.1:${admin.port()}/api/traces?service=istio-ingressgateway.istio-system  (Jaeger API)`);
    say(`  dashboard     http://127.0.0.1:${admin.port()}/dashboard  (service graph, routes with hits, upstream health, traces)`);
    say('');
    say(`  The CA that signed the demo certificates: ${certs.ca.certFile}`);
    say('');
    return { close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

export async function run(argv: string[]): Promise<number | undefined> {
  let values;
  try {
    values = parseArgs({ args: argv, options: { 'certs-dir': { type: 'string' }, 'admin-port': { type: 'string' }, 'metrics-port': { type: 'string' }, host: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }).values;
  } catch (err) {
    process.stderr.write(`portico demo: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let demo: DemoHandle;
  try {
    demo = await startDemo({
      certsDir: values['certs-dir'],
      adminPort: values['admin-port'] ? Number(values['admin-port']) : undefined,
      metricsPort: values['metrics-port'] ? Number(values['metrics-port']) : undefined,
      host: values.host,
    });
  } catch (err) {
    process.stderr.write(`portico demo: ${(err as Error).message}\n`);
    return 1;
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: stopping the demo...\n`);
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  return undefined;
}
