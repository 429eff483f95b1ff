/**
 * The compiled, immutable form of a Portico configuration: the only thing runtimes read.
 *
 * A Snapshot is plain JSON-serialisable data (no functions, no RegExp objects) so that it can be
 * golden-tested, pushed by the control plane over HTTP and compared cheaply by `version`.
 * Runtimes (gateway/router.ts) turn it into closures once per swap; nothing here runs per request.
 *
 * Every object in a snapshot is deep-frozen by config/compile.ts and ordered deterministically:
 * the same YAML always compiles to byte-identical JSON.
 */

import type { PathNormalization } from '../lib/path.ts';

/** Where a resource or field came from, for error messages and `config_dump`. */
export interface SourceRef {
  readonly file: string;
  readonly line: number;
}

/**
 * Istio StringMatch. `regex` is RE2-like and matches the whole value (anchored by the runtime).
 * A leading RE2 `(?i)` is stripped at compile time and recorded as `ignoreCase: true` next to
 * the pattern (JavaScript has no inline flags); absent `ignoreCase` means case-sensitive.
 */
export type StringMatch =
  | { readonly exact: string }
  | { readonly prefix: string }
  | { readonly regex: string; readonly ignoreCase?: true };

/** A header/query-param condition: a StringMatch, or presence alone (Istio's `{}`). */
export type ValueMatch = StringMatch | { readonly present: true };

export interface NamedMatch {
  /** Lower-cased for headers; exact case for query parameters. */
  readonly name: string;
  readonly match: ValueMatch;
}

/** One entry of VirtualService `http[].match[]`: fields are ANDed. */
export interface RouteMatch {
  readonly name?: string;
  readonly uri?: StringMatch;
  readonly scheme?: StringMatch;
  readonly method?: StringMatch;
  readonly authority?: StringMatch;
  readonly headers: readonly NamedMatch[];
  readonly withoutHeaders: readonly NamedMatch[];
  readonly queryParams: readonly NamedMatch[];
  readonly ignoreUriCase: boolean;
  readonly port?: number;
  /** Gateway keys (`ns/name` or `mesh`) this match is limited to; absent = the VirtualService's. */
  readonly gateways?: readonly string[];
  readonly sourceLabels?: Readonly<Record<string, string>>;
  readonly sourceNamespace?: string;
}

/** Istio Headers.HeaderOperations, names lower-cased. */
export interface HeaderOps {
  readonly set: readonly (readonly [string, string])[];
  readonly add: readonly (readonly [string, string])[];
  readonly remove: readonly string[];
}

export interface HeaderRules {
  readonly request?: HeaderOps;
  readonly response?: HeaderOps;
}

/** One weighted target of a route. `cluster` names an entry of `Snapshot.clusters`. */
export interface RouteDestination {
  readonly host: string;
  readonly subset?: string;
  readonly port?: number;
  readonly weight: number;
  readonly cluster: string;
  readonly headers?: HeaderRules;
}

export interface Rewrite {
  readonly uri?: string;
  readonly authority?: string;
  /** RE2 pattern and RE2 substitution (`\0`–`\9` groups, `\\` a backslash), as Envoy's `regex_rewrite`. */
  readonly uriRegex?: { readonly match: string; readonly rewrite: string };
}

export interface Redirect {
  readonly uri?: string;
  readonly authority?: string;
  readonly scheme?: string;
  readonly port?: number;
  /** `FROM_PROTOCOL_DEFAULT` / `FROM_REQUEST_PORT` (Istio derivePort). */
  readonly derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
  readonly redirectCode: number;
}

export interface DirectResponse {
  readonly status: number;
  readonly body?: string;
}

export interface CorsPolicy {
  readonly allowOrigins: readonly StringMatch[];
  readonly allowMethods: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number;
  readonly allowCredentials: boolean;
  /** Istio's `unmatchedPreflights`: FORWARD (default) or IGNORE. */
  readonly unmatchedPreflights: 'FORWARD' | 'IGNORE';
}

/** Envoy retry policy, already defaulted the way Istio does when the VirtualService is silent. */
export interface RetryPolicy {
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  /** Envoy retry_on tokens (`5xx`, `gateway-error`, `connect-failure`, ...). */
  readonly retryOn: readonly string[];
  /** Status codes from `retriable-status-codes` and bare numbers in retryOn. */
  readonly retriableStatusCodes: readonly number[];
  readonly retryRemoteLocalities: boolean;
}

