import { randomBytes } from 'node:crypto';

/**
 * A random 16-byte certificate serial number as hex, for forge's `cert.serialNumber`.
 * RFC 5280 4.1.2.2: positive, at most 20 octets; CA/Browser Forum BR 7.1: at least 64 random
 * bits. The top bit is cleared (positive) and the next one set, so the DER INTEGER is always
 * exactly 16 octets with no leading zero octet (126 random bits).
 */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}
