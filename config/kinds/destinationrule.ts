/** networking.istio.io DestinationRule: https://istio.io/latest/docs/reference/config/networking/destination-rule/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, bool, childPath, doc, duration, int, isPlainObject, notEnforced, num, obj, oneOfStr, portSelector, str, strMap, type Reporter, type Schema } from '../schema.ts';
import { exportTo, hostString, labels, workloadSelector } from './common.ts';

export const LB_SIMPLE = ['UNSPECIFIED', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN'] as const;
export const CLIENT_TLS_MODES = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const;

export interface RawLoadBalancer {
  simple?: (typeof LB_SIMPLE)[number];
  consistentHash?: {
    httpHeaderName?: string;
    httpCookie?: { name: string; path?: string; ttl?: string };
    useSourceIp?: boolean;
    httpQueryParameterName?: string;
    minimumRingSize?: number;
    ringHash?: { minimumRingSize?: number };
    maglev?: { tableSize?: number };
  };
}

export interface RawConnectionPool {
  tcp?: { maxConnections?: number; connectTimeout?: string; tcpKeepalive?: { probes?: number; time?: string; interval?: string } };
  http?: {
    http1MaxPendingRequests?: number;
    http2MaxRequests?: number;
    maxRequestsPerConnection?: number;
    maxRetries?: number;
    idleTimeout?: string;
    h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
  };
}

export interface RawOutlierDetection {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  interval?: string;
  baseEjectionTime?: string;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

export interface RawClientTls {
  mode?: (typeof CLIENT_TLS_MODES)[number];
  clientCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  credentialName?: string;
  subjectAltNames?: string[];
  sni?: string;
  insecureSkipVerify?: boolean;
}

export interface RawPortTrafficPolicy {
  port?: { number: number };
  loadBalancer?: RawLoadBalancer;
  connectionPool?: RawConnectionPool;
  outlierDetection?: RawOutlierDetection;
  tls?: RawClientTls;
}

export interface RawTrafficPolicy extends Omit<RawPortTrafficPolicy, 'port'> {
  portLevelSettings?: RawPortTrafficPolicy[];
}

export interface DestinationRuleSpec {
  host: string;
  trafficPolicy?: RawTrafficPolicy;
  subsets?: { name: string; labels?: Record<string, string>; trafficPolicy?: RawTrafficPolicy }[];
  exportTo?: string[];
  workloadSelector?: { labels?: Record<string, string> };
}

/** Envoy's isPrime, as Istio copies it for the Maglev table size check. */
function isPrime(x: number): boolean {
  if (x !== 0 && x < 4) return true;
  if (x % 2 === 0) return false;
  for (let f = 3; f * f <= x; f += 2) if (x % f === 0) return false;
  return true;
}

const localityLbSetting = obj({
  distribute: arr(obj({ from: str(), to: strMap(int(0)) })),
  failover: arr(obj({ from: str(), to: str() })),
  failoverPriority: arr(str()),
  enabled: bool,
});

