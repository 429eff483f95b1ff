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
import { handleRequest, sendGatewayError, type ListenerInfo, type ProxyDeps, type RequestRecord } from './proxy.ts';
import { failRequest, type ErrorLog } from './contain.ts';
import { ERR } from './errors.ts';
import type { DownstreamRequest, DownstreamResponse } from './forward.ts';
import { headerLimitViolation, http1ParserHeaderBytes, resolveLimits, type RequestLimitOptions, type RequestLimits } from './limits.ts';
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

/**
 * Listener settings. The request limits (gateway/limits.ts) apply to every HTTP listener alike:
 * plain HTTP/1.1, HTTPS (HTTP/1.1 and h2 by ALPN) and h2c.
 */
export interface ListenerOptions extends RequestLimitOptions {
  readonly host?: string;
  /** Where internal errors contained to one request are logged. */
  readonly logger?: ErrorLog;
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

/** The latest HTTP/1.1 response started on a connection (for marking it when a drain starts). */
const kLatestResponse = Symbol('portico.latestResponse');
type ResponseSocket = Socket & { [kLatestResponse]?: ServerResponse };

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
  // close`; HTTP/2 sessions get GOAWAY. Responses already in flight when the drain starts are
  // marked too: each HTTP/1.1 connection remembers its latest response (kLatestResponse), and
  // `inflight` counts the unfinished ones.
  // perf: no per-response Set. Adding every response to a long-lived Set made each scavenge copy
  // and promote ~2 MB (4 ms pauses every ~70 ms at 50 connections, a p99 effect of its own;
  // 88 KB and 0.7 ms without it; docs/benchmarks.md "Tail latency, second look"). The socket
  // set below changes once per connection, not per request.
  let draining = false;
  let inflight = 0;
  const http1Sockets = new Set<ResponseSocket>();
  const responseClosed = (): void => void inflight--;
  const serve = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
    if (req.httpVersionMajor === 1) {
      const r = res as ServerResponse;
      if (draining) r.setHeader('connection', 'close');
      inflight++;
      r.once('close', responseClosed);
      const s = r.socket as ResponseSocket | null;
      if (s) {
        if (s[kLatestResponse] === undefined) {
          http1Sockets.add(s);
          s.once('close', () => http1Sockets.delete(s));
        }
        s[kLatestResponse] = r;
      }
    }
    serveRequest(deps, info, limits, req, res, opts.logger);
  };
  const limits = resolveLimits(opts);

  if (table.tls) {
    const contextFor = (servername: string | undefined): SecureContext | undefined => {
      const idx = (servername ? current.sni.lookup(servername.toLowerCase()) : undefined) ?? 0;
      const chosen = current.servers[idx] ?? current.servers[0];
      return chosen ? certs.context(chosen) : undefined;
    };
    const secure = createSecureServer({
      ...defaultTlsOptions(current, certs),
      ...h2Options(limits),
      allowHTTP1: true,
      // A handshake that has not finished in the headers timeout is a slow client too.
      handshakeTimeout: limits.headersTimeoutMs > 0 ? limits.headersTimeoutMs : 120_000,
      SNICallback: (servername, cb) => {
        try {
          cb(null, contextFor(servername));
        } catch (err) {
          cb(err as Error);
        }
      },
    });
    // HTTP/1.1 over TLS goes through node:http's connection handling, which reads these from the
    // server (Http2SecureServer sets its own 60 s / 300 s defaults, checked every 30 s, and no
    // keep-alive timeout): the same limits and timeouts as a plain HTTP port.
    applyHttp1Settings(secure as unknown as HttpServer, limits);
    // A failed or timed-out handshake ends that connection (Node leaves the socket open on a
    // handshake timeout once any tlsClientError listener exists; destroy it explicitly).
    secure.on('tlsClientError', (_err, socket) => socket.destroy());
    secure.on('session', (session) => {
      trackSession(session, sessions, limits);
      if (draining) session.close();
    });
    secure.on('request', serve);
    // With allowHTTP1, HTTP/1.1 connections are parsed by node:http and emit 'upgrade' here.
    (secure as unknown as HttpServer).on('upgrade', (req, socket, head) => handleUpgrade(deps, info, req, socket, head));
    server = secure;
  } else if (table.protocol === 'GRPC' || table.protocol === 'HTTP2') {
    // Cleartext HTTP/2 with prior knowledge (h2c), what gRPC clients speak on plaintext ports.
    // Node's cleartext HTTP/2 server cannot also accept HTTP/1.1; use an HTTP port for those.
    const h2c = createH2cServer(h2Options(limits));
    h2c.on('session', (session) => {
      trackSession(session, sessions, limits);
      if (draining) session.close();
    });
    h2c.on('request', serve);
    server = h2c as unknown as Http2SecureServer;
  } else {
    const plain = createHttpServer({
      maxHeaderSize: http1ParserHeaderBytes(limits),
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: checkingInterval(limits),
    });
    plain.maxHeadersCount = limits.maxHeaders + 1;
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
  // A session-level protocol error (bad frames, flood limits) ends that connection only.
  server.on('sessionError', () => undefined);

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
      // HTTP/1.1 answers in order: marking a connection's latest response closes it after every
      // request already on it has been answered.
      for (const sock of http1Sockets) {
        const r = sock[kLatestResponse];
        if (r && !r.headersSent && !r.writableEnded) r.setHeader('connection', 'close');
      }
      // GOAWAY with the last stream processed; streams in flight finish, later ones are refused
      // (REFUSED_STREAM: never processed, safe to retry, RFC 9113 §8.7).
      for (const session of sessions) session.close();
      const closeIdle = (): void => (server as HttpServer).closeIdleConnections?.();
      // Idle HTTP/1.1 connections are closed only while no request is in flight: closing one
      // races its client writing the next request, which is then lost. Busy connections end
      // after their next response, which says `Connection: close`.
      const tick = setInterval(() => inflight === 0 && closeIdle(), DRAIN_IDLE_CLOSE_MS);
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

/** How often node:http looks for connections past headersTimeout (slowloris); its default is 30 s. */
function checkingInterval(l: RequestLimits): number {
  return Math.max(50, Math.min(1000, Math.floor((l.headersTimeoutMs || 30_000) / 2)));
}

function applyHttp1Settings(server: HttpServer, l: RequestLimits): void {
  // Read by node:http's connection listener per connection, connectionsCheckingInterval when
  // the server starts listening (so this runs before listen()).
  // maxHeaderSize is node:http's own server field (set from createServer options); there is no
  // public setter for the HTTP/1.1 half of an Http2SecureServer. test/security covers it.
  (server as { maxHeaderSize?: number }).maxHeaderSize = http1ParserHeaderBytes(l);
  server.maxHeadersCount = l.maxHeaders + 1;
  server.headersTimeout = l.headersTimeoutMs;
  server.requestTimeout = l.requestTimeoutMs;
  server.keepAliveTimeout = l.keepAliveTimeoutMs;
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = checkingInterval(l);
}

/**
 * HTTP/2 settings from the limits. Node resets a stream past maxHeaderListPairs (pseudo-headers
 * counted) before Portico sees it; up to twice the limit gets the 431 of serveRequest's check,
 * as on HTTP/1.1.
 */
function h2Options(l: RequestLimits): { maxHeaderListPairs: number; settings: { maxHeaderListSize: number } } {
  return { maxHeaderListPairs: 2 * l.maxHeaders + 8, settings: { maxHeaderListSize: 2 * l.maxHeaderBytes + 32 * (2 * l.maxHeaders + 8) } };
}

/**
 * Per HTTP/2 session: GOAWAY when no request arrives within the headers timeout of the
 * connection opening (a client that never completes a HEADERS block), or when it stays idle
 * for the keep-alive timeout after its last stream. Errors end this session only.
 */
function trackSession(session: ServerHttp2Session, sessions: Set<ServerHttp2Session>, l: RequestLimits): void {
  sessions.add(session);
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number): void => {
    if (timer) clearTimeout(timer);
    timer = ms > 0 ? setTimeout(() => session.close(), ms) : undefined;
    timer?.unref();
  };
  arm(l.headersTimeoutMs);
  session.on('stream', (stream) => {
    open++;
    if (timer) clearTimeout(timer);
    timer = undefined;
    stream.once('close', () => {
      if (--open === 0 && !session.closed && !session.destroyed) arm(l.keepAliveTimeoutMs);
    });
  });
  session.on('error', () => undefined);
  session.once('close', () => {
    if (timer) clearTimeout(timer);
    sessions.delete(session);
  });
}

