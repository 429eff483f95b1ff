/**
 * pino logger for the authservice: lib/log.ts's factory (shared redaction of everything that
 * could carry a credential), used directly so fastify can hand out request-scoped children.
 */
import type { DestinationStream, Logger } from 'pino';
import { createPinoLogger } from '../lib/log.ts';

export { REDACT_PATHS } from '../lib/log.ts';

export function createAuthserviceLogger(level: string, destination?: DestinationStream): Logger {
  return createPinoLogger('authservice', { level, ...(destination ? { destination } : {}) });
}
