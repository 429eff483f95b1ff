/**
 * `portico validate [--secrets-dir DIR] PATH...`: one line per problem
 * (`file:line: Kind/name: field.path: message`, warnings prefixed `warning:`, skipped Kubernetes
 * kinds `info:`), exit 1 on any error.
 * `portico validate --kubernetes [--kubeconfig F] [--mesh-config NS/NAME]` reads the cluster
 * instead, as `portico controlplane --kubernetes` would, and prints `Kind/ns/name: field.path: message`.
 */
import { buildSnapshot, formatIssue, type ConfigIssue } from '../../config/index.ts';

const USAGE = 'usage: portico validate [--secrets-dir DIR] PATH...\n       portico validate --kubernetes [--kubeconfig FILE] [--mesh-config NS/NAME]\n';

async function validateCluster(argv: string[]): Promise<number> {
  let kubeconfig: string | undefined;
  let mesh = 'istio-system/istio';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--kubernetes') continue;
    if (a === '--kubeconfig') kubeconfig = argv[++i];
    else if (a.startsWith('--kubeconfig=')) kubeconfig = a.slice('--kubeconfig='.length);
    else if (a === '--mesh-config') mesh = argv[++i] ?? '';
    else if (a.startsWith('--mesh-config=')) mesh = a.slice('--mesh-config='.length);
    else {
      process.stderr.write(`portico validate: '${a}' cannot be combined with --kubernetes\n${USAGE}`);
      return 2;
    }
  }
  const [namespace, name, extra] = mesh.split('/');
  if (!namespace || !name || extra !== undefined) {
    process.stderr.write(`portico validate: --mesh-config: '${mesh}' is not NAMESPACE/NAME\n`);
    return 2;
  }
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { KubeApi, loadKubeConfig } = await import('../../kube/api.ts');
  const { KubeSource } = await import('../../kube/source.ts');
  const { formatKubeIssue } = await import('../../kube/translate.ts');
  let api;
  try {
    api = new KubeApi(loadKubeConfig({ kubeconfig }).kc);
  } catch (err) {
    process.stderr.write(`portico validate: ${(err as Error).message}\n`);
    return 2;
  }
  const dir = mkdtempSync(join(tmpdir(), 'portico-validate-'));
  const quiet = { info() {}, warn() {}, error() {} };
  const source = new KubeSource({ api, meshConfig: { namespace, name }, secretsDir: dir, log: quiet, listOnly: true });
  try {
    const b = await source.start();
    const errors = [...b.fatal, ...[...b.rejected.values()].flat()];
    for (const i of errors) process.stdout.write(`${formatKubeIssue(i)}\n`);
    for (const w of b.warnings) process.stdout.write(`${formatKubeIssue(w)}\n`);
    if (errors.length > 0) return 1;
    process.stdout.write(`ok: ${b.objects} objects from ${api.server}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`portico validate: ${(err as Error).message}\n`);
    return 2;
  } finally {
    source.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--kubernetes')) return validateCluster(argv);
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
