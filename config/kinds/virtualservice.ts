/** networking.istio.io VirtualService: https://istio.io/latest/docs/reference/config/networking/virtual-service/ */
import { ConfigErrorCodes } from '../errors.ts';
import {
  arr, bool, childPath, duration, int, isPlainObject, notEnforced, obj, oneOfStr, percentObj, portSelector, str, strMap, unsupported, type Reporter,
  type Schema,
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
  statPrefix: notEnforced(str(), 'no per-route stats prefix'),
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
    // Weights are relative since Istio 1.15 (weight / sum of weights); only negative ones are invalid.
    route: arr(obj({ destination: destinationSchema, weight: int(0), headers: headersSchema }, { required: ['destination'] })),
    redirect: obj(
      {
        uri: str(),
        authority: str(),
        port: int(1, 65535),
        derivePort: oneOfStr(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']),
        scheme: str({
          check: (v, path, r) => {
            if (v !== 'http' && v !== 'https') r.report(path, ConfigErrorCodes.BAD_ENUM, `invalid redirect scheme '${v}', must be "http" or "https"`);
          },
        }),
        redirectCode: int(300, 399),
        prefixRewrite: unsupported(str(), 'redirect prefixRewrite (Istio 1.31) is not implemented; use uri'),
      },
      {
        oneOf: ['port', 'derivePort'],
        check: (rd, path, r) => {
          const has = (k: string): boolean => rd[k] !== undefined && rd[k] !== null && rd[k] !== '';
          if (!['uri', 'authority', 'port', 'derivePort', 'scheme', 'prefixRewrite'].some(has)) {
            r.report(path, ConfigErrorCodes.REQUIRED, 'redirect must specify uri, authority, scheme or port');
          }
          if (has('uri') && has('prefixRewrite')) r.report(childPath(path, 'prefixRewrite'), ConfigErrorCodes.ONE_OF, 'only one of uri and prefixRewrite may be set');
        },
      },
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
      {
        oneOf: ['uri', 'uriRegexRewrite'],
        check: (rw, path, r) => {
          if ((rw.uri === undefined || rw.uri === '') && rw.uriRegexRewrite == null && (rw.authority === undefined || rw.authority === '')) {
            r.report(path, ConfigErrorCodes.REQUIRED, 'rewrite must specify at least one of uri, uriRegexRewrite or authority');
          }
        },
      },
    ),
    timeout: duration(),
    retries: obj(
      {
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
        retryIgnorePreviousHosts: notEnforced(bool, 'a retry may go to the same endpoint'),
        backoff: notEnforced(duration(1), 'retries back off from 25 ms, jittered'),
      },
      {
        check: (rt, path, r) => {
          // Istio: "http retry policy configured when attempts are set to 0 (disabled)".
          if (rt.attempts === 0 && (rt.perTryTimeout != null || (rt.retryOn != null && rt.retryOn !== '') || rt.retryRemoteLocalities != null)) {
            r.report(childPath(path, 'attempts'), ConfigErrorCodes.CONFLICTING_ACTIONS, 'retry policy configured while attempts is 0 (retries disabled)');
          }
        },
      },
    ),
    fault: obj(
      {
        delay: obj(
          {
            fixedDelay: duration(),
            // Istio's webhook rejects both: "exponentialDelay not supported yet", "HTTP/2 abort fault injection not supported yet".
            exponentialDelay: unsupported(duration(), 'Istio does not support exponentialDelay either'),
            percentage: percentObj,
            percent: int(0, 100),
          },
          { oneOf: ['fixedDelay', 'exponentialDelay'], oneOfRequired: true },
        ),
        abort: obj(
          { httpStatus: int(200, 599), grpcStatus: oneOfStr(GRPC_STATUS), http2Error: unsupported(str(), 'Istio does not support HTTP/2 abort faults either'), percentage: percentObj },
          { oneOf: ['httpStatus', 'grpcStatus', 'http2Error'], oneOfRequired: true },
        ),
      },
      {
        check: (f, path, r) => {
          if (f.delay == null && f.abort == null) r.report(path, ConfigErrorCodes.REQUIRED, 'fault injection must have an abort and/or a delay');
        },
      },
    ),
    mirror: destinationSchema,
    mirrorPercentage: percentObj,
    mirrorPercent: notEnforced(int(0, 100), 'deprecated: use mirrorPercentage'),
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
        r.report(path, ConfigErrorCodes.NO_ACTION, `rule needs one of route, redirect, directResponse or delegate`);
      }
      if (rule.mirror && rule.mirrors) {
        r.report(childPath(path, 'mirrors'), ConfigErrorCodes.ONE_OF, `'mirror' and 'mirrors' cannot both be set`);
      }
      // Istio's validateHTTPRouteConflict: rewrite and fault cannot go with redirect (or a direct response).
      const terminal = rule.redirect ? 'redirect' : rule.directResponse ? 'directResponse' : undefined;
      if (terminal) {
        for (const k of ['rewrite', 'fault'] as const) {
          if (rule[k] != null) r.report(childPath(path, k), ConfigErrorCodes.CONFLICTING_ACTIONS, `'${k}' cannot be combined with '${terminal}' in one rule`);
        }
        if (rule.retries || rule.timeout || rule.mirror || rule.mirrors) {
          r.report(path, ConfigErrorCodes.CONFLICTING_ACTIONS, 'retries/timeout/mirror only apply to a route action', 'warning');
        }
      }
      const routes = rule.route;
      if (Array.isArray(routes)) checkWeights(routes, childPath(path, 'route'), r);
    },
  },
);

