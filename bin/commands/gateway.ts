/**
 * `portico gateway --config PATH [--config PATH...] [--labels k=v,...] [--admin-port N]`
 * Serves the Gateways whose selector matches the labels, reloading when the config changes.
 * With `--controlplane URL --workload NS/NAME` it also joins the mesh: a SPIFFE certificate from
 * the control plane's CSR API, so it originates ISTIO_MUTUAL to sidecar'd endpoints (docs/mesh.md).
 */
import { createLogger } from '../../lib/log.ts';
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { deepFreeze } from '../../config/compile.ts';
import type { Snapshot } from '../../config/snapshot.ts';
import { formatIssue } from '../../config/errors.ts';
import { startAdmin } from '../../gateway/admin.ts';
import { makeHeaderPolicy } from '../../gateway/headers.ts';
import { limitOptionsFromFlags } from '../../gateway/limits.ts';
import type { ListenerOptions } from '../../gateway/listeners.ts';
import { DEFAULT_GATEWAY_LABELS, GatewayRuntime, type GatewayLogger } from '../../gateway/runtime.ts';
import type { MeshIdentity } from '../../gateway/mtls.ts';
import { createTelemetry, type PorticoTelemetry, type TelemetryOptions } from '../../gateway/telemetry/index.ts';
import { bootstrapToken, tokenFromFile, type TokenSource } from '../../controlplane/subscribe.ts';

const USAGE = `usage: portico gateway (--config PATH [--config PATH...] | --controlplane URL) [options]
  --controlplane URL      without --config: routes, clusters and certificates come from the control
                          plane (portico controlplane, e.g. --kubernetes); serves its last snapshot
                          while the control plane is away
  --labels k=v,...        this gateway's labels (default istio=ingressgateway)
  --namespace NS          this gateway's namespace, for namespaced policies (default istio-system)
  --admin-port N          admin endpoint port (default 15000; 0 picks a free port; -1 disables)
  --secrets-dir DIR       where credentialName secrets live (default certs/out/credentials)
  --wasm-isolation inline|worker  where Wasm VMs run: inline on the gateway's thread, metered so a
                          call over its 1 s budget is stopped (default), or in worker threads
  --wasm-cache DIR        WasmPlugin module cache (default $PORTICO_WASM_CACHE, else ~/.cache/portico/wasm-modules)
  --authservice-cookie-secret-file FILE  the authservice's PORTICO_COOKIE_SECRET: turns on the session
                          fast path (checks of a session the authservice marked reusable, with
                          PORTICO_GATEWAY_SESSION_TTL, are answered here; docs/authservice.md)
  --trusted-hops N        x-forwarded-for hops to trust (default 0: this is the edge)
  --identity-header NAME  extra identity header to strip from clients (repeatable)
  --drain-ms N            how long SIGTERM lets in-flight requests finish at most (default 5000)
  --max-request-headers-kb N  request header limit in KiB, as Envoy's max_request_headers_kb (default 60; 431 beyond)
  --max-headers-count N   most request header fields, as Envoy's max_headers_count (default 100; 431 beyond)
  --request-headers-timeout-ms N  a client must send its headers within this (default 30000; 0 disables)
  --request-timeout-ms N  a client must send its whole request within this (default 0: none, as Envoy)
  --access-log            access log to stdout (else MeshConfig accessLogFile decides)
  --admin-host ADDR       admin endpoint address (default 127.0.0.1: config_dump is not for everyone)
  --metrics-port N        Prometheus /stats/prometheus and the trace store (default 15020; -1 disables)
  --metrics-host ADDR     metrics address (default 0.0.0.0, as Istio's :15020, so Prometheus can scrape it)
  --trace-sampling PCT    percent of requests traced (else MeshConfig defaultConfig.tracing.sampling, else 1)
  --otlp-endpoint URL     export spans over OTLP/HTTP (e.g. http://jaeger:4318/v1/traces)
  --no-telemetry          no metrics, tracing or access logs at all
  --health-check-interval MS  actively TCP-check endpoints of clusters with outlierDetection (off by default)
  --workers N             worker processes sharing the listeners (default: number of cores)
  --no-watch              do not reload when the config changes
Mesh identity (certificates only; routes still come from --config):
  --controlplane URL      request this gateway's SPIFFE certificate from the control plane's CSR API
                          and originate ISTIO_MUTUAL to sidecar'd endpoints (auto mTLS)
  --workload NS/NAME      the WorkloadEntry whose identity the gateway takes (its serviceAccount)
  --token-file FILE       control plane bootstrap token (else PORTICO_BOOTSTRAP_TOKEN)
`;

