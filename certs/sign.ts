/**
 * Builds one X.509 certificate with node-forge and signs it (sha256WithRSAEncryption) with
 * node:crypto. forge's own RSA signing is pure JavaScript and takes ~20 ms per certificate;
 * node:crypto takes ~0.5 ms. forge still lays out the TBSCertificate and the final DER.
 */
import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { randomSerial } from './serial.ts';
import type { Validity } from './validity.ts';

/** A forge extension description, as accepted by `cert.setExtensions`. */
export type Extension = { name: string; critical?: boolean } & Record<string, unknown>;

/** Who signs: the issuer's distinguished name, key identifier and private key. */
export interface Signer {
  readonly subject: forge.pki.CertificateField[];
  /** Raw bytes (forge binary string) of the issuer's subjectKeyIdentifier. */
  readonly keyIdentifier: string;
  readonly privateKey: KeyObject;
}

export interface CertSpec {
  readonly subject: forge.pki.CertificateField[];
  readonly publicKey: forge.pki.rsa.PublicKey;
  readonly validity: Validity;
  /** Extensions other than subject/authority key identifiers, which are always added. */
  readonly extensions: Extension[];
}

/**
 * Issues a certificate for `spec` signed by `signer`, or self-signed by `selfKey` when
 * `signer` is `'self'`. Returns the PEM.
 */
export function signCertificate(spec: CertSpec, signer: Signer | 'self', selfKey?: KeyObject): string {
  const cert = forge.pki.createCertificate();
  cert.serialNumber = randomSerial();
  cert.publicKey = spec.publicKey;
  cert.validity.notBefore = spec.validity.notBefore;
  cert.validity.notAfter = spec.validity.notAfter;
  cert.setSubject(spec.subject);

  const ownKeyId = cert.generateSubjectKeyIdentifier().getBytes();
  const issuerKeyId = signer === 'self' ? ownKeyId : signer.keyIdentifier;
  cert.setIssuer(signer === 'self' ? spec.subject : signer.subject);
  cert.setExtensions([
    ...spec.extensions,
    { name: 'subjectKeyIdentifier' }, // forge derives it: SHA-1 of the public key (RFC 5280 4.2.1.2)
    { name: 'authorityKeyIdentifier', keyIdentifier: issuerKeyId },
  ]);

  const key = signer === 'self' ? selfKey : signer.privateKey;
  if (!key) throw new TypeError('signCertificate: a self-signed certificate needs selfKey');
  // forge computes the TBSCertificate before calling key.sign(md); sign those exact bytes.
  cert.sign(nativeSigner(key, () => cert.tbsCertificate), forge.md.sha256.create());
  return unixPem(forge.pki.certificateToPem(cert));
}

/**
 * A stand-in for a forge RSA private key whose `sign(md)` ignores forge's digest and instead
 * signs (RSASSA-PKCS1-v1_5, SHA-256) the DER of the structure forge has just laid out, with
 * node:crypto. Works for forge's `cert.sign` and `csr.sign`, which both build the to-be-signed
 * ASN.1 first and then call `key.sign`. The md passed to those must be sha256, so the
 * signature algorithm forge writes (sha256WithRSAEncryption) matches what was signed.
 */
export function nativeSigner(key: KeyObject, toBeSigned: () => forge.asn1.Asn1): forge.pki.rsa.PrivateKey {
  const signer = {
    sign: (): string => {
      const der = forge.asn1.toDer(toBeSigned()).getBytes();
      return cryptoSign('sha256', Buffer.from(der, 'binary'), key).toString('binary');
    },
  };
  return signer as unknown as forge.pki.rsa.PrivateKey;
}

/** forge writes PEM with CRLF line ends; openssl and node write LF. Use LF everywhere. */
export function unixPem(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}
