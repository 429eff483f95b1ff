/**
 * extensions.istio.io WasmPlugin: https://istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin/
 * and the older form, an EnvoyFilter inserting `envoy.filters.http.wasm` with
 * `vm_config.code.local.filename` (Istio 1.5–1.11, e.g. istio-ecosystem/wasm-extensions'
 * basic_auth gateway-filter.yaml).
 *
 * Semantics kept from Istio:
 * - `url` without a scheme is `oci://`; `file://` is a local file (relative paths are resolved
 *   against the YAML file's folder); `https://` needs no auth; for `oci://` `sha256` is the image
 *   manifest digest, otherwise the digest of the module bytes.
 * - `imagePullPolicy` unset: `IfNotPresent`, except `Always` for an `oci://` tag `latest`.
 * - `phase` unset: just before the router; `AUTHN` before jwt_authn, `AUTHZ` before rbac,
 *   `STATS` before stats. Within a phase, higher `priority` first (default 0), ties by
 *   namespace then name.
 * - `failStrategy` unset: `FAIL_CLOSE`.
 * - `match[].mode`: a gateway counts as `CLIENT`; `ports` compare with the listener port.
 * - `vmConfig.env[].valueFrom`: `INLINE` (default, `value`) or `HOST` (the proxy's environment).
 * - `type` unset: HTTP. NETWORK plugins are not run by Portico (error).
 */
import { ConfigErrorCodes } from '../errors.ts';
import { any, arr, childPath, int, isPlainObject, obj, oneOfStr, protoField, str, type Reporter, type Schema } from '../schema.ts';
import { labels } from './common.ts';
import type { Resource } from '../load.ts';
import type { PolicyTarget, SourceRef, WasmPluginConfig, WasmPhase } from '../snapshot.ts';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RawWasmPluginSpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: { kind?: string; group?: string; name?: string; namespace?: string };
  targetRefs?: { kind?: string; group?: string; name?: string; namespace?: string }[];
  url?: string;
  sha256?: string;
  imagePullPolicy?: string;
  imagePullSecret?: string;
  pluginConfig?: unknown;
  pluginName?: string;
  phase?: string;
  priority?: number;
  failStrategy?: string;
  vmConfig?: { env?: { name?: string; value?: string; valueFrom?: string }[] };
  match?: { mode?: string; ports?: { number?: number }[] }[];
  type?: string;
  verificationKey?: string;
}

const PHASES = ['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS'];
const SHA256 = /^[0-9a-f]{64}$/;

function urlProblem(url: string): string | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return url.trim() === '' ? 'url must not be empty' : undefined; // oci:// by default
  if (!['file', 'https', 'http', 'oci'].includes(scheme)) return `unsupported url scheme '${scheme}://' (want file://, https:// or oci://)`;
  if (scheme === 'file') return undefined;
  try {
    const u = new URL(scheme === 'oci' ? `https://${url.slice(6)}` : url);
    if (!u.hostname) return `'${url}' names no host`;
  } catch {
    return `'${url}' is not a valid URL`;
  }
  return undefined;
}

const targetRef = obj({ kind: str({ nonEmpty: true }), group: str(), name: str({ nonEmpty: true }), namespace: str() }, { required: ['kind', 'name'] });

export const wasmpluginSpecSchema: Schema = obj(
  {
    selector: obj({ matchLabels: labels }),
    targetRef,
    targetRefs: arr(targetRef),
    url: str({ nonEmpty: true, check: (v, path, r) => { const p = urlProblem(v); if (p) r.report(path, ConfigErrorCodes.BAD_URI, p); } }),
    sha256: str({ check: (v, path, r) => { if (!SHA256.test(v.replace(/^sha256:/, ''))) r.report(path, ConfigErrorCodes.WRONG_TYPE, 'sha256 must be 64 lower-case hex digits'); } }),
    imagePullPolicy: oneOfStr(['UNSPECIFIED_POLICY', 'IfNotPresent', 'Always']),
    imagePullSecret: str({ nonEmpty: true }),
    pluginConfig: any,
    pluginName: str(),
    phase: oneOfStr(PHASES),
    priority: int(-2147483648, 2147483647),
    failStrategy: oneOfStr(['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD']),
    vmConfig: obj({
      env: arr(obj({ name: str({ nonEmpty: true }), value: str(), valueFrom: oneOfStr(['INLINE', 'HOST']) }, {
        required: ['name'],
        check: (e, path, r) => {
          if (e.valueFrom === 'HOST' && e.value !== undefined) r.report(childPath(path, 'value'), ConfigErrorCodes.ONE_OF, 'value is not used with valueFrom: HOST (the variable is read from the proxy\'s environment)', 'warning');
        },
      })),
    }),
    match: arr(obj({ mode: oneOfStr(['UNDEFINED', 'CLIENT', 'SERVER', 'CLIENT_AND_SERVER']), ports: arr(obj({ number: int(1, 65535) }, { required: ['number'] })) })),
    type: oneOfStr(['UNSPECIFIED_PLUGIN_TYPE', 'HTTP', 'NETWORK']),
    verificationKey: str(),
  },
  {
    required: ['url'],
    oneOf: ['selector', 'targetRef', 'targetRefs'],
    check: (spec, path, r) => {
      if (spec.type === 'NETWORK') r.report(childPath(path, 'type'), ConfigErrorCodes.NOT_IMPLEMENTED, 'NETWORK Wasm plugins are not run by Portico (only HTTP)');
      if (spec.verificationKey !== undefined) r.report(childPath(path, 'verificationKey'), ConfigErrorCodes.NOT_IMPLEMENTED, 'verificationKey is not checked by Portico (use sha256)', 'warning');
      if (spec.pluginConfig !== undefined && !isPlainObject(spec.pluginConfig)) r.report(childPath(path, 'pluginConfig'), ConfigErrorCodes.WRONG_TYPE, 'pluginConfig must be an object (it is passed to the plugin as JSON)');
    },
  },
);

