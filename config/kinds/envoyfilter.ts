/**
 * networking.istio.io EnvoyFilter: https://istio.io/latest/docs/reference/config/networking/envoy-filter/
 *
 * The whole EnvoyFilter shape is validated, but Portico only *applies* two kinds of patch:
 *  - HTTP_FILTER inserting `envoy.filters.http.ext_authz` with an `http_service` (the Kubeflow
 *    authservice form), and
 *  - `envoy.filters.http.local_ratelimit`, as an HTTP_FILTER or merged into HTTP_ROUTE /
 *    VIRTUAL_HOST `typed_per_filter_config` (Istio's rate-limit task).
 * Anything else is a warning saying it is ignored. Inside Envoy's typed configs, unknown fields
 * are warnings too: real manifests carry many Envoy options Portico does not model.
 */
import { ConfigErrorCodes } from '../errors.ts';
import {
  any, arr, bool, childPath, doc, notEnforced, duration, int, isPlainObject, obj, oneOfStr, protoField, str, validateValue, type Reporter, type Schema,
} from '../schema.ts';
import { labels, regexString, targetRefSchema } from './common.ts';
import { envoyWasmPatch, WASM_FILTER_NAMES } from './wasmplugin.ts';

export const APPLY_TO = [
  'INVALID', 'LISTENER', 'FILTER_CHAIN', 'NETWORK_FILTER', 'HTTP_FILTER', 'ROUTE_CONFIGURATION', 'VIRTUAL_HOST', 'HTTP_ROUTE',
  'CLUSTER', 'EXTENSION_CONFIG', 'BOOTSTRAP', 'LISTENER_FILTER',
] as const;
// WAYPOINT: ambient waypoints (Istio 1.24+); accepted, and like SIDECAR_* never matches Portico's gateway.
export const CONTEXTS = ['ANY', 'SIDECAR_INBOUND', 'SIDECAR_OUTBOUND', 'GATEWAY', 'WAYPOINT'] as const;
// MERGE_AND_REPLACE_LIST: Istio 1.31 (MERGE, but lists in the patch replace instead of append).
export const OPERATIONS = ['INVALID', 'MERGE', 'ADD', 'REMOVE', 'INSERT_BEFORE', 'INSERT_AFTER', 'INSERT_FIRST', 'REPLACE', 'MERGE_AND_REPLACE_LIST'] as const;

export const EXT_AUTHZ_NAMES = ['envoy.filters.http.ext_authz', 'envoy.ext_authz'];
export const LOCAL_RATELIMIT_NAME = 'envoy.filters.http.local_ratelimit';
const EXT_AUTHZ_TYPES = [
  'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  'type.googleapis.com/envoy.config.filter.http.ext_authz.v2.ExtAuthz',
];
export const TYPED_STRUCT_TYPES = ['type.googleapis.com/udpa.type.v1.TypedStruct', 'type.googleapis.com/xds.type.v3.TypedStruct'];
const LOCAL_RATELIMIT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';

export interface RawPatch {
  applyTo?: (typeof APPLY_TO)[number];
  match?: {
    context?: (typeof CONTEXTS)[number];
    listener?: { portNumber?: number; filterChain?: { filter?: { name?: string; subFilter?: { name?: string } } } };
    routeConfiguration?: { portNumber?: number; vhost?: { name?: string; route?: { name?: string; action?: string } } };
  };
  patch?: { operation?: (typeof OPERATIONS)[number]; value?: Record<string, unknown> };
}

export interface EnvoyFilterSpec {
  workloadSelector?: { labels?: Record<string, string> };
  configPatches?: RawPatch[];
  priority?: number;
}

// ---- Envoy typed configs (validated with protoNames: snake_case or camelCase; unknown = warning) ----

const envoy = (fields: Record<string, Schema>, opts: Parameters<typeof obj>[1] = {}): Schema =>
  obj(fields, { unknownFields: 'warning', protoNames: true, ...opts });

