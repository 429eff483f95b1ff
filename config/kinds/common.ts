/** Shapes and checks shared by several Istio kinds (StringMatch, hosts, regexes). */
import { ConfigErrorCodes } from '../errors.ts';
import { obj, str, type Check, type Schema } from '../schema.ts';

/** Istio StringMatch as written in YAML. */
export interface RawStringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

/**
 * Why `src` is not an acceptable RE2 pattern, or undefined when it is. JavaScript's RegExp with
 * the `u` flag is our approximation of RE2 syntax; lookarounds and backreferences are rejected
 * explicitly because RE2 (and therefore Envoy) does not support them.
 */
export function re2Problem(src: string): string | undefined {
  // Strip escaped characters and character classes before looking for unsupported groups.
  const stripped = src.replace(/\\[^0-9k]/g, '__').replace(/\[(?:\\.|[^\]\\])*\]/g, '_');
  if (/\(\?<?[=!]/.test(stripped)) return 'lookaround assertions are not supported by RE2';
  if (/\\[1-9]|\\k</.test(stripped)) return 'backreferences are not supported by RE2';
  try {
    new RegExp(src, 'u');
  } catch (err) {
    return (err as Error).message.replace(/^Invalid regular expression: /, '');
  }
  return undefined;
}

export const regexCheck: Check<string> = (value, path, r) => {
  const problem = re2Problem(value);
  if (problem) r.report(path, ConfigErrorCodes.BAD_REGEX, `invalid regex '${value}': ${problem}`);
};

export const regexString: Schema = str({ check: regexCheck });

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

/** Short names (no dot) resolve to `<name>.<ns>.svc.cluster.local`, as Istio does. */
export function fqdn(host: string, namespace: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === '*' || h.includes('.') || h.includes(':')) return h;
  return `${h}.${namespace}.svc.cluster.local`;
}
