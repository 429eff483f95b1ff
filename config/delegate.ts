/**
 * VirtualService delegation (Istio's `http[].delegate`): a root rule hands its requests to the
 * rules of a delegate VirtualService (one without `hosts`), each merged with the root rule as
 * pilot's mergeHTTPRoutes does (pilot/pkg/model/virtualservice.go):
 * - every delegate match must be a subset of some root match (uri/scheme/method/authority exact
 *   or prefix inside the root's; regex never merges); a delegate rule with a conflicting match is
 *   left out;
 * - the merged match takes the delegate's conditions and fills the rest from the root's;
 * - rewrite, timeout, retries, fault, mirror(s), corsPolicy and headers the delegate leaves unset
 *   come from the root rule.
 * A delegate must be exported to the root's namespace; else, or when it does not exist, the
 * root rule is left out (as Istio does, which only logs it; validation warns).
 */
import type { RawStringMatch } from './kinds/common.ts';
import type { RawHttpMatch, RawHttpRoute, VirtualServiceSpec } from './kinds/virtualservice.ts';
import type { Resource } from './load.ts';
import { arrayOf, type ModelIndex } from './model.ts';

/** `exportTo` as namespaces: `.` is the resource's own, `*` (or none given) is everyone = undefined. */
export function exportToNamespaces(list: readonly string[] | undefined, own: string): string[] | undefined {
  if (!list || list.length === 0 || list.includes('*')) return undefined;
  return [...new Set(list.map((e) => (e === '.' ? own : e)))].sort();
}

/**
 * The delegate VirtualService a root rule names: one without hosts, in `namespace` (default the
 * root's), exported to the root's namespace.
 */
export function findDelegate(idx: ModelIndex, root: Resource, ref: { name?: string; namespace?: string }): Resource<VirtualServiceSpec> | undefined {
  const key = `${ref.namespace || root.namespace}/${ref.name ?? ''}`;
  const vs = idx.virtualServices.find((v) => v.key === key);
  if (!vs || arrayOf<string>(vs.spec.hosts).length > 0) return undefined;
  const exported = exportToNamespaces(vs.spec.exportTo, vs.namespace);
  return exported === undefined || exported.includes(root.namespace) ? vs : undefined;
}

type Match = RawStringMatch | null | undefined;

function key(m: Match): { kind: 'exact' | 'prefix' | 'regex' | 'none'; value: string } {
  if (!m || typeof m !== 'object') return { kind: 'none', value: '' };
  const o = m as { exact?: string; prefix?: string; regex?: string };
  if (typeof o.regex === 'string') return { kind: 'regex', value: o.regex };
  if (typeof o.exact === 'string') return { kind: 'exact', value: o.exact };
  if (typeof o.prefix === 'string') return { kind: 'prefix', value: o.prefix };
  return { kind: 'none', value: '' };
}

/** pilot's stringMatchConflict: true when `leaf` can match something `root` does not. */
function conflict(root: Match, leaf: Match): boolean {
  const r = key(root);
  const l = key(leaf);
  if (r.kind === 'none' || l.kind === 'none') return false;
  if (r.kind === 'regex' || l.kind === 'regex') return true;
  if (r.kind === 'exact') return l.kind !== 'exact' || l.value !== r.value;
  return !l.value.startsWith(r.value);
}

function hasConflict(root: RawHttpMatch, leaf: RawHttpMatch): boolean {
  for (const k of ['uri', 'scheme', 'method', 'authority'] as const) if (conflict(root[k], leaf[k])) return true;
  for (const [h, v] of Object.entries(leaf.headers ?? {})) if (conflict(root.headers?.[h], v)) return true;
  for (const [h, v] of Object.entries(leaf.withoutHeaders ?? {})) if (conflict(root.headers?.[h], v)) return true;
  for (const [q, v] of Object.entries(leaf.queryParams ?? {})) if (conflict(root.queryParams?.[q], v)) return true;
  if ((root.ignoreUriCase ?? false) !== (leaf.ignoreUriCase ?? false)) return true;
  if (root.port && leaf.port && root.port !== leaf.port) return true;
  return false;
}

function joinName(root: string | undefined, leaf: string | undefined): string | undefined {
  if (!leaf) return root;
  return root ? `${root}-${leaf}` : leaf;
}

function mergeMatch(root: RawHttpMatch, leaf: RawHttpMatch): RawHttpMatch {
  const out: RawHttpMatch = { ...leaf, name: joinName(root.name, leaf.name) };
  for (const k of ['uri', 'scheme', 'method', 'authority'] as const) if (out[k] === undefined) out[k] = root[k];
  if (root.headers || leaf.headers) out.headers = { ...root.headers, ...leaf.headers };
  if (root.withoutHeaders || leaf.withoutHeaders) out.withoutHeaders = { ...root.withoutHeaders, ...leaf.withoutHeaders };
  if (root.queryParams || leaf.queryParams) out.queryParams = { ...root.queryParams, ...leaf.queryParams };
  if (out.port === undefined) out.port = root.port;
  // sourceLabels, sourceNamespace and gateways apply only to roots (pilot ignores them here).
  delete out.sourceLabels;
  delete out.sourceNamespace;
  delete out.gateways;
  if (out.name === undefined) delete out.name;
  return out;
}

/** The merged match list, or undefined when the delegate rule conflicts with the root's. */
function mergeMatches(root: readonly RawHttpMatch[] | undefined, leaf: readonly RawHttpMatch[] | undefined): RawHttpMatch[] | undefined {
  if (!root || root.length === 0) return leaf ? [...leaf] : undefined;
  if (!leaf || leaf.length === 0) return root.map((m) => ({ ...m }));
  const out: RawHttpMatch[] = [];
  for (const l of leaf) {
    let found = false;
    for (const r of root) {
      if (hasConflict(r, l)) continue;
      out.push(mergeMatch(r, l));
      found = true;
    }
    if (!found) return undefined;
  }
  return out.length > 0 ? out : undefined;
}

/** One delegate rule merged under a root rule; undefined when its match conflicts. */
export function mergeDelegateRule(root: RawHttpRoute, leaf: RawHttpRoute): RawHttpRoute | undefined {
  const rootHasMatch = (root.match?.length ?? 0) > 0;
  const match = mergeMatches(root.match, leaf.match);
  if (rootHasMatch && match === undefined) return undefined;
  const out: RawHttpRoute = { ...leaf };
  if (match) out.match = match;
  out.name = joinName(root.name, leaf.name);
  if (out.name === undefined) delete out.name;
  for (const k of ['rewrite', 'timeout', 'retries', 'fault', 'mirror', 'mirrorPercentage', 'corsPolicy', 'headers'] as const) {
    if (out[k] === undefined && root[k] !== undefined) (out as Record<string, unknown>)[k] = root[k];
  }
  if (out.mirrors === undefined && root.mirrors !== undefined && out.mirror === undefined) out.mirrors = root.mirrors;
  return out;
}
