/**
 * Stage 1: YAML files → typed resources that remember where every field came from.
 *
 * Accepts files and directories (recursively, `*.yaml`/`*.yml`, sorted), multi-document YAML and
 * `kind: List`. Problems (syntax errors, unknown kinds, missing names) become ConfigIssues with
 * file:line; the loader never throws for bad input.
 */
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, parseDocument, Scalar, type Node as YamlNode } from 'yaml';
import { ConfigErrorCodes, type ConfigErrorCode, type ConfigIssue } from './errors.ts';
import { KINDS } from './kinds/index.ts';
import { childPath, didYouMean, isPlainObject, typeName } from './schema.ts';

/** One Istio resource as loaded, before validation. `spec` is plain JSON-like data. */
export interface Resource<S = unknown> {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
  /** `namespace/name`. */
  readonly key: string;
  /** Absolute path of the file. */
  readonly file: string;
  /** Line of the resource's first field. */
  readonly line: number;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly spec: S;
  /** Line of a field path such as `spec.http[0].route[1].weight` (nearest known ancestor). */
  lineOf(path: string): number;
}

export interface LoadResult {
  readonly resources: readonly Resource[];
  /** Absolute paths of the YAML files read, sorted. */
  readonly files: readonly string[];
  readonly issues: readonly ConfigIssue[];
}

export interface LoadOptions {
  readonly cwd?: string;
}

const TOP_LEVEL = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];

/**
 * Lists the YAML files a path names: the file itself, or a directory's `*.y(a)ml` recursively.
 * Symlinks are followed and hidden entries skipped: a Kubernetes ConfigMap volume holds each key
 * as a symlink into `..data/` (itself a link to a timestamped `..<date>/` copy), so reading the
 * links, and never the dot-directories, loads every file exactly once.
 */
export async function expand(path: string): Promise<string[]> {
  const st = await stat(path);
  if (!st.isDirectory()) return [path];
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    const real = await realpath(dir);
    if (seen.has(real)) return; // a symlink loop
    seen.add(real);
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const full = join(dir, e.name);
      const info = e.isSymbolicLink() ? await stat(full).catch(() => undefined) : e;
      if (!info) continue; // dangling link
      if (info.isDirectory()) await walk(full);
      else if (info.isFile() && ['.yaml', '.yml'].includes(extname(e.name).toLowerCase())) out.push(full);
    }
  };
  await walk(path);
  return out.sort();
}

/** Loads every resource from files and directories. */
export async function loadConfig(paths: readonly string[], opts: LoadOptions = {}): Promise<LoadResult> {
  const cwd = opts.cwd ?? process.cwd();
  const issues: ConfigIssue[] = [];
  const files = new Set<string>();
  for (const p of paths) {
    const abs = resolve(cwd, p);
    try {
      for (const f of await expand(abs)) files.add(f);
    } catch (err) {
      issues.push(fileIssue(abs, ConfigErrorCodes.FILE_READ, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`));
    }
  }
  const sorted = [...files].sort();
  const resources: Resource[] = [];
  for (const file of sorted) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      issues.push(fileIssue(file, ConfigErrorCodes.FILE_READ, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`));
      continue;
    }
    const r = parseConfigText(text, file);
    resources.push(...r.resources);
    issues.push(...r.issues);
  }
  return { resources, files: sorted, issues };
}

function fileIssue(file: string, code: ConfigErrorCode, message: string, line = 0, severity: 'error' | 'warning' = 'error'): ConfigIssue {
  return { file, line, kind: '', name: '', path: '', message, code, severity };
}

