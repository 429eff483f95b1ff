/**
 * The ext_authz check's HTTP/1.1 client: keep-alive connections to one authorization server
 * endpoint, with the checks of one event-loop turn pipelined on one connection and written with
 * one syscall at the end of the turn. A check sent while no other is in flight (an idle
 * gateway) is written at once.
 *
 * Why not the upstream pool (undici): a check is a bodiless request whose answer is a status
 * line and a few headers, and it costs the gateway a second request per request. Under load the
 * gateway handles many requests per event-loop turn (about 10–16 per epoll wake-up at 50
 * connections, by strace), so their checks coalesce: measured with strace under load, the
 * gateway makes about one check write per 11 checks and the authservice one read per 10 (each
 * was one per check; the authservice still writes each answer on its own, as Node's HTTP server
 * sends pipelined answers one after the other). On loopback a write also runs the receiver's
 * TCP input path, so syscalls are the largest single cost of a check. Envoy does not
 * pipeline; HTTP/1.1 servers must answer pipelined requests in order (RFC 9112 §9.3.2), and
 * Node, Go's net/http and oauth2-proxy do. A slow answer delays only the checks batched behind it on its connection (at most
 * `pipelining`, and only those of the same turn). `pipelining: 1` sends one check per
 * connection at a time.
 *
 * The response parser is strict (RFC 9112): a status line `HTTP/1.x NNN`, header fields
 * `name: value` with token names, no obs-fold, Content-Length (identical duplicates only),
 * chunked (final coding) or read-until-close bodies, 1xx skipped. Anything else fails the check
 * (the filter's failure mode decides) and closes the connection: the client never guesses
 * message boundaries. Requests that got no byte of an answer when their connection failed are
 * sent once more on a new connection (checks carry no body, so a resend repeats nothing but the
 * question).
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { buildConnector } from 'undici';

/** A check's answer, delivered in parts. The body is kept only if `onHead` asks for it. */
export interface CheckAnswerHandler {
  /** The final (non-1xx) status and headers, lower-cased names; return true to get the body. */
  onHead(status: number, headers: Record<string, string | string[]>): boolean;
  /** The whole answer was read; `body` only when onHead asked for it. */
  onEnd(body: Buffer | undefined): void;
  onError(err: Error): void;
}

export interface CheckClientOptions {
  readonly address: string;
  readonly port: number;
  /** TLS origination (gateway/mtls.ts); plaintext when absent. */
  readonly tls?: buildConnector.connector;
  readonly connectTimeoutMs: number;
  /** Idle connections close after this long. */
  readonly idleTimeoutMs: number;
  /** Most connections open at once. */
  readonly maxConnections: number;
  /** Most checks in flight on one connection (1 = no pipelining). */
  readonly pipelining: number;
  /** Checks per connection before it is closed (Istio's maxRequestsPerConnection; 0 = no limit). */
  readonly maxRequestsPerConnection: number;
  /** Largest body kept for onEnd. */
  readonly maxBodyBytes: number;
}

export class CheckClientError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'CheckClientError';
  }
}

const MAX_HEAD_BYTES = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Characters that may not appear in what we write: they would end a line or the head early. */
const UNSAFE = /[\r\n\0]|[^\x00-\xff]/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?$/;

interface Pending {
  readonly head: string;
  readonly method: string;
  readonly handler: CheckAnswerHandler;
  /** Absent when the check has no timeout (0). */
  readonly timer: NodeJS.Timeout | undefined;
  /** Sent once more already after a connection failure. */
  resent: boolean;
  done: boolean;
}

type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' };

