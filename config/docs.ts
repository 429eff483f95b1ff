/**
 * Generates docs/configuration.md from the schemas in config/kinds/, so the reference cannot drift
 * from what `portico validate` accepts (test/unit/config-docs.test.ts compares them).
 *
 *   node --import tsx config/docs.ts > docs/configuration.md
 */
import { extAuthzConfigSchema, localRateLimitValueSchema } from './kinds/envoyfilter.ts';
import { KINDS } from './kinds/index.ts';
import { fieldDoc, type FieldDoc, type Schema } from './schema.ts';

/** Per-kind status, shown above each table. */
const KIND_NOTES: Record<string, string> = {
  Gateway: 'Compiled into `Snapshot.gateways`; served by `portico gateway`.',
  VirtualService: 'HTTP routes compiled into virtual hosts; `tcp[]`/`tls[]` compiled into `GatewayPort.tcpRoutes`/`tlsRoutes`.',
  DestinationRule: 'Compiled into each cluster\'s effective `trafficPolicy`.',
  ServiceEntry: 'The service registry: hosts, ports and endpoints of `Snapshot.clusters` and `services`.',
  WorkloadEntry: 'Endpoints for ServiceEntries with a `workloadSelector`, and `portico sidecar --workload`.',
  EnvoyFilter:
    'Only two patches are applied: `envoy.filters.http.ext_authz` (HTTP service) inserted as an HTTP_FILTER → `Snapshot.extAuthz`, and `envoy.filters.http.local_ratelimit` as an HTTP_FILTER or merged into HTTP_ROUTE/VIRTUAL_HOST `typed_per_filter_config` → `Snapshot.localRateLimits`. Every other patch is validated and ignored with a warning.',
  PeerAuthentication: 'Enforced by `portico sidecar` inbound listeners (STRICT / PERMISSIVE / DISABLE, workload > namespace > mesh precedence, `portLevelMtls`); see docs/mesh.md.',
  AuthorizationPolicy:
    'CUSTOM policies drive ext_authz (`Snapshot.extAuthz`). All actions are validated and compiled into `Snapshot.security.authorizationPolicies`; ALLOW/DENY/AUDIT are enforced by the edge gateway and `portico sidecar` inbound listeners in Istio\'s order (CUSTOM, DENY, ALLOW); see docs/mesh.md.',
  RequestAuthentication: 'JWTs are verified by the edge gateway and `portico sidecar` inbound listeners (jwksUri or inline jwks, audiences, header/param/cookie locations, forwardOriginalToken, outputClaimToHeaders); see docs/mesh.md.',
  WasmPlugin:
    'Compiled into `Snapshot.wasmPlugins` (with EnvoyFilter `envoy.filters.http.wasm` patches using `vm_config.code.local.filename`) and run by the proxy-wasm host in the HTTP filter chain; see docs/wasm.md.',
  Service:
    'Kubernetes `v1 Service`: becomes a registry host `<name>.<ns>.svc.cluster.local` as in a cluster (Istio\'s Kubernetes registry). Port protocol from `appProtocol` (`kubernetes.io/h2c` → HTTP2, `kubernetes.io/ws` → HTTP, `kubernetes.io/wss` → HTTPS), else the port name\'s prefix before `-` (`http-web` → HTTP). With EndpointSlices in the input the endpoints are theirs; without, the host resolves by DNS (its ClusterIP in a cluster). Other Service fields are ignored without a warning (they are not Istio configuration). A `Service` of another apiVersion (Knative `serving.knative.dev/v1`) is skipped.',
  EndpointSlice:
    'Kubernetes `discovery.k8s.io/v1 EndpointSlice` with label `kubernetes.io/service-name`: the endpoints of that Service. Ready (or unset) endpoints are used; not-ready ones only when the Service sets `publishNotReadyAddresses`; terminating ones never. FQDN slices are skipped, as Istio does.',
  Pod:
    'Kubernetes `v1 Pod`: only its labels (for DestinationRule subsets) and `serviceAccountName` are read, for the EndpointSlice endpoints whose `targetRef` names it. Any other Kubernetes kind (Deployment, ConfigMap, CRD, RBAC, ...) is skipped with one `info:` line.',
  MeshConfig:
    'Either `portico.dev/v1alpha1 MeshConfig` (spec = MeshConfig) or Istio\'s `v1 ConfigMap` named `istio` with MeshConfig YAML in `data.mesh`. At most one. Unknown MeshConfig fields are warnings.',
};