/** Records the line of every field path under `node` into `lines`. */
function indexLines(node: unknown, path: string, lc: LineCounter, lines: Map<string, number>): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const keyNode = pair.key as YamlNode | null;
      const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
      const p = childPath(path, key);
      const at = keyNode?.range?.[0] ?? (pair.value as YamlNode | null)?.range?.[0];
      if (at !== undefined) lines.set(p, lc.linePos(at).line);
      indexLines(pair.value, p, lc, lines);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const p = childPath(path, i);
      const at = (item as YamlNode | null)?.range?.[0];
      if (at !== undefined) lines.set(p, lc.linePos(at).line);
      indexLines(item, p, lc, lines);
    });
  }
}

/** Drops the last `.key` or `[i]` segment of a path. */
export function parentPath(path: string): string {
  const m = /^(.*?)(?:\.[A-Za-z_$][\w$-]*|\[[^\]]*\]|\["(?:[^"\\]|\\.)*"\])$/.exec(path);
  return m ? m[1] : '';
}

function makeLineOf(lines: Map<string, number>, fallback: number): (path: string) => number {
  return (path: string) => {
    let p = path;
    while (p) {
      const l = lines.get(p);
      if (l !== undefined) return l;
      const parent = parentPath(p);
      if (parent === p) break;
      p = parent;
    }
    return fallback;
  };
}

/**
 * Parses one YAML text (possibly multi-document) into resources. `file` is only used for
 * messages and for resolving relative certificate paths later.
 */
export function parseConfigText(text: string, file: string): { resources: Resource[]; issues: ConfigIssue[] } {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const resources: Resource[] = [];
  const issues: ConfigIssue[] = [];
  // An empty stream parses to an EmptyStream (array-like but not an Array): no documents.
  const docList = Array.isArray(docs) ? docs : [];
  for (const doc of docList) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        issues.push(fileIssue(file, ConfigErrorCodes.YAML_SYNTAX, `YAML syntax error: ${e.message.split('\n')[0]}`, e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line));
      }
      continue;
    }
    const contents = doc.contents as YamlNode | null;
    if (contents === null || (isScalar(contents) && contents.value === null)) continue;
    const startLine = contents.range ? lc.linePos(contents.range[0]).line : 1;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      issues.push(fileIssue(file, ConfigErrorCodes.YAML_SYNTAX, `YAML error: ${(err as Error).message}`, startLine));
      continue;
    }
    if (isPlainObject(value) && value.kind === 'List' && Array.isArray(value.items) && isMap(contents)) {
      const itemsNode = contents.get('items', true);
      value.items.forEach((item, i) => {
        const node = isSeq(itemsNode) ? itemsNode.items[i] : undefined;
        const line = (node as YamlNode | undefined)?.range ? lc.linePos((node as YamlNode).range![0]).line : startLine;
        toResource(item, node, line, file, lc, resources, issues);
      });
      continue;
    }
    toResource(value, contents, startLine, file, lc, resources, issues);
  }
  return { resources, issues };
}

