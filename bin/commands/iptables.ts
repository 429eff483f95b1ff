/**
 * `portico iptables --inbound-ports APP=LISTENER,... [options] [--dry-run]` — what the injected
 * `istio-init` container runs: renders the capture rules (kube/iptables.ts) and applies them with
 * `iptables-restore --noflush`, or prints them with --dry-run. Needs NET_ADMIN in the pod's
 * network namespace. See docs/kubernetes.md "Sidecar injection".
 */
import { execFile, spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { parsePorts } from '../../kube/inject.ts';
import { parseInboundMap, renderRules, type CaptureConfig } from '../../kube/iptables.ts';

const USAGE = `usage: portico iptables --inbound-ports APP=LISTENER,... [options]
  --inbound-ports LIST         captured inbound ports and the sidecar listener each goes to (9080=15100,...)
  --exclude-outbound-ports L   outbound ports never captured (comma separated)
  --include-outbound-ports L   outbound ports always captured, whatever the destination
  --include-outbound-ip-ranges L  CIDRs whose outbound traffic is captured (default *)
  --exclude-outbound-ip-ranges L  CIDRs never captured
  --proxy-uid N, --proxy-gid N the sidecar's uid/gid, whose traffic is not captured (default 1337)
  --dry-run                    print the iptables-restore input instead of applying it
`;

function exec(cmd: string, args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout)));
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

async function apply(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'inbound-ports': { type: 'string' },
      'exclude-outbound-ports': { type: 'string' },
      'include-outbound-ports': { type: 'string' },
      'include-outbound-ip-ranges': { type: 'string', default: '*' },
      'exclude-outbound-ip-ranges': { type: 'string' },
      'proxy-uid': { type: 'string', default: '1337' },
      'proxy-gid': { type: 'string', default: '1337' },
      'dry-run': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const ranges = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const id = (v: string, flag: string): number => {
    if (!/^\d+$/.test(v)) throw new Error(`${flag}: '${v}' is not a numeric id`);
    return Number(v);
  };
  const config: CaptureConfig = {
    inbound: parseInboundMap(values['inbound-ports'], '--inbound-ports'),
    excludeOutboundPorts: parsePorts(values['exclude-outbound-ports'], '--exclude-outbound-ports'),
    includeOutboundPorts: parsePorts(values['include-outbound-ports'], '--include-outbound-ports'),
    includeOutboundIPRanges: ranges(values['include-outbound-ip-ranges']),
    excludeOutboundIPRanges: ranges(values['exclude-outbound-ip-ranges']),
    uid: id(values['proxy-uid']!, '--proxy-uid'),
    gid: id(values['proxy-gid']!, '--proxy-gid'),
  };
  if (values['dry-run']) {
    process.stdout.write(renderRules(config));
    return 0;
  }
  const existing = await exec('iptables-save', ['-t', 'nat']).catch((err: Error) => {
    throw new Error(`cannot read the nat table (is iptables installed, and does this container have NET_ADMIN?): ${err.message}`);
  });
  const rules = renderRules(config, existing);
  await exec('iptables-restore', ['--noflush'], rules);
  process.stdout.write(rules);
  // Show the result, as istio-init ends with iptables-save.
  await new Promise<void>((resolve) => spawn('iptables-save', ['-t', 'nat'], { stdio: ['ignore', 'inherit', 'inherit'] }).once('exit', () => resolve()).once('error', () => resolve()));
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  try {
    return await apply(argv);
  } catch (err) {
    process.stderr.write(`portico iptables: ${(err as Error).message}\n`);
    return (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1;
  }
}
