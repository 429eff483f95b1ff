import { X509Certificate } from 'node:crypto';
import { CertError, CertErrorCodes } from './errors.ts';

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** What `certInfo` reports about one certificate. */
export interface CertInfo {
  /** node's one-attribute-per-line form, e.g. `CN=httpbin.example.com\nO=httpbin organization`; '' when empty. */
  readonly subject: string;
  readonly issuer: string;
  readonly dnsNames: string[];
  readonly uris: string[];
  readonly ipAddresses: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Colon-separated upper-case hex SHA-256 of the DER, as `openssl x509 -fingerprint -sha256`. */
  readonly fingerprint256: string;
  /** Upper-case hex. */
  readonly serialNumber: string;
  readonly isCa: boolean;
}

/** Describes the first certificate in `pem`. Throws a BAD_PEM CertError when it does not parse. */
export function certInfo(pem: string | Buffer): CertInfo {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch (err) {
    throw new CertError(CertErrorCodes.BAD_PEM, `not a PEM certificate (${errorText(err)})`, { cause: err });
  }
  const sans = parseSubjectAltName(x509.subjectAltName ?? '');
  return {
    // node reports an empty subject (workload certificates) as undefined
    subject: x509.subject ?? '',
    issuer: x509.issuer ?? '',
    dnsNames: sans.filter((s) => s.type === 'DNS').map((s) => s.value),
    uris: sans.filter((s) => s.type === 'URI').map((s) => s.value),
    ipAddresses: sans.filter((s) => s.type === 'IP Address').map((s) => s.value),
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    fingerprint256: x509.fingerprint256,
    serialNumber: x509.serialNumber.toUpperCase(),
    isCa: x509.ca,
  };
}

/**
 * Splits node's `subjectAltName` string (`DNS:a, URI:spiffe://x, IP Address:1.2.3.4`). Since
 * the CVE-2021-44532 fix node writes a value containing `,` or `"` as a JSON string literal,
 * so quoted values are decoded rather than split.
 */
export function parseSubjectAltName(text: string): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      next = text.indexOf(', ', end);
    } else {
      next = text.indexOf(', ', colon);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    out.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}
