/**
 * `portico controlplane (--config PATH | --kubernetes [--kubeconfig F]) [--port 15010] [--ca-dir DIR]
 *                       [--trust-domain D] [--token-file F | PORTICO_BOOTSTRAP_TOKEN] [--cert-ttl 24h]`
 * Watches the config (files, or the Kubernetes API), pushes snapshots to proxies and signs
 * workload certificates.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from '../../config/index.ts';
import { checkTokenText } from '../../controlplane/auth.ts';
import { jsonLogger } from '../../controlplane/log.ts';
import { DEFAULT_CONTROLPLANE_PORT, DEFAULT_TRUST_DOMAIN, startControlPlane } from '../../controlplane/server.ts';

const USAGE = `usage: portico controlplane (--config PATH [--config PATH...] | --kubernetes) [options]
  --kubernetes          the Kubernetes API is the source of truth: Istio CRDs, Services,
                        EndpointSlices, Pods, the mesh ConfigMap and credentialName Secrets
  --kubeconfig FILE     API access (default: in-cluster service account, else $KUBECONFIG)
  --namespace NS        the control plane's namespace (default: the service account's, else
                        POD_NAMESPACE, else portico-system)
  --mesh-config NS/NAME the MeshConfig ConfigMap (key mesh) (default <namespace>/istio)
  --proxy-image IMAGE   with --kubernetes: serve the sidecar injection webhook (:15017 /inject) and
                        inject this image (else env PORTICO_PROXY_IMAGE, else in a pod (POD_NAME)
                        its own image; none = no injection)
  --webhook-service NS/NAME  the Service the API server calls the webhook through, which is also
                        the sidecars' control plane URL (default portico-system/portico-controlplane)
  --webhook-port N      webhook port (default 15017, istiod's)
  --port N              listen port (default ${DEFAULT_CONTROLPLANE_PORT}; 0 picks a free one)
  --host ADDR           listen address (default 0.0.0.0 with a token, 127.0.0.1 without)
  --ca-dir DIR          mesh root CA (ca.crt, ca.key; created when missing) (default certs/out/mesh-ca;
                        with --kubernetes: Secret portico-ca in --namespace, shared by replicas)
  --trust-domain D      SPIFFE trust domain (default ${DEFAULT_TRUST_DOMAIN})
  --cert-ttl DURATION   workload certificate lifetime, e.g. 24h, 90m (default 24h; at most 2160h)
  --token-file FILE     bootstrap token proxies must present (else PORTICO_BOOTSTRAP_TOKEN)
  --secrets-dir DIR     where credentialName secrets live (default certs/out/credentials); with
                        --kubernetes: the private directory the Secrets are written to, managed
                        by the control plane (default: a new temporary directory)
  --heartbeat DURATION  stream heartbeat interval (default 5s)
`;

function fail(message: string): number {
  process.stderr.write(`portico controlplane: ${message}\n`);
  return 2;
}

export async function run(argv: string[]): Promise<number | undefined> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', multiple: true },
        kubernetes: { type: 'boolean' },
        kubeconfig: { type: 'string' },
        namespace: { type: 'string' },
        'mesh-config': { type: 'string' },
        'proxy-image': { type: 'string' },
        'webhook-service': { type: 'string', default: 'portico-system/portico-controlplane' },
        'webhook-port': { type: 'string', default: '15017' },
        port: { type: 'string', default: String(DEFAULT_CONTROLPLANE_PORT) },
        host: { type: 'string' },
        'ca-dir': { type: 'string' },
        'trust-domain': { type: 'string', default: DEFAULT_TRUST_DOMAIN },
        'cert-ttl': { type: 'string', default: '24h' },
        'token-file': { type: 'string' },
        'secrets-dir': { type: 'string' },
        heartbeat: { type: 'string', default: '5s' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`portico controlplane: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = args.config ?? [];
  if (config.length === 0 && !args.kubernetes) return fail(`--config or --kubernetes is required\n${USAGE}`);
  if (config.length > 0 && args.kubernetes) return fail('--config and --kubernetes are alternatives: give one');
  if (!args.kubernetes && (args.kubeconfig || args['mesh-config'] || args.namespace)) return fail('--kubeconfig, --namespace and --mesh-config need --kubernetes');
  let meshConfig: { namespace: string; name: string } | undefined;
  if (args['mesh-config'] !== undefined) {
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(args['mesh-config']);
    if (!m) return fail(`--mesh-config: '${args['mesh-config']}' is not NAMESPACE/NAME`);
    meshConfig = { namespace: m[1], name: m[3] };
  }
  const port = Number(args.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return fail(`--port: '${args.port}' is not a port number`);
  const ttlMs = parseDuration(args['cert-ttl'] ?? '');
  if (ttlMs === undefined || ttlMs <= 0) return fail(`--cert-ttl: '${args['cert-ttl']}' is not a positive duration (e.g. 24h, 90m)`);
  const heartbeatMs = parseDuration(args.heartbeat ?? '');
  if (heartbeatMs === undefined || heartbeatMs < 100) return fail(`--heartbeat: '${args.heartbeat}' is not a duration of at least 100ms`);

  let token: string | undefined;
  try {
    if (args['token-file']) {
      let text: string;
      try {
        text = readFileSync(args['token-file'], 'utf8');
      } catch (err) {
        return fail(`--token-file: cannot read ${args['token-file']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      token = checkTokenText(text, `--token-file ${args['token-file']}`);
    } else if (process.env.PORTICO_BOOTSTRAP_TOKEN !== undefined) {
      token = checkTokenText(process.env.PORTICO_BOOTSTRAP_TOKEN, 'PORTICO_BOOTSTRAP_TOKEN');
    }
  } catch (err) {
    return fail((err as Error).message);
  }

  const log = jsonLogger('controlplane');
  if (token !== undefined && token.length < 16) log.warn('the bootstrap token is short; use at least 32 random characters (openssl rand -hex 32)');
  let kubernetes;
  let secretsTmp: string | undefined;
  let sharedCa: { certPem: string; keyPem: string } | undefined;
  if (args.kubernetes) {
    const { KubeApi, loadKubeConfig, ownNamespace } = await import('../../kube/api.ts');
    let loaded;
    try {
      loaded = loadKubeConfig({ kubeconfig: args.kubeconfig });
    } catch (err) {
      return fail((err as Error).message);
    }
    const namespace = args.namespace ?? ownNamespace('portico-system');
    // credentialName Secrets are decoded into a private directory: --secrets-dir (replicas using
    // the same path compile identical snapshot versions), else a temporary one that lives as long as we do.
    if (args['secrets-dir'] === undefined) secretsTmp = mkdtempSync(join(tmpdir(), 'portico-credentials-'));
    const api = new KubeApi(loaded.kc);
    // HA: every replica serves; the Lease holder (identity = the pod name) writes Events/status.
    const identity = process.env.POD_NAME ?? hostname();
    let image = args['proxy-image'] ?? process.env.PORTICO_PROXY_IMAGE;
    if (image === undefined && process.env.POD_NAME) {
      // In the cluster the control plane's own image is the proxy's (one image, set once by the
      // kit's kustomize `images:`).
      const { ownImage } = await import('../../kube/inject.ts');
      try {
        image = await ownImage(api, namespace, process.env.POD_NAME);
      } catch (err) {
        log.warn('could not read this pod to learn the proxy image', { pod: `${namespace}/${process.env.POD_NAME}`, error: (err as Error).message });
      }
    }
    let injection;
    if (image) {
      const [svcNs, svcName, extra] = args['webhook-service']!.split('/');
      const webhookPort = Number(args['webhook-port']);
      if (!svcNs || !svcName || extra !== undefined) return fail(`--webhook-service: '${args['webhook-service']}' is not NAMESPACE/NAME`);
      if (!Number.isInteger(webhookPort) || webhookPort < 1 || webhookPort > 65535) return fail(`--webhook-port: '${args['webhook-port']}' is not a port`);
      injection = {
        inject: { image, controlPlaneUrl: `http://${svcName}.${svcNs}.svc:${port}` },
        client: { service: { namespace: svcNs, name: svcName, port: webhookPort } },
        dnsNames: [`${svcName}.${svcNs}.svc`, `${svcName}.${svcNs}.svc.cluster.local`, `${svcName}.${svcNs}`],
        port: webhookPort,
      };
    } else log.warn('sidecar injection is off: give --proxy-image or PORTICO_PROXY_IMAGE, or run in a pod (POD_NAME) whose image is used');
    kubernetes = { api, meshConfig: meshConfig ?? { namespace, name: 'istio' }, secretsDir: args['secrets-dir'] ?? secretsTmp!, leaderElection: { namespace, identity }, injection };
    if (args['ca-dir'] === undefined) {
      const { loadOrCreateSharedCa } = await import('../../kube/lease.ts');
      try {
        const shared = await loadOrCreateSharedCa(api, namespace);
        sharedCa = shared.ca;
        log.info(shared.created ? 'created the mesh CA Secret' : 'using the mesh CA Secret', { secret: `${namespace}/portico-ca` });
      } catch (err) {
        return fail(`cannot read or create Secret ${namespace}/portico-ca: ${(err as Error).message}`);
      }
    }
    log.info('reading config from the Kubernetes API', { server: kubernetes.api.server, credentials: loaded.source, namespace, meshConfig: `${kubernetes.meshConfig.namespace}/${kubernetes.meshConfig.name}` });
  }
  const cp = await startControlPlane({
    config: args.kubernetes ? undefined : config,
    kubernetes,
    port,
    host: args.host,
    caDir: sharedCa ? undefined : (args['ca-dir'] ?? 'certs/out/mesh-ca'),
    ca: sharedCa,
    trustDomain: args['trust-domain'],
    certTtlHours: ttlMs / 3_600_000,
    token,
    heartbeatMs,
    secretsDir: args['secrets-dir'],
    logger: log,
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    cp.close().then(
      () => {
        if (secretsTmp) rmSync(secretsTmp, { recursive: true, force: true });
        process.exit(0);
      },
      (err: Error) => {
        log.error('error while stopping', { error: err.message });
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return undefined;
}