function toResource(
  value: unknown,
  node: unknown,
  line: number,
  file: string,
  lc: LineCounter,
  out: Resource[],
  issues: ConfigIssue[],
): void {
  const lines = new Map<string, number>();
  indexLines(node, '', lc, lines);
  const lineOf = makeLineOf(lines, line);
  const at = (path: string, code: ConfigErrorCode, message: string, kind = '', name = ''): void => {
    issues.push({ file, line: lineOf(path), kind, name, path, message, code, severity: 'error' });
  };
  if (!isPlainObject(value)) {
    at('', ConfigErrorCodes.NOT_A_RESOURCE, `expected a Kubernetes-style resource (a map with apiVersion and kind), got ${typeName(value)}`);
    return;
  }
  const { apiVersion, kind } = value;
  if (typeof kind !== 'string' || kind === '') {
    at('kind', ConfigErrorCodes.NOT_A_RESOURCE, "missing 'kind'");
    return;
  }
  const metadata = isPlainObject(value.metadata) ? value.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  if (kind === 'ConfigMap' && apiVersion === 'v1') {
    meshFromConfigMap(value, node, metadata, name, file, line, lines, lineOf, out, issues);
    return;
  }
  const skip = (why: string, severity: 'info' | 'warning' = 'info'): void => {
    issues.push({ file, line: lineOf('kind'), kind, name, path: '', message: why, code: ConfigErrorCodes.SKIPPED_KIND, severity });
  };
  const group = typeof apiVersion === 'string' && apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.lastIndexOf('/')) : '';
  const istioGroup = group.endsWith('istio.io') || group === 'portico.dev';
  // Gateway API objects (a `gateway.networking.k8s.io` Gateway is not Istio's Gateway) are not read.
  if (group === 'gateway.networking.k8s.io') {
    skip(`${kind} (${String(apiVersion)}) skipped: Kubernetes Gateway API resources are not supported; use Istio's networking.istio.io Gateway and VirtualService`, 'warning');
    return;
  }
  let def = KINDS.get(kind);
  // A Knative `serving.knative.dev/v1 Service` is not a Kubernetes Service: only Istio kinds claim every apiVersion.
  if (def && def.istio === false && !(typeof apiVersion === 'string' && def.apiVersions.includes(apiVersion))) def = undefined;
  if (!def) {
    if (istioGroup && ISTIO_KINDS_NOT_READ.includes(kind)) {
      skip(`${kind} (${String(apiVersion)}) is not supported by Portico; ignored`, 'warning');
      return;
    }
    if (!istioGroup && typeof apiVersion === 'string' && apiVersion !== '') {
      // Kustomize output mixes Deployments, ConfigMaps, CRDs, RBAC... with the Istio config: skip them.
      skip(`${kind} (${apiVersion}) skipped: not configuration Portico reads`);
      return;
    }
    const hint = didYouMean(kind, KINDS.keys());
    at('kind', ConfigErrorCodes.UNKNOWN_KIND, `unknown kind '${kind}'${hint ? ` (did you mean '${hint}'?)` : ''}; supported: ${[...KINDS.values()].filter((d) => d.istio !== false).map((d) => d.kind).join(', ')}`, kind, name);
    return;
  }
  let ok = true;
  if (typeof apiVersion !== 'string' || !def.apiVersions.includes(apiVersion)) {
    at('apiVersion', ConfigErrorCodes.UNSUPPORTED_API_VERSION, `apiVersion '${String(apiVersion ?? '')}' is not supported for ${kind} (want ${def.apiVersions.join(', ')})`, kind, name);
    ok = false;
  }
  if (!isPlainObject(value.metadata)) {
    at('metadata', ConfigErrorCodes.MISSING_NAME, "missing 'metadata' with a name", kind, name);
    return;
  }
  if (!name) {
    at('metadata.name', ConfigErrorCodes.MISSING_NAME, "missing 'metadata.name'", kind, name);
    ok = false;
  }
  if (metadata.namespace !== undefined && typeof metadata.namespace !== 'string') {
    at('metadata.namespace', ConfigErrorCodes.WRONG_TYPE, `expected a string, got ${typeName(metadata.namespace)}`, kind, name);
    ok = false;
  }
  for (const k of def.istio !== false ? Object.keys(value) : []) {
    if (!TOP_LEVEL.includes(k)) {
      const hint = didYouMean(k, TOP_LEVEL);
      at(k, ConfigErrorCodes.UNKNOWN_FIELD, `unknown field '${k}'${hint ? ` (did you mean '${hint}'?)` : ''}`, kind, name);
    }
  }
  if (!ok) return;
  const namespace = typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : 'default';
  out.push({
    apiVersion: apiVersion as string,
    kind,
    name,
    namespace,
    key: `${namespace}/${name}`,
    file,
    line,
    metadata,
    spec: def.topLevelSpec ? Object.fromEntries(Object.entries(value).filter(([k]) => !['apiVersion', 'kind', 'metadata'].includes(k))) : (value.spec ?? {}),
    lineOf: def.topLevelSpec ? (path: string) => lineOf(path.replace(/^spec(\.|\[|$)/, (_, c: string) => (c === '.' ? '' : c))) : lineOf,
  });
}