/** envoy.type.matcher.v3.StringMatcher. */
export const envoyStringMatcher = envoy(
  {
    exact: str(),
    prefix: str({ nonEmpty: true }),
    suffix: str({ nonEmpty: true }),
    contains: str({ nonEmpty: true }),
    safe_regex: envoy({ regex: regexString, google_re2: any }, { required: ['regex'] }),
    regex: doc(regexString, 'partly', 'deprecated v2 field, read as safe_regex'),
    ignore_case: bool,
  },
  { oneOf: ['exact', 'prefix', 'suffix', 'contains', 'safe_regex', 'regex'], oneOfRequired: true },
);
const listMatcher = envoy({ patterns: arr(envoyStringMatcher) });
const headerValue = envoy({ key: str({ nonEmpty: true }), value: str() }, { required: ['key'] });

/** Envoy accepts a status code number or its enum name (`Forbidden`, `ServiceUnavailable`). */
const statusCode: Schema = {
  type: 'any',
  check: (v, path, r) => {
    if (typeof v === 'number' ? !(Number.isInteger(v) && v >= 100 && v <= 599) : typeof v !== 'string' || !(v in HTTP_STATUS_NAMES)) {
      r.report(path, ConfigErrorCodes.OUT_OF_RANGE, `'${String(v)}' is not an HTTP status code or Envoy StatusCode name`);
    }
  },
};

/** The Envoy StatusCode enum names users write most; the rest can be given as numbers. */
export const HTTP_STATUS_NAMES: Readonly<Record<string, number>> = {
  Continue: 100, OK: 200, Created: 201, MovedPermanently: 301, Found: 302, BadRequest: 400, Unauthorized: 401,
  PaymentRequired: 402, Forbidden: 403, NotFound: 404, MethodNotAllowed: 405, TooManyRequests: 429,
  InternalServerError: 500, NotImplemented: 501, BadGateway: 502, ServiceUnavailable: 503, GatewayTimeout: 504,
};

export const extAuthzConfigSchema = envoy(
  {
    '@type': str(),
    transport_api_version: oneOfStr(['AUTO', 'V2', 'V3']),
    http_service: envoy(
      {
        server_uri: envoy(
          { uri: str({ nonEmpty: true }), cluster: str(), timeout: doc(duration(1), 'enforced', 'Envoy requires it; Portico defaults to 200 ms (warning)') },
          { required: ['uri'] },
        ),
        path_prefix: str(),
        authorization_request: envoy({ allowed_headers: listMatcher, headers_to_add: arr(headerValue) }),
        authorization_response: envoy({
          allowed_upstream_headers: listMatcher,
          allowed_upstream_headers_to_append: doc(listMatcher, 'warned', 'warning'),
          allowed_client_headers: listMatcher,
          allowed_client_headers_on_success: listMatcher,
          dynamic_metadata_from_headers: doc(listMatcher, 'warned', 'warning'),
        }),
      },
      { required: ['server_uri'] },
    ),
    grpc_service: doc(any, 'rejected', 'error: only http_service is supported'),
    failure_mode_allow: bool,
    status_on_error: envoy({ code: statusCode }),
    with_request_body: doc(envoy({ max_request_bytes: int(1), allow_partial_message: bool, pack_as_bytes: bool }), 'partly', 'compiled; bodies are not sent yet (warning)'),
    clear_route_cache: bool,
    include_peer_certificate: bool,
  },
  {
    check: (c, path, r) => {
      const t = c['@type'];
      if (typeof t === 'string' && !EXT_AUTHZ_TYPES.includes(t)) r.report(childPath(path, '@type'), ConfigErrorCodes.BAD_ENUM, `'${t}' is not the ext_authz type (want ${EXT_AUTHZ_TYPES[0]})`);
      if (protoField(c, 'grpc_service') !== undefined) r.report(childPath(path, 'grpc_service'), ConfigErrorCodes.NOT_IMPLEMENTED, 'gRPC ext_authz is not supported; use http_service');
      else if (protoField(c, 'http_service') === undefined) r.report(childPath(path, 'http_service'), ConfigErrorCodes.REQUIRED, 'ext_authz needs http_service');
      if (protoField(c, 'with_request_body') !== undefined) r.report(childPath(path, 'with_request_body'), ConfigErrorCodes.NOT_IMPLEMENTED, 'with_request_body is compiled but the gateway does not send request bodies to the authz server yet', 'warning');
    },
  },
);

