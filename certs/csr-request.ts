/**
 * PKCS#10 certificate signing requests (RFC 2986) built with node:crypto and a few lines of DER,
 * without node-forge: sidecars and gateways that get their certificates from the control plane
 * only ever create CSRs, and loading forge costs them about 10 MB of RSS.
 *
 *   CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
 *   CertificationRequestInfo ::= SEQUENCE { version INTEGER 0, subject Name, subjectPKInfo, attributes [0] {} }
 */
import { createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { CertError, CertErrorCodes } from './errors.ts';
import { checkDnValue } from './names.ts';

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

/** An OBJECT IDENTIFIER from dotted form. */
function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

const SEQUENCE = 0x30;
const SET = 0x31;
const OID_COMMON_NAME = '2.5.4.3';
const OID_SHA256_WITH_RSA = '1.2.840.113549.1.1.11';

/** A PEM CSR for `commonName`, signed (SHA-256 with RSA) by the RSA private key `keyPem`. */
export function createCsr(keyPem: string, commonName: string): string {
  const cn = checkDnValue(commonName, 'CSR common name');
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CertError(CertErrorCodes.BAD_PEM, `CSR key: not a PEM private key (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new CertError(CertErrorCodes.UNSUPPORTED_KEY, `CSR key: ${key.asymmetricKeyType ?? 'unknown'} keys are not supported, use RSA`);
  }
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const subject = tlv(SEQUENCE, tlv(SET, tlv(SEQUENCE, oid(OID_COMMON_NAME), tlv(0x0c /* UTF8String */, Buffer.from(cn, 'utf8')))));
  const info = tlv(SEQUENCE, tlv(0x02, Buffer.from([0])), subject, spki, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, key);
  const algorithm = tlv(SEQUENCE, oid(OID_SHA256_WITH_RSA), Buffer.from([0x05, 0x00]));
  const der = tlv(SEQUENCE, info, algorithm, tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}-----END CERTIFICATE REQUEST-----\n`;
}
