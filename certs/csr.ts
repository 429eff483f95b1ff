/**
 * Certificate signing requests: a workload generates its key locally and sends only a CSR, so
 * the private key never leaves the workload (Istio's istio-agent -> istiod CreateCertificate).
 */
import forge from 'node-forge';
import { CertError, CertErrorCodes } from './errors.ts';
import { errorText, MIN_RSA_BITS, parseRsaKey } from './keys.ts';
import { checkDnValue } from './names.ts';
import { parseSpiffeId } from './spiffe.ts';
import type { CaPair, SignedWorkloadCert } from './types.ts';
import { nativeSigner, unixPem } from './sign.ts';
import { signWorkload } from './workload.ts';

/** Creates a PEM CSR (PKCS#10, SHA-256) for an RSA key, with subject CN = `commonName`. */
/** Re-exported from csr-request.ts (no node-forge), kept here for the public API. */
export { createCsr } from './csr-request.ts';

export interface SignCsrOptions {
  /** The identity the caller was authenticated as, e.g. `spiffe://cluster.local/ns/default/sa/reviews`. */
  readonly spiffeId: string;
  readonly ttlHours?: number;
  readonly dnsNames?: readonly string[];
  readonly now?: Date;
}

/**
 * Verifies the CSR's self-signature (proof that the requester holds the private key) and issues
 * a workload certificate for `options.spiffeId`.
 *
 * Everything the CSR itself asks for — subject, SANs, extensions — is ignored on purpose. The
 * CSR is written by the requester, so trusting its names would let any workload that can reach
 * the CA obtain a certificate for any other identity. The identity comes from how the caller
 * authenticated (as istiod derives it from the caller's token or current certificate); the CSR
 * only contributes the public key.
 */
export function signCsr(ca: CaPair, csrPem: string, options: SignCsrOptions): SignedWorkloadCert {
  parseSpiffeId(options.spiffeId);
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    throw new CertError(CertErrorCodes.CSR_INVALID, `CSR: not a PEM RSA certificate request (${errorText(err)})`, {
      cause: err,
    });
  }
  let verified = false;
  try {
    verified = csr.verify();
  } catch (err) {
    throw new CertError(CertErrorCodes.CSR_BAD_SIGNATURE, `CSR: signature could not be checked (${errorText(err)})`, {
      cause: err,
    });
  }
  if (!verified) throw new CertError(CertErrorCodes.CSR_BAD_SIGNATURE, 'CSR: signature does not match its public key');
  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!publicKey || typeof publicKey.n?.bitLength !== 'function') {
    throw new CertError(CertErrorCodes.UNSUPPORTED_KEY, 'CSR: public key is not RSA');
  }
  if (publicKey.n.bitLength() < MIN_RSA_BITS) {
    throw new CertError(
      CertErrorCodes.UNSUPPORTED_KEY,
      `CSR: RSA key is ${publicKey.n.bitLength()} bits, at least ${MIN_RSA_BITS} required`,
    );
  }
  const { certPem, notAfter } = signWorkload(ca, publicKey, options);
  return { certPem, spiffeId: options.spiffeId, notAfter };
}