export interface Percent {
  /** 0..100, fractional allowed. */
  readonly value: number;
}

export interface FaultInjection {
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage: number };
  readonly abort?: {
    readonly httpStatus?: number;
    readonly grpcStatus?: string;
    readonly percentage: number;
  };
}

export interface Mirror {
  readonly host: string;
  readonly subset?: string;
  readonly port?: number;
  readonly cluster: string;
  readonly percentage: number;
}

export type RouteAction =
  | {
      readonly kind: 'route';
      readonly destinations: readonly RouteDestination[];
      readonly rewrite?: Rewrite;
      readonly timeoutMs?: number;
      readonly retries: RetryPolicy;
      readonly mirrors: readonly Mirror[];
    }
  | { readonly kind: 'redirect'; readonly redirect: Redirect }
  | { readonly kind: 'direct'; readonly response: DirectResponse };

/** One VirtualService `http[]` rule, compiled. */
export interface HttpRoute {
  /** `ns/name` of the VirtualService this came from. */
  readonly virtualService: string;
  /** Index in the VirtualService's `http[]`, for hit counters and `config_dump`. */
  readonly index: number;
  readonly name?: string;
  readonly source: SourceRef;
  /** ORed; empty means "matches everything". */
  readonly match: readonly RouteMatch[];
  readonly action: RouteAction;
  readonly headers?: HeaderRules;
  readonly cors?: CorsPolicy;
  readonly fault?: FaultInjection;
  /**
   * The namespaces whose proxies see this route (VirtualService `exportTo`, `.` resolved to the
   * VirtualService's own); absent = every namespace (`*`, Istio's default).
   */
  readonly exportTo?: readonly string[];
}

/**
 * A set of domains and the routes that serve them on one listener port.
 * Domains are `exact.host`, `*.suffix` or `*` (lower-case, no port).
 */
export interface VirtualHost {
  readonly domains: readonly string[];
  readonly routes: readonly HttpRoute[];
  /**
   * Indexes into the port's `servers` whose `hosts` cover these domains. On TLS ports the runtime
   * answers 421 when the connection's SNI picked a server not in this list (HTTP/2 reuse).
   */
  readonly servers: readonly number[];
}

export type ServerProtocol = 'HTTP' | 'HTTPS' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS' | 'MONGO' | 'GRPC-WEB';

export type TlsMode =
  | 'SIMPLE'
  | 'MUTUAL'
  | 'PASSTHROUGH'
  | 'AUTO_PASSTHROUGH'
  | 'ISTIO_MUTUAL'
  | 'OPTIONAL_MUTUAL';

export interface ServerTls {
  readonly mode: TlsMode;
  readonly httpsRedirect: boolean;
  /** Absolute paths, resolved from `serverCertificate`/`privateKey` or `credentialName`. */
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly caFile?: string;
  readonly credentialName?: string;
  readonly minProtocolVersion?: string;
  readonly maxProtocolVersion?: string;
  readonly cipherSuites?: readonly string[];
  readonly subjectAltNames?: readonly string[];
}

/** One Gateway `servers[]` entry. */
export interface GatewayServer {
  readonly name?: string;
  readonly gateway: string;
  readonly source: SourceRef;
  /** Lower-case host patterns with the namespace part removed (`ns/host` → host). */
  readonly hosts: readonly string[];
  /** HTTP redirect to HTTPS for every request on this server (`tls.httpsRedirect`). */
  readonly httpsRedirect: boolean;
  readonly tls?: ServerTls;
}

/** Everything served on one port of one Gateway. */
export interface GatewayPort {
  readonly number: number;
  /** `targetPort` if set, else `number`: what the process actually binds. */
  readonly bindPort: number;
  readonly bind?: string;
  readonly protocol: ServerProtocol;
  readonly servers: readonly GatewayServer[];
  /** Sorted: exact domains before wildcards, longer wildcards first, `*` last. */
  readonly virtualHosts: readonly VirtualHost[];
  /**
   * VirtualService `tcp[]` rules bound to this port, in (VirtualService key, index) order; first
   * match wins. Present on TCP/MONGO ports and on TLS ports whose servers terminate TLS (SIMPLE,
   * MUTUAL...) — the decrypted stream is then routed like TCP.
   */
  readonly tcpRoutes?: readonly L4Route[];
  /** VirtualService `tls[]` rules for PASSTHROUGH servers on a TLS port, routed by SNI; first match wins. */
  readonly tlsRoutes?: readonly L4Route[];
}

