/**
 * L4 listeners: Gateway servers with protocol TCP (VirtualService `tcp[]`) and TLS — PASSTHROUGH
 * servers routed by the ClientHello's SNI (`tls[]` with `sniHosts`), and terminating servers
 * (SIMPLE/MUTUAL) whose decrypted stream is routed by `tcp[]`. Connections are spliced to an
 * upstream endpoint picked like HTTP requests are (balancer, outlier state).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { drainServer, listenOn, trackSockets, type Listener, type ListenerOptions } from './listeners.ts';
import type { ProxyDeps } from './proxy.ts';
import { peerAddress } from './headers.ts';
import type { CompiledL4Route, L4Input, PortTable } from './router.ts';
import { parseClientHelloSni } from './sni.ts';
import type { CertStore } from './tls.ts';

/** How long a client may take to send its ClientHello on a TLS port. */
const CLIENT_HELLO_TIMEOUT_MS = 5_000;

export interface L4Observer {
  opened?(route: CompiledL4Route | undefined): void;
  closed?(route: CompiledL4Route | undefined, sent: number, received: number): void;
}

function firstMatch(routes: readonly CompiledL4Route[], input: L4Input): CompiledL4Route | undefined {
  for (const r of routes) if (r.matches(input)) return r;
  return undefined;
}

/**
 * Istio's TCP metrics for one spliced connection: opened once connected, bytes reported every
 * `TCP_REPORT_MS` while open (Istio's `tcpReportingDuration`, 15 s by default) and at close, so
 * long-lived connections show up in rate() before they end. Received = downstream → upstream,
 * sent = upstream → downstream (Istio: "bytes received during request" / "sent during response").
 */
const TCP_REPORT_MS = 15_000;
const reporting = new Set<() => void>();
let reportTimer: NodeJS.Timeout | undefined;

function trackBytes(report: () => void): () => void {
  reporting.add(report);
  if (!reportTimer) {
    reportTimer = setInterval(() => {
      for (const r of reporting) r();
    }, TCP_REPORT_MS);
    reportTimer.unref();
  }
  return () => {
    reporting.delete(report);
    report();
    if (reporting.size === 0 && reportTimer) {
      clearInterval(reportTimer);
      reportTimer = undefined;
    }
  };
}

function connectionMetrics(deps: ProxyDeps, cluster: string, upstream: Socket, endpoint: string): () => void {
  const m = deps.telemetry?.tcpConnection?.(cluster, endpoint);
  if (!m) return () => {};
  m.opened();
  let sent = 0;
  let received = 0;
  const untrack = trackBytes(() => {
    const w = upstream.bytesWritten;
    const r = upstream.bytesRead;
    if (w > received) m.received(w - received);
    if (r > sent) m.sent(r - sent);
    received = w;
    sent = r;
  });
  return () => {
    untrack();
    m.closed();
  };
}

/** Splices `client` to an endpoint of the route's picked destination. */
function splice(deps: ProxyDeps, route: CompiledL4Route | undefined, client: Socket, head: Buffer | undefined, observer?: L4Observer): void {
  const dest = route?.pick();
  const cluster = dest ? deps.table().clusters.get(dest.cluster) : undefined;
  const picked = cluster ? deps.balancer.pick(cluster, undefined, { headers: {}, sourceIp: peerAddress(client.remoteAddress), query: '' }) : undefined;
  if (!cluster || !picked) {
    client.destroy();
    return;
  }
  const end = deps.balancer.start(cluster, picked.endpoint);
  observer?.opened?.(route);
  let connected = false;
  let closeMetrics: (() => void) | undefined;
  const endpoint = `${picked.endpoint.address}:${picked.endpoint.port}`;
  const upstream = connect({ host: picked.endpoint.address, port: picked.endpoint.port, timeout: cluster.trafficPolicy.connectionPool?.tcp?.connectTimeoutMs ?? 10_000 });
  upstream.once('connect', () => {
    connected = true;
    closeMetrics = connectionMetrics(deps, cluster.name, upstream, endpoint);
    upstream.setTimeout(0);
    end({ kind: 'response', status: 200 });
    if (head?.length) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  upstream.once('timeout', () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));
  upstream.on('error', () => {
    if (!connected) {
      end({ kind: 'connect-failure' });
      // Envoy counts a connection whose upstream never connected too, flagged UF.
      const m = deps.telemetry?.tcpConnection?.(cluster.name, endpoint, 'UF');
      m?.opened();
      m?.closed();
    }
    client.destroy();
  });
  client.on('error', () => upstream.destroy());
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => {
    closeMetrics?.();
    closeMetrics = undefined;
    client.destroy();
    observer?.closed?.(route, upstream.bytesWritten, upstream.bytesRead);
  });
}

