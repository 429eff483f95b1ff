/**
 * `portico controlplane`'s composition root: the config source (watchConfig → SnapshotFeed),
 * the CA, and the HTTP API. See docs/controlplane.md.
 *
 *   GET  /healthz /readyz /v1/ca /metrics             public
 *   GET  /v1/snapshots/stream  /v1/snapshot  /v1/status
 *   POST /v1/certificates                             Bearer bootstrap token (when one is configured)
 */
import { resolve as resolvePath } from 'node:path';
import { fastify, type FastifyInstance } from 'fastify';
import { buildSnapshot, formatIssue, watchConfig, type BuildResult, type ConfigWatcher } from '../config/index.ts';
import { certInfo, DEFAULT_WORKLOAD_TTL_HOURS, loadOrCreateCa, type CaPair } from '../certs/index.ts';
import { bearerToken, tokenMatches } from './auth.ts';
import { caRoutes } from './ca-routes.ts';
import { identityOf, setIdentity } from './identity.ts';
import { credentialRoutes } from './credential-routes.ts';
import { ControlPlaneError, errorText, type ErrorBody } from './errors.ts';
import { SnapshotFeed } from './feed.ts';
import { silentLogger, type ControlPlaneLogger } from './log.ts';
import { controlPlaneMetrics } from './metrics.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../lib/metrics.ts';
import { CA_PATH } from './protocol.ts';
import { streamRoutes } from './stream.ts';
import type { KubeApi } from '../kube/api.ts';
import type { KubeBuild, KubeSource } from '../kube/source.ts';
import type { LeaderElection } from '../kube/lease.ts';

export const DEFAULT_CONTROLPLANE_PORT = 15010;
export const DEFAULT_HEARTBEAT_MS = 5_000;
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** `--kubernetes`: the API server is the source of truth (kube/source.ts). */
export interface KubernetesSourceOptions {
  readonly api: KubeApi;
  /** The mesh ConfigMap (default `<namespace>/istio`). */
  readonly meshConfig: { readonly namespace: string; readonly name: string };
  /** Private directory the credentialName Secrets are written to. */
  readonly secretsDir: string;
  /**
   * Authenticate proxies by their projected service-account token (TokenReview, audience
   * `istio-ca`) besides the bootstrap token. Default true.
   */
  readonly tokenReview?: boolean;
  /** HA: take part in leader election on Lease `portico-controlplane` in `namespace` as `identity` (the pod name). */
  readonly leaderElection?: { readonly namespace: string; readonly identity: string; readonly leaseSeconds?: number; readonly renewMs?: number };
  /**
   * Sidecar injection (kube/webhook.ts): serve `/inject` over TLS on `port` (default 15017) and,
   * on the leader, keep MutatingWebhookConfiguration portico-sidecar-injector pointing at `client`.
   */
  readonly injection?: {
    readonly inject: import('../kube/inject.ts').InjectOptions;
    readonly client: import('../kube/webhook.ts').WebhookClientConfig;
    readonly dnsNames: readonly string[];
    readonly ipAddresses?: readonly string[];
    readonly port?: number;
    readonly host?: string;
    /** How often the leader re-checks the configuration (restores an edited caBundle). Default 10 s. */
    readonly reconcileMs?: number;
  };
}

export interface ControlPlaneOptions {
  /** Config files and/or directories (watched). Exactly one of `config` and `kubernetes`. */
  readonly config?: readonly string[];
  readonly kubernetes?: KubernetesSourceOptions;
  /** Default 15010 (istiod's plaintext xDS port); 0 picks a free port. */
  readonly port?: number;
  /** Default 0.0.0.0 with a token, 127.0.0.1 without (and then nothing else is allowed). */
  readonly host?: string;
  /** The mesh root CA directory (`ca.crt`, `ca.key`); created when empty. Or pass `ca`. */
  readonly caDir?: string;
  readonly ca?: CaPair;
  readonly trustDomain?: string;
  /** Workload certificate lifetime in hours (fractions allowed). Default 24. */
  readonly certTtlHours?: number;
  /** The bootstrap token proxies must present. Without one only loopback clients can reach us. */
  readonly token?: string;
  readonly heartbeatMs?: number;
  readonly secretsDir?: string;
  readonly cwd?: string;
  readonly debounceMs?: number;
  readonly logger?: ControlPlaneLogger;
}