/** One entry of VirtualService `tcp[].match[]` / `tls[].match[]`: fields are ANDed. */
export interface L4Match {
  readonly port?: number;
  /** CIDRs (`10.0.0.0/8`; a bare IP becomes `/32` or `/128`). */
  readonly destinationSubnets: readonly string[];
  /** Lower-case SNI patterns (`a.example.com`, `*.example.com`); `tls[]` only. */
  readonly sniHosts?: readonly string[];
  readonly sourceLabels?: Readonly<Record<string, string>>;
  readonly sourceNamespace?: string;
  readonly gateways?: readonly string[];
}

/** One weighted L4 target; `cluster` names an entry of `Snapshot.clusters`. */
export interface L4Destination {
  readonly host: string;
  readonly subset?: string;
  readonly port: number;
  readonly weight: number;
  readonly cluster: string;
}

/** One VirtualService `tcp[]` or `tls[]` rule, compiled. */
export interface L4Route {
  /** `ns/name` of the VirtualService. */
  readonly virtualService: string;
  /** Index in the VirtualService's `tcp[]` / `tls[]`. */
  readonly index: number;
  readonly source: SourceRef;
  /** ORed; empty means "matches every connection". */
  readonly match: readonly L4Match[];
  readonly destinations: readonly L4Destination[];
}

export interface CompiledGateway {
  /** `ns/name`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly source: SourceRef;
  readonly selector: Readonly<Record<string, string>>;
  readonly ports: readonly GatewayPort[];
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly weight: number;
  readonly network?: string;
  readonly locality?: string;
  readonly serviceAccount?: string;
  /** `ns/name` of the WorkloadEntry this came from, if any. */
  readonly workload?: string;
}

export type LoadBalancerPolicy =
  | { readonly simple: 'ROUND_ROBIN' | 'RANDOM' | 'LEAST_REQUEST' | 'PASSTHROUGH' | 'UNSPECIFIED' | 'LEAST_CONN' }
  | {
      readonly consistentHash: {
        readonly httpHeaderName?: string;
        readonly httpCookie?: { readonly name: string; readonly path?: string; readonly ttlMs?: number };
        readonly useSourceIp?: boolean;
        readonly httpQueryParameterName?: string;
        readonly minimumRingSize?: number;
      };
    };

export interface ConnectionPool {
  readonly tcp?: {
    readonly maxConnections?: number;
    readonly connectTimeoutMs?: number;
    readonly tcpKeepalive?: { readonly probes?: number; readonly timeMs?: number; readonly intervalMs?: number };
  };
  readonly http?: {
    readonly http1MaxPendingRequests?: number;
    readonly http2MaxRequests?: number;
    readonly maxRequestsPerConnection?: number;
    readonly maxRetries?: number;
    readonly idleTimeoutMs?: number;
    readonly h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
  };
}

export interface OutlierDetection {
  readonly consecutive5xxErrors?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  readonly minHealthPercent: number;
}

/** DestinationRule `trafficPolicy.tls` (client side). */
export interface ClientTls {
  readonly mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  readonly sni?: string;
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly credentialName?: string;
  readonly subjectAltNames?: readonly string[];
  readonly insecureSkipVerify: boolean;
}

/** The effective traffic policy of one cluster: top level, then subset, then port level merged. */
export interface TrafficPolicy {
  readonly loadBalancer?: LoadBalancerPolicy;
  readonly connectionPool?: ConnectionPool;
  readonly outlierDetection?: OutlierDetection;
  readonly tls?: ClientTls;
}

/**
 * An upstream cluster, named the Envoy way: `outbound|<port>|<subset>|<host>`.
 * One exists for every (host, port, subset) some route or mirror references.
 */
