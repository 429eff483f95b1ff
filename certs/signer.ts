/**
 * Turns a CA pair (PEM) into a `Signer`, checking on the way that it is usable: both PEMs
 * parse, the key belongs to the certificate, the certificate is a CA and is currently valid.
 */
import { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { CertError, CertErrorCodes } from './errors.ts';
import { errorText, parseRsaKey } from './keys.ts';
import type { Signer } from './sign.ts';
import type { CaPair } from './types.ts';

export interface CaSigner extends Signer {
  readonly notAfter: Date;
}

interface Cached {
  readonly certPem: string;
  readonly keyPem: string;
  readonly signer: CaSigner;
  readonly notBefore: Date;
}

// Parsing the key and certificate costs ~6 ms, ten times the signature itself, so a control
// plane signing CSRs with the same CA object parses it once.
const cache = new WeakMap<CaPair, Cached>();

/** Returns the Signer for `ca`, or throws a CertError saying what is wrong with it. */
export function caSigner(ca: CaPair, now: Date = new Date()): CaSigner {
  let entry = cache.get(ca);
  if (!entry || entry.certPem !== ca.certPem || entry.keyPem !== ca.keyPem) {
    entry = parseCa(ca);
    cache.set(ca, entry);
  }
  if (now.getTime() > entry.signer.notAfter.getTime()) {
    throw new CertError(CertErrorCodes.CA_EXPIRED, `CA certificate expired at ${entry.signer.notAfter.toISOString()}`);
  }
  if (now.getTime() < entry.notBefore.getTime()) {
    throw new CertError(CertErrorCodes.CA_NOT_YET_VALID, `CA certificate is not valid before ${entry.notBefore.toISOString()}`);
  }
  return entry.signer;
}

function parseCa(ca: CaPair): Cached {
  let x509: X509Certificate;
  let cert: forge.pki.Certificate;
  try {
    x509 = new X509Certificate(ca.certPem);
    cert = forge.pki.certificateFromPem(ca.certPem);
  } catch (err) {
    throw new CertError(CertErrorCodes.BAD_PEM, `CA certificate: not a PEM RSA certificate (${errorText(err)})`, {
      cause: err,
    });
  }
  const key = parseRsaKey(ca.keyPem, 'CA key');
  if (!x509.checkPrivateKey(key.privateKey)) {
    throw new CertError(CertErrorCodes.KEY_MISMATCH, `CA key does not belong to the CA certificate (${x509.subject})`);
  }
  if (!x509.ca) {
    throw new CertError(CertErrorCodes.NOT_A_CA, `certificate '${x509.subject}' is not a CA (basicConstraints CA:false)`);
  }
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  const keyIdentifier = ski?.subjectKeyIdentifier
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : cert.generateSubjectKeyIdentifier().getBytes();
  return {
    certPem: ca.certPem,
    keyPem: ca.keyPem,
    notBefore: new Date(x509.validFrom),
    signer: {
      subject: cert.subject.attributes,
      keyIdentifier,
      privateKey: key.privateKey,
      notAfter: new Date(x509.validTo),
    },
  };
}
