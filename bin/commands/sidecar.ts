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
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { certInfo, issueWorkloadCert, loadOrCreateCa, type CaPair } from '../../certs/index.ts';
import { buildSnapshot, formatIssue, parseDuration, watchConfig, type ConfigWatcher } from '../../config/index.ts';
import type { Snapshot } from '../../config/snapshot.ts';
import { CertRotator, connectProxyToControlPlane, defaultNodeId, requestWorkloadCertificate, waitForSnapshot, type Subscription, type WorkloadCertificate } from '../../controlplane/index.ts';
import { MeshIdentity } from '../../gateway/mtls.ts';
import { DEFAULT_OUTBOUND_PORT, SidecarRuntime, workloadKey } from '../../gateway/sidecar.ts';
import type { GatewayLogger } from '../../gateway/runtime.ts';
import { createTelemetry } from '../../gateway/telemetry/index.ts';
import { consoleLogger } from './gateway.ts';

const USAGE = `usage: portico sidecar (--config PATH | --controlplane URL) --workload NS/NAME [options]
  --workload NS/NAME    the WorkloadEntry this sidecar serves (bare NAME = namespace default)
  --app-port N | name=N,...  where the app listens (default: the WorkloadEntry label portico.dev/app-port)
  --outbound-port N     the app's HTTP_PROXY listener on 127.0.0.1 (default ${DEFAULT_OUTBOUND_PORT}; 0 picks one)
  --inbound-host ADDR   inbound bind address (default the WorkloadEntry address)
  --ca-dir DIR          mesh root CA for local issuance (default certs/out/mesh-ca)
  --cert-ttl DURATION   local certificate lifetime (default 24h)
  --token-file FILE     control plane bootstrap token (else PORTICO_BOOTSTRAP_TOKEN)
  --metrics-port N      Istio metrics (:15020 style); default off
The WorkloadEntry's ports are where the sidecar listens (what peers connect to, mTLS); the app
listens on --app-port. Inbound ports: the WorkloadEntry ports.
`;

export interface StartSidecarOptions {
  readonly workload: string;
  readonly appPort?: number | Readonly<Record<string, number>>;
  readonly outboundPort?: number;
  readonly inboundHost?: string;
  readonly logger?: GatewayLogger;
  readonly drainMs?: number;
  readonly metricsPort?: number;
  /** Local mode: config paths and the mesh CA. */
  readonly config?: readonly string[];
  readonly ca?: CaPair;
  /** Local certificate lifetime in hours (default 24). */
  readonly certTtlHours?: number;
  /** Reuse a certificate already issued (demo: skip key generation at start-up). */
  readonly initialCert?: WorkloadCertificate;
  readonly watch?: boolean;
  /** Control plane mode. */
  readonly controlplane?: string;
  readonly token?: string;
}

export interface SidecarHandle {
  readonly sidecar: SidecarRuntime;
  readonly identity: MeshIdentity;
  readonly rotator: CertRotator;
  /** Control plane subscription (control plane mode). */
  readonly subscription?: Subscription;
  close(): Promise<void>;
}

/** A locally issued workload certificate, shaped like the control plane's answer. */
export function issueLocalCert(ca: CaPair, snapshot: Snapshot, workload: string, ttlHours?: number): WorkloadCertificate {
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
    const built = await buildSnapshot(opts.config);
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
    const telemetry = opts.metricsPort !== undefined ? createTelemetry({ proxy: { workload: opts.workload, namespace: workloadKey(opts.workload).split('/')[0]!, app: opts.workload }, reporter: 'source' }) : undefined;
    const sidecar = new SidecarRuntime(snapshot, { workload: opts.workload, identity, appPort: opts.appPort, outboundPort: opts.outboundPort, inboundHost: opts.inboundHost, logger: log, drainMs: opts.drainMs, telemetry });
    telemetry?.attach(sidecar.outbound);
    try {
      await sidecar.start();
    } catch (err) {
      rot.close();
      await sidecar.close(0);
      throw err;
    }
    if (telemetry && opts.metricsPort !== undefined) await telemetry.listen(opts.metricsPort);
    let watcher: ConfigWatcher | undefined;
    let subscription: Subscription | undefined;
    const consumer = {
      apply: async (s: Snapshot) => {
        await sidecar.apply(s);
        current = s;
      },
    };
    if (opts.controlplane) {
      // The node id names the workload, so the control plane's /v1/status shows which sidecar is which.
      const node = `sidecar/${workloadKey(opts.workload)}@${defaultNodeId()}`.slice(0, 253);
      subscription = connectProxyToControlPlane(consumer, { url: opts.controlplane, token: opts.token, logger: log, initial: initialMessage, node });
    } else if (opts.watch !== false && opts.config) {
      watcher = watchConfig(opts.config, { initialVersion: snapshot.version }, (result) => {
        if (!result.ok) return log.error('config change rejected; still serving the previous config', { problems: result.issues.map((i) => formatIssue(i)) });
        consumer.apply(result.snapshot).catch((err: unknown) => log.error('config change not applied', { error: err instanceof Error ? err.message : String(err) }));
      });
    }
    return {
      sidecar,
      identity: identity!,
      rotator: rot,
      subscription,
      async close() {
        rot.close();
        subscription?.close();
        watcher?.close();
        await sidecar.close(opts.drainMs ?? 1_000);
        await telemetry?.close();
      },
    };
  }
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
        'ca-dir': { type: 'string', default: 'certs/out/mesh-ca' },
        'cert-ttl': { type: 'string', default: '24h' },
        'token-file': { type: 'string' },
        'metrics-port': { type: 'string' },
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
  if (!values.workload || (!values.config && !values.controlplane) || (values.config && values.controlplane)) {
    process.stderr.write(`portico sidecar: give --workload and exactly one of --config or --controlplane\n${USAGE}`);
    return 2;
  }
  let handle: SidecarHandle;
  try {
    const ttl = parseDuration(values['cert-ttl']!);
    if (ttl === undefined) throw new Error(`--cert-ttl: '${values['cert-ttl']}' is not a duration`);
    handle = await startSidecar({
      workload: values.workload,
      appPort: parseAppPort(values['app-port']),
      outboundPort: values['outbound-port'] !== undefined ? Number(values['outbound-port']) : undefined,
      inboundHost: values['inbound-host'],
      config: values.config?.map((p) => resolve(p)),
      ca: values.config ? loadOrCreateCa(resolve(values['ca-dir']!)) : undefined,
      certTtlHours: ttl / 3_600_000,
      controlplane: values.controlplane,
      token: values['token-file'] ? readFileSync(values['token-file'], 'utf8').trim() : undefined,
      metricsPort: values['metrics-port'] !== undefined ? Number(values['metrics-port']) : undefined,
      watch: !values['no-watch'],
    });
  } catch (err) {
    process.stderr.write(`portico sidecar: ${(err as Error).message}\n`);
    return 1;
  }
  const s = handle.sidecar;
  process.stdout.write(
    `sidecar ready workload=${s.workload().key} spiffe=${handle.identity.spiffeId} outbound=127.0.0.1:${s.outboundPort()} inbound=${[...s.inboundPorts().values()].join(',')}\n`,
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
