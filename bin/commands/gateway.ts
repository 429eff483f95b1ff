/**
 * `portico gateway --config PATH [--config PATH...] [--labels k=v,...] [--admin-port N]`
 * Serves the Gateways whose selector matches the labels, reloading when the config changes.
 */
import { parseArgs } from 'node:util';
import { buildSnapshot, formatIssue } from '../../config/index.ts';
import { watchConfig } from '../../config/watch.ts';
import { startAdmin } from '../../gateway/admin.ts';
import { makeHeaderPolicy } from '../../gateway/headers.ts';
import { DEFAULT_GATEWAY_LABELS, GatewayRuntime, type GatewayLogger } from '../../gateway/runtime.ts';
import { textAccessLogger } from '../../gateway/telemetry/access-log.ts';

const USAGE = `usage: portico gateway --config PATH [--config PATH...] [options]
  --labels k=v,...        this gateway's labels (default istio=ingressgateway)
  --namespace NS          this gateway's namespace, for namespaced policies (default istio-system)
  --admin-port N          admin endpoint port (default 15000; 0 picks a free port; -1 disables)
  --secrets-dir DIR       where credentialName secrets live (default certs/out/credentials)
  --trusted-hops N        x-forwarded-for hops to trust (default 0: this is the edge)
  --identity-header NAME  extra identity header to strip from clients (repeatable)
  --drain-ms N            how long SIGTERM lets in-flight requests finish (default 5000)
  --access-log            print one access log line per request to stdout
  --no-watch              do not reload when the config changes
`;

export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--labels: '${pair}' is not key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export function consoleLogger(component: string): GatewayLogger {
  const line = (level: string, msg: string, fields?: Record<string, unknown>): void => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`);
  };
  return { info: (m, f) => line('info', m, f), warn: (m, f) => line('warn', m, f), error: (m, f) => line('error', m, f) };
}

export async function run(argv: string[]): Promise<number | undefined> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', multiple: true },
        labels: { type: 'string' },
        namespace: { type: 'string', default: 'istio-system' },
        'admin-port': { type: 'string', default: '15000' },
        'secrets-dir': { type: 'string' },
        'trusted-hops': { type: 'string', default: '0' },
        'identity-header': { type: 'string', multiple: true },
        'drain-ms': { type: 'string', default: '5000' },
        'access-log': { type: 'boolean', default: false },
        'no-watch': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`portico gateway: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const paths = args.config ?? [];
  if (paths.length === 0) {
    process.stderr.write(`portico gateway: --config is required\n${USAGE}`);
    return 2;
  }
  const log = consoleLogger('gateway');
  const labels = args.labels ? parseLabels(args.labels) : { ...DEFAULT_GATEWAY_LABELS };
  const buildOpts = { secretsDir: args['secrets-dir'] };
  const built = await buildSnapshot(paths, buildOpts);
  if (!built.ok) {
    for (const issue of built.issues) process.stderr.write(`${formatIssue(issue)}\n`);
    process.stderr.write(`portico gateway: config has ${built.issues.length} problem(s); not starting\n`);
    return 1;
  }
  for (const w of built.warnings) process.stderr.write(`warning: ${formatIssue(w)}\n`);

  const identityHeaders = ['kubeflow-userid', 'kubeflow-groups', ...(args['identity-header'] ?? [])];
  const runtime = new GatewayRuntime(built.snapshot, {
    labels,
    namespace: args.namespace,
    logger: log,
    drainMs: Number(args['drain-ms']),
    headerPolicy: makeHeaderPolicy({ identityHeaders, trustedHops: Number(args['trusted-hops']) }),
    onRequest: args['access-log'] ? textAccessLogger(process.stdout) : undefined,
  });
  await runtime.start();
  const adminPort = Number(args['admin-port']);
  const admin = adminPort >= 0 ? await startAdmin(runtime, adminPort) : undefined;
  const ports = [...runtime.ports()].map(([bind, actual]) => (bind === actual ? bind : `${bind}->${actual}`));
  log.info('gateway ready', { labels, ports, admin: admin?.port(), version: built.snapshot.version });

  const watcher = args['no-watch']
    ? undefined
    : watchConfig(paths, buildOpts, (result) => {
        if (!result.ok) {
          log.error('config change rejected; still serving the previous config', { problems: result.issues.map((i) => formatIssue(i)) });
          return;
        }
        runtime.apply(result.snapshot).catch((err: Error) => log.error('config change could not be applied; still serving the previous config', { error: err.message }));
      });

  const stop = async (signal: string): Promise<void> => {
    log.info('draining', { signal });
    watcher?.close();
    await admin?.close();
    await runtime.close();
    log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  return undefined;
}