export interface ControlPlane {
  /** `http://host:port`, usable by local clients. */
  readonly url: string;
  readonly port: number;
  readonly feed: SnapshotFeed;
  readonly app: FastifyInstance;
  /** With `kubernetes`: the API source (its watches and last build). */
  readonly kube?: KubeSource;
  /** With `kubernetes.leaderElection`: whether this replica leads. */
  readonly election?: LeaderElection;
  /** Ends every stream, stops watching and closes the listener. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.logger ?? silentLogger;
  const token = opts.token;
  const host = opts.host ?? (token || (opts.kubernetes && opts.kubernetes.tokenReview !== false) ? '0.0.0.0' : '127.0.0.1');
  const reviewer = opts.kubernetes && opts.kubernetes.tokenReview !== false ? new (await import('../kube/tokenreview.ts')).TokenReviewer(opts.kubernetes.api) : undefined;
  if (!token && !reviewer && !LOOPBACK.has(host)) {
    throw new Error(`refusing to listen on ${host} without a bootstrap token: anyone could fetch the config and obtain workload certificates; set --token-file or PORTICO_BOOTSTRAP_TOKEN`);
  }
  if (!token && !reviewer) log.warn('no bootstrap token configured: listening on loopback only, requests are not authenticated');
  const config = opts.config ?? [];
  if ((config.length === 0) === !opts.kubernetes) throw new Error('give config paths or a Kubernetes source (exactly one)');
  const ca = opts.ca ?? (opts.caDir ? loadOrCreateCa(opts.caDir) : undefined);
  if (!ca) throw new Error('a CA is required: give caDir (created when empty) or ca');
  if (opts.caDir && 'created' in ca && ca.created) log.info('created the mesh root CA', { dir: opts.caDir });

  const feed = new SnapshotFeed(Date.now(), opts.kubernetes !== undefined);
  const buildOpts = { secretsDir: opts.secretsDir, cwd: opts.cwd };
  const cwd = opts.cwd ?? process.cwd();
  const take = (r: BuildResult): void => {
    if (r.ok) {
      const p = feed.publish(r.snapshot);
      for (const w of r.warnings) log.warn('config warning', { issue: formatIssue(w, cwd) });
      if (p) log.info('snapshot published', { revision: p.revision, version: p.version });
    } else {
      const issues = r.issues.map((i) => formatIssue(i, cwd));
      feed.reject(issues);
      log.error(feed.latest ? 'config change rejected; still serving the previous snapshot' : 'config does not compile; no snapshot to serve yet', {
        revision: feed.latest?.revision ?? 0,
        problems: issues,
      });
    }
  };

  let closeSource: () => void;
  let kube: KubeSource | undefined;
  let election: LeaderElection | undefined;
  if (opts.kubernetes) {
    const { KubeSource } = await import('../kube/source.ts');
    const { formatKubeIssue } = await import('../kube/translate.ts');
    let isLeader = (): boolean => true;
    if (opts.kubernetes.leaderElection) {
      const { LeaderElection } = await import('../kube/lease.ts');
      const le = opts.kubernetes.leaderElection;
      election = new LeaderElection({ api: opts.kubernetes.api, ...le, log, onChange: (leader) => leader && kube?.reportAgain() });
      const e = election;
      isLeader = () => e.isLeader;
    }
    kube = new KubeSource({ ...opts.kubernetes, log, cwd, debounceMs: opts.debounceMs, isWriter: () => isLeader() });
    let reported = new Map<string, string>();
    const takeKube = (b: KubeBuild): void => {
      // Each rejected object is logged when its problems change, not on every rebuild.
      const now = new Map<string, string>();
      for (const [id, issues] of b.rejected) {
        const text = issues.map(formatKubeIssue).join('\n');
        now.set(id, text);
        if (reported.get(id) !== text) log.error('object left out of the snapshot', { object: id, problems: issues.map(formatKubeIssue) });
      }
      for (const id of reported.keys()) if (!now.has(id)) log.info('object accepted again', { object: id });
      reported = now;
      if (b.snapshot) {
        const p = feed.publish(b.snapshot);
        if (p) log.info('snapshot published', { revision: p.revision, version: p.version, objects: b.objects, rejected: b.rejected.size });
      } else {
        const issues = b.fatal.map(formatKubeIssue);
        feed.reject(issues);
        log.error('the cluster config does not compile; still serving the previous snapshot', { problems: issues });
      }
    };
    kube.onBuild(takeKube);
    const source = kube;
    let stopInjection = (): void => undefined;
    const inj = opts.kubernetes.injection;
    if (inj) {
      const { startWebhookServer, ensureWebhookConfiguration } = await import('../kube/webhook.ts');
      const hook = await startWebhookServer({ ca, inject: inj.inject, port: inj.port, host: inj.host, dnsNames: inj.dnsNames, ipAddresses: inj.ipAddresses, log: (m, f) => log.info(m, f) });
      const api = opts.kubernetes.api;
      let busy = false;
      const reconcile = (): void => {
        if (busy || !isLeader()) return;
        busy = true;
        ensureWebhookConfiguration(api, ca.certPem, inj.client, inj.inject.revision)
          .then((what) => what !== 'unchanged' && log.info(`MutatingWebhookConfiguration ${what}`, { name: 'portico-sidecar-injector' }))
          .catch((err: unknown) => log.warn('cannot write the MutatingWebhookConfiguration', { error: errorText(err) }))
          .finally(() => (busy = false));
      };
      const timer = setInterval(reconcile, inj.reconcileMs ?? 10_000);
      timer.unref();
      reconcile();
      election?.onLeader(reconcile);
      log.info('sidecar injection webhook listening', { port: hook.port, path: '/inject' });
      stopInjection = () => {
        clearInterval(timer);
        void hook.close();
      };
    }
    closeSource = () => {
      stopInjection();
      source.close();
      void election?.stop();
    };
    try {
      await kube.start();
      election?.start();
    } catch (err) {
      kube.close();
      throw err;
    }
  } else {
    // Watch first, then build: a change made while the first build runs is not lost, and a watcher
    // result that arrives first wins over the (older) initial build.
    let watcherSpoke = false;
    const watcher: ConfigWatcher = watchConfig(config, { ...buildOpts, debounceMs: opts.debounceMs, initialVersion: '' }, (r) => {
      watcherSpoke = true;
      take(r);
    });
    closeSource = () => watcher.close();
    try {
      const first = await buildSnapshot(config, buildOpts);
      if (!watcherSpoke) take(first);
    } catch (err) {
      watcher.close();
      throw err;
    }
  }

  // forceCloseConnections: preClose ends every snapshot stream, but the keep-alive sockets they
  // (and aborted streams) leave behind would hold server.close() for ~70 s; SIGTERM must finish
  // in seconds (test/integration/controlplane-shutdown.test.ts).
  const app = fastify({ logger: false, bodyLimit: 256 * 1024, return503OnClosing: true, forceCloseConnections: true });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    let body: ErrorBody;
    if (err instanceof ControlPlaneError) {
      reply.status(err.status);
      body = { error: { code: err.code, message: err.message } };
    } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      // fastify's own request errors (bad JSON, wrong content type, too large)
      reply.status(err.statusCode);
      body = { error: { code: 'PORTICO_ERR_CP_BAD_REQUEST', message: err.message } };
    } else {
      log.error('request failed', { method: req.method, url: req.url, error: errorText(err) });
      reply.status(500);
      body = { error: { code: 'PORTICO_ERR_CP_INTERNAL', message: 'internal error' } };
    }
    return reply.send(body);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ error: { code: 'PORTICO_ERR_CP_NOT_FOUND', message: `no such endpoint: ${req.method} ${req.url.split('?')[0]}` } } satisfies ErrorBody),
  );

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const p = feed.latest;
    if (!p) return reply.status(503).send({ status: 'not ready', reason: 'the config has not compiled yet' });
    return { status: 'ready', revision: p.revision, version: p.version };
  });
  // Public like /healthz (istiod's :15014): counts and versions only, nothing from the config.
  const metrics = controlPlaneMetrics(feed);
  app.get('/metrics', async (_req, reply) => reply.header('content-type', PROMETHEUS_CONTENT_TYPE).header('cache-control', 'no-store').send(metrics.render()));
  const caFingerprint = certInfo(ca.certPem).fingerprint256;
  app.get(CA_PATH, async (_req, reply) =>
    reply.header('content-type', 'application/x-pem-file').header('x-ca-fingerprint-sha256', caFingerprint).send(ca.certPem),
  );

  await app.register(async (scope) => {
    if (token || reviewer) {
      scope.addHook('onRequest', async (req, reply) => {
        const presented = bearerToken(req.headers.authorization);
        if (token && tokenMatches(presented, token)) {
          setIdentity(req, { kind: 'bootstrap' });
          return;
        }
        let why = 'missing or wrong bootstrap token';
        if (reviewer && presented) {
          try {
            const r = await reviewer.review(presented);
            if (r.identity) {
              setIdentity(req, { kind: 'kubernetes', namespace: r.identity.namespace, serviceAccount: r.identity.serviceAccount, pod: r.identity.pod });
              return;
            }
            why = r.reason;
          } catch (err) {
            log.error('TokenReview failed', { error: errorText(err) });
            throw new ControlPlaneError('NOT_READY', 'cannot check the token with the Kubernetes API right now; retry');
          }
        }
        log.warn('request refused', { reason: why, method: req.method, path: req.url.split('?')[0], remote: req.ip });
        reply.header('www-authenticate', 'Bearer realm="portico-controlplane"');
        throw new ControlPlaneError(
          'UNAUTHORIZED',
          reviewer
            ? `a valid token is required: Authorization: Bearer <projected service-account token, audience istio-ca> (${why})`
            : 'a valid bootstrap token is required: Authorization: Bearer <token>',
        );
      });
    }
    await scope.register(streamRoutes, {
      feed,
      heartbeatMs: opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      log,
      describe: () => ({ ...(kube ? { kubernetes: { ...kube.status(), leader: election ? election.isLeader : true } } : { config }), trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN, authenticated: token !== undefined }),
    });
    // Where the pull secrets are: the Kubernetes source's credential directory, else --secrets-dir.
    const secretsDir = opts.kubernetes?.secretsDir ?? resolvePath(opts.cwd ?? process.cwd(), opts.secretsDir ?? 'certs/out/credentials');
    await scope.register(credentialRoutes, { feed, identityOf, secretsDir });
    await scope.register(caRoutes, {
      feed,
      ca,
      trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      ttlHours: opts.certTtlHours ?? DEFAULT_WORKLOAD_TTL_HOURS,
      log,
      identityOf,
    });
  });
  app.addHook('onClose', async () => closeSource());

  try {
    await app.listen({ port: opts.port ?? DEFAULT_CONTROLPLANE_PORT, host });
  } catch (err) {
    closeSource();
    await app.close();
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}`;
  log.info('control plane ready', { url, port, epoch: feed.epoch, revision: feed.latest?.revision ?? 0, authenticated: token !== undefined });
  return {
    url,
    port,
    feed,
    app,
    kube,
    election,
    close: async () => {
      await election?.stop();
      closeSource();
      await app.close();
    },
  };
}
