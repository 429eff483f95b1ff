/** The logger shape the control plane and its client use (the gateway's GatewayLogger fits it). */
export interface ControlPlaneLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: ControlPlaneLogger = { info() {}, warn() {}, error() {} };

/** One JSON object per line on stderr, like the other Portico commands. */
export function jsonLogger(component: string, out: NodeJS.WritableStream = process.stderr): ControlPlaneLogger {
  const line = (level: string, msg: string, fields?: Record<string, unknown>): void => {
    out.write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`);
  };
  return { info: (m, f) => line('info', m, f), warn: (m, f) => line('warn', m, f), error: (m, f) => line('error', m, f) };
}