const loadBalancer = obj(
  {
    simple: oneOfStr(LB_SIMPLE),
    consistentHash: obj(
      {
        httpHeaderName: str({ nonEmpty: true }),
        httpCookie: obj(
          {
            name: str({ nonEmpty: true }),
            path: str(),
            ttl: duration(),
            attributes: notEnforced(arr(obj({ name: str({ nonEmpty: true }), value: str() }, { required: ['name'] })), 'cookie attributes'),
          },
          { required: ['name'] },
        ),
        useSourceIp: bool,
        httpQueryParameterName: str({ nonEmpty: true }),
        ringHash: obj({ minimumRingSize: int(0) }),
        maglev: notEnforced(
          obj({
            tableSize: int(1, 5000010, (v, path, r) => {
              if (!isPrime(v)) r.report(path, ConfigErrorCodes.OUT_OF_RANGE, `tableSize ${v} must be a prime number for maglev`);
            }),
          }),
          'hashed with a ring, not Maglev',
        ),
        minimumRingSize: int(1),
      },
      {
        oneOf: ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'],
        oneOfRequired: true,
        check: (h, path, r) => {
          if (h.minimumRingSize !== undefined && (h.ringHash !== undefined || h.maglev !== undefined)) {
            r.report(childPath(path, 'minimumRingSize'), ConfigErrorCodes.ONE_OF, 'only one of minimumRingSize or ringHash/maglev can be specified');
          } else if (h.ringHash !== undefined && h.maglev !== undefined) {
            r.report(childPath(path, 'maglev'), ConfigErrorCodes.ONE_OF, 'only one of ringHash or maglev can be specified');
          }
        },
      },
    ),
    localityLbSetting: notEnforced(localityLbSetting, 'endpoints are not weighted or failed over by locality'),
    warmupDurationSecs: notEnforced(duration(), 'deprecated: use warmup; no slow start'),
    warmup: notEnforced(obj({ duration: duration(1), minimumPercent: num(0, 100), aggression: num(1) }, { required: ['duration'] }), 'no slow start'),
  },
  { oneOf: ['simple', 'consistentHash'] },
);

