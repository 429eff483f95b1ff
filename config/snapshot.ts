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

/** Where a resource or field came from, for error messages and `config_dump`. */
export interface SourceRef {
  readonly file: string;
  readonly line: number;
}

/** Istio StringMatch. `regex` is RE2-like and matches the whole value (anchored by the runtime). */
export type StringMatch =
  | { readonly exact: string }
  | { readonly prefix: string }
  | { readonly regex: string };

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
  /** RE2 pattern and replacement (`\1` style groups already converted to `$1`). */
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
}
