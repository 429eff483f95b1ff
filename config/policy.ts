/**
 * Pure helpers shared by validation and compilation of policy kinds: where an ext_authz server
 * is (EnvoyFilter `server_uri` or MeshConfig `envoyExtAuthzHttp.service`), Istio string patterns
 * and Envoy matchers. No I/O.
 */
import { ConfigErrorCodes, type ConfigErrorCode } from './errors.ts';
import type { RawExtAuthzHttpProvider } from './kinds/meshconfig.ts';
import { fqdn, lookupService, arrayOf, type ModelIndex, type RegistryEntry } from './model.ts';
import { isPlainObject, protoField } from './schema.ts';
import { splitRegexFlags } from './kinds/common.ts';
import type { StringMatcher, StringPattern } from './snapshot.ts';

export interface ServerProblem {
  readonly path: string;
  readonly code: ConfigErrorCode;
  readonly message: string;
  readonly severity: 'error' | 'warning';
}

export interface ResolvedServer {
  readonly host: string;
  readonly port: number;
  readonly subset?: string;
  readonly scheme: 'http' | 'https';
  readonly entry?: RegistryEntry;
}

/**
 * A kustomize/`envsubst` variable left in the text, like `$(namespace)` or `${NAMESPACE}`: the URL
 * still parses, so without this check the config validates and then every request fails its
 * authorization check (403).
 */
export function unsubstitutedVariable(s: string): string | undefined {
  return /\$\([A-Za-z_][\w.-]*\)|\$\{[A-Za-z_]\w*\}/.exec(s)?.[0];
}

/** Istio names the clusters it generates `outbound|<port>|<subset>|<host>`. */
const ISTIO_CLUSTER = /^outbound\|(\d+)\|([^|]*)\|([^|]+)$/;

/** Registry checks shared by both forms: short hosts must be declared; ports must exist. */
function checkRegistry(idx: ModelIndex, written: string, host: string, port: number, hostPath: string, portPath: string, problems: ServerProblem[]): RegistryEntry | undefined {
  const entry = lookupService(idx, host);
  if (!entry && !written.includes('.')) {
    problems.push({ path: hostPath, code: ConfigErrorCodes.UNKNOWN_HOST, message: `authorization server host '${host}' is not declared by any ServiceEntry`, severity: 'error' });
  }
  if (entry) {
    const ports = arrayOf<{ number?: number }>(entry.se.spec?.ports).filter(isPlainObject);
    if (ports.length > 0 && !ports.some((p) => p.number === port)) {
      problems.push({ path: portPath, code: ConfigErrorCodes.UNKNOWN_PORT, message: `port ${port} is not a port of '${host}' (ServiceEntry ${entry.se.key} has ${ports.map((p) => p.number).join(', ')})`, severity: 'error' });
    }
  }
  return entry;
}

/**
 * The server of an EnvoyFilter ext_authz `http_service.server_uri`. Envoy connects to `cluster`
 * and uses `uri` for the Host header; Istio-generated cluster names (`outbound|8080||host`) are
 * therefore authoritative for host and port (Kubeflow's manifest has a port-less uri).
 */
export function resolveEnvoyServer(idx: ModelIndex, namespace: string, serverUri: Record<string, unknown>, path: string): { server?: ResolvedServer; problems: ServerProblem[] } {
  const problems: ServerProblem[] = [];
  const uri = protoField(serverUri, 'uri');
  const cluster = protoField(serverUri, 'cluster');
  if (typeof uri !== 'string') return { problems };
  for (const [field, value] of [['uri', uri], ['cluster', cluster]] as const) {
    const v = typeof value === 'string' ? unsubstitutedVariable(value) : undefined;
    if (v) {
      problems.push({ path: `${path}.${field}`, code: ConfigErrorCodes.UNRESOLVED_VARIABLE, message: `'${String(value)}' still contains ${v}: substitute it (kustomize vars, envsubst) before loading`, severity: 'error' });
    }
  }
  if (problems.length > 0) return { problems };
  let u: URL | undefined;
  try {
    u = new URL(uri);
  } catch {
    /* below */
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '') {
    problems.push({ path: `${path}.uri`, code: ConfigErrorCodes.BAD_URI, message: `'${uri}' is not an http(s) URL`, severity: 'error' });
    return { problems };
  }
  if (u.pathname !== '/' && u.pathname !== '') {
    problems.push({ path: `${path}.uri`, code: ConfigErrorCodes.BAD_URI, message: `Envoy ignores the path of server_uri.uri ('${u.pathname}'); use http_service.path_prefix`, severity: 'warning' });
  }
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  let host = fqdn(u.hostname.replace(/^\[|\]$/g, ''), namespace);
  let port = u.port ? Number(u.port) : scheme === 'https' ? 443 : 80;
  let written = u.hostname;
  let subset: string | undefined;
  if (typeof cluster === 'string' && cluster !== '') {
    const m = ISTIO_CLUSTER.exec(cluster);
    if (m) {
      const cHost = fqdn(m[3], namespace);
      if (cHost !== host) {
        problems.push({ path: `${path}.cluster`, code: ConfigErrorCodes.BAD_URI, message: `cluster host '${cHost}' differs from uri host '${host}'; connecting to the cluster's`, severity: 'warning' });
      }
      host = cHost;
      written = m[3];
      if (u.port && Number(u.port) !== Number(m[1])) {
        problems.push({ path: `${path}.cluster`, code: ConfigErrorCodes.BAD_URI, message: `cluster port ${m[1]} differs from uri port ${u.port}; connecting to the cluster's`, severity: 'warning' });
      }
      port = Number(m[1]);
      subset = m[2] || undefined;
    } else {
      problems.push({ path: `${path}.cluster`, code: ConfigErrorCodes.BAD_URI, message: `cluster '${cluster}' is not an Istio outbound cluster name (outbound|port|subset|host); connecting to the uri's host and port`, severity: 'warning' });
    }
  }
  const entry = checkRegistry(idx, written, host, port, `${path}.uri`, typeof cluster === 'string' && ISTIO_CLUSTER.test(cluster) ? `${path}.cluster` : `${path}.uri`, problems);
  return { server: { host, port, subset, scheme, entry }, problems };
}

