/**
 * The certs package's error registry. Library errors (node-forge, node:crypto, fs) are translated
 * into a `CertError` with a stable code at the boundary where they occur, so callers (the CLI,
 * the control plane) can branch on `err.code` instead of matching message text.
 */
export const CertErrorCodes = {
  BAD_ARGUMENT: 'PORTICO_ERR_CERT_BAD_ARGUMENT',
  BAD_PEM: 'PORTICO_ERR_CERT_BAD_PEM',
  KEY_MISMATCH: 'PORTICO_ERR_CERT_KEY_MISMATCH',
  NOT_A_CA: 'PORTICO_ERR_CERT_NOT_A_CA',
  CA_EXPIRED: 'PORTICO_ERR_CERT_CA_EXPIRED',
  CA_INCOMPLETE: 'PORTICO_ERR_CERT_CA_INCOMPLETE',
  CA_NOT_YET_VALID: 'PORTICO_ERR_CERT_CA_NOT_YET_VALID',
  CSR_INVALID: 'PORTICO_ERR_CERT_CSR_INVALID',
  CSR_BAD_SIGNATURE: 'PORTICO_ERR_CERT_CSR_BAD_SIGNATURE',
  UNSUPPORTED_KEY: 'PORTICO_ERR_CERT_UNSUPPORTED_KEY',
  EXISTS: 'PORTICO_ERR_CERT_EXISTS',
  FILE_READ: 'PORTICO_ERR_CERT_FILE_READ',
} as const;

export type CertErrorCode = (typeof CertErrorCodes)[keyof typeof CertErrorCodes];

export class CertError extends Error {
  override readonly name = 'CertError';
  readonly code: CertErrorCode;

  constructor(code: CertErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Type guard for `CertError`, optionally of one code. */
export function isCertError(err: unknown, code?: CertErrorCode): err is CertError {
  return err instanceof CertError && (code === undefined || err.code === code);
}