/** `--admin-port -1` → `--admin-port=-1`: parseArgs would read `-1` as an option. */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (a.startsWith('--') && !a.includes('=') && next !== undefined && /^-\d+$/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--labels: '${pair}' is not key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** One JSON line per event on stderr (lib/log.ts: pino, redacted). */
export function consoleLogger(component: string): GatewayLogger {
  return createLogger(component);
}

export async function run(argv: string[]): Promise<number | undefined> {
  let args;
  try {
    args = parseArgs({
      args: joinNegativeValues(argv),
      options: {
        config: { type: 'string', multiple: true },
        labels: { type: 'string' },
        namespace: { type: 'string', default: 'istio-system' },
        'admin-port': { type: 'string', default: '15000' },
        'secrets-dir': { type: 'string' },
        'wasm-cache': { type: 'string' },
        'wasm-isolation': { type: 'string' },
        'trusted-hops': { type: 'string', default: '0' },
        'authservice-cookie-secret-file': { type: 'string' },
        'identity-header': { type: 'string', multiple: true },
        'drain-ms': { type: 'string', default: '5000' },
        'max-request-headers-kb': { type: 'string' },
        'max-headers-count': { type: 'string' },
        'request-headers-timeout-ms': { type: 'string' },
        'request-timeout-ms': { type: 'string' },
        'access-log': { type: 'boolean', default: false },
        'no-watch': { type: 'boolean', default: false },
        workers: { type: 'string' },
        'health-check-interval': { type: 'string' },
        'metrics-port': { type: 'string', default: '15020' },
        'metrics-host': { type: 'string' },
        'admin-host': { type: 'string' },
        'no-telemetry': { type: 'boolean', default: false },
        'trace-sampling': { type: 'string' },
        'otlp-endpoint': { type: 'string' },
        controlplane: { type: 'string' },
        workload: { type: 'string' },
        'token-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`portico gateway: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const paths = args.config ?? [];
  // --controlplane without --config: the control plane is the config source (and --workload optional).
  const fromControlPlane = paths.length === 0 && args.controlplane !== undefined;
  if (paths.length === 0 && !fromControlPlane) {
    process.stderr.write(`portico gateway: --config or --controlplane is required\n${USAGE}`);
    return 2;
  }
  const labels = args.labels ? parseLabels(args.labels) : { ...DEFAULT_GATEWAY_LABELS };
  const workers = args.workers === undefined ? availableParallelism() : Number(args.workers);
  if (!Number.isInteger(workers) || workers < 1) {
    process.stderr.write(`portico gateway: --workers must be a positive integer\n`);
    return 2;
  }
  let listener: ListenerOptions;
  try {
    listener = limitOptionsFromFlags(args);
  } catch (err) {
    process.stderr.write(`portico gateway: ${(err as Error).message}\n`);
    return 2;
  }
  const secretFile = args['authservice-cookie-secret-file'];
  if (secretFile !== undefined) {
    try {
      readCookieSecret(secretFile);
    } catch (err) {
      process.stderr.write(`portico gateway: ${(err as Error).message}\n`);
      return 2;
    }
  }
  let mesh: MeshSettings | undefined;
  let feedToken: TokenSource | undefined;
  try {
    if (fromControlPlane && args.workload === undefined) feedToken = controlPlaneToken(args.controlplane!, args['token-file']);
    else mesh = meshSettings(args.controlplane, args.workload, args['token-file']);
  } catch (err) {
    process.stderr.write(`portico gateway: ${(err as Error).message}\n`);
    return 2;
  }
  const settings: WorkerSettings = {
    labels,
    namespace: args.namespace ?? 'istio-system',
    drainMs: Number(args['drain-ms']),
    trustedHops: Number(args['trusted-hops']),
    identityHeaders: ['kubeflow-userid', 'kubeflow-groups', ...(args['identity-header'] ?? [])],
    accessLog: args['access-log'] ?? false,
    adminPort: Number(args['admin-port']),
    metricsPort: Number(args['metrics-port']),
    metricsHost: args['metrics-host'] ?? '0.0.0.0',
    adminHost: args['admin-host'] ?? '127.0.0.1',
    telemetry: !args['no-telemetry'],
    tracingSampling: args['trace-sampling'] === undefined ? undefined : Number(args['trace-sampling']),
    otlpEndpoint: args['otlp-endpoint'],
    healthCheckIntervalMs: args['health-check-interval'] === undefined ? undefined : Number(args['health-check-interval']),
    mesh,
    listener,
    secretsDir: args['secrets-dir'],
    wasmCache: args['wasm-cache'],
    wasmIsolation: wasmIsolation(args['wasm-isolation']),
    authserviceCookieSecretFile: secretFile,
  };
  if (cluster.isWorker) return runWorker(settings);

  const log = consoleLogger('gateway');
  let snapshot: Snapshot;
  let stopSource: () => void;
  if (fromControlPlane) {
    try {
      const fed = await controlPlaneFeed(args.controlplane!, mesh?.token ?? feedToken, log, (next) => {
        snapshot = next;
        onSnapshot(next);
      });
      snapshot = fed.snapshot;
      stopSource = fed.close;
    } catch (err) {
      process.stderr.write(`portico gateway: not starting: ${(err as Error).message}\n`);
      return 1;
    }
  } else {
    // Only the primary (or a single process) reads YAML: workers get snapshots over IPC and never
    // load the YAML parser and validators (about 7 MB of RSS each).
    const { buildSnapshot, watchConfig } = await import('../../config/index.ts');
    const buildOpts = { secretsDir: args['secrets-dir'] };
    const built = await buildSnapshot(paths, buildOpts);
    if (!built.ok) {
      for (const issue of built.issues) process.stderr.write(`${formatIssue(issue)}\n`);
      process.stderr.write(`portico gateway: config has ${built.issues.length} problem(s); not starting\n`);
      return 1;
    }
    for (const w of built.warnings) process.stderr.write(`warning: ${formatIssue(w)}\n`);
    snapshot = built.snapshot;

    const watcher = args['no-watch']
      ? undefined
      : watchConfig(paths, { ...buildOpts, initialVersion: snapshot.version }, (result) => {
          if (!result.ok) {
            log.error('config change rejected; still serving the previous config', { problems: result.issues.map((i) => formatIssue(i)) });
            return;
          }
          snapshot = result.snapshot;
          onSnapshot(snapshot);
        });
    stopSource = () => watcher?.close();
  }
  const watcher = { close: () => stopSource() };

  if (workers === 1) {
    let worker: RunningGateway;
    try {
      worker = await startWorker(settings, snapshot, log);
    } catch (err) {
      watcher?.close();
      process.stderr.write(`portico gateway: not starting: ${(err as Error).message}\n`);
      return 1;
    }
    onSnapshot = (next) => worker.apply(next);
    onStop(async () => {
      watcher?.close();
      await worker.close();
    }, log);
    return undefined;
  }

  // Primary: workers share the listening sockets (node:cluster); every worker gets each new
  // snapshot from here, so all of them switch to the same version.
  const live = new Set<Worker>();
  let stopping = false;
  const fork = (): void => {
    const w = cluster.fork({ PORTICO_WORKER: '1' });
    live.add(w);
    // The worker asks once its message handler is in place (messages sent earlier are lost).
    let serving = false;
    w.on('message', (msg: { type?: string }) => {
      if (msg.type === 'ready') w.send({ type: 'snapshot', snapshot });
      else if (msg.type === 'serving') serving = true;
    });
    w.on('exit', (code, signal) => {
      live.delete(w);
      if (stopping) return;
      if (!serving) {
        // It never started (a port taken, an unknown workload, a bad token): another worker
        // would fail the same way, so stop instead of restarting in a loop.
        log.error('worker could not start; stopping', { pid: w.process.pid, code, signal });
        stopping = true;
        for (const other of live) other.kill();
        process.exit(1);
      }
      log.error('worker exited; starting a new one', { pid: w.process.pid, code, signal });
      setTimeout(fork, 500).unref();
    });
  };
  // Workers accept from the shared listening sockets themselves (as nginx's workers do) instead of
  // the primary accepting and handing each connection over IPC (round-robin, Node's default off
  // Windows): a worker killed with a handed-over connection not yet acknowledged left that
  // connection open in the primary, unanswered, forever. Here a connection is in the kernel's
  // backlog until a live worker accepts it, and a dying worker's own connections are closed.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2), execArgv: process.execArgv });
  for (let i = 0; i < workers; i++) fork();
  onSnapshot = (next) => {
    for (const w of live) w.send({ type: 'snapshot', snapshot: next });
  };
  log.info('gateway primary started', { workers, version: snapshot.version });
  onStop(async () => {
    stopping = true;
    watcher?.close();
    const exits = [...live].map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
    for (const w of live) w.send({ type: 'shutdown' });
    await Promise.all(exits);
  }, log);
  return undefined;
}

let onSnapshot: (snapshot: Snapshot) => void = () => undefined;

interface WorkerSettings {
  readonly labels: Record<string, string>;
  readonly namespace: string;
  readonly drainMs: number;
  readonly trustedHops: number;
  readonly identityHeaders: string[];
  readonly accessLog: boolean;
  readonly adminPort: number;
  readonly metricsPort: number;
  readonly metricsHost: string;
  readonly adminHost: string;
  readonly telemetry: boolean;
  readonly tracingSampling?: number;
  readonly otlpEndpoint?: string;
  readonly healthCheckIntervalMs?: number;
  readonly mesh?: MeshSettings;
  readonly listener: ListenerOptions;
  /** imagePullSecret folders for WasmPlugins, and their module cache folder. */
  readonly secretsDir?: string;
  readonly wasmCache?: string;
  readonly wasmIsolation?: 'worker' | 'inline';
  /** Read by each worker itself: the secret never travels over IPC. */
  readonly authserviceCookieSecretFile?: string;
}

/**
 * The authservice's cookie secret from a file (a mounted Secret key, or a file written by hand):
 * its bytes, one trailing newline removed, at least 32 bytes as the authservice requires.
 */
function readCookieSecret(file: string): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new Error(`--authservice-cookie-secret-file: cannot read '${file}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let end = raw.length;
  if (end > 0 && raw[end - 1] === 0x0a) end--;
  if (end > 0 && raw[end - 1] === 0x0d) end--;
  if (end < 32) throw new Error(`--authservice-cookie-secret-file: '${file}' holds ${end} bytes; the authservice's PORTICO_COOKIE_SECRET is at least 32`);
  return new Uint8Array(raw.subarray(0, end));
}

/** The bootstrap token for a config-only `--controlplane` (no --workload): --token-file, else PORTICO_BOOTSTRAP_TOKEN. */
function controlPlaneToken(controlplane: string, tokenFile: string | undefined): TokenSource | undefined {
  try {
    const u = new URL(controlplane);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new Error(`--controlplane: '${controlplane}' is not an http(s) URL (e.g. http://controlplane:15010)`);
  }
  if (tokenFile === undefined) return process.env.PORTICO_BOOTSTRAP_TOKEN?.trim() || undefined;
  try {
    return tokenFromFile(tokenFile);
  } catch (err) {
    throw new Error(`--token-file: cannot read ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * `--controlplane` without `--config`: waits for the first snapshot, then follows the stream.
 * The TLS files Gateway servers name are fetched from the control plane into a private
 * directory (controlplane/credential-files.ts) before each snapshot is applied.
 */
async function controlPlaneFeed(
  url: string,
  token: TokenSource | undefined,
  log: GatewayLogger,
  apply: (snapshot: Snapshot) => void,
): Promise<{ snapshot: Snapshot; close: () => void }> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { subscribeSnapshots, waitForSnapshot } = await import('../../controlplane/client.ts');
  const { CredentialFiles } = await import('../../controlplane/credential-files.ts');
  const dir = mkdtempSync(join(tmpdir(), 'portico-gateway-credentials-'));
  const creds = new CredentialFiles({ url, token }, dir);
  const first = await waitForSnapshot({ url, token, logger: log });
  const snapshot = await creds.localize(first.snapshot);
  log.info('config from the control plane', { url, revision: first.revision, version: first.version });
  const sub = subscribeSnapshots({
    url,
    token,
    initial: first,
    logger: log,
    onSnapshot: async (next, revision) => {
      const local = await creds.localize(next);
      apply(local);
      log.info('snapshot from the control plane applied', { revision, version: next.version });
    },
    onError: (err) => log.warn('control plane stream', { error: err.message }),
  });
  return {
    snapshot,
    close: () => {
      sub.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `--wasm-isolation`: inline (metered) unless worker is asked for. */
function wasmIsolation(v: string | undefined): 'inline' | 'worker' {
  if (v === undefined || v === 'inline' || v === 'worker') return v ?? 'inline';
  throw new Error(`--wasm-isolation: '${v}' is neither inline nor worker`);
}

/** Where the gateway's mesh certificate comes from (`--controlplane`, `--workload`, `--token-file`). */
export interface MeshSettings {
  readonly controlplane: string;
  /** `<namespace>/<name>` of the gateway's WorkloadEntry. */
  readonly workload: string;
  readonly token?: TokenSource;
}

/** Checks the mesh flags: both or neither of --controlplane and --workload; a readable token file. */
export function meshSettings(controlplane: string | undefined, workload: string | undefined, tokenFile: string | undefined): MeshSettings | undefined {
  if (controlplane === undefined && workload === undefined) {
    if (tokenFile !== undefined) throw new Error('--token-file needs --controlplane and --workload');
    return undefined;
  }
  if (controlplane === undefined || workload === undefined) throw new Error('--controlplane and --workload go together (the control plane signs the certificate of that WorkloadEntry)');
  let url: URL;
  try {
    url = new URL(controlplane);
  } catch {
    throw new Error(`--controlplane: '${controlplane}' is not a URL (e.g. http://controlplane:15010)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`--controlplane: '${controlplane}' is not an http(s) URL`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(workload)) throw new Error(`--workload: '${workload}' is not NAMESPACE/NAME (e.g. istio-system/istio-ingressgateway)`);
  let token: TokenSource | undefined;
  if (tokenFile !== undefined) {
    try {
      token = tokenFromFile(tokenFile);
    } catch (err) {
      throw new Error(`--token-file: cannot read ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!bootstrapToken(token)) throw new Error(`--token-file: ${tokenFile} is empty`);
  }
  return { controlplane, workload, token };
}

/** Control plane answers that waiting will not fix. */
const FATAL_CSR_ERRORS = new Set(['PORTICO_ERR_CP_UNAUTHORIZED', 'PORTICO_ERR_CP_UNKNOWN_WORKLOAD', 'PORTICO_ERR_CP_BAD_REQUEST', 'PORTICO_ERR_CP_BAD_CSR']);

export interface GatewayMeshIdentity {
  readonly identity: MeshIdentity;
  /** Stops renewing. */
  close(): void;
}

/**
 * The gateway's mesh identity from the control plane (as Istio's ingress gateway gets its SPIFFE
 * certificate from istiod): the key is made here, only a CSR is sent, and the certificate is
 * renewed at half its lifetime without dropping connections (MeshIdentity swaps contexts). The
 * first request is retried while the control plane is unreachable or has no config yet (compose
 * starts them together), up to `waitMs`; a refused token or an unknown workload fails at once.
 * Loaded lazily: a gateway without a mesh identity does not pay for the control plane client.
 */
export async function startGatewayMeshIdentity(mesh: MeshSettings, log: GatewayLogger, waitMs = 60_000): Promise<GatewayMeshIdentity> {
  const { CertRotator, requestWorkloadCertificate, isControlPlaneError } = await import('../../controlplane/client.ts');
  const { MeshIdentity } = await import('../../gateway/mtls.ts');
  const target = { url: mesh.controlplane, token: mesh.token, workload: mesh.workload };
  let identity: MeshIdentity | undefined;
  let first = true;
  const issue = async (): ReturnType<typeof requestWorkloadCertificate> => {
    if (!first) return requestWorkloadCertificate(target);
    first = false;
    const deadline = Date.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await requestWorkloadCertificate(target);
      } catch (err) {
        if (isControlPlaneError(err) && FATAL_CSR_ERRORS.has(err.code)) throw err;
        const wait = Math.min(5_000, 200 * 2 ** attempt);
        if (Date.now() + wait > deadline) throw err;
        log.warn('waiting for the control plane to sign the gateway certificate', { url: mesh.controlplane, workload: mesh.workload, error: (err as Error).message, retryInMs: wait });
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  };
  const rotator = new CertRotator({ ...target, logger: log, issue, onRotate: (cert) => identity?.update(cert) });
  const cert = await rotator.start();
  identity = new MeshIdentity(cert);
  log.info('gateway mesh identity', { spiffeId: cert.spiffeId, notAfter: cert.notAfter.toISOString() });
  return { identity, close: () => rotator.close() };
}

interface RunningGateway {
  apply(snapshot: Snapshot): void;
  close(): Promise<void>;
}

/** Metrics, tracing and access logs from the snapshot's MeshConfig and the command line. */
function gatewayTelemetry(settings: WorkerSettings, snapshot: Snapshot, mesh?: { spiffeId: string; upstreamMtls: TelemetryOptions['upstreamMtls'] }): PorticoTelemetry | undefined {
  if (!settings.telemetry) return undefined;
  const mc = snapshot.meshConfig;
  const file = settings.accessLog ? '/dev/stdout' : mc.accessLogFile;
  return createTelemetry({
    // With a mesh identity, the series of endpoints it originates ISTIO_MUTUAL to carry it as source_principal.
    proxy: { workload: 'istio-ingressgateway', namespace: settings.namespace, app: 'istio-ingressgateway', principal: mesh?.spiffeId },
    upstreamMtls: mesh?.upstreamMtls,
    trustDomain: mc.trustDomain,
    tracing: { sampling: settings.tracingSampling ?? mc.tracingSampling ?? 1, otlpEndpoint: settings.otlpEndpoint },
    accessLog: file ? { file, encoding: mc.accessLogEncoding, format: mc.accessLogFormat } : undefined,
  });
}

async function startWorker(settings: WorkerSettings, snapshot: Snapshot, log: GatewayLogger): Promise<RunningGateway> {
  const mesh = settings.mesh ? await startGatewayMeshIdentity(settings.mesh, log) : undefined;
  const mtls = mesh ? await import('../../gateway/mtls.ts') : undefined;
  const telemetry = gatewayTelemetry(settings, snapshot, mesh && mtls ? { spiffeId: mesh.identity.spiffeId, upstreamMtls: mtls.wantsIstioMutual } : undefined);
  const { WasmManager } = await import('../../wasm/plugins.ts');
  const { ModuleCache } = await import('../../wasm/fetch.ts');
  const wasm = new WasmManager({
    secretsDir: settings.secretsDir,
    cache: new ModuleCache(settings.wasmCache),
    vm: { isolation: settings.wasmIsolation },
    log,
    node: { id: `router~127.0.0.1~portico.${settings.namespace}~${settings.namespace}.svc.cluster.local`, cluster: settings.labels.app ?? 'istio-ingressgateway', metadata: { NAMESPACE: settings.namespace, WORKLOAD_NAME: settings.labels.app ?? 'istio-ingressgateway' } },
  });
  if (telemetry) wasm.register(telemetry.registry);
  const { SessionFastPath } = await import('../../dataplane/filters/session-cache.ts');
  const sessionFastPath = settings.authserviceCookieSecretFile ? new SessionFastPath(readCookieSecret(settings.authserviceCookieSecretFile)) : undefined;
  const runtime = new GatewayRuntime(snapshot, {
    wasm,
    sessionFastPath,
    labels: settings.labels,
    namespace: settings.namespace,
    logger: log,
    drainMs: settings.drainMs,
    headerPolicy: makeHeaderPolicy({ identityHeaders: settings.identityHeaders, trustedHops: settings.trustedHops }),
    telemetry,
    healthChecks: settings.healthCheckIntervalMs ? { intervalMs: settings.healthCheckIntervalMs } : undefined,
    listener: settings.listener,
  });
  if (mesh && mtls) runtime.pools.tlsPolicy = mtls.meshUpstreamTls(mesh.identity, () => runtime.table().snapshot);
  telemetry?.attach(runtime);
  await runtime.start();
  const metrics = telemetry && settings.metricsPort >= 0 ? await telemetry.listen(settings.metricsPort, settings.metricsHost) : undefined;
  const admin = settings.adminPort >= 0 ? await startAdmin(runtime, settings.adminPort, settings.adminHost, () => true, { telemetry }) : undefined;
  const ports = [...runtime.ports()].map(([bind, actual]) => (bind === actual ? bind : `${bind}->${actual}`));
  log.info('gateway ready', { labels: settings.labels, ports, admin: admin?.port(), metrics: metrics?.port, version: snapshot.version, pid: process.pid });
  return {
    apply(next) {
      runtime.apply(next).catch((err: Error) => {
        telemetry?.configReloadFailed();
        log.error('config change could not be applied; still serving the previous config', { error: err.message });
      });
    },
    async close() {
      mesh?.close();
      await admin?.close();
      await runtime.close();
      await telemetry?.close();
    },
  };
}

/** A cluster worker: waits for snapshots from the primary. */
function runWorker(settings: WorkerSettings): undefined {
  const log = consoleLogger('gateway');
  let running: Promise<RunningGateway> | undefined;
  process.on('message', (msg: { type: string; snapshot?: Snapshot }) => {
    if (msg.type === 'snapshot' && msg.snapshot) {
      const snap = deepFreeze(msg.snapshot);
      if (!running) {
        running = startWorker(settings, snap, log);
        running.then(() => process.send?.({ type: 'serving' }), () => undefined);
        running.catch((err: Error) => {
          log.error('worker could not start', { error: err.message });
          process.exit(1);
        });
      } else void running.then((g) => g.apply(snap));
    } else if (msg.type === 'shutdown') {
      void (running ?? Promise.resolve(undefined)).then(async (g) => {
        await g?.close();
        process.exit(0);
      });
    }
  });
  // Without a primary there is nobody to coordinate reloads or shutdown: leave with it.
  process.on('disconnect', () => process.exit(0));
  process.send?.({ type: 'ready' });
  // The primary handles signals and tells workers to drain; a worker ignores them.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  return undefined;
}

/** SIGTERM/SIGINT: stop accepting, let in-flight requests finish (up to --drain-ms), exit 0. */
function onStop(close: () => Promise<void>, log: GatewayLogger): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('draining', { signal });
    close().then(
      () => {
        log.info('stopped');
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
}