/**
 * Weights are relative (Istio 1.15+: a destination gets weight / sum of weights): only a total of 0
 * over several destinations is invalid (Istio: "total destination weight = 0"). A destination left
 * without a weight next to weighted ones gets no traffic, as in Istio: a warning says so.
 */
export function checkWeights(routes: unknown[], path: string, r: Reporter): void {
  if (routes.length < 2) return;
  const weights = routes.map((d) => (isPlainObject(d) && typeof d.weight === 'number' ? d.weight : undefined));
  if (weights.some((w) => w !== undefined && w < 0)) return; // the range check reports it
  const sum = weights.reduce<number>((a, w) => a + (w ?? 0), 0);
  if (sum === 0) {
    const last = routes.length - 1;
    const where = weights[last] !== undefined ? childPath(childPath(path, last), 'weight') : path;
    r.report(where, ConfigErrorCodes.WEIGHT_SUM, `total destination weight is 0 over ${routes.length} destinations; give at least one a weight`);
    return;
  }
  weights.forEach((w, i) => {
    if (w === undefined) r.report(childPath(path, i), ConfigErrorCodes.WEIGHT_SUM, 'no weight: this destination gets no traffic (weights are relative; unset means 0)', 'warning');
  });
}

const l4Match = obj({
  destinationSubnets: arr(str()),
  port: int(1, 65535),
  sourceLabels: labels,
  gateways: arr(str({ nonEmpty: true })),
  sourceNamespace: str(),
  sniHosts: arr(str()),
});
const l4Route = obj({ destination: destinationSchema, weight: int(0) }, { required: ['destination'] });
const l4Rule = (tls: boolean): Schema =>
  obj(
    { match: arr(l4Match, { minItems: tls ? 1 : 0 }), route: arr(l4Route) },
    {
      required: tls ? ['match'] : [],
      check: (rule, path, r) => {
        // Istio's validateTLSRoute/validateTCPRoute: a route is required; TLS matches need SNI hosts.
        if (!Array.isArray(rule.route) || rule.route.length === 0) r.report(childPath(path, 'route'), ConfigErrorCodes.REQUIRED, `${tls ? 'TLS' : 'TCP'} route is required`);
        else checkWeights(rule.route, childPath(path, 'route'), r);
        if (tls && Array.isArray(rule.match)) {
          rule.match.forEach((m, i) => {
            if (isPlainObject(m) && (!Array.isArray(m.sniHosts) || m.sniHosts.length === 0)) {
              r.report(childPath(childPath(path, 'match'), i), ConfigErrorCodes.REQUIRED, 'TLS match must have at least one SNI host');
            }
          });
        }
      },
    },
  );

