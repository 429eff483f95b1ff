/**
 * The admin endpoint (Envoy's :15000): `/ready`, `/config_dump` (the compiled snapshot; it holds
 * certificate paths, never key material), `/clusters` (endpoints and pool state), `/listeners`
 * and `/routes` (each rule with its live hit count). Bound to loopback by default.
 */
import { createServer, type Server } from 'node:http';
import type { GatewayRuntime } from './runtime.ts';

function json(body: unknown): string {
  return JSON.stringify(body, null, 2) + '\n';
}

export interface AdminServer {
  readonly server: Server;
  port(): number;
  close(): Promise<void>;
}

export async function startAdmin(runtime: GatewayRuntime, port: number, host = '127.0.0.1', isReady: () => boolean = () => true): Promise<AdminServer> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const send = (status: number, body: string, type = 'application/json'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const table = runtime.table();
    switch (url.pathname) {
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
            clusters: [...table.clusters.values()].map((c) => ({ name: c.name, endpoints: c.endpoints.map((e) => ({ address: e.address, port: e.port, labels: e.labels, health: 'HEALTHY' })) })),
            pools: runtime.pools.stats(),
          }),
        );
      default:
        return send(404, json({ error: 'not found', endpoints: ['/ready', '/config_dump', '/clusters', '/listeners', '/routes'] }));
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