/**
 * Field-level statuses for fields whose schema does not carry one (paths relative to `spec`):
 * documentation only — fields that warn or fail when set carry notEnforced()/unsupported() in
 * their schema, or are reported by a check in config/kinds/ or config/validate.ts.
 */
const OVERRIDES: Record<string, FieldDoc> = {
  'Gateway:servers[].tls.mode': { status: 'partly', note: 'ISTIO_MUTUAL and AUTO_PASSTHROUGH are not served yet' },
  'Gateway:servers[].port.name': { status: 'enforced', note: 'unique per Gateway; missing is a warning (Istio rejects it)' },
  'VirtualService:http[].delegate': { status: 'enforced', note: 'merged as pilot merges delegates' },
  'VirtualService:http[].mirrorPercent': { status: 'partly', note: 'deprecated; use mirrorPercentage' },
  'VirtualService:tcp[].match[].sourceLabels': { status: 'partly', note: 'compiled; sidecar mode only' },
  'VirtualService:tls[].match[].sourceLabels': { status: 'partly', note: 'compiled; sidecar mode only' },
  'EnvoyFilter:priority': { status: 'partly', note: 'validated; patches apply in (namespace, name, index) order' },
  'EnvoyFilter:configPatches[].match.cluster': { status: 'warned', note: 'CLUSTER patches are ignored (warning)' },
  'MeshConfig:defaultConfig': { status: 'partly', note: 'only tracing.sampling is read; other ProxyConfig fields warn' },
};

function typeOf(s: Schema): string {
  switch (s.type) {
    case 'string':
      return s.enum ? s.enum.map((e) => `\`${e}\``).join(' \\| ') : 'string';
    case 'int':
      return s.min !== undefined || s.max !== undefined ? `int (${s.min ?? ''}..${s.max ?? ''})` : 'int';
    case 'number':
      return s.min !== undefined || s.max !== undefined ? `number (${s.min ?? ''}..${s.max ?? ''})` : 'number';
    case 'bool':
      return 'bool';
    case 'duration':
      return 'duration';
    case 'array':
      return `list of ${typeOf(s.items)}`;
    case 'map':
      return `map of ${typeOf(s.values)}`;
    case 'object':
      return 'object';
    case 'any':
      return 'any';
  }
}

interface Row {
  path: string;
  type: string;
  doc: FieldDoc;
}

const inert = (d: FieldDoc | undefined): boolean => d?.status === 'warned' || d?.status === 'rejected';

function walk(kind: string, s: Schema, path: string, rows: Row[], inherited?: FieldDoc): void {
  const own = fieldDoc(s) ?? OVERRIDES[`${kind}:${path}`];
  const d = own ?? inherited ?? { status: 'enforced' };
  if (path) rows.push({ path, type: typeOf(s), doc: d });
  // Below a warned or rejected field, nothing is acted on either.
  const child = inert(own) ? own : inert(d) ? d : undefined;
  if (s.type === 'object') for (const [k, v] of Object.entries(s.fields)) walk(kind, v, path ? `${path}.${k}` : k, rows, child);
  else if (s.type === 'array') {
    const items = s.items;
    if (items.type === 'object') for (const [k, v] of Object.entries(items.fields)) walk(kind, v, `${path}[].${k}`, rows, child);
  } else if (s.type === 'map' && s.values.type === 'object') {
    for (const [k, v] of Object.entries(s.values.fields)) walk(kind, v, `${path}.<key>.${k}`, rows, child);
  }
}

/** Every documented row of every Istio kind (not the Kubernetes kinds Portico only reads). */
export function fieldRows(): { kind: string; path: string; status: FieldDoc['status'] }[] {
  const out: { kind: string; path: string; status: FieldDoc['status'] }[] = [];
  for (const def of KINDS.values()) {
    if (def.istio === false) continue;
    const rows: Row[] = [];
    walk(def.kind, def.spec, '', rows);
    for (const r of rows) out.push({ kind: def.kind, path: r.path, status: r.doc.status });
  }
  return out;
}