export interface Cluster {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly subset?: string;
  /** STATIC: connect to endpoint addresses; DNS: resolve `address` (or the host) per connection. */
  readonly resolution: 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'NONE';
  /** Port protocol from the registry (HTTP, HTTP2, GRPC, HTTPS, TCP, TLS...). */
  readonly protocol: string;
  readonly endpoints: readonly Endpoint[];
  readonly trafficPolicy: TrafficPolicy;
  /** `ns/name` of the ServiceEntry that defines the host, absent for plain DNS names. */
  readonly serviceEntry?: string;
  readonly meshExternal: boolean;
}

/** A registry host as ServiceEntry (+ WorkloadEntry) define it. */
export interface Service {
  readonly host: string;
  readonly namespace: string;
  readonly ports: readonly { readonly number: number; readonly name: string; readonly protocol: string; readonly targetPort?: number }[];
  readonly resolution: 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'NONE';
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  readonly endpoints: readonly Endpoint[];
  readonly serviceEntry: string;
}

/** A WorkloadEntry, kept whole for sidecars (`--workload NAME`) and workload certificates. */
export interface Workload {
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ports: Readonly<Record<string, number>>;
  readonly serviceAccount?: string;
  readonly network?: string;
  readonly locality?: string;
  readonly weight: number;
}

// ---------------------------------------------------------------------------------------------
// Policy: ext_authz, security policies, local rate limits.
// ---------------------------------------------------------------------------------------------

/**
 * Envoy's StringMatcher (envoy.type.matcher.v3.StringMatcher) as used by ext_authz header lists:
 * exactly one of exact/prefix/suffix/contains/regex. `regex` is a full match; a leading RE2
 * `(?i)` has been stripped into `ignoreCase`. Header names are compared case-insensitively by
 * the runtime anyway; `ignoreCase` matters for values and for explicit Envoy configs.
 */
export type StringMatcher =
  | { readonly exact: string; readonly ignoreCase: boolean }
  | { readonly prefix: string; readonly ignoreCase: boolean }
  | { readonly suffix: string; readonly ignoreCase: boolean }
  | { readonly contains: string; readonly ignoreCase: boolean }
  | { readonly regex: string; readonly ignoreCase: boolean };

/**
 * Istio's policy string pattern (AuthorizationPolicy paths/hosts/principals/…): `*` matches
 * anything non-empty, `abc*` is a prefix, `*abc` a suffix, anything else exact.
 */
export type StringPattern =
  | { readonly exact: string }
  /**
   * An AuthorizationPolicy path template (Istio 1.22+): segments of the path, `{*}` matching one
   * non-empty segment, a final `{**}` matching whatever follows (zero or more segments).
   */
  | { readonly template: readonly string[] }
  | { readonly prefix: string }
  | { readonly suffix: string }
  | { readonly presence: true };

/**
 * Where a policy or EnvoyFilter patch applies. `namespace` is the resource's; `meshWide` is true
 * when it lives in the root namespace (MeshConfig `rootNamespace`, default `istio-system`) and
 * has no selector restriction by namespace. An empty `selector` selects every workload in scope.
 */
export interface PolicyTarget {
  readonly namespace: string;
  readonly meshWide: boolean;
  readonly selector: Readonly<Record<string, string>>;
  /** Kubernetes Gateway API style `targetRef(s)`; recorded, not resolved (warned at validation). */
  readonly targetRefs?: readonly { readonly kind: string; readonly group?: string; readonly name: string; readonly namespace?: string }[];
}

/** EnvoyFilter `match.context`: which proxies a patch applies to. */
export type ProxyContext = 'ANY' | 'GATEWAY' | 'SIDECAR_INBOUND' | 'SIDECAR_OUTBOUND' | 'WAYPOINT';

/** AuthorizationPolicy `rules[].to[].operation`, compiled. Empty lists mean "no condition". */
export interface OperationMatch {
  readonly paths: readonly StringPattern[];
  readonly notPaths: readonly StringPattern[];
  /** Compared case-insensitively with the request authority (port stripped) by Istio. */
  readonly hosts: readonly StringPattern[];
  readonly notHosts: readonly StringPattern[];
  readonly methods: readonly StringPattern[];
  readonly notMethods: readonly StringPattern[];
  readonly ports: readonly number[];
  readonly notPorts: readonly number[];
}

