/**
 * Standalone dev IdP:
 *   node --import tsx demo/devidp/main.ts [--config config/examples/dex.yaml] [--port N] [--host H] [--issuer URL]
 * Reads a Dex config file and serves until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { DexConfigError } from './config.ts';
import { startDevIdp } from './server.ts';

const defaultConfig = fileURLToPath(new URL('../../config/examples/dex.yaml', import.meta.url));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: defaultConfig },
      port: { type: 'string' },
      host: { type: 'string' },
      issuer: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: devidp [--config dex.yaml] [--port N] [--host ADDR] [--issuer URL]\n');
    return;
  }
  let port: number | undefined;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: not a port number: ${values.port}`);
  }
  const idp = await startDevIdp({
    configFile: values.config,
    ...(port !== undefined ? { port } : {}),
    ...(values.host ? { host: values.host } : {}),
    ...(values.issuer ? { publicIssuer: values.issuer } : {}),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`dev IdP ready: ${idp.issuer}/.well-known/openid-configuration\n`);
  const stop = (): void => {
    void idp.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof DexConfigError ? err.message : `devidp: ${(err as Error).message}`}\n`);
  process.exit(1);
});
