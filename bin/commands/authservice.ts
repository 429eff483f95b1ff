/**
 * `portico authservice [--port N] [--host H]`: the ext_authz server with OIDC login, configured by
 * oidc-authservice's environment variables (see docs/authservice.md).
 */
import { loadAuthserviceConfig } from '../../authservice/config.ts';
import { AuthserviceConfigError } from '../../authservice/errors.ts';
import { buildAuthservice } from '../../authservice/server.ts';

const USAGE = `usage: portico authservice [--port N] [--health-port N] [--host ADDR]

  --port N         the ext_authz check port (SERVER_PORT / PORT, default 8080)
  --health-port N  /healthz, /readyz and /metrics (READINESS_PROBE_PORT, default 8081);
                   never served on the check port
Configured by environment variables (OIDC_PROVIDER, CLIENT_ID, CLIENT_SECRET, ...);
see docs/authservice.md.
`;

export async function run(argv: string[]): Promise<number | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '-h' || flag === '--help') {
      process.stdout.write(USAGE);
      return 0;
    } else if (flag === '--port') {
      const v = value();
      if (v === undefined || !/^\d+$/.test(v)) {
        process.stderr.write(`portico authservice: --port needs a number\n`);
        return 2;
      }
      env.PORTICO_AUTHSERVICE_PORT = v;
    } else if (flag === '--health-port') {
      const v = value();
      if (v === undefined || !/^\d+$/.test(v)) {
        process.stderr.write(`portico authservice: --health-port needs a number\n`);
        return 2;
      }
      env.READINESS_PROBE_PORT = v;
    } else if (flag === '--host') {
      const v = value();
      if (!v) {
        process.stderr.write(`portico authservice: --host needs an address\n`);
        return 2;
      }
      env.SERVER_HOSTNAME = v;
    } else {
      process.stderr.write(`portico authservice: unknown option '${arg}'\n\n${USAGE}`);
      return 2;
    }
  }

  let config;
  try {
    config = loadAuthserviceConfig(env);
  } catch (err) {
    if (err instanceof AuthserviceConfigError) {
      process.stderr.write(`portico authservice: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const app = buildAuthservice(config);
  const address = await app.listen({ port: config.port, host: config.host });
  const health = await app.authservice.listenHealth();
  app.log.info({ address, health: health.url }, 'authservice listening (checks; health and metrics on the health address)');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err: String(err) }, 'error while closing');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return undefined;
}
