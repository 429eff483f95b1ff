/**
 * `portico sidecar` — one workload's mesh proxy (gateway/sidecar.ts):
 *
 *   portico sidecar --config PATH --workload NS/NAME --app-port N [--ca-dir DIR]
 *   portico sidecar --controlplane URL --workload NS/NAME --app-port N [--token-file F]
 *
 * With --config the workload certificate is issued locally from the mesh CA in --ca-dir (the
 * same directory `portico controlplane` uses) and the config directory is watched; with
 * --controlplane the snapshot streams from the control plane and the certificate comes from its
 * CSR API. Either way the certificate is renewed at half its lifetime without dropping
 * connections. See docs/mesh.md.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
// Local mode (--config, --ca-dir) loads the config loader and node-forge on demand; a sidecar fed
// by the control plane never loads them (about 20 MB less RSS).
import { certInfo } from '../../certs/info.ts';
import type { CaPair } from '../../certs/types.ts';
import { formatIssue } from '../../config/errors.ts';
import { parseDuration } from '../../config/schema.ts';
import type { ConfigWatcher } from '../../config/watch.ts';
import type { Snapshot, Workload } from '../../config/snapshot.ts';
import { appHealthHandler, parseAppProbers } from '../../gateway/app-health.ts';
import { INBOUND_PORTS_ENV, POD_LABELS_ENV, type AppProber } from '../../kube/inject.ts';
import { CertRotator, connectProxyToControlPlane, defaultNodeId, requestWorkloadCertificate, tokenFromFile, waitForSnapshot, type Subscription, type TokenSource, type WorkloadCertificate } from '../../controlplane/client.ts';
import { MeshIdentity, wantsIstioMutual } from '../../gateway/mtls.ts';
import { DEFAULT_OUTBOUND_PORT, InboundTelemetry, SidecarRuntime, workloadKey } from '../../gateway/sidecar.ts';
import type { GatewayLogger } from '../../gateway/runtime.ts';
import { createTelemetry, type PorticoTelemetry } from '../../gateway/telemetry/index.ts';
import { consoleLogger } from './gateway.ts';
import { parseInboundMap } from '../../kube/iptables.ts';

const USAGE = `usage: portico sidecar (--config PATH | --controlplane URL) --workload NS/NAME [options]
  --workload NS/NAME    the WorkloadEntry this sidecar serves (bare NAME = namespace default)
  --app-port N | name=N,...  where the app listens (default: the WorkloadEntry label portico.dev/app-port)
  --outbound-port N     the app's HTTP_PROXY listener on 127.0.0.1 (default ${DEFAULT_OUTBOUND_PORT}; 0 picks one)
  --inbound-host ADDR   inbound bind address (default the WorkloadEntry address)
  --inbound-ports LIST  transparent capture: PORT=LISTENER,... (the inbound listener for each
                        WorkloadEntry port binds LISTENER, where \`portico iptables\` redirects PORT)
  --kubernetes-pod      an injected pod's sidecar: the workload is this pod (POD_NAME, POD_NAMESPACE,
                        INSTANCE_IP, SERVICE_ACCOUNT, PORTICO_POD_LABELS, PORTICO_INBOUND_PORTS env),
                        app probes from ISTIO_KUBE_APP_PROBERS; see docs/kubernetes.md
  --ca-dir DIR          mesh root CA for local issuance (default certs/out/mesh-ca)
  --secrets-dir DIR     where credentialName secrets named by the config live (default certs/out/credentials)
  --cert-ttl DURATION   local certificate lifetime (default 24h)
  --token-file FILE     control plane bootstrap token (else PORTICO_BOOTSTRAP_TOKEN)
  --metrics-port N      Istio metrics and trace store at /stats/prometheus (default 15020; 0 any free
                        port; -1 disables). Sidecars sharing a host need distinct ports.
  --metrics-host ADDR   metrics bind address (default 0.0.0.0)
  --trace-sampling PCT  percent of new traces sampled (else MeshConfig defaultConfig.tracing.sampling, else 1)
  --otlp-endpoint URL   export spans over OTLP/HTTP (e.g. http://127.0.0.1:4318/v1/traces)
The WorkloadEntry's ports are where the sidecar listens (what peers connect to, mTLS); the app
listens on --app-port. Inbound ports: the WorkloadEntry ports.
`;

export interface StartSidecarOptions {
  readonly workload: string;
  readonly appPort?: number | Readonly<Record<string, number>>;
  readonly outboundPort?: number;
  readonly inboundHost?: string;
  /** Transparent capture: WorkloadEntry port → the port its inbound listener binds. */
  readonly inboundListen?: ReadonlyMap<number, number>;
  /** An injected pod's own workload (no WorkloadEntry needed). */
  readonly podWorkload?: Workload;
  /** Rewritten kubelet probes (`/app-health/...` on the metrics port), from ISTIO_KUBE_APP_PROBERS. */
  readonly appProbers?: ReadonlyMap<string, AppProber>;
  readonly logger?: GatewayLogger;
  readonly drainMs?: number;
  /** Istio's :15020 (`/stats/prometheus`, trace store): 0 picks a free port; absent or -1 = off. */
  readonly metricsPort?: number;
  /** Default 127.0.0.1 (the CLI passes 0.0.0.0, as the gateway, so Prometheus can scrape it). */
  readonly metricsHost?: string;
  /** OTLP/HTTP traces endpoint (spans per hop: CLIENT outbound, SERVER inbound). */
  readonly otlpEndpoint?: string;
  /** Percent of new traces sampled (else MeshConfig defaultConfig.tracing.sampling, else 1). */
  readonly tracingSampling?: number;
  /** Local mode: config paths and the mesh CA. */
  readonly config?: readonly string[];
  /** Where `credentialName` secrets named by the config live (default certs/out/credentials). */
  readonly secretsDir?: string;
  readonly ca?: CaPair;
  /** Local certificate lifetime in hours (default 24). */
  readonly certTtlHours?: number;
  /** Reuse a certificate already issued (demo: skip key generation at start-up). */
  readonly initialCert?: WorkloadCertificate;
  readonly watch?: boolean;
  /** Control plane mode. */
  readonly controlplane?: string;
  /** Read again at each use (a projected service-account token is rotated by the kubelet). */
  readonly token?: TokenSource;
}

