/** networking.istio.io VirtualService: https://istio.io/latest/docs/reference/config/networking/virtual-service/ */
import { ConfigErrorCodes } from '../errors.ts';
import {
  arr, bool, childPath, duration, int, isPlainObject, obj, oneOfStr, percentObj, portSelector, str, strMap, type Reporter, type Schema,
} from '../schema.ts';
import { exportTo, hostString, labels, regexRewriteCheck, regexString, stringMatch, valueMatch, type RawStringMatch } from './common.ts';

export interface RawDestination {
  host: string;
  subset?: string;
  port?: { number: number };
}

export interface RawHeaderOps {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

export interface RawHeaders {
  request?: RawHeaderOps;
  response?: RawHeaderOps;
}

export interface RawHttpMatch {
  name?: string;
  uri?: RawStringMatch;
  scheme?: RawStringMatch;
  method?: RawStringMatch;
  authority?: RawStringMatch;
  headers?: Record<string, RawStringMatch | null>;
  withoutHeaders?: Record<string, RawStringMatch | null>;
  queryParams?: Record<string, RawStringMatch | null>;
  ignoreUriCase?: boolean;
  port?: number;
  gateways?: string[];
  sourceLabels?: Record<string, string>;
  sourceNamespace?: string;
}

export interface RawHttpRouteDestination {
  destination: RawDestination;
  weight?: number;
  headers?: RawHeaders;
}

export interface RawHttpRoute {
  name?: string;
  match?: RawHttpMatch[];
  route?: RawHttpRouteDestination[];
  redirect?: {
    uri?: string;
    authority?: string;
    port?: number;
    derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
    scheme?: string;
    redirectCode?: number;
  };
  directResponse?: { status: number; body?: { string?: string; bytes?: string } };
  delegate?: { name?: string; namespace?: string };
  rewrite?: { uri?: string; authority?: string; uriRegexRewrite?: { match: string; rewrite: string } };
  timeout?: string;
  retries?: { attempts?: number; perTryTimeout?: string; retryOn?: string; retryRemoteLocalities?: boolean };
  fault?: {
    delay?: { fixedDelay?: string; percentage?: { value: number }; percent?: number };
    abort?: { httpStatus?: number; grpcStatus?: string; percentage?: { value: number } };
  };
  mirror?: RawDestination;
  mirrorPercentage?: { value: number };
  mirrors?: { destination: RawDestination; percentage?: { value: number } }[];
  corsPolicy?: {
    allowOrigins?: RawStringMatch[];
    allowOrigin?: string[];
    allowMethods?: string[];
    allowHeaders?: string[];
    exposeHeaders?: string[];
    maxAge?: string;
    allowCredentials?: boolean;
    unmatchedPreflights?: 'UNSPECIFIED' | 'FORWARD' | 'IGNORE';
  };
  headers?: RawHeaders;
}

export interface RawL4Match {
  destinationSubnets?: string[];
  port?: number;
  sourceLabels?: Record<string, string>;
  gateways?: string[];
  sourceNamespace?: string;
  sniHosts?: string[];
}

export interface RawRouteDestination {
  destination: RawDestination;
  weight?: number;
}

export interface VirtualServiceSpec {
  hosts?: string[];
  gateways?: string[];
  exportTo?: string[];
  http?: RawHttpRoute[];
  tcp?: { match?: RawL4Match[]; route?: RawRouteDestination[] }[];
  tls?: { match: RawL4Match[]; route?: RawRouteDestination[] }[];
}

export const destinationSchema = obj({ host: hostString, subset: str({ nonEmpty: true }), port: portSelector }, { required: ['host'] });

const headerOps = obj({ set: strMap(), add: strMap(), remove: arr(str()) });
const headersSchema = obj({ request: headerOps, response: headerOps });

const httpMatch = obj({
  name: str(),
  uri: stringMatch,
  scheme: stringMatch,
  method: stringMatch,
  authority: stringMatch,
  headers: { type: 'map', values: valueMatch },
  withoutHeaders: { type: 'map', values: valueMatch },
  queryParams: { type: 'map', values: valueMatch },
  ignoreUriCase: bool,
  port: int(1, 65535),
  gateways: arr(str({ nonEmpty: true })),
  sourceLabels: labels,
  sourceNamespace: str(),
  statPrefix: str(),
});

const GRPC_STATUS = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE',
  'DATA_LOSS', 'UNAUTHENTICATED',
];

export const RETRY_ON_TOKENS = [
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx', 'refused-stream',
  'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure', 'cancelled', 'deadline-exceeded', 'internal',
  'resource-exhausted', 'unavailable',
];