export async function openL4Listener(deps: ProxyDeps, table: PortTable, certs: CertStore, opts: ListenerOptions, observer?: L4Observer): Promise<Listener> {
  let current = table;

  const onTcp = (client: Socket, head?: Buffer, sni?: string): void => {
    const route = firstMatch(current.tcpRoutes, { port: current.number, localAddress: client.localAddress ?? '', sni });
    splice(deps, route, client, head, observer);
  };

  const onTls = (client: Socket): void => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => client.destroy(), CLIENT_HELLO_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const hello = parseClientHelloSni(buf);
      if (hello.kind === 'need-more') return;
      clearTimeout(timer);
      client.off('data', onData);
      client.pause();
      if (hello.kind === 'not-tls') return void client.destroy();
      const sni = hello.serverName;
      const idx = (sni !== undefined ? current.sni.lookup(sni) : undefined) ?? 0;
      const server = current.servers[idx];
      if (!server) return void client.destroy();
      const mode = server.tls?.mode;
      if (mode === 'PASSTHROUGH' || mode === 'AUTO_PASSTHROUGH') {
        const route = firstMatch(current.tlsRoutes, { port: current.number, localAddress: client.localAddress ?? '', sni });
        splice(deps, route, client, buf, observer);
        return;
      }
      // Terminate here, then route the plaintext stream like TCP.
      const ctx = certs.context(server);
      if (!ctx) return void client.destroy();
      // TLSSocket reads a net.Socket's handle directly and would miss the bytes already read
      // for the SNI peek; a JS duplex in front replays them.
      const replay = new Duplex({
        read() {
          client.resume();
        },
        write(chunk: Buffer, _enc, cb) {
          client.write(chunk, cb);
        },
        final(cb) {
          client.end();
          cb();
        },
        destroy(err, cb) {
          client.destroy();
          cb(err);
        },
      });
      replay.push(buf);
      client.on('data', (d: Buffer) => {
        if (!replay.push(d)) client.pause();
      });
      client.once('end', () => replay.push(null));
      client.once('close', () => replay.destroy());
      const secure = new TLSSocket(replay as unknown as Socket, { isServer: true, secureContext: ctx, ALPNProtocols: ['http/1.1'] });
      secure.once('secure', () => onTcp(secure as unknown as Socket, undefined, sni));
      secure.on('error', () => client.destroy());
      client.resume();
    };
    client.on('data', onData);
  };

  const server: Server = createServer({ pauseOnConnect: false }, (client) => {
    client.on('error', () => client.destroy());
    if (current.kind === 'tls') onTls(client);
    else onTcp(client);
  });

  const sockets = trackSockets(server);
  await listenOn(server, table.bindPort, opts.host ?? table.bind);

  return {
    kind: table.kind,
    bindPort: table.bindPort,
    tls: table.tls,
    server,
    port() {
      const a = server.address();
      return typeof a === 'object' && a ? a.port : table.bindPort;
    },
    refreshTls(next) {
      current = next;
    },
    close(graceMs) {
      return drainServer(server, sockets, graceMs);
    },
  };
}
