/**
 * A raw HTTP/2 client for hostile-input tests: writes frames byte by byte (HPACK literals
 * without indexing or Huffman), so it can send what node:http2's client refuses to (CR/LF in
 * values, content-length mismatches, uppercase names, connection headers...). It reads back
 * only what the tests assert on: per stream, RST_STREAM codes, whether HEADERS came back, the
 * :status when the server sent it as a static-table index or a plain literal, and GOAWAY.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FLAG_END_STREAM = 0x1;
export const FLAG_END_HEADERS = 0x4;
const T_DATA = 0;
const T_HEADERS = 1;
const T_RST = 3;
const T_SETTINGS = 4;
const T_PING = 6;
const T_GOAWAY = 7;

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const out = [firstByteFlags | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** Literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2). */
export function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v]);
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** Static table :status indexes (RFC 7541 Appendix A). */
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

export interface StreamOutcome {
  /** RST_STREAM error code, if the server reset the stream. */
  rst?: number;
  /** The response :status, when it could be read (undefined for Huffman-coded ones). */
  status?: number;
  /** A response HEADERS frame arrived. */
  responded: boolean;
  /** END_STREAM seen from the server. */
  ended: boolean;
  /** Response DATA bytes. */
  dataBytes: number;
}

export class RawH2 {
  private buf = Buffer.alloc(0);
  private readonly streams = new Map<number, StreamOutcome>();
  private readonly waiters = new Set<() => void>();
  goaway: number | undefined = undefined;
  closed = false;
  private nextId = 1;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.write(Buffer.concat([PREFACE, frame(T_SETTINGS, 0, 0)]));
  }

  /** h2c with prior knowledge, or h2 over TLS (ALPN h2; the test CA is not checked). */
  static async connect(port: number, tls?: { servername: string }): Promise<RawH2> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = tls
        ? tlsConnect({ host: '127.0.0.1', port, servername: tls.servername, ALPNProtocols: ['h2'], rejectUnauthorized: false }, () => resolve(s))
        : netConnect({ host: '127.0.0.1', port }, () => resolve(s));
      s.once('error', reject);
    });
    return new RawH2(socket);
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  private outcome(id: number): StreamOutcome {
    let o = this.streams.get(id);
    if (!o) {
      o = { responded: false, ended: false, dataBytes: 0 };
      this.streams.set(id, o);
    }
    return o;
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const type = this.buf[3]!;
      const flags = this.buf[4]!;
      const id = this.buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buf.subarray(9, 9 + len);
      this.buf = this.buf.subarray(9 + len);
      if (type === T_SETTINGS && !(flags & 0x1)) this.socket.write(frame(T_SETTINGS, 0x1, 0));
      else if (type === T_PING && !(flags & 0x1)) this.socket.write(frame(T_PING, 0x1, 0, payload));
      else if (type === T_GOAWAY) this.goaway = payload.readUInt32BE(4);
      else if (type === T_RST) this.outcome(id).rst = payload.readUInt32BE(0);
      else if (type === T_HEADERS) {
        const o = this.outcome(id);
        o.responded = true;
        o.status ??= readStatus(payload, flags);
        if (flags & FLAG_END_STREAM) o.ended = true;
      } else if (type === T_DATA) {
        const o = this.outcome(id);
        o.dataBytes += len;
        if (flags & FLAG_END_STREAM) o.ended = true;
        // Keep the flow-control windows open (WINDOW_UPDATE on the connection and the stream).
        if (len > 0) {
          const inc = Buffer.alloc(4);
          inc.writeUInt32BE(len);
          this.socket.write(Buffer.concat([frame(8, 0, 0, inc), frame(8, 0, id, inc)]));
        }
      }
    }
    this.wake();
  }

  /** Sends a request: `headers` in order (pseudo-headers included), then DATA chunks. */
  request(headers: readonly (readonly [string, string])[], body?: { chunks: readonly Buffer[]; end: boolean }): number {
    const id = this.nextId;
    this.nextId += 2;
    const block = Buffer.concat(headers.map(([n, v]) => hpackLiteral(n, v)));
    const frames = [frame(T_HEADERS, FLAG_END_HEADERS | (body ? 0 : FLAG_END_STREAM), id, block)];
    if (body) {
      body.chunks.forEach((c, i) => frames.push(frame(T_DATA, body.end && i === body.chunks.length - 1 ? FLAG_END_STREAM : 0, id, c)));
      if (body.end && body.chunks.length === 0) frames.push(frame(T_DATA, FLAG_END_STREAM, id));
    }
    this.socket.write(Buffer.concat(frames));
    return id;
  }

  /** Writes raw bytes (frames the caller built). */
  write(b: Buffer): void {
    this.socket.write(b);
  }

  reset(id: number, code = 8 /* CANCEL */): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code);
    this.socket.write(frame(T_RST, 0, id, p));
  }

  /** Resolves when the stream ended (response or reset) or the connection closed. */
  async settled(id: number): Promise<StreamOutcome> {
    const done = (): boolean => {
      const o = this.streams.get(id);
      return this.closed || this.goaway !== undefined && (o === undefined || o.rst !== undefined || o.ended) || (o !== undefined && (o.rst !== undefined || o.ended));
    };
    while (!done()) await new Promise<void>((r) => {
      const w = (): void => {
        this.waiters.delete(w);
        r();
      };
      this.waiters.add(w);
    });
    return this.outcome(id);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** :status from a HEADERS block when it is the first field: indexed, or a non-Huffman literal. */
function readStatus(block: Buffer, flags: number): number | undefined {
  let p = 0;
  if (flags & 0x8) p += 1; // PADDED
  if (flags & 0x20) p += 5; // PRIORITY
  // Skip dynamic table size updates.
  while (p < block.length && (block[p]! & 0xe0) === 0x20) p++;
  const b = block[p];
  if (b === undefined) return undefined;
  if (b & 0x80) return STATIC_STATUS[b & 0x7f];
  // Literal with an indexed name (:status is static index 8..14), incremental or not.
  const nameIdx = b & 0x40 ? b & 0x3f : b & 0x0f;
  if (nameIdx < 8 || nameIdx > 14) return undefined;
  const lenByte = block[p + 1];
  if (lenByte === undefined || lenByte & 0x80) return undefined; // Huffman: not decoded here
  return Number(block.subarray(p + 2, p + 2 + lenByte).toString('latin1'));
}
