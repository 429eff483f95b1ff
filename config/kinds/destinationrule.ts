/** networking.istio.io DestinationRule: https://istio.io/latest/docs/reference/config/networking/destination-rule/ */
import { arr, bool, duration, int, obj, oneOfStr, portSelector, str, type Schema } from '../schema.ts';
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

const loadBalancer = obj(
  {
    simple: oneOfStr(LB_SIMPLE),
    consistentHash: obj(
      {
        httpHeaderName: str({ nonEmpty: true }),
        httpCookie: obj({ name: str({ nonEmpty: true }), path: str(), ttl: duration() }, { required: ['name'] }),
        useSourceIp: bool,
        httpQueryParameterName: str({ nonEmpty: true }),
        minimumRingSize: int(1),
      },
      { oneOf: ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'], oneOfRequired: true },
    ),
    localityLbSetting: { type: 'any' },
    warmupDurationSecs: duration(),
  },
  { oneOf: ['simple', 'consistentHash'] },
);

const connectionPool = obj({
  tcp: obj({
    maxConnections: int(1),
    connectTimeout: duration(1),
    tcpKeepalive: obj({ probes: int(1), time: duration(1), interval: duration(1) }),
    maxConnectionDuration: duration(),
    idleTimeout: duration(),
  }),
  http: obj({
    http1MaxPendingRequests: int(1),
    http2MaxRequests: int(1),
    maxRequestsPerConnection: int(0),
    maxRetries: int(0),
    idleTimeout: duration(1),
    h2UpgradePolicy: oneOfStr(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']),
    useClientProtocol: bool,
    maxConcurrentStreams: int(1),
  }),
});

const outlierDetection = obj({
  consecutive5xxErrors: int(0),
  consecutiveGatewayErrors: int(0),
  consecutiveErrors: int(0),
  splitExternalLocalOriginErrors: bool,
  consecutiveLocalOriginFailures: int(0),
  interval: duration(1),
  baseEjectionTime: duration(1),
  maxEjectionPercent: int(0, 100),
  minHealthPercent: int(0, 100),
});

export const clientTlsSchema = obj({
  mode: oneOfStr(CLIENT_TLS_MODES),
  clientCertificate: str({ nonEmpty: true }),
  privateKey: str({ nonEmpty: true }),
  caCertificates: str({ nonEmpty: true }),
  credentialName: str({ nonEmpty: true }),
  subjectAltNames: arr(str()),
  sni: str(),
  insecureSkipVerify: bool,
  caCrl: str(),
});

const policyFields = { loadBalancer, connectionPool, outlierDetection, tls: clientTlsSchema };
const portPolicy = obj({ port: portSelector, ...policyFields }, { required: ['port'] });
export const trafficPolicySchema: Schema = obj({
  ...policyFields,
  portLevelSettings: arr(portPolicy),
  tunnel: { type: 'any' },
  proxyProtocol: { type: 'any' },
});

export const destinationRuleSpecSchema = obj(
  {
    host: hostString,
    trafficPolicy: trafficPolicySchema,
    subsets: arr(obj({ name: str({ nonEmpty: true }), labels, trafficPolicy: trafficPolicySchema }, { required: ['name'] })),
    exportTo,
    workloadSelector,
  },
  { required: ['host'] },
);