const httpRoute: Schema = obj(
  {
    name: str(),
    match: arr(httpMatch),
    route: arr(obj({ destination: destinationSchema, weight: int(0, 100), headers: headersSchema }, { required: ['destination'] })),
    redirect: obj(
      {
        uri: str(),
        authority: str(),
        port: int(1, 65535),
        derivePort: oneOfStr(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']),
        scheme: str(),
        redirectCode: int(300, 399),
      },
      { oneOf: ['port', 'derivePort'] },
    ),
    directResponse: obj(
      { status: int(200, 599), body: obj({ string: str(), bytes: str() }, { oneOf: ['string', 'bytes'] }) },
      { required: ['status'] },
    ),
    delegate: obj({ name: str(), namespace: str() }),
    rewrite: obj(
      {
        uri: str(),
        authority: str(),
        uriRegexRewrite: obj({ match: regexString, rewrite: str() }, { required: ['match', 'rewrite'], check: regexRewriteCheck }),
      },
      { oneOf: ['uri', 'uriRegexRewrite'] },
    ),
    timeout: duration(),
    retries: obj({
      attempts: int(0),
      perTryTimeout: duration(1),
      retryOn: str({
        check: (value, path, r) => {
          for (const token of value.split(',').map((t) => t.trim())) {
            if (token === '' || /^\d{3}$/.test(token) || RETRY_ON_TOKENS.includes(token)) continue;
            r.report(path, ConfigErrorCodes.BAD_ENUM, `unknown retryOn condition '${token}'`);
          }
        },
      }),
      retryRemoteLocalities: bool,
      retryIgnorePreviousHosts: bool,
      backoff: duration(1),
    }),
    fault: obj({
      delay: obj(
        { fixedDelay: duration(), exponentialDelay: duration(), percentage: percentObj, percent: int(0, 100) },
        { required: ['fixedDelay'], oneOf: ['percentage', 'percent'] },
      ),
      abort: obj(
        { httpStatus: int(200, 599), grpcStatus: oneOfStr(GRPC_STATUS), http2Error: str(), percentage: percentObj },
        { oneOf: ['httpStatus', 'grpcStatus', 'http2Error'], oneOfRequired: true },
      ),
    }),
    mirror: destinationSchema,
    mirrorPercentage: percentObj,
    mirrorPercent: int(0, 100),
    mirrors: arr(obj({ destination: destinationSchema, percentage: percentObj }, { required: ['destination'] })),
    corsPolicy: obj({
      allowOrigins: arr(stringMatch),
      allowOrigin: arr(str()),
      allowMethods: arr(str()),
      allowHeaders: arr(str()),
      exposeHeaders: arr(str()),
      maxAge: duration(),
      allowCredentials: bool,
      unmatchedPreflights: oneOfStr(['UNSPECIFIED', 'FORWARD', 'IGNORE']),
    }),
    headers: headersSchema,
  },
  {
    check: (rule, path, r) => {
      const actions = (['route', 'redirect', 'directResponse', 'delegate'] as const).filter((k) => rule[k] !== undefined && rule[k] !== null);
      if (actions.length > 1) {
        r.report(childPath(path, actions[1]), ConfigErrorCodes.CONFLICTING_ACTIONS, `'${actions[1]}' cannot be combined with '${actions[0]}' in one rule`);
      } else if (actions.length === 0) {
        r.report(path, ConfigErrorCodes.NO_ACTION, `rule needs one of route, redirect or directResponse`);
      }
      if (actions.includes('delegate')) {
        r.report(childPath(path, 'delegate'), ConfigErrorCodes.NOT_IMPLEMENTED, 'delegate VirtualServices are not supported yet');
      }
      if (rule.mirror && rule.mirrors) {
        r.report(childPath(path, 'mirrors'), ConfigErrorCodes.ONE_OF, `'mirror' and 'mirrors' cannot both be set`);
      }
      if ((rule.redirect || rule.directResponse) && (rule.rewrite || rule.retries || rule.timeout || rule.mirror || rule.mirrors)) {
        r.report(path, ConfigErrorCodes.CONFLICTING_ACTIONS, 'rewrite/retries/timeout/mirror only apply to a route action', 'warning');
      }
      const routes = rule.route;
      if (Array.isArray(routes)) checkWeights(routes, childPath(path, 'route'), r);
    },
  },
);

/** Weights must sum to 100 when more than one destination is listed or any weight is given. */
export function checkWeights(routes: unknown[], path: string, r: Reporter): void {
  const weights = routes.map((d) => (isPlainObject(d) && typeof d.weight === 'number' ? d.weight : undefined));
  if (routes.length === 1 && weights[0] === undefined) return;
  if (routes.length === 0) return;
  const sum = weights.reduce<number>((a, w) => a + (w ?? 0), 0);
  if (sum !== 100) {
    const last = routes.length - 1;
    const where = weights[last] !== undefined ? childPath(childPath(path, last), 'weight') : path;
    r.report(where, ConfigErrorCodes.WEIGHT_SUM, `weights sum to ${sum}, want 100`);
  }
}

const l4Match = obj({
  destinationSubnets: arr(str()),
  port: int(1, 65535),
  sourceLabels: labels,
  gateways: arr(str({ nonEmpty: true })),
  sourceNamespace: str(),
  sniHosts: arr(str()),
});
const l4Route = obj({ destination: destinationSchema, weight: int(0, 100) }, { required: ['destination'] });
const l4Rule = (requireMatch: boolean): Schema =>
  obj(
    { match: arr(l4Match, { minItems: requireMatch ? 1 : 0 }), route: arr(l4Route) },
    {
      required: requireMatch ? ['match'] : [],
      check: (rule, path, r) => {
        if (Array.isArray(rule.route)) checkWeights(rule.route, childPath(path, 'route'), r);
      },
    },
  );

export const virtualServiceSpecSchema = obj({
  hosts: arr(hostString),
  gateways: arr(str({ nonEmpty: true })),
  exportTo,
  http: arr(httpRoute),
  tcp: arr(l4Rule(false)),
  tls: arr(l4Rule(true)),
});

