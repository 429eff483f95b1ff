/**
 * The control plane's error registry: stable codes and the HTTP status each one answers with.
 * Library errors (CertError, fastify body errors, undici) are translated into these at one
 * boundary: the server's error handler and the client's response check.
 */
import { defineErrors } from '../lib/errors.ts';

const controlPlaneErrors = defineErrors('ControlPlaneError', {
  UNAUTHORIZED: { code: 'PORTICO_ERR_CP_UNAUTHORIZED', status: 401 },
  BAD_REQUEST: { code: 'PORTICO_ERR_CP_BAD_REQUEST', status: 400 },
  BAD_CSR: { code: 'PORTICO_ERR_CP_BAD_CSR', status: 400 },
  UNKNOWN_WORKLOAD: { code: 'PORTICO_ERR_CP_UNKNOWN_WORKLOAD', status: 404 },
  NOT_FOUND: { code: 'PORTICO_ERR_CP_NOT_FOUND', status: 404 },
  NOT_READY: { code: 'PORTICO_ERR_CP_NOT_READY', status: 503 },
  INTERNAL: { code: 'PORTICO_ERR_CP_INTERNAL', status: 500 },
  /** Client side: the control plane could not be reached or answered with an unexpected status. */
  UNREACHABLE: { code: 'PORTICO_ERR_CP_UNREACHABLE', status: 502 },
  /** Client side: the control plane sent something that is not this protocol. */
  PROTOCOL: { code: 'PORTICO_ERR_CP_PROTOCOL', status: 502 },
  /** Client side: a snapshot from a control plane epoch older than the one already applied. */
  STALE_EPOCH: { code: 'PORTICO_ERR_CP_STALE_EPOCH', status: 409 },
});

export const ControlPlaneErrors = controlPlaneErrors.defs;

export type ControlPlaneErrorName = keyof typeof ControlPlaneErrors;
export type ControlPlaneErrorCode = (typeof ControlPlaneErrors)[ControlPlaneErrorName]['code'];

/** `new ControlPlaneError(kind, message, { cause })`. */
export class ControlPlaneError extends controlPlaneErrors.Error {}

export function isControlPlaneError(err: unknown, code?: ControlPlaneErrorCode): err is ControlPlaneError {
  return err instanceof ControlPlaneError && (code === undefined || err.code === code);
}

/** The JSON body of every error answer: `{"error": {"code": ..., "message": ...}}`. */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