/** A match as Istio compares them for duplicates: its JSON without the name. */
function matchKey(m: unknown): string {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : isPlainObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
  if (!isPlainObject(m)) return JSON.stringify(m);
  const { name: _name, ...rest } = m;
  return JSON.stringify(canon(rest));
}

/**
 * Istio's analyzeUnreachableHTTPRules (warnings): a rule after one without matches is never used,
 * and a match equal to an earlier one is ineffective.
 */
function unreachableRules(rules: unknown[], path: string, r: Reporter): void {
  const seen = new Map<string, number>();
  let catchAll = -1;
  rules.forEach((rule, i) => {
    if (!isPlainObject(rule)) return;
    const at = childPath(path, i);
    const matches = Array.isArray(rule.match) ? rule.match : [];
    if (catchAll >= 0) {
      r.report(at, ConfigErrorCodes.UNREACHABLE_RULE, `rule not used: ${path}[${catchAll}] has no match and catches everything first`, 'warning');
      return;
    }
    if (matches.length === 0) {
      catchAll = i;
      return;
    }
    let dup = 0;
    matches.forEach((m, j) => {
      const key = matchKey(m);
      const first = seen.get(key);
      if (first !== undefined) {
        dup++;
        r.report(childPath(childPath(at, 'match'), j), ConfigErrorCodes.UNREACHABLE_RULE, `match not used: the same match is in ${path}[${first}]`, 'warning');
      } else seen.set(key, i);
    });
    if (dup === matches.length) r.report(at, ConfigErrorCodes.UNREACHABLE_RULE, 'rule not used: all its matches are used by earlier rules', 'warning');
  });
}

export const virtualServiceSpecSchema = obj(
  {
    hosts: arr(hostString),
    gateways: arr(str({ nonEmpty: true })),
    exportTo,
    http: arr(httpRoute, { check: (rules, path, r) => unreachableRules(rules, path, r) }),
    tcp: arr(l4Rule(false), { check: (rules, path, r) => unreachableRules(rules, path, r) }),
    tls: arr(l4Rule(true), { check: (rules, path, r) => unreachableRules(rules, path, r) }),
  },
  {
    check: (vs, path, r) => {
      const empty = (k: string): boolean => !Array.isArray(vs[k]) || (vs[k] as unknown[]).length === 0;
      if (empty('http') && empty('tcp') && empty('tls')) r.report(path, ConfigErrorCodes.REQUIRED, 'http, tcp or tls must be provided in a VirtualService');
      // Istio's ValidateVirtualService: `*` is not a host for the mesh, and no two hosts may overlap.
      const hosts = (Array.isArray(vs.hosts) ? vs.hosts : []).map((h) => (typeof h === 'string' ? h.toLowerCase() : ''));
      const gateways = Array.isArray(vs.gateways) ? vs.gateways : [];
      const mesh = gateways.length === 0 || gateways.includes('mesh');
      hosts.forEach((h, i) => {
        if (h === '*' && mesh) r.report(childPath(childPath(path, 'hosts'), i), ConfigErrorCodes.BAD_HOST, "wildcard host '*' is not allowed for VirtualServices bound to the mesh");
        for (let j = 0; j < i; j++) {
          const other = hosts[j];
          const covers = (a: string, b: string): boolean => a === '*' || (a.startsWith('*.') && b.endsWith(a.slice(1)));
          if (!h || !other) continue;
          if (h === other) r.report(childPath(childPath(path, 'hosts'), i), ConfigErrorCodes.DUPLICATE_NAME, `duplicate hosts in VirtualService: '${h}'`);
          // Istio rejects overlapping hosts too (host.Name.Matches); Portico serves them, most specific first.
          else if (covers(h, other) || covers(other, h)) {
            r.report(childPath(childPath(path, 'hosts'), i), ConfigErrorCodes.DUPLICATE_NAME, `hosts '${other}' and '${h}' overlap; Istio rejects this VirtualService`, 'warning');
          }
        }
      });
    },
  },
);