const connectionPool = obj(
  {
    tcp: obj({
      maxConnections: int(0),
      connectTimeout: duration(1),
      tcpKeepalive: obj({ probes: int(0), time: duration(1), interval: duration(1) }),
      maxConnectionDuration: notEnforced(duration(1), 'connections are not closed by age'),
      idleTimeout: notEnforced(duration(), 'TCP proxy connections have no idle timeout'),
    }),
    http: obj(
      {
        http1MaxPendingRequests: int(0),
        http2MaxRequests: int(0),
        maxRequestsPerConnection: int(0),
        maxRetries: int(0),
        idleTimeout: duration(1),
        h2UpgradePolicy: oneOfStr(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']),
        useClientProtocol: notEnforced(bool, 'the upstream protocol comes from the port protocol'),
        maxConcurrentStreams: notEnforced(int(0), 'HTTP/2 upstream streams are not capped per connection'),
        http2KeepAlive: notEnforced(obj({ interval: duration(1), timeout: duration(1) }), 'no HTTP/2 PING on upstream connections'),
      },
      {
        check: (h, path, r) => {
          if (h.h2UpgradePolicy === 'UPGRADE' && h.useClientProtocol === true) {
            r.report(childPath(path, 'useClientProtocol'), ConfigErrorCodes.ONE_OF, 'use client protocol must not be true when h2UpgradePolicy is UPGRADE');
          }
        },
      },
    ),
  },
  {
    check: (cp, path, r) => {
      if (cp.tcp == null && cp.http == null) r.report(path, ConfigErrorCodes.REQUIRED, 'connection pool must have at least one field');
    },
  },
);

const outlierDetection = obj(
  {
    consecutive5xxErrors: int(0),
    consecutiveGatewayErrors: int(0),
    consecutiveErrors: notEnforced(int(0), 'deprecated: use consecutiveGatewayErrors or consecutive5xxErrors'),
    splitExternalLocalOriginErrors: notEnforced(bool, 'local-origin failures are not counted apart'),
    consecutiveLocalOriginFailures: notEnforced(int(0), 'local-origin failures are not counted apart'),
    interval: duration(1),
    baseEjectionTime: duration(1),
    maxEjectionPercent: int(0, 100),
    minHealthPercent: int(0, 100),
  },
  {
    check: (od, path, r) => {
      // Istio: validateOutlierDetection (pkg/config/validation/validation.go).
      if (od.splitExternalLocalOriginErrors !== true && typeof od.consecutiveLocalOriginFailures === 'number' && od.consecutiveLocalOriginFailures > 0) {
        r.report(
          childPath(path, 'consecutiveLocalOriginFailures'),
          ConfigErrorCodes.ONE_OF,
          'consecutiveLocalOriginFailures is specified, but splitExternalLocalOriginErrors is not true',
        );
      }
    },
  },
);

export const clientTlsSchema = obj({
  mode: doc(oneOfStr(CLIENT_TLS_MODES), 'partly', 'ISTIO_MUTUAL (with a mesh identity) and DISABLE; SIMPLE/MUTUAL origination is not implemented: a warning says the upstream gets plaintext'),
  clientCertificate: str({ nonEmpty: true }),
  privateKey: str({ nonEmpty: true }),
  caCertificates: str({ nonEmpty: true }),
  credentialName: str({ nonEmpty: true }),
  subjectAltNames: arr(str()),
  sni: str(),
  insecureSkipVerify: bool,
  caCrl: notEnforced(str(), 'server certificates are not checked against a CRL'),
});

/** A traffic policy must say something (Istio: "traffic policy must have at least one field"). */
function nonEmptyPolicy(fields: readonly string[], what: string) {
  return (p: Record<string, unknown>, path: string, r: Reporter): void => {
    if (fields.every((k) => p[k] === undefined || p[k] === null)) r.report(path, ConfigErrorCodes.REQUIRED, `${what} must have at least one field`);
  };
}

const policyFields = { loadBalancer, connectionPool, outlierDetection, tls: clientTlsSchema };
const portPolicy = obj(
  { port: portSelector, ...policyFields },
  { required: ['port'], check: nonEmptyPolicy(['loadBalancer', 'connectionPool', 'outlierDetection', 'tls'], 'port traffic policy') },
);
export const trafficPolicySchema: Schema = obj(
  {
    ...policyFields,
    portLevelSettings: arr(portPolicy),
    tunnel: notEnforced(
      obj({ protocol: oneOfStr(['CONNECT', 'POST']), targetHost: str({ nonEmpty: true }), targetPort: int(1, 65535) }, { required: ['targetHost', 'targetPort'] }),
      'no HTTP CONNECT/POST tunnelling to upstreams',
    ),
    proxyProtocol: notEnforced(obj({ version: oneOfStr(['V1', 'V2']) }), 'no PROXY protocol header to upstreams'),
    retryBudget: notEnforced(obj({ percent: obj({ value: num(0, 100) }), minRetryConcurrency: int(0), budgetInterval: duration() }), 'retries are capped by maxRetries only'),
  },
  {
    check: (p, path, r) => {
      nonEmptyPolicy(['loadBalancer', 'connectionPool', 'outlierDetection', 'tls', 'portLevelSettings', 'tunnel', 'proxyProtocol', 'retryBudget'], 'traffic policy')(p, path, r);
      if (p.tunnel != null && p.proxyProtocol != null) r.report(childPath(path, 'proxyProtocol'), ConfigErrorCodes.ONE_OF, 'tunnel and proxyProtocol must not be set together');
    },
  },
);

export const destinationRuleSpecSchema = obj(
  {
    host: hostString,
    trafficPolicy: trafficPolicySchema,
    subsets: arr(obj({ name: str({ nonEmpty: true }), labels, trafficPolicy: trafficPolicySchema }, { required: ['name'] }), {
      check: (list, path, r) => {
        const seen = new Map<string, number>();
        list.forEach((s, i) => {
          const name = isPlainObject(s) ? s.name : undefined;
          if (typeof name !== 'string') return;
          const first = seen.get(name);
          if (first !== undefined) r.report(childPath(childPath(path, i), 'name'), ConfigErrorCodes.DUPLICATE_NAME, `duplicate subset name '${name}' (first at ${path}[${first}])`);
          else seen.set(name, i);
        });
      },
    }),
    exportTo: notEnforced(exportTo, 'the rule is visible in every namespace'),
    workloadSelector: notEnforced(workloadSelector, 'the rule applies to every client, not only the selected workloads'),
  },
  {
    required: ['host'],
    check: (dr, path, r) => {
      if (dr.host === '*') r.report(childPath(path, 'host'), ConfigErrorCodes.BAD_HOST, "host '*' is not allowed in a DestinationRule");
    },
  },
);