/** Istio's default pull policy: Always for an OCI `latest` tag (or no tag), else IfNotPresent. */
export function defaultPullPolicy(url: string): 'IfNotPresent' | 'Always' {
  if (!url.startsWith('oci://')) return 'IfNotPresent';
  const ref = url.slice(6);
  if (ref.includes('@')) return 'IfNotPresent';
  const lastSlash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const tag = colon > lastSlash ? ref.slice(colon + 1) : 'latest';
  return tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/** `url` as Portico fetches it: a scheme always; file:// paths absolute. */
export function normaliseUrl(url: string, yamlFile: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return `oci://${url}`;
  if (url.toLowerCase().startsWith('file://')) {
    const rest = url.slice(7);
    const p = rest.startsWith('/') ? fileURLToPath(`file://${rest}`) : rest;
    return `file://${isAbsolute(p) ? p : resolve(dirname(yamlFile), p)}`;
  }
  return url;
}

export interface WasmCompileHelpers {
  source(r: Resource, path: string): SourceRef;
  target(r: Resource, selector: Record<string, string> | undefined, targetRefs?: unknown[]): PolicyTarget;
}

function pluginConfigJson(v: unknown): string {
  if (v === undefined) return '';
  // Istio passes pluginConfig as the JSON of the Struct; a string stays a JSON string.
  return JSON.stringify(v);
}

export function compileWasmPlugin(r: Resource<RawWasmPluginSpec>, h: WasmCompileHelpers): WasmPluginConfig {
  const s = r.spec ?? {};
  const url = normaliseUrl(s.url ?? '', r.file);
  const phase = (s.phase && s.phase !== 'UNSPECIFIED_PHASE' ? s.phase : 'UNSPECIFIED') as WasmPhase;
  const policy = s.imagePullPolicy && s.imagePullPolicy !== 'UNSPECIFIED_POLICY' ? (s.imagePullPolicy as 'IfNotPresent' | 'Always') : defaultPullPolicy(url);
  const refs = s.targetRefs ?? (s.targetRef ? [s.targetRef] : undefined);
  return {
    id: `WasmPlugin/${r.key}`,
    name: r.name,
    source: h.source(r, 'metadata.name'),
    ...h.target(r, s.selector?.matchLabels, refs),
    url,
    ...(s.sha256 ? { sha256: s.sha256.replace(/^sha256:/, '') } : {}),
    imagePullPolicy: policy,
    ...(s.imagePullSecret ? { imagePullSecret: s.imagePullSecret } : {}),
    pluginConfig: pluginConfigJson(s.pluginConfig),
    pluginName: s.pluginName ?? '',
    // Istio gives each WasmPlugin its own VM; the id keys shared data.
    vmId: r.key,
    phase,
    priority: s.priority ?? 0,
    failStrategy: (s.failStrategy ?? 'FAIL_CLOSE') as WasmPluginConfig['failStrategy'],
    env: (s.vmConfig?.env ?? []).map((e) => ({ name: e.name ?? '', valueFrom: (e.valueFrom ?? 'INLINE') as 'INLINE' | 'HOST', value: e.value ?? '' })),
    match: (s.match ?? []).map((m) => ({ mode: (m.mode ?? 'UNDEFINED') as 'UNDEFINED' | 'CLIENT' | 'SERVER' | 'CLIENT_AND_SERVER', ports: (m.ports ?? []).map((p) => p.number ?? 0) })),
    context: 'ANY',
  };
}

/** Plugins in chain order within a phase: priority descending, then namespace, then name. */
export function sortWasmPlugins(list: WasmPluginConfig[]): WasmPluginConfig[] {
  return list.sort((a, b) => b.priority - a.priority || (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0) || (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
}

// ---- the EnvoyFilter form ----

export const WASM_FILTER_NAMES = ['envoy.filters.http.wasm', 'envoy.wasm'];

interface WasmPatchShape {
  readonly rootId: string;
  readonly vmId: string;
  readonly configuration: string;
  readonly filename: string;
  readonly failOpen: boolean;
}

function configurationOf(v: unknown): string {
  // google.protobuf.Any{@type: StringValue, value} or a plain string (the old `config` form).
  if (typeof v === 'string') return v;
  if (isPlainObject(v) && typeof v.value === 'string') return v.value;
  if (isPlainObject(v)) return JSON.stringify(v);
  return '';
}

/**
 * The Wasm filter an EnvoyFilter patch value inserts, or the reason Portico cannot run it
 * (an error: a plugin silently missing would let traffic through that the patch meant to stop).
 */
export function envoyWasmPatch(value: Record<string, unknown>, path: string, r?: Reporter): WasmPatchShape | undefined {
  const tc = (value.typed_config ?? value.config) as Record<string, unknown> | undefined;
  const tpath = value.typed_config !== undefined ? `${path}.typed_config` : `${path}.config`;
  if (!isPlainObject(tc)) {
    r?.report(path, ConfigErrorCodes.REQUIRED, 'envoy.filters.http.wasm needs typed_config');
    return undefined;
  }
  // typed_config: {@type: ...Wasm, config: PluginConfig}; the old `config:` form holds {config: PluginConfig} too.
  const pc = (protoField(tc, 'config') ?? tc) as Record<string, unknown>;
  const ppath = protoField(tc, 'config') !== undefined ? `${tpath}.config` : tpath;
  const vm = protoField(pc, 'vm_config') as Record<string, unknown> | undefined;
  if (!isPlainObject(vm)) {
    r?.report(`${ppath}.vm_config`, ConfigErrorCodes.REQUIRED, 'Portico runs a Wasm EnvoyFilter only with vm_config.code.local.filename');
    return undefined;
  }
  const code = protoField(vm, 'code') as Record<string, unknown> | undefined;
  const local = isPlainObject(code) ? (protoField(code, 'local') as Record<string, unknown> | undefined) : undefined;
  const filename = isPlainObject(local) ? protoField(local, 'filename') : undefined;
  if (typeof filename !== 'string' || filename === '') {
    const remote = isPlainObject(code) && protoField(code, 'remote') !== undefined;
    r?.report(`${ppath}.vm_config.code`, ConfigErrorCodes.NOT_IMPLEMENTED, remote
      ? 'vm_config.code.remote is not supported in an EnvoyFilter; use a WasmPlugin with an https:// or oci:// url'
      : 'Portico runs a Wasm EnvoyFilter only with vm_config.code.local.filename');
    return undefined;
  }
  const runtime = protoField(vm, 'runtime');
  if (typeof runtime === 'string' && !/^envoy\.wasm\.runtime\.(v8|wamr|wasmtime|wavm|null)$/.test(runtime)) {
    r?.report(`${ppath}.vm_config.runtime`, ConfigErrorCodes.BAD_ENUM, `unknown Wasm runtime '${runtime}'`);
  }
  if (runtime === 'envoy.wasm.runtime.null') {
    r?.report(`${ppath}.vm_config.runtime`, ConfigErrorCodes.NOT_IMPLEMENTED, 'the null runtime runs plugins compiled into Envoy; Portico has none');
    return undefined;
  }
  return {
    rootId: String(protoField(pc, 'root_id') ?? ''),
    vmId: String(protoField(vm, 'vm_id') ?? ''),
    configuration: configurationOf(protoField(pc, 'configuration')),
    filename,
    failOpen: protoField(pc, 'fail_open') === true,
  };
}

export function compileEnvoyWasmPatch(ef: Resource, index: number, value: Record<string, unknown>, context: string, selector: Record<string, string> | undefined, h: WasmCompileHelpers): WasmPluginConfig | undefined {
  const shape = envoyWasmPatch(value, '');
  if (!shape) return undefined;
  const file = isAbsolute(shape.filename) ? shape.filename : resolve(dirname(ef.file), shape.filename);
  return {
    id: `EnvoyFilter/${ef.key}/configPatches[${index}]`,
    name: ef.name,
    source: h.source(ef, `spec.configPatches[${index}]`),
    ...h.target(ef, selector),
    url: `file://${file}`,
    imagePullPolicy: 'IfNotPresent',
    pluginConfig: shape.configuration,
    pluginName: shape.rootId,
    vmId: shape.vmId || `${ef.key}/${index}`,
    // An EnvoyFilter inserts the filter where its patch says; Portico runs it just before the router.
    phase: 'UNSPECIFIED',
    priority: 0,
    failStrategy: shape.failOpen ? 'FAIL_OPEN' : 'FAIL_CLOSE',
    env: [],
    match: [],
    context: context as WasmPluginConfig['context'],
  };
}