export interface SidecarHandle {
  readonly sidecar: SidecarRuntime;
  readonly identity: MeshIdentity;
  readonly rotator: CertRotator;
  /** Control plane subscription (control plane mode). */
  readonly subscription?: Subscription;
  /** Outbound (reporter `source`) and inbound (reporter `destination`) telemetry, when enabled. */
  readonly telemetry?: PorticoTelemetry;
  readonly inboundTelemetry?: InboundTelemetry;
  /** The metrics server's actual port, when it listens. */
  readonly metricsPort?: number;
  close(): Promise<void>;
}

/** A locally issued workload certificate, shaped like the control plane's answer. */
export async function issueLocalCert(ca: CaPair, snapshot: Snapshot, workload: string, ttlHours?: number): Promise<WorkloadCertificate> {
  const { issueWorkloadCert } = await import('../../certs/workload.ts');
  const key = workloadKey(workload);
  const wl = snapshot.workloads.find((w) => w.key === key);
  if (!wl) throw new Error(`workload ${key}: no WorkloadEntry of that namespace/name in the config`);
  const cert = issueWorkloadCert(ca, { trustDomain: snapshot.meshConfig.trustDomain, namespace: wl.namespace, serviceAccount: wl.serviceAccount ?? 'default', ttlHours });
  const info = certInfo(cert.certPem);
  return { certPem: cert.certPem, keyPem: cert.keyPem, caCertPem: ca.certPem, spiffeId: cert.spiffeId, notBefore: info.notBefore, notAfter: info.notAfter, serialNumber: info.serialNumber };
}

