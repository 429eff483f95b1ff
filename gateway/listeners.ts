/**
 * One server per bound port: plain HTTP/1.1 for HTTP ports, and for HTTPS ports a TLS server
 * offering HTTP/2 and HTTP/1.1 by ALPN with the certificate picked by SNI. Listeners read the
 * current PortTable through `deps.table()` on every request, so a route change never rebinds.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createSecureServer, createServer as createH2cServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import type { CertStore } from './tls.ts';
import { handleRequest, type ListenerInfo, type ProxyDeps } from './proxy.ts';
import type { PortKind, PortTable } from './router.ts';
import { openL4Listener } from './l4.ts';
import { Server as NetServer } from 'node:net';
import { handleUpgrade } from './websocket.ts';

export interface Listener {
  readonly kind: PortKind;
  readonly bindPort: number;
  readonly tls: boolean;
  readonly server: HttpServer | Http2SecureServer | NetServer;
  /** Actual port (differs from bindPort only when bindPort is 0). */
  port(): number;
  /** Re-reads certificates after a table swap. */
  refreshTls(table: PortTable): void;
  close(graceMs: number): Promise<void>;
}

export interface ListenerOptions {
  readonly host?: string;
  /** Node's headersTimeout: a client must finish sending headers within this (slowloris). */
  readonly headersTimeoutMs?: number;
  readonly keepAliveTimeoutMs?: number;
  readonly maxHeaderSize?: number;
}

/** Binds `server`, turning EADDRINUSE into a message a person can act on. */
export function listenOn(server: NetServer | HttpServer | Http2SecureServer, port: number, host: string | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(err.code === 'EADDRINUSE' ? new Error(`port ${port} is already in use (another Portico or program is listening there)`) : err);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Stops accepting, lets open connections finish for up to `graceMs`, then destroys the rest. */
export function drainServer(server: NetServer | HttpServer | Http2SecureServer, sockets: ReadonlySet<Socket>, graceMs: number, nudge?: () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      for (const s of sockets) s.destroy();
      resolve();
    }, graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    nudge?.();
  });
}

/** How often a draining HTTP/1.1 listener looks for a moment to close its idle connections. */
const DRAIN_IDLE_CLOSE_MS = 250;

export function trackSockets(server: NetServer | HttpServer | Http2SecureServer): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

export async function openListener(
  deps: ProxyDeps,
  table: PortTable,
  certs: CertStore,
  opts: ListenerOptions,
): Promise<Listener> {
  if (table.kind === 'tcp' || table.kind === 'tls') return openL4Listener(deps, table, certs, opts);
  const info: ListenerInfo = { bindPort: table.bindPort, number: table.number, scheme: table.tls ? 'https' : 'http' };
  let server: HttpServer | Http2SecureServer;
  let current = table;
  const sessions = new Set<ServerHttp2Session>();
  // Drain (Envoy's and nginx's behaviour): HTTP/1.1 responses from now on carry `Connection:
  // close`; HTTP/2 sessions get GOAWAY. `open` holds the HTTP/1.1 responses not yet finished, so
  // those already in flight when the drain starts are marked too.
  let draining = false;
  const open = new Set<ServerResponse>();
  const serve = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
    if (req.httpVersionMajor === 1) {
      const r = res as ServerResponse;
      if (draining) r.setHeader('connection', 'close');
      open.add(r);
      r.once('close', () => open.delete(r));
    }
    handleRequest(deps, info, req, res);
  };

  if (table.tls) {
    const contextFor = (servername: string | undefined): SecureContext | undefined => {
      const idx = (servername ? current.sni.lookup(servername.toLowerCase()) : undefined) ?? 0;
      const chosen = current.servers[idx] ?? current.servers[0];
      return chosen ? certs.context(chosen) : undefined;
    };
    const secure = createSecureServer({
      ...defaultTlsOptions(current, certs),
      allowHTTP1: true,
      SNICallback: (servername, cb) => {
        try {
          cb(null, contextFor(servername));
        } catch (err) {
          cb(err as Error);
        }
      },
    });
    secure.on('session', (session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
      if (draining) session.close();
    });
    secure.on('request', serve);
    // With allowHTTP1, HTTP/1.1 connections are parsed by node:http and emit 'upgrade' here.
    (secure as unknown as HttpServer).on('upgrade', (req, socket, head) => handleUpgrade(deps, info, req, socket, head));
    server = secure;
  } else if (table.protocol === 'GRPC' || table.protocol === 'HTTP2') {
    // Cleartext HTTP/2 with prior knowledge (h2c), what gRPC clients speak on plaintext ports.
    // Node's cleartext HTTP/2 server cannot also accept HTTP/1.1; use an HTTP port for those.
    const h2c = createH2cServer();
    h2c.on('session', (session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
      if (draining) session.close();
    });
    h2c.on('request', serve);
    server = h2c as unknown as Http2SecureServer;
  } else {
    const headersTimeout = opts.headersTimeoutMs ?? 30_000;
    const plain = createHttpServer({
      maxHeaderSize: opts.maxHeaderSize,
      headersTimeout,
      requestTimeout: 0,
      keepAliveTimeout: opts.keepAliveTimeoutMs ?? 65_000,
      // How often Node looks for connections past headersTimeout (slowloris); its default is 30 s.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 2))),
    });
    plain.on('request', serve);
    plain.on('upgrade', (req, socket, head) => handleUpgrade(deps, info, req, socket, head));
    server = plain;
  }
  const sockets = trackSockets(server);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  });

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
      if (next.tls) {
        const defaults = defaultTlsOptions(next, certs);
        if (defaults) (server as Http2SecureServer).setSecureContext(defaults);
      }
    },
    async close(graceMs) {
      draining = true;
      for (const r of open) if (!r.headersSent) r.setHeader('connection', 'close');
      // GOAWAY with the last stream processed; streams in flight finish, later ones are refused
      // (REFUSED_STREAM: never processed, safe to retry, RFC 9113 §8.7).
      for (const session of sessions) session.close();
      const closeIdle = (): void => (server as HttpServer).closeIdleConnections?.();
      // Idle HTTP/1.1 connections are closed only while no request is in flight: closing one
      // races its client writing the next request, which is then lost. Busy connections end
      // after their next response, which says `Connection: close`.
      const tick = setInterval(() => open.size === 0 && closeIdle(), DRAIN_IDLE_CLOSE_MS);
      tick.unref();
      await new Promise<void>((resolve) => {
        const deadline = setTimeout(() => {
          closeIdle(); // idle ones get a clean close; only requests still running are cut
          for (const s of sockets) s.destroy();
          resolve();
        }, graceMs);
        deadline.unref();
        // net.Server's close: stop accepting, call back once every connection has ended. (The
        // http servers' close() would also close every idle keep-alive connection at once.)
        NetServer.prototype.close.call(server, () => {
          clearTimeout(deadline);
          resolve();
        });
      });
      clearInterval(tick);
      server.close(); // the http server's own timers (header timeouts); nothing is left to close
    },
  };
}

/** The certificate served to clients that send no SNI: the port's first server's. */
function defaultTlsOptions(table: PortTable, certs: CertStore): SecureContextOptions | undefined {
  const first = table.servers.find((s) => s.tls?.certFile && s.tls.keyFile);
  return first ? certs.options(first) : undefined;
}