const fractionalPercent = envoy(
  { numerator: int(0), denominator: oneOfStr(['HUNDRED', 'TEN_THOUSAND', 'MILLION']) },
  {
    check: (f, path, r) => {
      const den = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 }[String(f.denominator ?? 'HUNDRED')] ?? 100;
      if (typeof f.numerator === 'number' && f.numerator > den) r.report(childPath(path, 'numerator'), ConfigErrorCodes.OUT_OF_RANGE, `numerator ${f.numerator} exceeds the denominator (${den})`, 'warning');
    },
  },
);
const runtimeFractionalPercent = envoy({ runtime_key: str(), default_value: fractionalPercent }, { required: ['default_value'] });

export const localRateLimitValueSchema = envoy({
  stat_prefix: str({ nonEmpty: true }),
  token_bucket: envoy(
    { max_tokens: int(1), tokens_per_fill: int(1), fill_interval: duration(1) },
    { required: ['max_tokens', 'fill_interval'] },
  ),
  filter_enabled: runtimeFractionalPercent,
  filter_enforced: runtimeFractionalPercent,
  response_headers_to_add: arr(envoy({ append: bool, append_action: str(), header: headerValue }, { required: ['header'] })),
  request_headers_to_add_when_not_enforced: doc(any, 'warned', 'warning'),
  status: doc(envoy({ code: statusCode }), 'warned', 'warning; 429 is used'),
  descriptors: doc(any, 'warned', 'warning'),
  stage: any,
  local_rate_limit_per_downstream_connection: doc(bool, 'warned', 'warning; buckets are per process'),
});

/**
 * Validates a local_ratelimit typed config: `TypedStruct{type_url, value}` (Istio's task) or the
 * LocalRateLimit message directly. Returns the LocalRateLimit value, or undefined.
 */
export function checkLocalRateLimitConfig(tc: unknown, path: string, r: Reporter): Record<string, unknown> | undefined {
  if (!isPlainObject(tc)) {
    r.report(path, ConfigErrorCodes.WRONG_TYPE, 'expected a map');
    return undefined;
  }
  const t = tc['@type'];
  if (typeof t === 'string' && TYPED_STRUCT_TYPES.includes(t)) {
    const allowed = new Set(['@type', 'type_url', 'value']);
    for (const k of Object.keys(tc)) if (!allowed.has(k)) r.report(childPath(path, k), ConfigErrorCodes.UNKNOWN_FIELD, `unknown field '${k}' in TypedStruct`);
    if (tc.type_url !== LOCAL_RATELIMIT_TYPE) r.report(childPath(path, 'type_url'), ConfigErrorCodes.BAD_ENUM, `type_url '${String(tc.type_url)}' is not ${LOCAL_RATELIMIT_TYPE}`);
    if (!isPlainObject(tc.value)) {
      r.report(childPath(path, 'value'), ConfigErrorCodes.REQUIRED, "'value' is required");
      return undefined;
    }
    validateValue(localRateLimitValueSchema, tc.value, childPath(path, 'value'), r);
    return tc.value;
  }
  if (t !== LOCAL_RATELIMIT_TYPE) r.report(childPath(path, '@type'), ConfigErrorCodes.BAD_ENUM, `'${String(t)}' is not ${LOCAL_RATELIMIT_TYPE} or a TypedStruct`);
  const { ['@type']: _t, ...rest } = tc;
  validateValue(localRateLimitValueSchema, rest, path, r);
  return rest;
}

