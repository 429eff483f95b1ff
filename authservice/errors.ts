/**
 * The authservice's error registry: every way a check or a login can fail has one stable code
 * and one HTTP status. Library errors (openid-client, jose, ioredis) are translated into these at
 * exactly one boundary (server.ts) so users and logs see the same vocabulary.
 */
import { defineErrors } from '../lib/errors.ts';

const authserviceErrors = defineErrors('AuthserviceError', {
  PORTICO_ERR_AUTHN_REQUIRED: { status: 401, message: 'authentication required' },
  PORTICO_ERR_BAD_TOKEN: { status: 401, message: 'the bearer token is not valid for this issuer and client' },
  PORTICO_ERR_FORBIDDEN_GROUP: { status: 403, message: 'your account is not in a group allowed to use this site' },
  PORTICO_ERR_MISSING_CLAIM: { status: 403, message: 'your identity provider did not send the claim this site uses as user id' },
  PORTICO_ERR_CSRF: { status: 403, message: 'request refused: it did not come from this site' },
  PORTICO_ERR_LOGIN_STATE: { status: 400, message: 'this login link has expired or was already used — start again' },
  PORTICO_ERR_IDP_DENIED: { status: 400, message: 'the identity provider did not complete the login' },
  PORTICO_ERR_METHOD: { status: 405, message: 'method not allowed' },
  PORTICO_ERR_IDP: { status: 502, message: 'the identity provider could not be reached or answered badly' },
  PORTICO_ERR_NOT_READY: { status: 503, message: 'login is temporarily unavailable (identity provider not discovered yet)' },
  PORTICO_ERR_STORE: { status: 503, message: 'the session store is unavailable' },
  PORTICO_ERR_INTERNAL: { status: 500, message: 'internal error' },
});

export const AUTHSERVICE_ERRORS = authserviceErrors.defs;

export type AuthserviceErrorCode = keyof typeof AUTHSERVICE_ERRORS;

/** `new AuthserviceError(code, detail?, { cause })`; the message defaults to the registry's. */
export class AuthserviceError extends authserviceErrors.Error {
  declare readonly code: AuthserviceErrorCode;
}

/** Thrown by loadAuthserviceConfig with every problem at once, each naming its env var. */
export class AuthserviceConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid authservice configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'AuthserviceConfigError';
    this.problems = problems;
  }
}
