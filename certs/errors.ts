/**
 * The certs package's error registry. Library errors (node-forge, node:crypto, fs) are translated
 * into a `CertError` with a stable code at the boundary where they occur, so callers (the CLI,
 * the control plane) can branch on `err.code` instead of matching message text.
 */
import { defineErrors } from '../lib/errors.ts';

const certErrors = defineErrors('CertError', {
  BAD_ARGUMENT: { code: 'PORTICO_ERR_CERT_BAD_ARGUMENT' },
  BAD_PEM: { code: 'PORTICO_ERR_CERT_BAD_PEM' },
  KEY_MISMATCH: { code: 'PORTICO_ERR_CERT_KEY_MISMATCH' },
  NOT_A_CA: { code: 'PORTICO_ERR_CERT_NOT_A_CA' },
  CA_EXPIRED: { code: 'PORTICO_ERR_CERT_CA_EXPIRED' },
  CA_INCOMPLETE: { code: 'PORTICO_ERR_CERT_CA_INCOMPLETE' },
  CA_NOT_YET_VALID: { code: 'PORTICO_ERR_CERT_CA_NOT_YET_VALID' },
  CSR_INVALID: { code: 'PORTICO_ERR_CERT_CSR_INVALID' },
  CSR_BAD_SIGNATURE: { code: 'PORTICO_ERR_CERT_CSR_BAD_SIGNATURE' },
  UNSUPPORTED_KEY: { code: 'PORTICO_ERR_CERT_UNSUPPORTED_KEY' },
  EXISTS: { code: 'PORTICO_ERR_CERT_EXISTS' },
  FILE_READ: { code: 'PORTICO_ERR_CERT_FILE_READ' },
});

export const CertErrorCodes = certErrors.codes;

export type CertErrorCode = (typeof CertErrorCodes)[keyof typeof CertErrorCodes];

/** `new CertError(code, message, { cause })`. */
export class CertError extends certErrors.Error {}

/** Type guard for `CertError`, optionally of one code. */
export function isCertError(err: unknown, code?: CertErrorCode): err is CertError {
  return err instanceof CertError && (code === undefined || err.code === code);
}
