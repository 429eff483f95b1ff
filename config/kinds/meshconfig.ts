/**
 * MeshConfig: https://istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/
 *
 * Read either as `portico.dev/v1alpha1 MeshConfig` (spec = MeshConfig) or from Istio's own
 * `v1 ConfigMap` named `istio` whose `data.mesh` holds MeshConfig YAML (see config/load.ts).
 * Real `istio` ConfigMaps carry many fields Portico does not use: those are warnings, not errors.
 */
import { PATH_NORMALIZATIONS } from '../../lib/path.ts';
import { ConfigErrorCodes } from '../errors.ts';
import { arr, bool, doc, duration, int, notEnforced, num, obj, oneOfStr, str, strMap, type Schema } from '../schema.ts';

export interface RawExtAuthzHttpProvider {
  service: string;
  port: number;
  timeout?: string;
  pathPrefix?: string;
  failOpen?: boolean;
  statusOnError?: string;
  includeHeadersInCheck?: string[];
  includeRequestHeadersInCheck?: string[];
  includeAdditionalHeadersInCheck?: Record<string, string>;
  includeRequestBodyInCheck?: { maxRequestBytes?: number; allowPartialMessage?: boolean; packAsBytes?: boolean };
  headersToUpstreamOnAllow?: string[];
  headersToDownstreamOnDeny?: string[];
  headersToDownstreamOnAllow?: string[];
}

export interface RawExtensionProvider {
  name: string;
  envoyExtAuthzHttp?: RawExtAuthzHttpProvider;
  [other: string]: unknown;
}

export interface MeshConfigSpec {
  extensionProviders?: RawExtensionProvider[];
  defaultConfig?: { tracing?: { sampling?: number } };
  accessLogFile?: string;
  accessLogEncoding?: 'TEXT' | 'JSON';
  accessLogFormat?: string;
  trustDomain?: string;
  rootNamespace?: string;
  pathNormalization?: { normalization?: string };
}

/** Istio's default root namespace: policies there apply mesh-wide. */
export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

/** `abc`, `abc*`, `*abc` (Istio's header pattern syntax in ext_authz provider lists). */
const headerPattern = str({
  nonEmpty: true,
  check: (v, path, r) => {
    if (v.slice(1, -1).includes('*')) r.report(path, ConfigErrorCodes.BAD_PATTERN, `'${v}': '*' is only allowed at the start or end`);
  },
});

const envoyExtAuthzHttp = obj(
  {
    service: str({ nonEmpty: true }),
    port: int(1, 65535),
    timeout: doc(duration(1), 'enforced', 'default 10m (Istio)'),
    pathPrefix: str({
      check: (v, path, r) => {
        if (!v.startsWith('/')) r.report(path, ConfigErrorCodes.BAD_URI, `pathPrefix '${v}' must start with '/'`);
      },
    }),
    failOpen: bool,
    statusOnError: str({
      check: (v, path, r) => {
        if (!/^[1-5]\d\d$/.test(v)) r.report(path, ConfigErrorCodes.OUT_OF_RANGE, `statusOnError '${v}' is not an HTTP status code`);
      },
    }),
    includeHeadersInCheck: doc(arr(headerPattern), 'enforced', 'deprecated alias of includeRequestHeadersInCheck'),
    includeRequestHeadersInCheck: arr(headerPattern),
    includeAdditionalHeadersInCheck: strMap(),
    includeRequestBodyInCheck: doc(
      obj({ maxRequestBytes: int(1), allowPartialMessage: bool, packAsBytes: bool }),
      'partly',
      'validated and compiled; the gateway does not send bodies yet (warning)',
    ),
    headersToUpstreamOnAllow: arr(headerPattern),
    headersToDownstreamOnDeny: arr(headerPattern),
    headersToDownstreamOnAllow: arr(headerPattern),
  },
  { required: ['service', 'port'] },
);

const OTHER_PROVIDERS = [
  'envoyExtAuthzGrpc', 'zipkin', 'lightstep', 'datadog', 'stackdriver', 'opencensus', 'skywalking', 'opentelemetry',
  'prometheus', 'envoyFileAccessLog', 'envoyHttpAls', 'envoyTcpAls', 'envoyOtelAls', 'sds',
];

