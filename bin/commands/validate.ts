/**
 * `portico validate [--secrets-dir DIR] PATH...`: one line per problem
 * (`file:line: Kind/name: field.path: message`, warnings prefixed `warning:`, skipped Kubernetes
 * kinds `info:`), exit 1 on any error.
 */
import { buildSnapshot, formatIssue, type ConfigIssue } from '../../config/index.ts';

const USAGE = 'usage: portico validate [--secrets-dir DIR] PATH...\n';

export async function run(argv: string[]): Promise<number> {
  const paths: string[] = [];
  let secretsDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE);
      return 0;
    }
    if (a === '--secrets-dir') {
      secretsDir = argv[++i];
      if (!secretsDir) {
        process.stderr.write(`portico validate: --secrets-dir needs a directory\n${USAGE}`);
        return 2;
      }
    } else if (a.startsWith('--secrets-dir=')) secretsDir = a.slice('--secrets-dir='.length);
    else if (a.startsWith('-')) {
      process.stderr.write(`portico validate: unknown option '${a}'\n${USAGE}`);
      return 2;
    } else paths.push(a);
  }
  if (paths.length === 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  const r = await buildSnapshot(paths, { secretsDir });
  const warn = (w: ConfigIssue): string => `warning: ${formatIssue(w)}\n`;
  const info = (w: ConfigIssue): string => `info: ${formatIssue(w)}\n`;
  if (!r.ok) {
    for (const i of r.issues) process.stdout.write(`${formatIssue(i)}\n`);
    for (const w of r.warnings ?? []) process.stdout.write(warn(w));
    for (const w of r.infos ?? []) process.stdout.write(info(w));
    return 1;
  }
  for (const w of r.warnings) process.stdout.write(warn(w));
  for (const w of r.infos ?? []) process.stdout.write(info(w));
  process.stdout.write(`ok: ${r.resources} resources in ${r.files} files\n`);
  return 0;
}
