/**
 * The authservice's probe listener: `/healthz`, `/readyz` and `/metrics` on their own port
 * (READINESS_PROBE_PORT, default 8081, as oidc-authservice), never on the check port.
 *
 * Why a separate port: on the check port every path is some app's path. Kubeflow's EnvoyFilter
 * forwards only `authorization`, `cookie` and `x-auth-token`, so a check for an app's `/healthz`
 * looks exactly like a kubelet probe; answering it 200 would let it through without login.
 * Nothing here is reachable through the gateway unless someone routes this port on purpose.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthSources {
  /** True once OIDC discovery succeeded. */
  oidcReady(): boolean;
  /** Resolves true when the session store answers. */
  storePing(): Promise<boolean>;
  /** Prometheus text (format 0.0.4). */
  metrics(): string;
}

export interface HealthListener {
  port: number;
  /** `http://<host>:<port>` (host as bound; `0.0.0.0`/`::` shown as 127.0.0.1 / [::1]). */
  url: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, type: string, body: string, head: boolean): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}

/** Handles one probe request. Exported for tests of the routing only. */
export async function handleHealthRequest(src: HealthSources, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const head = req.method === 'HEAD';
  if (req.method !== 'GET' && !head) {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, 'application/json', '{"error":"method not allowed"}', false);
  }
  if (path === '/healthz') return send(res, 200, 'application/json', '{"status":"ok"}', head);
  if (path === '/readyz') {
    const store = await src.storePing().catch(() => false);
    const oidc = src.oidcReady();
    const ok = store && oidc;
    return send(res, ok ? 200 : 503, 'application/json', JSON.stringify({ status: ok ? 'ready' : 'not ready', oidc, store }), head);
  }
  if (path === '/metrics') return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', src.metrics(), head);
  return send(res, 404, 'application/json', '{"error":"not found: this port serves /healthz, /readyz and /metrics"}', head);
}

/** Starts the probe listener on `port` (0 picks a free one). */
export async function listenHealth(src: HealthSources, opts: { port: number; host: string }): Promise<HealthListener> {
  const server: Server = createServer((req, res) => {
    handleHealthRequest(src, req, res).catch(() => {
      if (!res.headersSent) send(res, 500, 'application/json', '{"error":"internal error"}', false);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '[::1]' : addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closed: Promise<void> | undefined;
  return {
    port: addr.port,
    url: `http://${shown}:${addr.port}`,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
