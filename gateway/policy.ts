/**
 * AuthorizationPolicy rule matching (Istio semantics), shared by CUSTOM (ext_authz) scoping and
 * by ALLOW/DENY/AUDIT evaluation. Rules are compiled once per snapshot into predicates.
 *
 * A rule matches when any `from` matches (or there is none), any `to` matches (or there is none)
 * and every `when` holds. Inside one `from`/`to`, every field set must hold; the `not` forms must
 * not. https://istio.io/latest/docs/reference/config/security/authorization-policy/
 */
import { BlockList, isIPv6 } from 'node:net';
import type { AuthzRule, Condition, OperationMatch, PolicyTarget, SourceMatch, StringPattern } from '../config/snapshot.ts';

/** What a rule can look at. Built once per request, only when some policy applies. */
export interface PolicyInput {
  /** Normalised path without the query. */
  readonly path: string;
  /** Host without port, lower-case. */
  readonly host: string;
  readonly method: string;
  /** Destination (listener) port. */
  readonly port: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Immediate peer address. */
  readonly sourceIp: string;
  /** Original client address (first trusted XFF hop or the peer). */
  readonly remoteIp: string;
  /** mTLS peer identity without `spiffe://` (`cluster.local/ns/x/sa/y`), when known. */
  readonly principal?: string;
  readonly sourceNamespace?: string;
  /** `iss/sub` of a validated JWT (RequestAuthentication). */
  readonly requestPrincipal?: string;
  readonly claims?: Readonly<Record<string, unknown>>;
  readonly sni?: string;
}

type Pred = (i: PolicyInput) => boolean;

/** Segment-wise match of an Istio path template (`/a/{*}/b`, `/a/{**}`). */
function templateMatches(template: readonly string[], path: string): boolean {
  const segs = path.split('/');
  for (let i = 0; i < template.length; i++) {
    const t = template[i]!;
    if (t === '{**}') return segs.length >= i;
    const s = segs[i];
    if (s === undefined) return false;
    if (t === '{*}') {
      if (s === '') return false;
    } else if (t !== s) return false;
  }
  return segs.length === template.length;
}

export function patternMatches(p: StringPattern, value: string | undefined): boolean {
  if (value === undefined) return false;
  if ('exact' in p) return value === p.exact;
  if ('template' in p) return templateMatches(p.template, value);
  if ('prefix' in p) return value.startsWith(p.prefix);
  if ('suffix' in p) return value.endsWith(p.suffix);
  return value.length > 0;
}

function anyPattern(list: readonly StringPattern[], value: string | undefined): boolean {
  for (const p of list) if (patternMatches(p, value)) return true;
  return false;
}

function lowerPatterns(list: readonly StringPattern[]): StringPattern[] {
  return list.map((p) => ('exact' in p ? { exact: p.exact.toLowerCase() } : 'prefix' in p ? { prefix: p.prefix.toLowerCase() } : 'suffix' in p ? { suffix: p.suffix.toLowerCase() } : p));
}

/** A BlockList of CIDRs (a bare address is a /32 or /128); undefined for an empty list. */
export function blockList(cidrs: readonly string[]): BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
    list.addSubnet(addr!, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
  }
  return list;
}

/** Whether `ip` (IPv4-mapped IPv6 read as IPv4) is in `list`. */
export function ipIn(list: BlockList, ip: string): boolean {
  if (!ip) return false;
  const plain = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  return list.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
}

/** Field predicates: each present list must match (`xs`) or must not match (`notXs`). */
function both(pos: readonly StringPattern[], neg: readonly StringPattern[], get: (i: PolicyInput) => string | undefined, out: Pred[]): void {
  if (pos.length) out.push((i) => anyPattern(pos, get(i)));
  if (neg.length) out.push((i) => !anyPattern(neg, get(i)));
}

function all(preds: Pred[]): Pred {
  if (preds.length === 0) return () => true;
  if (preds.length === 1) return preds[0]!;
  return (i) => {
    for (const p of preds) if (!p(i)) return false;
    return true;
  };
}

function compileOperation(op: OperationMatch): Pred {
  const preds: Pred[] = [];
  both(op.paths, op.notPaths, (i) => i.path, preds);
  both(lowerPatterns(op.hosts), lowerPatterns(op.notHosts), (i) => i.host, preds);
  both(op.methods, op.notMethods, (i) => i.method, preds);
  if (op.ports.length) {
    const ports = new Set(op.ports);
    preds.push((i) => ports.has(i.port));
  }
  if (op.notPorts.length) {
    const ports = new Set(op.notPorts);
    preds.push((i) => !ports.has(i.port));
  }
  return all(preds);
}