class Connection {
  /** Absent until a TLS connector hands the connection over; writes wait for it. */
  private socket: Socket | undefined;
  /** Sent, awaiting their answers in order. */
  readonly inflight: Pending[] = [];
  /** Written at the end of the turn. */
  out = '';
  closed = false;
  /** Served at least one answer: a failure before any byte may be a server's idle close. */
  reused = false;
  /** Checks sent on this connection. */
  sent = 0;
  private buf: Buffer | undefined;
  private phase: 'head' | 'body' = 'head';
  private framing: Framing = { kind: 'length', left: 0 };
  private keepAlive = true;
  private body: Buffer[] | undefined;
  private bodyBytes = 0;
  /** Chunked decoding state. */
  private chunkLeft = -1;
  private trailers = false;
  private gotBytes = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly client: CheckClient) {}

  /** Takes the connected (or connecting: net buffers early writes) socket; writes what waits. */
  attach(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    socket.on('data', (b: Buffer) => this.onData(b));
    socket.on('end', () => this.onClose(undefined));
    socket.on('close', () => this.onClose(undefined));
    socket.on('error', (err: Error) => this.onClose(err));
    this.flush();
  }

  flush(): void {
    if (this.socket === undefined || this.closed || this.out === '') return;
    const out = this.out;
    this.out = '';
    this.socket.write(out, 'latin1');
  }

  idle(): void {
    if (this.idleTimer) this.idleTimer.refresh();
    else {
      this.idleTimer = setTimeout(() => {
        if (this.inflight.length === 0 && this.out === '') this.fail(undefined);
      }, this.client.options.idleTimeoutMs);
      this.idleTimer.unref();
    }
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.gotBytes = true;
    let b = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    this.buf = undefined;
    try {
      while (b.length > 0 || (this.phase === 'body' && this.framing.kind === 'length' && this.framing.left === 0)) {
        if (this.phase === 'head') {
          const end = b.indexOf(CRLFCRLF);
          if (end < 0) {
            if (b.length > MAX_HEAD_BYTES) throw new CheckClientError('ext_authz answer: header section too large', 'HEAD_TOO_LARGE');
            this.buf = b;
            return;
          }
          const text = b.toString('latin1', 0, end);
          b = b.subarray(end + 4);
          this.onHead(text);
          continue;
        }
        b = this.onBody(b);
        if (b.length === 0 && this.phase === 'body') return;
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private onHead(text: string): void {
    const p = this.inflight[0];
    if (!p) throw new CheckClientError('ext_authz answer without a request', 'UNSOLICITED');
    const lines = text.split('\r\n');
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) throw new CheckClientError(`ext_authz answer: bad status line ${JSON.stringify(lines[0]!.slice(0, 80))}`, 'BAD_STATUS');
    const status = Number(m[2]);
    const headers: Record<string, string | string[]> = {};
    let length: string | undefined;
    let te: string | undefined;
    let connection = '';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new CheckClientError('ext_authz answer: bad header line', 'BAD_HEADER');
      const name = line.slice(0, colon).toLowerCase();
      if (!TOKEN.test(name)) throw new CheckClientError(`ext_authz answer: bad header name ${JSON.stringify(name.slice(0, 40))}`, 'BAD_HEADER');
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') length = length === undefined ? value : `${length},${value}`;
      else if (name === 'transfer-encoding') te = te === undefined ? value : `${te},${value}`;
      else if (name === 'connection') connection = connection ? `${connection},${value}` : value;
      const prev = headers[name];
      if (prev === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(prev)) prev.push(value);
      else headers[name] = `${prev}, ${value}`;
    }
    if (status < 200) {
      if (status === 101) throw new CheckClientError('ext_authz answer: unexpected protocol switch', 'BAD_STATUS');
      return; // 1xx: the final answer follows
    }
    this.keepAlive = m[1] === '1' && !/(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
    if (p.method === 'HEAD' || status === 204 || status === 304) this.framing = { kind: 'length', left: 0 };
    else if (te !== undefined) {
      const codings = te.split(',').map((c) => c.trim().toLowerCase());
      // RFC 9112 §6.3: chunked as the final coding frames the body; otherwise it runs to the close.
      if (codings[codings.length - 1] === 'chunked') {
        this.framing = { kind: 'chunked' };
        this.chunkLeft = -1;
        this.trailers = false;
      } else this.framing = { kind: 'close' };
    } else if (length !== undefined) {
      const values = length.split(',').map((v) => v.trim());
      if (!values.every((v) => /^[0-9]{1,15}$/.test(v) && v === values[0])) throw new CheckClientError(`ext_authz answer: bad Content-Length ${JSON.stringify(length.slice(0, 40))}`, 'BAD_LENGTH');
      this.framing = { kind: 'length', left: Number(values[0]) };
    } else this.framing = { kind: 'close' };
    if (this.framing.kind === 'close') this.keepAlive = false;
    this.body = p.handler.onHead(status, headers) ? [] : undefined;
    this.bodyBytes = 0;
    this.phase = 'body';
  }

  private keep(part: Buffer): void {
    if (!this.body) return;
    this.bodyBytes += part.length;
    if (this.bodyBytes > this.client.options.maxBodyBytes) throw new CheckClientError('ext_authz answer: body too large', 'BODY_TOO_LARGE');
    this.body.push(part);
  }

  /** Consumes body bytes from `b`; returns the rest (the next answer's bytes). */
  private onBody(b: Buffer): Buffer {
    const f = this.framing;
    if (f.kind === 'length') {
      const n = Math.min(f.left, b.length);
      if (n > 0) this.keep(b.subarray(0, n));
      f.left -= n;
      if (f.left === 0) this.finish();
      return b.subarray(n);
    }
    if (f.kind === 'close') {
      this.keep(b);
      return b.subarray(b.length);
    }
    // chunked
    for (;;) {
      if (this.trailers) {
        // Trailer fields then an empty line; kept nowhere (an ext_authz answer's trailers mean nothing).
        const end = b.indexOf('\r\n');
        if (end < 0) return this.hold(b);
        const line = b.subarray(0, end);
        b = b.subarray(end + 2);
        if (line.length === 0) {
          this.finish();
          return b;
        }
        continue;
      }
      if (this.chunkLeft < 0) {
        const end = b.indexOf('\r\n');
        if (end < 0) return this.hold(b);
        const line = b.toString('latin1', 0, end);
        b = b.subarray(end + 2);
        const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (!m) throw new CheckClientError('ext_authz answer: bad chunk size', 'BAD_CHUNK');
        const size = parseInt(m[1]!, 16);
        if (size === 0) {
          this.trailers = true;
          continue;
        }
        this.chunkLeft = size;
      }
      if (this.chunkLeft > 0) {
        const n = Math.min(this.chunkLeft, b.length);
        if (n > 0) this.keep(b.subarray(0, n));
        this.chunkLeft -= n;
        b = b.subarray(n);
        if (this.chunkLeft > 0) return b;
      }
      // chunkLeft === 0: the chunk's CRLF
      if (b.length < 2) return this.hold(b);
      if (b[0] !== 13 || b[1] !== 10) throw new CheckClientError('ext_authz answer: chunk not followed by CRLF', 'BAD_CHUNK');
      b = b.subarray(2);
      this.chunkLeft = -1;
    }
  }

  private hold(b: Buffer): Buffer {
    if (b.length > MAX_HEAD_BYTES) throw new CheckClientError('ext_authz answer: chunk line too long', 'BAD_CHUNK');
    this.buf = Buffer.from(b);
    return b.subarray(b.length);
  }

  private finish(): void {
    const p = this.inflight.shift()!;
    const body = this.body ? (this.body.length === 1 ? this.body[0]! : Buffer.concat(this.body)) : undefined;
    this.phase = 'head';
    this.body = undefined;
    this.reused = true;
    this.gotBytes = false;
    this.client.settle(p);
    p.handler.onEnd(body);
    const max = this.client.options.maxRequestsPerConnection;
    if (!this.keepAlive || (max > 0 && this.sent >= max && this.inflight.length === 0)) this.fail(undefined);
    else if (this.inflight.length === 0) this.idle();
  }

  private onClose(err: Error | undefined): void {
    if (this.closed) return;
    // An answer that runs to the close ends here.
    if (err === undefined && this.phase === 'body' && this.framing.kind === 'close' && this.inflight.length > 0) {
      this.keepAlive = false;
      this.finish();
      return;
    }
    this.fail(err ?? new CheckClientError('ext_authz server closed the connection', 'CLOSED'));
  }

  /** Closes the connection; checks still waiting are resent or fail. `err` undefined: a clean close. */
  fail(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.socket?.destroy();
    const waiting = this.inflight.splice(0);
    const first = waiting[0];
    // The first check may have got part of its answer (gotBytes): that one is not resent.
    const cause = err ?? new CheckClientError('ext_authz connection closed', 'CLOSED');
    this.client.dropped(this, waiting, first !== undefined && this.gotBytes ? first : undefined, cause, this.reused);
  }
}

/** One authorization server endpoint's connections. */
export class CheckClient {
  private readonly conns = new Set<Connection>();
  /** The connection this turn's checks go to. */
  private batch: Connection | undefined;
  private readonly dirty = new Set<Connection>();
  private flushScheduled = false;
  private closed = false;
  /** Checks sent and not yet settled: none means an idle gateway, whose check leaves at once. */
  private active = 0;

  constructor(readonly options: CheckClientOptions) {}

  /** Whether `value` can be written in a request head (no CR, LF, NUL or non-latin1 character). */
  static safe(value: string): boolean {
    return !UNSAFE.test(value);
  }

  /**
   * Sends a check. `headers` is a flat [name, value, ...] list; `path` the request target.
   * Names and values must have passed `safe` (the caller's are from Node's parser or config).
   */
  check(method: string, path: string, headers: readonly string[], timeoutMs: number, handler: CheckAnswerHandler): void {
    if (this.closed) {
      handler.onError(new CheckClientError('ext_authz client closed', 'CLOSED'));
      return;
    }
    if (!TOKEN.test(method) || !CheckClient.safe(path) || path.includes(' ')) {
      handler.onError(new CheckClientError('ext_authz check: method or path cannot be sent', 'BAD_REQUEST'));
      return;
    }
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) {
      const v = headers[i + 1]!;
      if (!CheckClient.safe(v)) {
        handler.onError(new CheckClientError(`ext_authz check: header ${headers[i]} has a value that cannot be sent`, 'BAD_REQUEST'));
        return;
      }
      head += `${headers[i]}: ${v}\r\n`;
    }
    head += '\r\n';
    const p: Pending = { head, method, handler, resent: false, done: false, timer: timeoutMs > 0 ? setTimeout(() => this.timeout(p), timeoutMs) : undefined };
    this.active++;
    this.send(p, this.active === 1 && !this.flushScheduled);
  }

  /** `now`: write at once (nothing else is in flight, so there is nothing to batch with). */
  private send(p: Pending, now = false): void {
    let c = this.batch;
    if (c === undefined || !this.usable(c) || c.inflight.length >= this.options.pipelining) {
      c = this.pick();
      this.batch = c;
    }
    c.out += p.head;
    c.sent++;
    c.inflight.push(p);
    if (now) {
      c.flush();
      return;
    }
    this.dirty.add(c);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    this.batch = undefined;
    for (const c of this.dirty) c.flush();
    this.dirty.clear();
  };

  private usable(c: Connection): boolean {
    const max = this.options.maxRequestsPerConnection;
    return !c.closed && (max === 0 || c.sent < max);
  }

  /** An idle connection, else a new one while under the limit, else the least busy. */
  private pick(): Connection {
    let least: Connection | undefined;
    for (const c of this.conns) {
      if (!this.usable(c)) continue;
      if (c.inflight.length === 0) return c;
      if (!least || c.inflight.length < least.inflight.length) least = c;
    }
    if (least && least.inflight.length < this.options.pipelining && this.conns.size >= this.options.maxConnections) return least;
    return this.open();
  }

  private open(): Connection {
    const o = this.options;
    const conn = new Connection(this);
    this.conns.add(conn);
    if (o.tls) {
      // The TLS connector (gateway/mtls.ts) bounds its own handshake and hands the socket over.
      const opts: buildConnector.Options = { hostname: o.address, host: o.address, protocol: 'https:', port: String(o.port), localAddress: null };
      o.tls(opts, (err, socket) => {
        if (err || !socket) conn.fail(err ?? new CheckClientError('ext_authz TLS connect failed', 'CONNECT'));
        else conn.attach(socket as Socket);
      });
      return conn;
    }
    const socket = netConnect({ host: o.address, port: o.port, noDelay: true });
    const timer = setTimeout(() => conn.fail(new CheckClientError(`connect timeout to ${o.address}:${o.port}`, 'CONNECT_TIMEOUT')), o.connectTimeoutMs);
    timer.unref();
    socket.once('connect', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
    conn.attach(socket);
    return conn;
  }

  /** The check got its whole answer. */
  settle(p: Pending): void {
    p.done = true;
    this.active--;
    clearTimeout(p.timer);
  }

  /** A connection closed with checks waiting: resend those that may, fail the others. */
  dropped(c: Connection, waiting: Pending[], partial: Pending | undefined, err: Error, reused: boolean): void {
    this.conns.delete(c);
    this.dirty.delete(c);
    if (this.batch === c) this.batch = undefined;
    for (const p of waiting) {
      if (p.done) continue;
      // Behind the first, or first on a reused connection without a byte of answer: the server
      // may never have read it (an idle close crossing our write). Once only.
      const mayResend = !this.closed && p !== partial && !p.resent && (reused || p !== waiting[0]);
      if (mayResend) {
        p.resent = true;
        this.send(p);
      } else {
        p.done = true;
        this.active--;
        clearTimeout(p.timer);
        p.handler.onError(err);
      }
    }
  }

  private timeout(p: Pending): void {
    if (p.done) return;
    p.done = true;
    this.active--;
    // Its answer may still come: the connection can no longer be trusted to be in step, so it
    // closes, and the checks behind it are resent elsewhere.
    for (const c of this.conns) {
      if (c.inflight.includes(p)) {
        c.fail(new CheckClientError('ext_authz check timed out', 'TIMEOUT'));
        break;
      }
    }
    p.handler.onError(new CheckClientError('ext_authz check timed out', 'TIMEOUT'));
  }

  stats(): { connected: number; running: number } {
    let running = 0;
    for (const c of this.conns) running += c.inflight.length;
    return { connected: this.conns.size, running };
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.conns]) c.fail(new CheckClientError('ext_authz client closed', 'CLOSED'));
  }
}
