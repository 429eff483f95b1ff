/** security.istio.io AuthorizationPolicy: https://istio.io/latest/docs/reference/config/security/authorization-policy/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, childPath, doc, notEnforced, obj, oneOfStr, str, type Check, type Reporter, type Schema } from '../schema.ts';
import { cidrProblem, cidrString, matchLabelsSelector, targetRefSchema, policyTargetRefsCheck } from './common.ts';

export interface RawOperation {
  hosts?: string[];
  notHosts?: string[];
  ports?: (string | number)[];
  notPorts?: (string | number)[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

export interface RawSource {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
}

export interface RawCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}

export interface RawAuthzRule {
  from?: { source?: RawSource }[];
  to?: { operation?: RawOperation }[];
  when?: RawCondition[];
}

export interface RawTargetRef {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface AuthorizationPolicySpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: RawTargetRef;
  targetRefs?: RawTargetRef[];
  action?: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  provider?: { name?: string };
  rules?: RawAuthzRule[];
}

/** Istio string pattern: exact, `prefix*`, `*suffix` or `*`. A `*` elsewhere is literal in Istio; say so. */
export const patternCheck: Check<string> = (v, path, r) => {
  if (v === '') r.report(path, ConfigErrorCodes.REQUIRED, 'must not be empty');
  else if (v.length > 1 && v.slice(1, -1).includes('*')) {
    r.report(path, ConfigErrorCodes.BAD_PATTERN, `'${v}': '*' only works as a whole value, prefix ('abc*') or suffix ('*abc'); here it is matched literally`, 'warning');
  }
};
const patterns = arr(str({ check: patternCheck }));

const portValue: Schema = {
  type: 'any',
  check: (v, path, r) => {
    const s = typeof v === 'number' ? String(v) : v;
    if (typeof s !== 'string' || !/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) {
      r.report(path, ConfigErrorCodes.WRONG_TYPE, `'${String(v)}' is not a port number (1..65535)`);
    }
  },
};

/** Istio 1.22+ path templates: `{*}` is one path segment, `{**}` the rest (last segment only). */
export function isPathTemplate(v: string): boolean {
  return v.includes('{*}') || v.includes('{**}');
}

const pathCheck: Check<string> = (v, path, r) => {
  if (isPathTemplate(v)) {
    const segs = v.split('/');
    const bad = segs.findIndex((s, i) => (s.includes('{') && s !== '{*}' && s !== '{**}') || (s === '{**}' && i !== segs.length - 1));
    if (!v.startsWith('/')) r.report(path, ConfigErrorCodes.BAD_PATTERN, `path template '${v}' must start with '/'`);
    else if (bad >= 0) r.report(path, ConfigErrorCodes.BAD_PATTERN, `path template '${v}': a segment must be a literal, '{*}' or (last only) '{**}'`);
    return;
  }
  patternCheck(v, path, r);
  if (v !== '*' && !v.startsWith('/') && !v.startsWith('*')) r.report(path, ConfigErrorCodes.BAD_PATTERN, `path '${v}' should start with '/'`, 'warning');
};
const paths = arr(str({ check: pathCheck }));

export const operationSchema = obj({
  hosts: patterns,
  notHosts: patterns,
  ports: arr(portValue),
  notPorts: arr(portValue),
  methods: patterns,
  notMethods: patterns,
  paths,
  notPaths: paths,
});

export const sourceSchema = obj({
  principals: patterns,
  notPrincipals: patterns,
  requestPrincipals: patterns,
  notRequestPrincipals: patterns,
  namespaces: patterns,
  notNamespaces: patterns,
  ipBlocks: arr(cidrString),
  notIpBlocks: arr(cidrString),
  remoteIpBlocks: arr(cidrString),
  notRemoteIpBlocks: arr(cidrString),
  // Istio 1.24+: `ns/sa` service accounts, a shorthand for principals without the trust domain.
  serviceAccounts: notEnforced(arr(str({ nonEmpty: true })), 'not matched yet; use principals'),
  notServiceAccounts: notEnforced(arr(str({ nonEmpty: true })), 'not matched yet; use notPrincipals'),
});

/** Istio's documented condition keys: https://istio.io/latest/docs/reference/config/security/conditions/ */
export const CONDITION_KEYS = [
  'request.headers[…]', 'source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'request.auth.principal',
  'request.auth.audiences', 'request.auth.presenter', 'request.auth.claims[…]', 'destination.ip', 'destination.port',
  'connection.sni', 'experimental.envoy.filters.*',
] as const;

const PLAIN_KEYS = new Set([
  'source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'request.auth.principal', 'request.auth.audiences',
  'request.auth.presenter', 'destination.ip', 'destination.port', 'connection.sni',
]);

/** Parses a condition key; undefined when it is not one Istio documents. */
export function parseConditionKey(key: string): { type: 'pattern' | 'ip' | 'port'; header?: string; claim?: string[] } | undefined {
  if (PLAIN_KEYS.has(key)) {
    if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') return { type: 'ip' };
    if (key === 'destination.port') return { type: 'port' };
    return { type: 'pattern' };
  }
  const h = /^request\.headers\[([^\]]+)\]$/.exec(key);
  if (h) return { type: 'pattern', header: h[1].toLowerCase() };
  if (/^request\.auth\.claims(\[[^\][]+\])+$/.test(key)) {
    return { type: 'pattern', claim: [...key.matchAll(/\[([^\][]+)\]/g)].map((m) => m[1]) };
  }
  if (/^experimental\.envoy\.filters\.[\w.]+\[[^\]]+\]$/.test(key)) return { type: 'pattern' };
  return undefined;
}

