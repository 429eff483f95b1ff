/**
 * The logger shape the control plane and its client use: lib/log.ts's message-first `Logger`
 * (the gateway's GatewayLogger is the same type).
 */
import { createLogger, silentLogger as silent, type Logger } from '../lib/log.ts';

export type ControlPlaneLogger = Logger;

export const silentLogger: ControlPlaneLogger = silent;

/** One JSON object per line (pino, redacted) on stderr, like the other Portico commands. */
export function jsonLogger(component: string, out?: NodeJS.WritableStream): ControlPlaneLogger {
  return createLogger(component, out ? { destination: out } : {});
}