/** AuthorizationPolicy `rules[].from[].source`, compiled. IP lists are CIDRs (bare IPs get /32 or /128). */
export interface SourceMatch {
  readonly principals: readonly StringPattern[];
  readonly notPrincipals: readonly StringPattern[];
  readonly requestPrincipals: readonly StringPattern[];
  readonly notRequestPrincipals: readonly StringPattern[];
  readonly namespaces: readonly StringPattern[];
  readonly notNamespaces: readonly StringPattern[];
  readonly ipBlocks: readonly string[];
  readonly notIpBlocks: readonly string[];
  readonly remoteIpBlocks: readonly string[];
  readonly notRemoteIpBlocks: readonly string[];
}

/**
 * AuthorizationPolicy `rules[].when[]`. `type` tells the runtime how to compare: `pattern`
 * (Istio string pattern on the value), `ip` (values are CIDRs) or `port` (integers as strings).
 * `header` is set for `request.headers[NAME]` (lower-cased); `claim` is the path of
 * `request.auth.claims[a][b]` (`['a', 'b']`).
 */
export interface Condition {
  readonly key: string;
  readonly type: 'pattern' | 'ip' | 'port';
  readonly header?: string;
  readonly claim?: readonly string[];
  readonly values: readonly StringPattern[];
  readonly notValues: readonly StringPattern[];
  /** Raw values for `ip`/`port` conditions (CIDRs normalised). */
  readonly rawValues: readonly string[];
  readonly rawNotValues: readonly string[];
}

/**
 * One rule: matches when any `from` matches (or `from` is empty) AND any `to` matches (or `to`
 * is empty) AND every `when` holds.
 */
export interface AuthzRule {
  readonly from: readonly SourceMatch[];
  readonly to: readonly OperationMatch[];
  readonly when: readonly Condition[];
}