/** What a patch does, as far as Portico is concerned. */
export type PatchKind = 'ext_authz' | 'local_ratelimit_filter' | 'local_ratelimit_route' | 'wasm' | 'ignored';

export function classifyPatch(p: RawPatch): PatchKind {
  const value = p.patch?.value;
  if (!isPlainObject(value)) return 'ignored';
  if (p.applyTo === 'HTTP_FILTER' && typeof value.name === 'string' && EXT_AUTHZ_NAMES.includes(value.name)) return 'ext_authz';
  if (p.applyTo === 'HTTP_FILTER' && value.name === LOCAL_RATELIMIT_NAME) return 'local_ratelimit_filter';
  if (p.applyTo === 'HTTP_FILTER' && typeof value.name === 'string' && WASM_FILTER_NAMES.includes(value.name)) return 'wasm';
  const tpfc = protoField(value, 'typed_per_filter_config');
  if ((p.applyTo === 'HTTP_ROUTE' || p.applyTo === 'VIRTUAL_HOST') && isPlainObject(tpfc) && tpfc[LOCAL_RATELIMIT_NAME] !== undefined) return 'local_ratelimit_route';
  return 'ignored';
}

const INSERTS = ['INSERT_BEFORE', 'INSERT_FIRST', 'INSERT_AFTER', 'ADD'];

