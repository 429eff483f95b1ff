/** Shapes and checks shared by several Istio kinds (StringMatch, hosts, regexes). */
import { ConfigErrorCodes } from '../errors.ts';
import { re2RewriteProblem, re2SyntaxProblem } from '../../lib/re2.ts';
import { obj, str, type Check, type Reporter, type Schema } from '../schema.ts';

/** Istio StringMatch as written in YAML. */
export interface RawStringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

/**
 * Why `source` is not an acceptable RE2 pattern, or undefined when it is: compiled with re2js (Go's
 * `regexp`, which is what Istio validates with), so RE2-only syntax (`(?P<id>...)`, `\pL`, inline
 * flags) is accepted and JavaScript-only syntax (lookarounds, backreferences) is not.
 */
export function re2Problem(source: string): string | undefined {
  if (source === '') return 'regex string match should not be empty';
  return re2SyntaxProblem(source);
}

/** `(?i)abc` → `{regex: 'abc', ignoreCase: true}`; other patterns unchanged. */
export function splitRegexFlags(src: string): { regex: string; ignoreCase: boolean } {
  return src.startsWith('(?i)') ? { regex: src.slice(4), ignoreCase: true } : { regex: src, ignoreCase: false };
}

export const regexCheck: Check<string> = (value, path, r) => {
  const problem = re2Problem(value);
  if (problem) r.report(path, ConfigErrorCodes.BAD_REGEX, `invalid regex '${value}': ${problem}`);
};

export const regexString: Schema = str({ check: regexCheck });

/** `uriRegexRewrite`: `rewrite` may use `\0`–`\9` (groups `match` has) and `\\`, as RE2 rewrites. */
export const regexRewriteCheck: Check<Record<string, unknown>> = (value, path, r) => {
  if (typeof value.match !== 'string' || typeof value.rewrite !== 'string') return;
  const problem = re2RewriteProblem(value.match, value.rewrite);
  if (problem) r.report(`${path}.rewrite`, ConfigErrorCodes.BAD_REGEX, problem);
};

/** StringMatch: exactly one of exact/prefix/regex. */
export const stringMatch = obj(
  { exact: str(), prefix: str(), regex: regexString },
  { oneOf: ['exact', 'prefix', 'regex'], oneOfRequired: true },
);

/** Header / query-param StringMatch: `{}` means "present". */
export const valueMatch = obj({ exact: str(), prefix: str(), regex: regexString }, { oneOf: ['exact', 'prefix', 'regex'] });

const LABEL = '[a-z0-9]([a-z0-9-]*[a-z0-9])?';
const DNS = new RegExp(`^(\\*|(\\*\\.)?${LABEL}(\\.${LABEL})*\\.?)$`, 'i');
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** A host as VirtualService/ServiceEntry/DestinationRule write it: DNS name, `*`, `*.suffix` or an IP. */
export function hostProblem(host: string): string | undefined {
  if (host === '') return 'host must not be empty';
  if (host.includes(':') && !host.startsWith('[')) {
    if (/^[0-9a-f:]+$/i.test(host)) return undefined; // IPv6
    return `host '${host}' must not contain a port`;
  }
  if (IPV4.test(host)) return undefined;
  if (!DNS.test(host)) return `'${host}' is not a valid host (want a DNS name, '*' or '*.suffix')`;
  return undefined;
}

export const hostCheck: Check<string> = (value, path, r) => {
  const p = hostProblem(value);
  if (p) r.report(path, ConfigErrorCodes.BAD_HOST, p);
};

export const hostString: Schema = str({ check: hostCheck });

/** Kubernetes label selector map (`matchLabels` style). */
export const labels: Schema = { type: 'map', values: str() };

export const exportTo: Schema = { type: 'array', items: str({ nonEmpty: true }) };

/** Kubernetes workloadSelector. */
export const workloadSelector = obj({ labels }, {});

/** Security kinds' `selector: {matchLabels}`. */
export const matchLabelsSelector = obj({ matchLabels: labels });

/** Gateway API PolicyTargetReference (`targetRef`/`targetRefs`). */
export const targetRefSchema = obj(
  { group: str(), kind: str({ nonEmpty: true }), name: str({ nonEmpty: true }), namespace: str() },
  { required: ['kind', 'name'] },
);

/**
 * Policy `targetRef`/`targetRefs`: the runtime resolves kind `Gateway` (the gateway workload's
 * name); any other kind (Service, ServiceEntry, GatewayClass) selects nothing yet — a warning each.
 */
export const policyTargetRefsCheck = (spec: Record<string, unknown>, path: string, r: Reporter): void => {
  const one = (ref: unknown, at: string): void => {
    if (typeof ref !== 'object' || ref === null || Array.isArray(ref)) return;
    const kind = (ref as { kind?: unknown }).kind;
    if (typeof kind === 'string' && kind !== 'Gateway') {
      r.report(at, ConfigErrorCodes.NOT_ENFORCED, `targetRef kind '${kind}' is not resolved by Portico yet (only kind Gateway); the policy selects nothing through it`, 'warning');
    }
  };
  one(spec.targetRef, `${path}.targetRef`);
  if (Array.isArray(spec.targetRefs)) spec.targetRefs.forEach((ref, i) => one(ref, `${path}.targetRefs[${i}]`));
};

/** Why `s` is not an IP or CIDR, or undefined. */
export function cidrProblem(s: string): string | undefined {
  const [addr, len, extra] = s.split('/');
  if (extra !== undefined) return `'${s}' is not an IP or CIDR`;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  const v6 = !v4 && /^[0-9a-f:.]+$/i.test(addr) && addr.includes(':');
  if (v4 && v4.slice(1).some((o) => Number(o) > 255)) return `'${s}' is not an IP or CIDR`;
  if (!v4 && !v6) return `'${s}' is not an IP or CIDR`;
  if (len !== undefined && (!/^\d+$/.test(len) || Number(len) > (v4 ? 32 : 128))) return `'${s}': bad prefix length`;
  return undefined;
}

/** A bare IP gets its full-length prefix. */
export function normaliseCidr(s: string): string {
  if (s.includes('/')) return s;
  return `${s}/${s.includes(':') ? 128 : 32}`;
}

export const cidrString: Schema = str({
  check: (v, path, r) => {
    const p = cidrProblem(v);
    if (p) r.report(path, ConfigErrorCodes.BAD_CIDR, p);
  },
});

/** Short names (no dot) resolve to `<name>.<ns>.svc.cluster.local`, as Istio does. */
export function fqdn(host: string, namespace: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === '*' || h.includes('.') || h.includes(':')) return h;
  return `${h}.${namespace}.svc.cluster.local`;
}