/**
 * The 'request' handler of every HTTP port: limits first (431, never forwarded), then the proxy.
 * An exception ends this request only (contain.ts).
 */
function serveRequest(deps: ProxyDeps, info: ListenerInfo, limits: RequestLimits, req: DownstreamRequest, res: DownstreamResponse, log: ErrorLog | undefined): void {
  try {
    const tooLarge = headerLimitViolation(req, limits);
    if (tooLarge !== undefined) return refuseHeaders(deps, info, req, res, tooLarge);
    if (limits.requestTimeoutMs > 0 && req.httpVersionMajor === 2) armH2RequestTimeout(req as Http2ServerRequest, res as Http2ServerResponse, limits.requestTimeoutMs);
    handleRequest(deps, info, req, res);
  } catch (err) {
    failRequest(res, err, log);
  }
}

/** 431 for headers over the limits, logged and counted like any request the gateway answers. */
function refuseHeaders(deps: ProxyDeps, info: ListenerInfo, req: DownstreamRequest, res: DownstreamResponse, detail: string): void {
  const observer = deps.telemetry?.begin(req, info);
  const started = performance.now();
  // HTTP/1.1: the rest of an oversized request may still be arriving; do not read on.
  if (req.httpVersionMajor !== 2) res.setHeader('connection', 'close');
  const bytes = sendGatewayError(res, ERR.HEADERS_TOO_LARGE, detail, req);
  if (!observer && !deps.onRequest) return;
  const a = req.headers[':authority'] ?? req.headers.host;
  const rec: RequestRecord = {
    method: req.method ?? '',
    authority: typeof a === 'string' ? a : '',
    path: req.url ?? '',
    status: ERR.HEADERS_TOO_LARGE.status,
    flag: ERR.HEADERS_TOO_LARGE.flag,
    startMs: started,
    durationMs: performance.now() - started,
    protocol: req.httpVersionMajor === 2 ? 'HTTP/2' : 'HTTP/1.1',
    grpc: false,
    requestBytes: 0,
    responseBytes: bytes,
  };
  observer?.end(rec);
  deps.onRequest?.(rec);
}

/**
 * HTTP/2 has no node:http requestTimeout: a stream whose request is not fully received in time
 * gets 408 (or a reset once the response started), as with Envoy's request_timeout.
 */
function armH2RequestTimeout(req: Http2ServerRequest, res: Http2ServerResponse, ms: number): void {
  const timer = setTimeout(() => {
    if (req.stream.readableEnded || req.stream.destroyed) return;
    if (!res.headersSent) sendGatewayError(res, ERR.REQUEST_TIMEOUT, undefined, req);
    req.stream.close(8 /* CANCEL */);
  }, ms);
  timer.unref();
  req.stream.once('end', () => clearTimeout(timer));
  req.stream.once('close', () => clearTimeout(timer));
}
