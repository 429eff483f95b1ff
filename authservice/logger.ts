/**
 * pino logger for the authservice, with redaction of everything that could carry a credential.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export const REDACT_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'headers.cookie',
  'headers.authorization',
  'res.headers["set-cookie"]',
  '*.idToken',
  '*.refreshToken',
  '*.accessToken',
  '*.id_token',
  '*.refresh_token',
  '*.access_token',
  '*.code',
  '*.clientSecret',
  '*.cookieSecret',
  '*.password',
];

export function createAuthserviceLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name: 'authservice',
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}