const conditionSchema = obj(
  { key: str({ nonEmpty: true }), values: arr(str()), notValues: arr(str()) },
  {
    required: ['key'],
    check: (c, path, r) => {
      if (typeof c.key !== 'string' || c.key === '') return;
      const parsed = parseConditionKey(c.key);
      if (!parsed) {
        r.report(childPath(path, 'key'), ConfigErrorCodes.BAD_CONDITION_KEY, `unknown condition key '${c.key}' (want one of ${CONDITION_KEYS.join(', ')})`);
        return;
      }
      const values = [...(Array.isArray(c.values) ? c.values : []), ...(Array.isArray(c.notValues) ? c.notValues : [])];
      if (values.length === 0) r.report(path, ConfigErrorCodes.REQUIRED, `condition '${c.key}' needs values or notValues`);
      const field = (i: number): string => {
        const nv = Array.isArray(c.values) ? c.values.length : 0;
        return i < nv ? `${path}.values[${i}]` : `${path}.notValues[${i - nv}]`;
      };
      values.forEach((v, i) => {
        if (typeof v !== 'string') return;
        if (parsed.type === 'port' && !/^\d+$/.test(v)) r.report(field(i), ConfigErrorCodes.WRONG_TYPE, `'${v}' is not a port number`);
        if (parsed.type === 'ip') {
          const p = cidrProblem(v);
          if (p) r.report(field(i), ConfigErrorCodes.BAD_CIDR, p);
        }
      });
      if (c.key.startsWith('experimental.')) r.report(childPath(path, 'key'), ConfigErrorCodes.NOT_IMPLEMENTED, `'${c.key}' is accepted but never matches in Portico`, 'warning');
    },
  },
);

/** Istio's ValidateAuthorizationPolicy: a `source`/`operation` that says nothing is an error, not "match all". */
const nonEmptyMatch = (what: string) => (m: Record<string, unknown>, path: string, r: Reporter): void => {
  if (!Object.values(m).some((v) => Array.isArray(v) && v.length > 0)) r.report(path, ConfigErrorCodes.REQUIRED, `\`${what}\` must not be empty`);
};

const ruleSource = obj(sourceSchema.fields, {
  check: (src, path, r) => {
    nonEmptyMatch('from.source')(src, path, r);
    const n = (k: string): number => (Array.isArray(src[k]) ? (src[k] as unknown[]).length : 0);
    if (n('principals') + n('notPrincipals') + n('namespaces') + n('notNamespaces') > 0 && n('serviceAccounts') + n('notServiceAccounts') > 0) {
      r.report(childPath(path, 'serviceAccounts'), ConfigErrorCodes.ONE_OF, 'cannot set serviceAccounts with namespaces or principals');
    }
  },
});
const ruleOperation = obj(operationSchema.fields, { check: nonEmptyMatch('to.operation') });

export const authzRuleSchema = obj({
  from: arr(obj({ source: ruleSource }, { required: ['source'] }), { minItems: 1 }),
  to: arr(obj({ operation: ruleOperation }, { required: ['operation'] }), { minItems: 1 }),
  when: arr(conditionSchema),
});

export const ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

export const authorizationpolicySpecSchema: Schema = obj(
  {
    selector: matchLabelsSelector,
    targetRef: doc(targetRefSchema, 'partly', 'kind Gateway (the gateway workload name) is resolved; other kinds warn'),
    targetRefs: doc(arr(targetRefSchema), 'partly', 'kind Gateway (the gateway workload name) is resolved; other kinds warn'),
    action: oneOfStr(ACTIONS),
    provider: obj({ name: str({ nonEmpty: true }) }, { required: ['name'] }),
    rules: arr(authzRuleSchema),
  },
  {
    oneOf: ['selector', 'targetRef', 'targetRefs'],
    check: (spec, path, r) => {
      const action = spec.action ?? 'ALLOW';
      if (action === 'CUSTOM' && !spec.provider) r.report(childPath(path, 'action'), ConfigErrorCodes.REQUIRED, `action CUSTOM needs provider.name (a MeshConfig extensionProviders entry)`);
      if (action !== 'CUSTOM' && spec.provider) r.report(childPath(path, 'provider'), ConfigErrorCodes.ONE_OF, `provider is only allowed with action CUSTOM (action is ${String(action)})`);
      // Istio: "DENY/CUSTOM action without `rules` is meaningless as it will never be triggered".
      if ((action === 'DENY' || action === 'CUSTOM') && spec.rules == null) {
        r.report(childPath(path, 'action'), ConfigErrorCodes.REQUIRED, `${action} action without rules never applies; add an empty rule {} to apply it to every request`);
      }
      if (action === 'AUDIT') r.report(childPath(path, 'action'), ConfigErrorCodes.NOT_IMPLEMENTED, 'AUDIT policies are compiled but have no effect without an audit log provider', 'warning');
      policyTargetRefsCheck(spec, path, r);
    },
  },
);
