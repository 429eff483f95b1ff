/**
 * PeerAuthentication selection for one workload, Istio's precedence: a policy with a matching
 * workload selector, else the workload's namespace policy (no selector), else the mesh-wide one
 * (root namespace, no selector), else PERMISSIVE. `UNSET` inherits from the next level;
 * `portLevelMtls` applies only on a selector policy (Istio ignores it elsewhere). When several
 * policies tie at one level Istio takes the oldest; without creation times we take the first by
 * (namespace, name), which is the snapshot's order.
 * https://istio.io/latest/docs/reference/config/security/peer_authentication/
 */
import type { MtlsMode, PeerAuthn, SecurityPolicies, Workload } from '../config/snapshot.ts';
import { labelsMatch } from './policy.ts';

/** The effective mode, never UNSET. */
export type EffectiveMtls = Exclude<MtlsMode, 'UNSET'>;

export interface PeerAuthnDecision {
  /** Mode for a given inbound port (the WorkloadEntry port number or the app port). */
  modeFor(...ports: number[]): EffectiveMtls;
  /** The policies that decided, most specific first (for logs and config_dump). */
  readonly chain: readonly string[];
}

export function selectPeerAuthn(security: SecurityPolicies, wl: Pick<Workload, 'namespace' | 'labels'>): PeerAuthnDecision {
  const hasSelector = (p: PeerAuthn): boolean => Object.keys(p.selector).length > 0;
  const all = security.peerAuthentications;
  const workload = all.find((p) => hasSelector(p) && (p.namespace === wl.namespace || p.meshWide) && labelsMatch(p.selector, wl.labels));
  const namespace = all.find((p) => !hasSelector(p) && p.namespace === wl.namespace && p.namespace !== security.rootNamespace);
  const mesh = all.find((p) => !hasSelector(p) && (p.meshWide || p.namespace === security.rootNamespace));
  const inherited: EffectiveMtls = pick([workload?.mode, namespace?.mode, mesh?.mode]);
  const ports = new Map<number, MtlsMode>((workload?.portLevelMtls ?? []).map((p) => [p.port, p.mode]));
  const chain = [workload, namespace, mesh].filter((p): p is PeerAuthn => p !== undefined).map((p) => p.key);
  return {
    chain,
    modeFor(...candidates) {
      for (const port of candidates) {
        const m = ports.get(port);
        // A port-level UNSET inherits the workload's mode (or its parents').
        if (m !== undefined) return m === 'UNSET' ? inherited : m;
      }
      return inherited;
    },
  };
  function pick(modes: (MtlsMode | undefined)[]): EffectiveMtls {
    for (const m of modes) if (m !== undefined && m !== 'UNSET') return m;
    return 'PERMISSIVE';
  }
}
