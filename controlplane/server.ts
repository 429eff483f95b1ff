/**
 * `portico controlplane`'s composition root: the config source (watchConfig → SnapshotFeed),
 * the CA, and the HTTP API. See docs/controlplane.md.
 *
 *   GET  /healthz /readyz /v1/ca /metrics             public
 *   GET  /v1/snapshots/stream  /v1/snapshot  /v1/status
 *   POST /v1/certificates                             Bearer bootstrap token (when one is configured)
 */
import { fastify, type FastifyInstance } from 'fastify';
import { buildSnapshot, formatIssue, watchConfig, type BuildResult, type ConfigWatcher } from '../config/index.ts';
import { certInfo, DEFAULT_WORKLOAD_TTL_HOURS, loadOrCreateCa, type CaPair } from '../certs/index.ts';
import { bearerToken, tokenMatches } from './auth.ts';
import { caRoutes } from './ca-routes.ts';
import { ControlPlaneError, errorText, type ErrorBody } from './errors.ts';
import { SnapshotFeed } from './feed.ts';
import { silentLogger, type ControlPlaneLogger } from './log.ts';
import { controlPlaneMetrics } from './metrics.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../lib/metrics.ts';
import { CA_PATH } from './protocol.ts';
import { streamRoutes } from './stream.ts';

export const DEFAULT_CONTROLPLANE_PORT = 15010;
export const DEFAULT_HEARTBEAT_MS = 5_000;
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface ControlPlaneOptions {
  /** Config files and/or directories (watched). */
  readonly config: readonly string[];
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
  /** Ends every stream, stops watching and closes the listener. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.logger ?? silentLogger;
  const token = opts.token;
  const host = opts.host ?? (token ? '0.0.0.0' : '127.0.0.1');
  if (!token && !LOOPBACK.has(host)) {
    throw new Error(`refusing to listen on ${host} without a bootstrap token: anyone could fetch the config and obtain workload certificates; set --token-file or PORTICO_BOOTSTRAP_TOKEN`);
  }
  if (!token) log.warn('no bootstrap token configured: listening on loopback only, requests are not authenticated');
  if (opts.config.length === 0) throw new Error('no config paths given');
  const ca = opts.ca ?? (opts.caDir ? loadOrCreateCa(opts.caDir) : undefined);
  if (!ca) throw new Error('a CA is required: give caDir (created when empty) or ca');
  if (opts.caDir && 'created' in ca && ca.created) log.info('created the mesh root CA', { dir: opts.caDir });

  const feed = new SnapshotFeed();
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

  // Watch first, then build: a change made while the first build runs is not lost, and a watcher
  // result that arrives first wins over the (older) initial build.
  let watcherSpoke = false;
  const watcher: ConfigWatcher = watchConfig(opts.config, { ...buildOpts, debounceMs: opts.debounceMs, initialVersion: '' }, (r) => {
    watcherSpoke = true;
    take(r);
  });
  try {
    const first = await buildSnapshot(opts.config, buildOpts);
    if (!watcherSpoke) take(first);
  } catch (err) {
    watcher.close();
    throw err;
  }

  const app = fastify({ logger: false, bodyLimit: 256 * 1024, return503OnClosing: true });
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
    if (token) {
      scope.addHook('onRequest', async (req, reply) => {
        if (tokenMatches(bearerToken(req.headers.authorization), token)) return;
        log.warn('request refused: missing or wrong bootstrap token', { method: req.method, path: req.url.split('?')[0], remote: req.ip });
        reply.header('www-authenticate', 'Bearer realm="portico-controlplane"');
        throw new ControlPlaneError('UNAUTHORIZED', 'a valid bootstrap token is required: Authorization: Bearer <token>');
      });
    }
    await scope.register(streamRoutes, {
      feed,
      heartbeatMs: opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      log,
      describe: () => ({ config: opts.config, trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN, authenticated: token !== undefined }),
    });
    await scope.register(caRoutes, {
      feed,
      ca,
      trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      ttlHours: opts.certTtlHours ?? DEFAULT_WORKLOAD_TTL_HOURS,
      log,
    });
  });
  app.addHook('onClose', async () => watcher.close());

  try {
    await app.listen({ port: opts.port ?? DEFAULT_CONTROLPLANE_PORT, host });
  } catch (err) {
    watcher.close();
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
    close: async () => {
      watcher.close();
      await app.close();
    },
  };
}