const extensionProvider = obj(
  {
    name: str({ nonEmpty: true }),
    envoyExtAuthzHttp,
    ...Object.fromEntries(OTHER_PROVIDERS.map((k) => [k, doc({ type: 'any' }, 'warned', 'ignored') as Schema])),
  },
  {
    required: ['name'],
    oneOf: ['envoyExtAuthzHttp', ...OTHER_PROVIDERS],
    oneOfRequired: true,
    check: (p, path, r) => {
      for (const k of OTHER_PROVIDERS) {
        if (p[k] !== undefined && p[k] !== null) r.report(`${path}.${k}`, ConfigErrorCodes.NOT_IMPLEMENTED, `${k} providers are not supported yet; ignored`, 'warning');
      }
    },
  },
);

/** MeshConfig fields (istio.mesh.v1alpha1, through Istio 1.31) Portico accepts and does not act on. */
const MESH_FIELDS_NOT_READ = [
  'proxyListenPort', 'proxyInboundListenPort', 'proxyHttpPort', 'connectTimeout', 'protocolDetectionTimeout', 'tcpKeepalive',
  'ingressClass', 'ingressService', 'ingressControllerMode', 'ingressSelector', 'enableTracing', 'enableEnvoyAccessLogService',
  'disableEnvoyListenerLog', 'outboundTrafficPolicy', 'inboundTrafficPolicy', 'configSources', 'enableAutoMtls', 'trustDomainAliases',
  'caCertificates', 'defaultServiceExportTo', 'defaultVirtualServiceExportTo', 'defaultDestinationRuleExportTo', 'localityLbSetting',
  'dnsRefreshRate', 'h2UpgradePolicy', 'inboundClusterStatName', 'outboundClusterStatName', 'certificates', 'serviceSettings',
  'enablePrometheusMerge', 'verifyCertificateAtClient', 'ca', 'defaultProviders', 'discoverySelectors', 'defaultHttpRetryPolicy',
  'meshMTLS', 'tlsDefaults', 'serviceScopeConfigs', 'serviceEntryVisibility', 'thriftConfig',
];

export const meshconfigSpecSchema: Schema = obj(
  {
    extensionProviders: arr(extensionProvider, {
      check: (list, path, r) => {
        const seen = new Map<string, number>();
        list.forEach((p, i) => {
          const name = (p as { name?: unknown })?.name;
          if (typeof name !== 'string') return;
          if (seen.has(name)) r.report(`${path}[${i}].name`, ConfigErrorCodes.DUPLICATE_RESOURCE, `provider '${name}' is already defined at ${path}[${seen.get(name)}]`);
          else seen.set(name, i);
        });
      },
    }),
    defaultConfig: obj(
      { tracing: obj({ sampling: doc(num(0, 100), 'partly', 'validated, kept for tracing work') }, { unknownFields: 'warning' }) },
      { unknownFields: 'warning' },
    ),
    accessLogFile: doc(str(), 'partly', 'validated, kept for access-log work'),
    accessLogEncoding: doc(oneOfStr(['TEXT', 'JSON']), 'partly', 'validated, kept for access-log work'),
    accessLogFormat: doc(str(), 'partly', 'validated, kept for access-log work'),
    trustDomain: doc(str({ nonEmpty: true }), 'partly', 'validated, kept for mTLS work (default cluster.local)'),
    rootNamespace: str({ nonEmpty: true }),
    // Applied once to every request path, the same for routing, authorization and the authservice.
    pathNormalization: obj({ normalization: oneOfStr(['DEFAULT', ...PATH_NORMALIZATIONS]) }),
    // Valid MeshConfig fields Portico does not act on: named here so the warning says so, rather than "unknown field".
    ...Object.fromEntries(MESH_FIELDS_NOT_READ.map((k) => [k, notEnforced({ type: 'any' }, 'not read by Portico')])),
  },
  { unknownFields: 'warning' },
);