/** The server of a MeshConfig `envoyExtAuthzHttp` provider: `service` is `[ns/]host`. */
export function resolveProviderServer(idx: ModelIndex, mcNamespace: string, p: RawExtAuthzHttpProvider, path: string): { server?: ResolvedServer; problems: ServerProblem[] } {
  const problems: ServerProblem[] = [];
  if (typeof p.service !== 'string' || typeof p.port !== 'number') return { problems };
  const v = unsubstitutedVariable(p.service);
  if (v) {
    problems.push({ path: `${path}.service`, code: ConfigErrorCodes.UNRESOLVED_VARIABLE, message: `'${p.service}' still contains ${v}: substitute it before loading`, severity: 'error' });
    return { problems };
  }
  const slash = p.service.indexOf('/');
  const ns = slash >= 0 ? p.service.slice(0, slash) : mcNamespace;
  const written = slash >= 0 ? p.service.slice(slash + 1) : p.service;
  const host = fqdn(written, ns);
  const entry = checkRegistry(idx, written, host, p.port, `${path}.service`, `${path}.port`, problems);
  const proto = arrayOf<{ number?: number; protocol?: string }>(entry?.se.spec?.ports).find((x) => x?.number === p.port)?.protocol;
  return { server: { host, port: p.port, scheme: proto === 'HTTPS' ? 'https' : 'http', entry }, problems };
}

/** Istio policy pattern: `*` any, `abc*` prefix, `*abc` suffix, else exact. */
export function istioPattern(s: string): Exclude<StringPattern, { template: readonly string[] }> {
  if (s === '*') return { presence: true };
  if (s.startsWith('*')) return { suffix: s.slice(1) };
  if (s.endsWith('*')) return { prefix: s.slice(0, -1) };
  return { exact: s };
}

/** Istio's ext_authz header list syntax (same as istioPattern, compared case-insensitively). */
export function headerPatternMatcher(s: string): StringMatcher {
  const p = istioPattern(s.toLowerCase());
  if ('presence' in p) return { prefix: '', ignoreCase: true };
  if ('suffix' in p) return { suffix: p.suffix, ignoreCase: true };
  if ('prefix' in p) return { prefix: p.prefix, ignoreCase: true };
  return { exact: p.exact, ignoreCase: true };
}

/** Envoy StringMatcher (snake or camel case) → IR. `(?i)` in a regex becomes ignoreCase. */
export function envoyMatcher(m: Record<string, unknown>): StringMatcher | undefined {
  const ic = protoField(m, 'ignore_case') === true;
  for (const k of ['exact', 'prefix', 'suffix', 'contains'] as const) {
    const v = m[k];
    if (typeof v === 'string') return { [k]: v, ignoreCase: ic } as StringMatcher;
  }
  const sr = protoField(m, 'safe_regex');
  const raw = isPlainObject(sr) ? sr.regex : m.regex;
  if (typeof raw === 'string') {
    const { regex, ignoreCase } = splitRegexFlags(raw);
    return { regex, ignoreCase: ignoreCase || ic };
  }
  return undefined;
}

export function envoyMatcherList(list: unknown): StringMatcher[] {
  const patterns = isPlainObject(list) ? protoField(list, 'patterns') : undefined;
  return arrayOf<Record<string, unknown>>(patterns).filter(isPlainObject).map(envoyMatcher).filter((m): m is StringMatcher => m !== undefined);
}
