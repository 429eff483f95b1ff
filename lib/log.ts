/**
 * The one logger factory: pino, one JSON object per line, with every field that could carry a
 * credential redacted (STYLE.md §11). The authservice uses the pino logger directly (fastify's
 * request-scoped child loggers); the gateway, sidecar and control plane use the message-first
 * `Logger` shape over the same pino instance.
 *
 * Lines look like `{"level":"info","time":"2026-…Z","component":"gateway","msg":"…",…fields}`.
 */
import { pino, type DestinationStream, type Logger as PinoLogger, type LoggerOptions } from 'pino';

/** Paths pino censors wherever they appear in a log line's fields. */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  'req.headers.cookie',
  'req.headers.authorization',
  'headers.cookie',
  'headers.authorization',
  'headers["x-auth-token"]',
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
  '*.token',
  '*.privateKey',
]);

export const REDACTED = '[redacted]';

export interface CreateLoggerOptions {
  /** pino level name (`info` by default; `silent` for none). */
  readonly level?: string;
  /** Where lines go; stderr by default (stdout stays free for command output). */
  readonly destination?: DestinationStream | NodeJS.WritableStream;
}

/** A pino logger for one component, with Portico's redaction and line shape. */
export function createPinoLogger(component: string, opts: CreateLoggerOptions = {}): PinoLogger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { component },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
  };
  return pino(options, (opts.destination as DestinationStream | undefined) ?? pino.destination({ fd: 2, sync: true }));
}

/** The message-first logger shape the gateway, sidecar and control plane take. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = Object.freeze({ info() {}, warn() {}, error() {} });

/**
 * Adapts a pino logger to the message-first shape. `msg` goes in as the first field so lines keep
 * the layout Portico always printed (`…"msg":"gateway ready","ports":…`): tools and tests grep it.
 */
export function fromPino(log: PinoLogger): Logger {
  return {
    info: (msg, fields) => (fields ? log.info({ msg, ...fields }) : log.info(msg)),
    warn: (msg, fields) => (fields ? log.warn({ msg, ...fields }) : log.warn(msg)),
    error: (msg, fields) => (fields ? log.error({ msg, ...fields }) : log.error(msg)),
  };
}

/** A message-first logger for one component (stderr by default). */
export function createLogger(component: string, opts: CreateLoggerOptions = {}): Logger {
  return fromPino(createPinoLogger(component, opts));
}