/** Starts a sidecar in-process (used by the CLI, the demo and tests). */
export async function startSidecar(opts: StartSidecarOptions): Promise<SidecarHandle> {
  const log = opts.logger ?? consoleLogger('sidecar');
  let snapshot: Snapshot;
  let initialMessage: Awaited<ReturnType<typeof waitForSnapshot>> | undefined;
  if (opts.controlplane) {
    initialMessage = await waitForSnapshot({ url: opts.controlplane, token: opts.token, logger: log });
    snapshot = initialMessage.snapshot;
  } else {
    if (!opts.config?.length) throw new Error('give --config PATH or --controlplane URL');
    const { buildSnapshot } = await import('../../config/index.ts');
    const built = await buildSnapshot(opts.config, { secretsDir: opts.secretsDir });
    if (!built.ok) throw new Error(`config has ${built.issues.length} problem(s):\n${built.issues.map((i) => formatIssue(i)).join('\n')}`);
    snapshot = built.snapshot;
  }
  let current = snapshot;
  const ca = opts.ca;
  const issue = opts.controlplane
    ? undefined
    : async (): Promise<WorkloadCertificate> => {
        if (!ca) throw new Error('local mode needs a mesh CA (--ca-dir)');
        return issueLocalCert(ca, current, opts.workload, opts.certTtlHours);
      };
  let identity: MeshIdentity | undefined;
  // A given certificate (demo: reused across runs) is served first; renewals use the issuer.
  let given = opts.initialCert;
  const first = async (): Promise<WorkloadCertificate> => {
    if (given) {
      const g = given;
      given = undefined;
      return g;
    }
    if (issue) return issue();
    return requestWorkloadCertificate({ url: opts.controlplane!, token: opts.token, workload: workloadKey(opts.workload) });
  };
  const rotator = new CertRotator({
    url: opts.controlplane ?? 'local:',
    token: opts.token,
    workload: workloadKey(opts.workload),
    logger: log,
    issue: first,
    onRotate: (cert) => identity?.update(cert),
  });
  const cert = await rotator.start();
  return finish(rotator, cert);

  async function finish(rot: CertRotator, cert: WorkloadCertificate): Promise<SidecarHandle> {
    identity = new MeshIdentity(cert);
    const { telemetry, inbound } = sidecarTelemetry(opts, snapshot, identity.spiffeId);
    const { WasmManager } = await import('../../wasm/plugins.ts');
    const wasm = new WasmManager({ secretsDir: opts.secretsDir, log, node: { id: `sidecar~${opts.workload}`, cluster: opts.workload, metadata: {} } });
    if (telemetry) wasm.register(telemetry.registry);
    const sidecar = new SidecarRuntime(snapshot, {
      wasm,
      workload: opts.workload,
      identity,
      appPort: opts.appPort,
      outboundPort: opts.outboundPort,
      inboundHost: opts.inboundHost,
      inboundListen: opts.inboundListen,
      podWorkload: opts.podWorkload,
      logger: log,
      drainMs: opts.drainMs,
      telemetry,
      inboundTelemetry: inbound,
    });
    telemetry?.attach(sidecar.outbound);
    let metrics: Server | undefined;
    try {
      await sidecar.start();
      if (telemetry && inbound && opts.metricsPort !== undefined && opts.metricsPort >= 0) {
        const health = appHealthHandler(opts.appProbers ?? new Map(), () => true);
        metrics = await listenMetrics(telemetry, opts.metricsPort, opts.metricsHost ?? '127.0.0.1', health);
      }
    } catch (err) {
      rot.close();
      await sidecar.close(0);
      await telemetry?.close();
      throw err;
    }
    let watcher: ConfigWatcher | undefined;
    let subscription: Subscription | undefined;
    const consumer = {
      apply: async (s: Snapshot) => {
        try {
          await sidecar.apply(s);
        } catch (err) {
          telemetry?.configReloadFailed();
          throw err;
        }
        current = s;
      },
    };
    if (opts.controlplane) {
      // The node id names the workload, so the control plane's /v1/status shows which sidecar is which.
      const node = `sidecar/${workloadKey(opts.workload)}@${defaultNodeId()}`.slice(0, 253);
      subscription = connectProxyToControlPlane(consumer, { url: opts.controlplane, token: opts.token, logger: log, initial: initialMessage, node });
    } else if (opts.watch !== false && opts.config) {
      const { watchConfig } = await import('../../config/watch.ts');
      watcher = watchConfig(opts.config, { initialVersion: snapshot.version, secretsDir: opts.secretsDir }, (result) => {
        if (!result.ok) return log.error('config change rejected; still serving the previous config', { problems: result.issues.map((i) => formatIssue(i)) });
        consumer.apply(result.snapshot).catch((err: unknown) => log.error('config change not applied', { error: err instanceof Error ? err.message : String(err) }));
      });
    }
    return {
      sidecar,
      identity: identity!,
      rotator: rot,
      subscription,
      telemetry,
      inboundTelemetry: inbound,
      metricsPort: metrics ? (metrics.address() as AddressInfo).port : undefined,
      async close() {
        rot.close();
        subscription?.close();
        watcher?.close();
        await sidecar.close(opts.drainMs ?? 1_000);
        if (metrics) {
          metrics.closeAllConnections();
          await new Promise<void>((r) => metrics!.close(() => r()));
        }
        await telemetry?.close();
      },
    };
  }
}

