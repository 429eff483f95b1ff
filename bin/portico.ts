#!/usr/bin/env node
/**
 * The one Portico CLI. Each subcommand lives in bin/commands/<name>.ts and exports
 * `run(argv): Promise<number | undefined>`; a number is the exit code, undefined means
 * "a server is now running, keep the process alive".
 */
import { pathToFileURL } from 'node:url';

const COMMANDS: Record<string, string> = {
  gateway: 'edge gateway: serve the Gateways selected by --labels (default istio=ingressgateway)',
  sidecar: 'mesh sidecar for one workload',
  authservice: 'ext_authz server with OIDC login (configured by env, like oidc-authservice)',
  controlplane: 'watch config, push snapshots, sign workload certificates',
  iptables: 'capture a pod\'s traffic for its sidecar (the injected istio-init container)',
  validate: 'check Istio YAML files or directories; one line per problem',
  certs: 'Portico CA: `certs ca`, `certs issue --host H [--san S]`',
  demo: 'gateway + authservice + dev IdP + Bookinfo + httpbin on embedded defaults',
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, what]) => `  ${name.padEnd(13)} ${what}`);
  return `usage: portico <command> [options]\n\ncommands:\n${lines.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(usage());
    return command ? 0 : 2;
  }
  if (!(command in COMMANDS)) {
    process.stderr.write(`portico: unknown command '${command}'\n\n${usage()}`);
    return 2;
  }
  const mod = (await import(new URL(`./commands/${command}.ts`, import.meta.url).href)) as {
    run(argv: string[]): Promise<number | undefined>;
  };
  return mod.run(rest);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== undefined) process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`portico: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
