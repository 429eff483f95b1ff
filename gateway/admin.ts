/**
 * The admin endpoint (Envoy's :15000): `/ready`, `/config_dump` (the compiled snapshot; it holds
 * certificate paths, never key material), `/clusters` (endpoints with health, ejection and
 * in-flight counts when the balancer reports them, and pool state), `/listeners`, `/routes`
 * (each rule with its live hit count), `/stats` and `/stats/prometheus`, `POST /logging?level=`,
 * `/certs` (every served certificate's subject, SANs, expiry), and the Jaeger API when telemetry
 * keeps traces. Bound to loopback by default.
 */
import { createServer, type Server } from 'node:http';
import { createDashboard, type DashboardProxy } from './dashboard/index.ts';
import type { GatewayRuntime } from './runtime.ts';
import { certificatesInUse } from './telemetry/certs.ts';
import type { PorticoTelemetry } from './telemetry/index.ts';

/** Envoy's admin log levels. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'critical', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AdminExtras {
  readonly telemetry?: PorticoTelemetry;
  /** Applies a new log level (POST /logging?level=). Absent = the level is only recorded. */
  readonly setLogLevel?: (level: LogLevel) => void;
  readonly initialLogLevel?: LogLevel;
  /** More proxies for `/dashboard` (e.g. the demo's mesh listener, sidecars); this gateway is always shown first. */
  readonly dashboardProxies?: readonly DashboardProxy[];
}

const ENDPOINTS = ['/ready', '/config_dump', '/clusters', '/listeners', '/routes', '/stats', '/stats/prometheus', '/logging', '/certs', '/api/services', '/api/traces', '/dashboard'];

function json(body: unknown): string {
  return JSON.stringify(body, null, 2) + '\n';
}

type BalancerStats = ReturnType<NonNullable<GatewayRuntime['balancer']['stats']>>[number];

/** The balancer's live per-cluster stats when it has them (degrades to none). */
function balancerStats(runtime: GatewayRuntime): Map<string, BalancerStats> {
  const b = runtime.balancer as { stats?: () => readonly BalancerStats[] };
  return new Map((typeof b.stats === 'function' ? b.stats() : []).map((c) => [c.name, c]));
}

/** Envoy's `/stats` plain form (`name{labels}: value`) from the Prometheus text, histograms summarised. */
function plainStats(prom: string): string {
  const out: string[] = [];
  for (const line of prom.split('\n')) {
    if (!line || line.startsWith('#') || line.includes('_bucket{')) continue;
    const sp = line.lastIndexOf(' ');
    out.push(`${line.slice(0, sp)}: ${line.slice(sp + 1)}`);
  }
  return out.join('\n') + '\n';
}

export interface AdminServer {
  readonly server: Server;
  port(): number;
  close(): Promise<void>;
}

export async function startAdmin(runtime: GatewayRuntime, port: number, host = '127.0.0.1', isReady: () => boolean = () => true, extras: AdminExtras = {}): Promise<AdminServer> {
  let logLevel: LogLevel = extras.initialLogLevel ?? 'info';
  const dashboard = createDashboard({ proxies: [{ name: 'gateway', runtime, telemetry: extras.telemetry }, ...(extras.dashboardProxies ?? [])] });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const send = (status: number, body: string, type = 'application/json'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const table = runtime.table();
    if (url.pathname !== '/logging' && req.method !== 'GET' && req.method !== 'HEAD') return send(405, json({ error: 'method not allowed' }));
    switch (url.pathname) {
      case '/stats/prometheus':
        if (!extras.telemetry) return send(404, json({ error: 'telemetry is off' }));
        extras.telemetry.metricsHandler(req, res);
        return;
      case '/stats':
        if (!extras.telemetry) return send(404, json({ error: 'telemetry is off' }));
        return send(200, plainStats(extras.telemetry.registry.render()), 'text/plain; charset=utf-8');
      case '/logging': {
        if (req.method !== 'POST') return send(req.method === 'GET' ? 200 : 405, `active loggers:\n  portico: ${logLevel}\nlevels: ${LOG_LEVELS.join(', ')} (POST /logging?level=LEVEL)\n`, 'text/plain');
        const level = url.searchParams.get('level');
        if (!level || !(LOG_LEVELS as readonly string[]).includes(level)) return send(400, `level must be one of ${LOG_LEVELS.join(', ')}\n`, 'text/plain');
        logLevel = level as LogLevel;
        extras.setLogLevel?.(logLevel);
        return send(200, `active loggers:\n  portico: ${logLevel}\n`, 'text/plain');
      }
      case '/certs':
        return send(200, json({ certificates: certificatesInUse(table.snapshot) }));
      case '/ready':
      case '/healthz/ready':
        return isReady() ? send(200, 'LIVE\n', 'text/plain') : send(503, 'NOT READY\n', 'text/plain');
      case '/config_dump':
        return send(200, json(table.snapshot));
      case '/listeners':
        return send(
          200,
          json(
            [...table.ports.values()].map((p) => ({
              port: p.bindPort,
              bound: runtime.ports().get(p.bindPort),
              protocol: p.protocol,
              tls: p.tls,
              servers: p.servers.map((s) => ({ gateway: s.gateway, hosts: s.hosts, tlsMode: s.tls?.mode, httpsRedirect: s.httpsRedirect })),
            })),
          ),
        );
      case '/routes':
        return send(
          200,
          json(
            [...table.ports.values()].map((p) => ({
              port: p.bindPort,
              virtualHosts: p.virtualHosts.map((vh) => ({
                domains: vh.domains,
                routes: vh.routes.map((r) => ({ virtualService: r.route.virtualService, index: r.route.index, name: r.route.name, source: r.route.source, hits: r.hits })),
              })),
            })),
          ),
        );
      case '/clusters':
        return send(
          200,
          json({
            clusters: [...table.clusters.values()].map((c) => {
              const live = balancerStats(runtime).get(c.name);
              return {
                name: c.name,
                ...(live ? { active: live.active, pending: live.pending, overflows: live.overflows, panic: live.panic, outlierDetection: live.outlierDetection } : {}),
                endpoints: c.endpoints.map((e) => {
                  const st = live?.endpoints.find((x) => x.address === e.address && x.port === e.port);
                  return {
                    address: e.address,
                    port: e.port,
                    labels: e.labels,
                    health: st?.health ?? 'HEALTHY',
                    ...(st ? { active: st.active, ejections: st.ejections, consecutive5xx: st.consecutive5xx, ...(st.ejectedForMs !== undefined ? { ejectedForMs: st.ejectedForMs } : {}) } : {}),
                  };
                }),
              };
            }),
            pools: runtime.pools.stats(),
          }),
        );
      case '/dashboard':
      case '/dashboard/':
      case '/dashboard/data':
        dashboard.handle(req, res, url);
        return;
      default:
        if (extras.telemetry?.traces && (url.pathname.startsWith('/api/') || url.pathname === '/v1/traces') && extras.telemetry.traces.handle(req, res, url)) return;
        return send(404, json({ error: 'not found', endpoints: ENDPOINTS }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new Error(`admin port ${port} is already in use`) : err));
    server.listen(port, host, resolve);
  });
  return {
    server,
    port: () => {
      const a = server.address();
      return typeof a === 'object' && a ? a.port : port;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
