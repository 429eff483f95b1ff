/**
 * AuthorizationPolicy ALLOW / DENY / AUDIT for one workload, in Istio's order (CUSTOM runs
 * before, through ext_authz): any matching DENY denies; then, if at least one ALLOW policy
 * selects the workload, a request matching none is denied; no ALLOW policy allows everything.
 * AUDIT never changes the decision, it only marks the request for logging.
 * https://istio.io/latest/docs/concepts/security/#implicit-enablement
 */
import type { AuthzPolicy, SecurityPolicies } from '../config/snapshot.ts';
import { compileRules, policySelects, type PolicyInput, type PolicySubject } from './policy.ts';

/** Envoy RBAC's denial body. */
export const RBAC_DENIED_BODY = 'RBAC: access denied';

interface CompiledPolicy {
  readonly key: string;
  readonly matches: (i: PolicyInput) => boolean;
}

export interface RbacDecision {
  readonly allowed: boolean;
  /** The DENY policy that matched, or `no ALLOW policy matched`. */
  readonly reason?: string;
  /** AUDIT policies that matched. */
  readonly audited: readonly string[];
}

export interface CompiledRbac {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  readonly audit: readonly CompiledPolicy[];
  /** True when there is anything to evaluate. */
  readonly active: boolean;
  /** Decides one request. */
  evaluate(input: PolicyInput): RbacDecision;
}

/** Policies whose target selects the workload: mesh-wide, or its namespace, and the selector holds. */
export function selectsWorkload(p: Pick<AuthzPolicy, 'meshWide' | 'namespace' | 'selector' | 'targetRefs'>, wl: PolicySubject): boolean {
  return policySelects(p, wl);
}

export function compileRbac(security: SecurityPolicies, wl: PolicySubject): CompiledRbac {
  const deny: CompiledPolicy[] = [];
  const allow: CompiledPolicy[] = [];
  const audit: CompiledPolicy[] = [];
  for (const p of security.authorizationPolicies) {
    if (p.action === 'CUSTOM' || !selectsWorkload(p, wl)) continue;
    const c = { key: p.key, matches: compileRules(p.rules) };
    (p.action === 'DENY' ? deny : p.action === 'ALLOW' ? allow : audit).push(c);
  }
  const active = deny.length + allow.length + audit.length > 0;
  return {
    deny,
    allow,
    audit,
    active,
    evaluate(input) {
      const audited = audit.filter((p) => p.matches(input)).map((p) => p.key);
      for (const p of deny) if (p.matches(input)) return { allowed: false, reason: `denied by ${p.key}`, audited };
      if (allow.length > 0 && !allow.some((p) => p.matches(input))) return { allowed: false, reason: 'no ALLOW policy matched', audited };
      return { allowed: true, audited };
    },
  };
}
