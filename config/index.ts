/**
 * The config package's public API: Istio YAML → validated → compiled, frozen Snapshot.
 *
 *   const r = await buildSnapshot(['config/examples/bookinfo']);
 *   if (!r.ok) for (const i of r.issues) console.error(formatIssue(i));
 */
import { sortIssues, type ConfigIssue } from './errors.ts';
import { compileSnapshot } from './compile.ts';
import { loadConfig, parseConfigText, type LoadResult } from './load.ts';
import type { Snapshot } from './snapshot.ts';
import { validateConfig } from './validate.ts';
import { resolve } from 'node:path';

export interface BuildOptions {
  /** Directory holding `credentialName` secrets (`<dir>/<name>/tls.crt`, `tls.key`). Default `certs/out/credentials` under cwd. */
  readonly secretsDir?: string;
  /** Base for relative paths and for file names shown in issues and `source` refs. Default process.cwd(). */
  readonly cwd?: string;
}

export type BuildResult =
  | {
      readonly ok: true;
      readonly snapshot: Snapshot;
      readonly warnings: readonly ConfigIssue[];
      readonly infos?: readonly ConfigIssue[];
      readonly resources: number;
      readonly files: number;
    }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[]; readonly warnings?: readonly ConfigIssue[]; readonly infos?: readonly ConfigIssue[] };

async function build(load: LoadResult, opts: BuildOptions): Promise<BuildResult> {
  const v = await validateConfig(load, opts);
  if (v.errors.length > 0) return { ok: false, issues: v.errors, warnings: v.warnings, infos: v.infos };
  try {
    const snapshot = compileSnapshot(v.config, { cwd: opts.cwd });
    return { ok: true, snapshot, warnings: v.warnings, infos: v.infos, resources: load.resources.length, files: load.files.length };
  } catch (err) {
    // Validation should make this unreachable; report rather than crash the caller's reload loop.
    const issue: ConfigIssue = {
      file: load.files[0] ?? '',
      line: 0,
      kind: '',
      name: '',
      path: '',
      message: `internal compiler error: ${(err as Error).message}`,
      code: 'PORTICO_CFG_NOT_IMPLEMENTED',
      severity: 'error',
    };
    return { ok: false, issues: sortIssues([issue]), warnings: v.warnings, infos: v.infos };
  }
}

/** Loads files and/or directories, validates everything and compiles one Snapshot. */
export async function buildSnapshot(paths: readonly string[], opts: BuildOptions = {}): Promise<BuildResult> {
  return build(await loadConfig(paths, opts), opts);
}

/** The same from YAML text (tests, embedded defaults). `file` names it in issues and anchors relative cert paths. */
export async function buildSnapshotFromText(text: string, file = 'inline.yaml', opts: BuildOptions = {}): Promise<BuildResult> {
  const abs = resolve(opts.cwd ?? process.cwd(), file);
  const parsed = parseConfigText(text, abs);
  return build({ resources: parsed.resources, issues: parsed.issues, files: [abs] }, opts);
}

export { formatIssue, sortIssues, ConfigErrorCodes, type ConfigIssue, type ConfigErrorCode } from './errors.ts';
export { watchConfig, type ConfigWatcher } from './watch.ts';
export { parseDuration } from './schema.ts';
export type * from './snapshot.ts';