const patchSchema = obj(
  {
    applyTo: oneOfStr(APPLY_TO),
    match: obj(
      {
        context: oneOfStr(CONTEXTS),
        proxy: notEnforced(obj({ proxyVersion: regexString, metadata: labels }), 'the patch applies whatever the proxy version and metadata'),
        listener: obj({
          portNumber: int(1, 65535),
          portName: str(),
          name: str(),
          listenerFilter: str(),
          filterChain: obj({
            name: str(),
            sni: str(),
            transportProtocol: str(),
            applicationProtocols: str(),
            destinationPort: int(1, 65535),
            // subFilter.name "" is proto3's default (no sub-filter constraint): Istio accepts it, and Kubeflow ≤ 1.6's authn-filter writes it.
            filter: obj({ name: str({ nonEmpty: true }), subFilter: obj({ name: str() }) }),
          }),
        }),
        routeConfiguration: obj({
          portNumber: int(1, 65535),
          portName: str(),
          gateway: str(),
          name: str(),
          vhost: obj({
            name: str(),
            domainName: str(),
            route: obj({ name: str(), action: oneOfStr(['ANY', 'ROUTE', 'REDIRECT', 'DIRECT_RESPONSE']) }),
          }),
        }),
        cluster: obj({ portNumber: int(1, 65535), service: str(), subset: str(), name: str() }),
      },
      { oneOf: ['listener', 'routeConfiguration', 'cluster'] },
    ),
    patch: obj(
      { operation: oneOfStr(OPERATIONS), value: any, filterClass: notEnforced(oneOfStr(['UNSPECIFIED', 'AUTHN', 'AUTHZ', 'STATS']), 'filters sit at their fixed place in the chain') },
      { required: ['operation'] },
    ),
  },
  {
    required: ['applyTo', 'patch'],
    check: (p, path, r) => {
      const raw = p as RawPatch;
      const kind = classifyPatch(raw);
      const op = raw.patch?.operation;
      const value = raw.patch?.value as Record<string, unknown> | undefined;
      const vpath = `${path}.patch.value`;
      if (kind === 'ext_authz' || kind === 'local_ratelimit_filter') {
        if (op && !INSERTS.includes(op)) r.report(`${path}.patch.operation`, ConfigErrorCodes.BAD_ENUM, `operation ${op} does not insert a filter (want INSERT_BEFORE, INSERT_FIRST or ADD)`);
        const ctxOk = raw.match?.listener !== undefined || raw.match === undefined || raw.match.routeConfiguration === undefined;
        if (!ctxOk) r.report(`${path}.match`, ConfigErrorCodes.ONE_OF, 'an HTTP_FILTER patch matches a listener, not a routeConfiguration');
        const fname = raw.match?.listener?.filterChain?.filter?.name;
        if (fname && !['envoy.filters.network.http_connection_manager', 'envoy.http_connection_manager'].includes(fname)) {
          r.report(`${path}.match.listener.filterChain.filter.name`, ConfigErrorCodes.BAD_ENUM, `HTTP filters live in envoy.filters.network.http_connection_manager, not '${fname}'`);
        }
        const tc = value?.typed_config ?? value?.config;
        const tpath = value?.typed_config !== undefined ? `${vpath}.typed_config` : `${vpath}.config`;
        if (value?.typed_config !== undefined && value.config !== undefined) r.report(`${vpath}.config`, ConfigErrorCodes.ONE_OF, "only one of 'typed_config' and 'config' may be set");
        if (tc === undefined) {
          if (kind === 'ext_authz') r.report(vpath, ConfigErrorCodes.REQUIRED, `${String(value?.name)} needs typed_config`);
          return;
        }
        if (kind === 'ext_authz') validateValue(extAuthzConfigSchema, tc, tpath, r);
        else checkLocalRateLimitConfig(tc, tpath, r);
        for (const k of Object.keys(value ?? {})) {
          if (!['name', 'typed_config', 'config'].includes(k)) r.report(childPath(vpath, k), ConfigErrorCodes.UNKNOWN_FIELD, `unknown field '${k}' in an HTTP filter; ignored`, 'warning');
        }
        return;
      }
      if (kind === 'wasm') {
        if (op && !INSERTS.includes(op)) r.report(`${path}.patch.operation`, ConfigErrorCodes.BAD_ENUM, `operation ${op} does not insert a filter (want INSERT_BEFORE, INSERT_FIRST or ADD)`);
        envoyWasmPatch(value ?? {}, vpath, r);
        return;
      }
      if (kind === 'local_ratelimit_route') {
        if (op !== 'MERGE') r.report(`${path}.patch.operation`, ConfigErrorCodes.BAD_ENUM, `typed_per_filter_config is applied with MERGE, not ${String(op)}`);
        if (!raw.match?.routeConfiguration) r.report(`${path}.match`, ConfigErrorCodes.REQUIRED, `${raw.applyTo} patches need match.routeConfiguration`);
        const tpfc = protoField(value, 'typed_per_filter_config') as Record<string, unknown>;
        const key = value?.typed_per_filter_config !== undefined ? 'typed_per_filter_config' : 'typedPerFilterConfig';
        checkLocalRateLimitConfig(tpfc[LOCAL_RATELIMIT_NAME], `${vpath}.${key}["${LOCAL_RATELIMIT_NAME}"]`, r);
        return;
      }
      const what = isPlainObject(value) && typeof value.name === 'string' ? ` (${value.name})` : '';
      r.report(path, ConfigErrorCodes.ENVOY_FILTER_IGNORED, `${raw.applyTo ?? 'this'} patch${what} is not applied by Portico (only ext_authz and local_ratelimit are)`, 'warning');
    },
  },
);

export const envoyfilterSpecSchema: Schema = obj(
  {
    workloadSelector: obj({ labels }),
    targetRefs: doc(arr(targetRefSchema), 'warned', 'warning'),
    configPatches: arr(patchSchema),
    priority: int(),
    workloadLabels: doc(any, 'rejected', 'removed from Istio'),
    filters: doc(any, 'rejected', 'removed from Istio'),
  },
  {
    check: (spec, path, r) => {
      for (const k of ['workloadLabels', 'filters']) {
        if (spec[k] !== undefined) r.report(childPath(path, k), ConfigErrorCodes.NOT_IMPLEMENTED, `'${k}' is the pre-1.5 EnvoyFilter API that Istio removed; use workloadSelector and configPatches`);
      }
      if (spec.targetRefs) r.report(childPath(path, 'targetRefs'), ConfigErrorCodes.NOT_IMPLEMENTED, 'targetRefs is not resolved by Portico yet; use workloadSelector', 'warning');
    },
  },
);