export interface AuthzPolicy extends PolicyTarget {
  /** `ns/name`. */
  readonly key: string;
  readonly name: string;
  readonly source: SourceRef;
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  /** CUSTOM only: the MeshConfig extension provider name. */
  readonly provider?: string;
  /** The policy matches a request when any rule matches; an empty list never matches (Istio). */
  readonly rules: readonly AuthzRule[];
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE' | 'UNSET';

export interface PeerAuthn extends PolicyTarget {
  readonly key: string;
  readonly name: string;
  readonly source: SourceRef;
  /** UNSET inherits from the parent (namespace, then mesh; mesh default PERMISSIVE). */
  readonly mode: MtlsMode;
  /** Port-level overrides, sorted by port. Istio honours them only with a selector. */
  readonly portLevelMtls: readonly { readonly port: number; readonly mode: MtlsMode }[];
}

export interface JwtRule {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksUri?: string;
  /** Inline JWKS JSON as written. */
  readonly jwks?: string;
  /** Header names lower-cased. Istio's default (Authorization `Bearer `) is filled in when no location is given. */
  readonly fromHeaders: readonly { readonly name: string; readonly prefix: string }[];
  /** Default `access_token` when no location is given. */
  readonly fromParams: readonly string[];
  readonly fromCookies: readonly string[];
  readonly outputPayloadToHeader?: string;
  readonly forwardOriginalToken: boolean;
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  readonly timeoutMs?: number;
}

export interface RequestAuthn extends PolicyTarget {
  readonly key: string;
  readonly name: string;
  readonly source: SourceRef;
  readonly jwtRules: readonly JwtRule[];
}

/**
 * Security policies, sorted by (namespace, name). A runtime selects those whose target matches
 * its workload: `meshWide` ones, plus those in its namespace whose `selector` its labels satisfy.
 */
export interface SecurityPolicies {
  /** MeshConfig `rootNamespace` (default `istio-system`). */
  readonly rootNamespace: string;
  readonly peerAuthentications: readonly PeerAuthn[];
  readonly authorizationPolicies: readonly AuthzPolicy[];
  readonly requestAuthentications: readonly RequestAuthn[];
}

/**
 * When an ext_authz filter is consulted. EnvoyFilter-inserted filters check every request;
 * CUSTOM AuthorizationPolicies check only requests matching one of their rules.
 */
export type ExtAuthzScope =
  | { readonly kind: 'all' }
  | { readonly kind: 'rules'; readonly rules: readonly AuthzRule[] };

/**
 * One Envoy HTTP ext_authz filter, from an EnvoyFilter `envoy.filters.http.ext_authz` patch or
 * from a CUSTOM AuthorizationPolicy + MeshConfig `extensionProviders[].envoyExtAuthzHttp`.
 * Semantics follow Envoy's ext_authz HTTP service:
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto
 */
export interface ExtAuthzFilter extends PolicyTarget {
  /** `EnvoyFilter/ns/name/configPatches[i]` or `AuthorizationPolicy/ns/name`. Unique, stable. */
  readonly id: string;
  readonly origin: 'EnvoyFilter' | 'AuthorizationPolicy';
  readonly source: SourceRef;
  readonly context: ProxyContext;
  /** MeshConfig extension provider name (policy form only). */
  readonly provider?: string;
  /** The authorization server. `cluster` names an entry of `Snapshot.clusters`. */
  readonly server: {
    readonly cluster: string;
    readonly host: string;
    readonly port: number;
    readonly scheme: 'http' | 'https';
  };
  /** Check request timeout. Envoy form: `server_uri.timeout`, default 200 ms; Istio form: `timeout`, default 10 min. */
  readonly timeoutMs: number;
  /** Prepended to the original request path in the check request (Envoy ignores the path of `server_uri.uri`). */
  readonly pathPrefix: string;
  /**
   * Client request headers copied into the check request. Envoy always adds Host, Method, Path,
   * Content-Length and Authorization besides these. Empty = only those.
   */
  readonly allowedRequestHeaders: readonly StringMatcher[];
  /** Extra headers set on the check request (`headers_to_add` / `includeAdditionalHeadersInCheck`), names lower-cased. */
  readonly headersToAdd: readonly (readonly [string, string])[];
  /** Authz response headers copied to the upstream request on OK (overwriting). Empty = none. */
  readonly allowedUpstreamHeaders: readonly StringMatcher[];
  /**
   * Authz response headers returned to the client on deny. Absent = Envoy's default: all except
   * Host; when present, Path, Status, Content-Length, WWW-Authenticate and Location are implied.
   */
  readonly allowedClientHeaders?: readonly StringMatcher[];
  /** Authz response headers added to the client response on OK. Empty = none. */
  readonly allowedClientHeadersOnSuccess: readonly StringMatcher[];
  /** Let the request through when the authz server cannot be reached or errors (Envoy default false). */
  readonly failureModeAllow: boolean;
  /** Status returned when the authz server fails and failureModeAllow is false (Envoy default 403). */
  readonly statusOnError: number;
  /** Buffer and send the request body (parsed but not supported by the runtime yet; warned). */
  readonly withRequestBody?: { readonly maxRequestBytes: number; readonly allowPartialMessage: boolean };
  readonly applyTo: ExtAuthzScope;
}

/** Envoy FractionalPercent as a percentage 0..100. */
export type Percentage = number;

/**
 * One Envoy HTTP local rate limit (`envoy.filters.http.local_ratelimit`) from an EnvoyFilter.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/local_rate_limit_filter
 * A `listener` entry without `tokenBucket` only enables the filter; the buckets then come from
 * `vhost`/`route` entries (typed_per_filter_config), as in Istio's rate-limit task.
 */
export interface LocalRateLimit extends PolicyTarget {
  /** `EnvoyFilter/ns/name/configPatches[i]`. */
  readonly id: string;
  readonly source: SourceRef;
  readonly context: ProxyContext;
  readonly scope:
    | { readonly kind: 'listener'; readonly portNumber?: number }
    | { readonly kind: 'vhost'; readonly vhost?: string; readonly portNumber?: number }
    | {
        readonly kind: 'route';
        readonly vhost?: string;
        /** Envoy route name; absent = every route of the vhost (route `action: ANY`). */
        readonly route?: string;
        readonly portNumber?: number;
      };
  readonly statPrefix: string;
  readonly tokenBucket?: { readonly maxTokens: number; readonly tokensPerFill: number; readonly fillIntervalMs: number };
  /** Share of requests the filter checks; Envoy default 0 when unset ("for safety"). */
  readonly filterEnabled: Percentage;
  /** Share of over-limit requests actually rejected with 429; Envoy default 0 when unset. */
  readonly filterEnforced: Percentage;
  /** Added to rate-limited (429) responses; names lower-cased. */
  readonly responseHeadersToAdd: readonly { readonly name: string; readonly value: string; readonly append: boolean }[];
}

/** MeshConfig settings that proxies read directly. */
export interface MeshSettings {
  /** SPIFFE trust domain (default `cluster.local`). */
  readonly trustDomain: string;
  /** `defaultConfig.tracing.sampling`, percent 0..100; absent = the proxy's default. */
  readonly tracingSampling?: number;
  /** `accessLogFile` (`/dev/stdout` or a path); absent = access logs off. */
  readonly accessLogFile?: string;
  readonly accessLogEncoding?: 'TEXT' | 'JSON';
  readonly accessLogFormat?: string;
  /**
   * MeshConfig `pathNormalization.normalization`, applied once per request by every proxy (and by
   * the authservice, which must be given the same mode); absent = Istio's default, BASE.
   */
  readonly pathNormalization?: PathNormalization;
}

export interface Snapshot {
  /** Content hash of the compiled form: equal versions mean equal snapshots. */
  readonly version: string;
  readonly gateways: readonly CompiledGateway[];
  readonly clusters: readonly Cluster[];
  readonly services: readonly Service[];
  readonly workloads: readonly Workload[];
  /** VirtualHosts bound to the reserved gateway `mesh`, for sidecars' outbound listener. */
  readonly mesh: { readonly virtualHosts: readonly VirtualHost[] };
  /** Files the snapshot read besides YAML (certificates), so the runtime can watch them. */
  readonly files: readonly string[];
  /**
   * ext_authz filters in evaluation order: EnvoyFilter ones first (namespace, name, patch index),
   * then CUSTOM policies (namespace, name). A runtime keeps those whose target and context match it.
   */
  readonly extAuthz: readonly ExtAuthzFilter[];
  readonly security: SecurityPolicies;
  /** Sorted by id. */
  readonly localRateLimits: readonly LocalRateLimit[];
  readonly meshConfig: MeshSettings;
  /** WasmPlugins and EnvoyFilter Wasm patches, in chain order within each phase; absent when none. */
  readonly wasmPlugins?: readonly WasmPluginConfig[];
}

/** WasmPlugin `phase`: where in the filter chain the plugin runs (UNSPECIFIED: just before the router). */
export type WasmPhase = 'AUTHN' | 'AUTHZ' | 'STATS' | 'UNSPECIFIED';

/** A compiled WasmPlugin (or EnvoyFilter `envoy.filters.http.wasm` patch); see config/kinds/wasmplugin.ts. */
export interface WasmPluginConfig extends PolicyTarget {
  /** `WasmPlugin/ns/name` or `EnvoyFilter/ns/name/configPatches[i]`. */
  readonly id: string;
  readonly name: string;
  readonly source: SourceRef;
  /** `file:///abs/path`, `https://...` or `oci://registry/repo[:tag|@digest]`. */
  readonly url: string;
  /** Hex digest: of the module bytes (file, https) or of the image manifest (oci). */
  readonly sha256?: string;
  readonly imagePullPolicy: 'IfNotPresent' | 'Always';
  /** Secret name (a `.dockerconfigjson` folder under --secrets-dir off Kubernetes). */
  readonly imagePullSecret?: string;
  /**
   * The `.dockerconfigjson` file to use instead of looking `imagePullSecret` up: set only by a
   * gateway fed by the control plane, on its local copy (controlplane/credential-files.ts).
   */
  readonly imagePullSecretFile?: string;
  /** Passed to proxy_on_configure as the plugin configuration (JSON). */
  readonly pluginConfig: string;
  /** The root id. */
  readonly pluginName: string;
  readonly vmId: string;
  readonly phase: WasmPhase;
  readonly priority: number;
  readonly failStrategy: 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
  readonly env: readonly { readonly name: string; readonly valueFrom: 'INLINE' | 'HOST'; readonly value: string }[];
  /** Empty: every traffic. Else any entry matching (mode and, when listed, the listener port). */
  readonly match: readonly { readonly mode: 'UNDEFINED' | 'CLIENT' | 'SERVER' | 'CLIENT_AND_SERVER'; readonly ports: readonly number[] }[];
  /** EnvoyFilter `match.context` (`ANY` for WasmPlugins). */
  readonly context: ProxyContext;
}