function compileSource(src: SourceMatch): Pred {
  const preds: Pred[] = [];
  both(src.principals, src.notPrincipals, (i) => i.principal, preds);
  both(src.requestPrincipals, src.notRequestPrincipals, (i) => i.requestPrincipal, preds);
  both(src.namespaces, src.notNamespaces, (i) => i.sourceNamespace, preds);
  const ip = blockList(src.ipBlocks);
  const notIp = blockList(src.notIpBlocks);
  const remote = blockList(src.remoteIpBlocks);
  const notRemote = blockList(src.notRemoteIpBlocks);
  if (ip) preds.push((i) => ipIn(ip, i.sourceIp));
  if (notIp) preds.push((i) => !ipIn(notIp, i.sourceIp));
  if (remote) preds.push((i) => ipIn(remote, i.remoteIp));
  if (notRemote) preds.push((i) => !ipIn(notRemote, i.remoteIp));
  return all(preds);
}

function claimValue(claims: PolicyInput['claims'], path: readonly string[]): string[] {
  let v: unknown = claims;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return [];
    v = (v as Record<string, unknown>)[k];
  }
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  if (typeof v === 'number' || typeof v === 'boolean') return [String(v)];
  return [];
}

/** The value(s) a `when` key names for this request. */
function conditionValues(c: Condition, i: PolicyInput): string[] {
  if (c.header !== undefined) {
    const v = i.headers[c.header];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  }
  if (c.claim !== undefined) return claimValue(i.claims, c.claim);
  switch (c.key) {
    case 'source.ip':
      return [i.sourceIp];
    case 'remote.ip':
      return [i.remoteIp];
    case 'source.namespace':
      return i.sourceNamespace ? [i.sourceNamespace] : [];
    case 'source.principal':
      return i.principal ? [i.principal] : [];
    case 'request.auth.principal':
      return i.requestPrincipal ? [i.requestPrincipal] : [];
    case 'request.auth.audiences':
      return claimValue(i.claims, ['aud']);
    case 'request.auth.presenter':
      return claimValue(i.claims, ['azp']);
    case 'destination.port':
      return [String(i.port)];
    case 'connection.sni':
      return i.sni ? [i.sni] : [];
    default:
      return [];
  }
}

function compileCondition(c: Condition): Pred {
  if (c.type === 'ip') {
    const pos = blockList(c.rawValues);
    const neg = blockList(c.rawNotValues);
    return (i) => {
      const vals = conditionValues(c, i);
      if (pos && !vals.some((v) => ipIn(pos, v))) return false;
      if (neg && vals.some((v) => ipIn(neg, v))) return false;
      return true;
    };
  }
  if (c.type === 'port') {
    const pos = new Set(c.rawValues);
    const neg = new Set(c.rawNotValues);
    return (i) => {
      const vals = conditionValues(c, i);
      if (pos.size && !vals.some((v) => pos.has(v))) return false;
      if (neg.size && vals.some((v) => neg.has(v))) return false;
      return true;
    };
  }
  return (i) => {
    const vals = conditionValues(c, i);
    if (c.values.length && !vals.some((v) => anyPattern(c.values, v))) return false;
    if (c.notValues.length && vals.some((v) => anyPattern(c.notValues, v))) return false;
    return true;
  };
}

export function compileRule(rule: AuthzRule): Pred {
  const from = rule.from.map(compileSource);
  const to = rule.to.map(compileOperation);
  const when = rule.when.map(compileCondition);
  const fromP: Pred = from.length === 0 ? () => true : (i) => from.some((p) => p(i));
  const toP: Pred = to.length === 0 ? () => true : (i) => to.some((p) => p(i));
  const whenP = all(when);
  return (i) => fromP(i) && toP(i) && whenP(i);
}

/** A policy matches when any of its rules does; no rules never matches. */
export function compileRules(rules: readonly AuthzRule[]): Pred {
  const each = rules.map(compileRule);
  if (each.length === 0) return () => false;
  return (i) => each.some((p) => p(i));
}

/** Labels satisfy a selector when every selector label is present with the same value. */
export function labelsMatch(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/** A proxy as policies select it. */
export interface PolicySubject {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The workload's name, matched by `targetRefs` of kind Gateway (the gateway Deployment's name). */
  readonly workloadName?: string;
}

/**
 * Whether a policy (AuthorizationPolicy, RequestAuthentication, …) applies to a proxy: with
 * `targetRefs`, when one names this gateway (`selector` is then not used, as Istio requires one or
 * the other); else a root-namespace policy applies mesh-wide and any other to its own namespace,
 * when the `selector` labels hold. https://istio.io/latest/docs/reference/config/type/workload-selector/
 */
export function policySelects(p: PolicyTarget, who: PolicySubject): boolean {
  if (p.targetRefs && p.targetRefs.length > 0) {
    return p.targetRefs.some((r) => r.kind === 'Gateway' && r.name === who.workloadName && (r.namespace ?? p.namespace) === who.namespace);
  }
  return (p.meshWide || p.namespace === who.namespace) && labelsMatch(p.selector, who.labels);
}