/** Istio kinds Portico does not read: a warning each (the user may expect them to act). */
const ISTIO_KINDS_NOT_READ = ['Sidecar', 'WorkloadGroup', 'ProxyConfig', 'Telemetry', 'WasmPlugin', 'ServiceEntryStatus'];

/** Istio's mesh config ConfigMap names: `istio`, or `istio-<revision>`. */
const MESH_CONFIGMAP = /^istio(-[a-z0-9-]+)?$/;

/**
 * Istio keeps MeshConfig as YAML text in `ConfigMap istio` `data.mesh`. This parses that text into
 * a `MeshConfig` resource whose field lines point inside the ConfigMap (key line + offset). Other
 * ConfigMaps are skipped with a warning, so a kustomize directory can be loaded whole.
 */
function meshFromConfigMap(
  value: Record<string, unknown>,
  node: unknown,
  metadata: Record<string, unknown>,
  name: string,
  file: string,
  line: number,
  lines: Map<string, number>,
  lineOf: (path: string) => number,
  out: Resource[],
  issues: ConfigIssue[],
): void {
  const issue = (path: string, code: ConfigErrorCode, message: string, severity: ConfigIssue['severity'] = 'error', at = lineOf(path)): void => {
    issues.push({ file, line: at, kind: 'ConfigMap', name, path, message, code, severity });
  };
  const data = isPlainObject(value.data) ? value.data : {};
  if (!MESH_CONFIGMAP.test(name) || data.mesh === undefined) {
    issue('metadata.name', ConfigErrorCodes.SKIPPED_KIND, `ConfigMap '${name}' skipped (only ConfigMap 'istio' with data.mesh is read, as Istio's MeshConfig)`, 'info');
    return;
  }
  if (typeof data.mesh !== 'string') {
    issue('data.mesh', ConfigErrorCodes.WRONG_TYPE, 'data.mesh must be a string holding MeshConfig YAML');
    return;
  }
  // Block scalars (`mesh: |`) start on the line after the key; other scalars on the key's line.
  const meshNode = isMap(node) ? (node.getIn(['data', 'mesh'], true) as YamlNode | undefined) : undefined;
  const block = isScalar(meshNode) && (meshNode.type === Scalar.BLOCK_LITERAL || meshNode.type === Scalar.BLOCK_FOLDED);
  const keyLine = lines.get('data.mesh') ?? line;
  const offset = block ? keyLine : keyLine - 1;
  const lc = new LineCounter();
  const doc = parseDocument(data.mesh, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      issue('data.mesh', ConfigErrorCodes.YAML_SYNTAX, `YAML syntax error in data.mesh: ${e.message.split('\n')[0]}`, 'error', offset + (e.linePos?.[0]?.line ?? 1));
    }
    return;
  }
  const spec = doc.toJS({ maxAliasCount: 100 }) ?? {};
  if (!isPlainObject(spec)) {
    issue('data.mesh', ConfigErrorCodes.WRONG_TYPE, `data.mesh must hold a YAML map, got ${typeName(spec)}`);
    return;
  }
  const inner = new Map<string, number>();
  indexLines(doc.contents, 'spec', lc, inner);
  const innerLineOf = makeLineOf(inner, 0);
  const namespace = typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : 'default';
  out.push({
    apiVersion: 'v1',
    kind: 'MeshConfig',
    name,
    namespace,
    key: `${namespace}/${name}`,
    file,
    line,
    metadata,
    spec,
    lineOf: (path: string) => {
      if (path === 'spec' || path.startsWith('spec.') || path.startsWith('spec[')) {
        const l = innerLineOf(path);
        return l > 0 ? offset + l : keyLine;
      }
      return lineOf(path);
    },
  });
}