/**
 * Outbound telemetry is the gateway's (reporter `source`, CLIENT spans, this workload as the
 * source); inbound keeps Istio's `reporter="destination"` series with the mTLS peer as the
 * source. Both share one trace store and one OTLP exporter. Off unless metrics or OTLP are asked for.
 */
function sidecarTelemetry(opts: StartSidecarOptions, snapshot: Snapshot, principal: string): { telemetry?: PorticoTelemetry; inbound?: InboundTelemetry } {
  const metricsOn = opts.metricsPort !== undefined && opts.metricsPort >= 0;
  if (!metricsOn && !opts.otlpEndpoint) return {};
  const key = workloadKey(opts.workload);
  const wl = snapshot.workloads.find((w) => w.key === key);
  const [namespace, name] = key.split('/') as [string, string];
  const mc = snapshot.meshConfig;
  const sampling = opts.tracingSampling ?? mc.tracingSampling ?? 1;
  const telemetry = createTelemetry({
    proxy: {
      workload: wl?.labels['service.istio.io/workload-name'] ?? name,
      namespace,
      app: wl?.labels.app ?? name,
      version: wl?.labels.version,
      principal,
      canonicalService: wl?.labels['service.istio.io/canonical-name'],
      canonicalRevision: wl?.labels['service.istio.io/canonical-revision'],
    },
    reporter: 'source',
    upstreamMtls: wantsIstioMutual,
    ip: wl?.address,
    trustDomain: mc.trustDomain,
    tracing: { sampling, otlpEndpoint: opts.otlpEndpoint, nodeId: `sidecar~${wl?.address ?? '127.0.0.1'}~${name}.${namespace}~${namespace}.svc.cluster.local` },
  });
  const inbound = new InboundTelemetry({ registry: telemetry.registry, traces: telemetry.traces, exporter: telemetry.exporter, sampling });
  return { telemetry, inbound };
}