/**
 * Field counts by status. A DestinationRule traffic-policy field counts once, not once per place
 * it may appear (top level, portLevelSettings, subsets).
 */
export function statusCounts(): { enforced: number; partly: number; warned: number; rejected: number } {
  const c = { enforced: 0, partly: 0, warned: 0, rejected: 0 };
  const seen = new Set<string>();
  for (const r of fieldRows()) {
    const path = r.kind === 'DestinationRule' ? r.path.replace(/^(subsets\[\]\.)?trafficPolicy\.(portLevelSettings\[\]\.)?/, 'trafficPolicy.') : r.path;
    const key = `${r.kind}:${path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    c[r.status]++;
  }
  return c;
}

function table(kind: string, schema: Schema): string {
  const rows: Row[] = [];
  walk(kind, schema, '', rows);
  const esc = (t: string): string => t.replaceAll('|', '\\|');
  return [
    '| Field | Type | Status | Notes |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| \`${esc(r.path)}\` | ${r.type} | ${r.doc.status} | ${esc(r.doc.note ?? '')} |`),
  ].join('\n');
}

/** The whole of docs/configuration.md. */
export function renderConfigurationDoc(): string {
  const counts = statusCounts();
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated by config/docs.ts from the validation schemas; do not edit by hand.',
    '     Regenerate: node --import tsx config/docs.ts > docs/configuration.md -->',
    '',
    'Portico reads Istio YAML. `portico validate PATH...` reports every problem at once as',
    '`file:line: Kind/name: field.path: message`; unknown fields get a "did you mean" hint.',
    '',
    'Status: **enforced** — validated and acted on; **partly** — acted on, with the limits given;',
    '**warned** — accepted but not acted on: setting it prints a `warning:` (from `validate` and at load);',
    '**rejected** — a valid Istio field Portico cannot honour: setting it is an error, so nothing half-works.',
    '',
    `Istio fields by status: ${counts.enforced + counts.partly} enforced (${counts.partly} of them partly), ${counts.warned} warned, ${counts.rejected} rejected.`,
    'Inside Envoy typed configs (EnvoyFilter) and MeshConfig, unknown fields are warnings, not errors,',
    'because real manifests carry many options Portico does not model.',
    '',
    'Kubernetes manifests can be loaded with the Istio config (a kustomize output directory): `Service`,',
    '`EndpointSlice` and `Pod` become the service registry (sections below); every other Kubernetes kind',
    'is skipped with one `info:` line; Istio kinds Portico does not read (Sidecar, Telemetry, ...) and',
    'Gateway API kinds are skipped with a `warning:`. A reference Istio accepts and `istioctl analyze`',
    'only warns about (unknown gateway, host, subset or port) is a `warning:` too.',
    '',
  ];
  for (const def of KINDS.values()) {
    out.push(`## ${def.kind}`, '', `apiVersion: ${def.apiVersions.map((v) => `\`${v}\``).join(', ')}${def.kind === 'MeshConfig' ? ', or `v1` ConfigMap `istio` (`data.mesh`)' : ''}`, '');
    if (KIND_NOTES[def.kind]) out.push(KIND_NOTES[def.kind], '');
    out.push(table(def.kind, def.spec), '');
  }
  out.push(
    '## EnvoyFilter: ext_authz `typed_config`',
    '',
    '`@type: type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz` (or the older `config:` form). Field names may be snake_case or camelCase.',
    'Defaults follow Envoy: `status_on_error` 403, `failure_mode_allow` false, `server_uri.timeout` 200 ms when missing (Envoy requires it).',
    '',
    table('ExtAuthz', extAuthzConfigSchema),
    '',
    '## EnvoyFilter: local_ratelimit `value`',
    '',
    'As a `udpa.type.v1.TypedStruct` with `type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit` (Istio\'s task) or the message itself.',
    'Unset `filter_enabled` / `filter_enforced` mean 0 % as in Envoy; `tokens_per_fill` defaults to 1.',
    '',
    table('LocalRateLimit', localRateLimitValueSchema),
    '',
  );
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(renderConfigurationDoc());
