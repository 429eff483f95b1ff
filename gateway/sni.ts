/**
 * Reads the SNI server name from a TLS ClientHello without terminating TLS (RFC 8446 §4.1.2,
 * RFC 6066 §3), for PASSTHROUGH routing. Only the first record is parsed; a ClientHello split
 * across several records is rare enough that "no SNI" is the answer then.
 */

export type SniResult =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'done'; readonly serverName?: string };

const MAX_RECORD = 16 * 1024 + 5;

export function parseClientHelloSni(buf: Buffer): SniResult {
  if (buf.length < 5) return { kind: 'need-more' };
  if (buf[0] !== 0x16 || buf[1] !== 0x03) return { kind: 'not-tls' }; // handshake record, TLS 1.x
  const recordLength = buf.readUInt16BE(3);
  if (recordLength + 5 > MAX_RECORD) return { kind: 'not-tls' };
  if (buf.length < 5 + recordLength) return { kind: 'need-more' };
  const end = 5 + recordLength;
  let p = 5;
  if (buf[p] !== 0x01) return { kind: 'not-tls' }; // ClientHello
  p += 4; // type + 3-byte length
  p += 2 + 32; // legacy_version + random
  if (p >= end) return { kind: 'done' };
  p += 1 + buf[p]!; // session id
  if (p + 2 > end) return { kind: 'done' };
  p += 2 + buf.readUInt16BE(p); // cipher suites
  if (p + 1 > end) return { kind: 'done' };
  p += 1 + buf[p]!; // compression methods
  if (p + 2 > end) return { kind: 'done' };
  const extEnd = Math.min(end, p + 2 + buf.readUInt16BE(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    p += 4;
    if (type === 0x0000 && p + 2 <= extEnd) {
      let q = p + 2;
      const listEnd = Math.min(extEnd, q + buf.readUInt16BE(p));
      while (q + 3 <= listEnd) {
        const nameType = buf[q]!;
        const nameLen = buf.readUInt16BE(q + 1);
        q += 3;
        if (nameType === 0 && q + nameLen <= listEnd) return { kind: 'done', serverName: buf.toString('ascii', q, q + nameLen).toLowerCase() };
        q += nameLen;
      }
      return { kind: 'done' };
    }
    p += len;
  }
  return { kind: 'done' };
}