/** Istio's :15020 for one sidecar: both sides' metrics (one registry) and the trace store, as the gateway's. */
async function listenMetrics(telemetry: PorticoTelemetry, port: number, host: string, health: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<Server> {
  const server = createServer((req, res) => {
    if (health(req, res) || telemetry.metricsHandler(req, res)) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /stats/prometheus\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(`metrics port ${port} is already in use (another sidecar on this host?): pass --metrics-port N, 0 for any free port, or -1 to disable`)
          : err,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return server;
}

/**
 * An injected pod's workload from the env the injector set (kube/inject.ts): the downward API's
 * name, namespace, IP and service account, the labels at admission, the captured ports.
 */
export function podFromEnv(env: NodeJS.ProcessEnv, inboundPorts?: string): { workload: Workload; listen: Map<number, number>; appPort: Record<string, number> } {
  const need = (k: string): string => {
    const v = env[k]?.trim();
    if (!v) throw new Error(`--kubernetes-pod: env ${k} is not set (the injector sets it from the downward API)`);
    return v;
  };
  const name = need('POD_NAME');
  const namespace = need('POD_NAMESPACE');
  let labels: Record<string, string> = {};
  if (env[POD_LABELS_ENV]) {
    try {
      labels = JSON.parse(env[POD_LABELS_ENV]!) as Record<string, string>;
    } catch (err) {
      throw new Error(`--kubernetes-pod: env ${POD_LABELS_ENV}: not JSON: ${(err as Error).message}`);
    }
  }
  const listen = parseInboundMap(inboundPorts ?? env[INBOUND_PORTS_ENV], inboundPorts !== undefined ? '--inbound-ports' : `env ${INBOUND_PORTS_ENV}`);
  const ports = Object.fromEntries([...listen.keys()].map((p) => [`port-${p}`, p]));
  return {
    workload: { key: `${namespace}/${name}`, name, namespace, address: need('INSTANCE_IP'), labels, ports, serviceAccount: env.SERVICE_ACCOUNT?.trim() || 'default', weight: 1 },
    listen,
    appPort: ports,
  };
}

function parseAppPort(v: string | undefined): number | Record<string, number> | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const out: Record<string, number> = {};
  for (const part of v.split(',')) {
    const [name, port] = part.split('=');
    if (!name || !port || !/^\d+$/.test(port)) throw new Error(`--app-port: '${part}' is not N or name=N`);
    out[name] = Number(port);
  }
  return out;
}

export async function run(argv: string[]): Promise<number | undefined> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', multiple: true },
        controlplane: { type: 'string' },
        workload: { type: 'string' },
        'app-port': { type: 'string' },
        'outbound-port': { type: 'string' },
        'inbound-host': { type: 'string' },
        'inbound-ports': { type: 'string' },
        'kubernetes-pod': { type: 'boolean', default: false },
        'ca-dir': { type: 'string', default: 'certs/out/mesh-ca' },
        'secrets-dir': { type: 'string' },
        'cert-ttl': { type: 'string', default: '24h' },
        'token-file': { type: 'string' },
        'metrics-port': { type: 'string', default: '15020' },
        'metrics-host': { type: 'string', default: '0.0.0.0' },
        'trace-sampling': { type: 'string' },
        'otlp-endpoint': { type: 'string' },
        'no-watch': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`portico sidecar: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let pod: ReturnType<typeof podFromEnv> | undefined;
  try {
    if (values['kubernetes-pod']) pod = podFromEnv(process.env, values['inbound-ports']);
  } catch (err) {
    process.stderr.write(`portico sidecar: ${(err as Error).message}\n`);
    return 2;
  }
  if (pod) values.workload = pod.workload.key;
  if (!values.workload || (!values.config && !values.controlplane) || (values.config && values.controlplane)) {
    process.stderr.write(`portico sidecar: give --workload and exactly one of --config or --controlplane\n${USAGE}`);
    return 2;
  }
  let handle: SidecarHandle;
  try {
    const metricsPort = Number(values['metrics-port']);
    if (!Number.isInteger(metricsPort) || metricsPort < -1 || metricsPort > 65535) throw new Error(`--metrics-port: '${values['metrics-port']}' is not a port number (or -1 to disable)`);
    const sampling = values['trace-sampling'] === undefined ? undefined : Number(values['trace-sampling']);
    if (sampling !== undefined && !(sampling >= 0 && sampling <= 100)) throw new Error(`--trace-sampling: '${values['trace-sampling']}' is not a percentage 0..100`);
    const ttl = parseDuration(values['cert-ttl']!);
    if (ttl === undefined) throw new Error(`--cert-ttl: '${values['cert-ttl']}' is not a duration`);
    handle = await startSidecar({
      workload: values.workload,
      appPort: pod ? pod.appPort : parseAppPort(values['app-port']),
      outboundPort: values['outbound-port'] !== undefined ? Number(values['outbound-port']) : undefined,
      inboundHost: values['inbound-host'] ?? (pod ? '0.0.0.0' : undefined),
      inboundListen: pod ? pod.listen : values['inbound-ports'] !== undefined ? parseInboundMap(values['inbound-ports'], '--inbound-ports') : undefined,
      podWorkload: pod?.workload,
      appProbers: parseAppProbers(process.env.ISTIO_KUBE_APP_PROBERS),
      config: values.config?.map((p) => resolve(p)),
      secretsDir: values['secrets-dir'] ? resolve(values['secrets-dir']) : undefined,
      ca: values.config ? (await import('../../certs/store.ts')).loadOrCreateCa(resolve(values['ca-dir']!)) : undefined,
      certTtlHours: ttl / 3_600_000,
      controlplane: values.controlplane,
      token: values['token-file'] ? tokenFromFile(values['token-file']) : undefined,
      metricsPort,
      metricsHost: values['metrics-host'],
      otlpEndpoint: values['otlp-endpoint'],
      tracingSampling: sampling,
      watch: !values['no-watch'],
    });
  } catch (err) {
    process.stderr.write(`portico sidecar: ${(err as Error).message}\n`);
    return 1;
  }
  const s = handle.sidecar;
  process.stdout.write(
    `sidecar ready workload=${s.workload().key} spiffe=${handle.identity.spiffeId} outbound=127.0.0.1:${s.outboundPort()} inbound=${[...s.inboundPorts().values()].join(',')} metrics=${handle.metricsPort ?? 'off'}\n`,
  );
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    handle.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return undefined;
}
