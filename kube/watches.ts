/**
 * Which Istio kinds to watch, and in which version. Istio serves networking.istio.io as v1,
 * v1beta1 and v1alpha3, security.istio.io as v1 and v1beta1, extensions.istio.io as v1alpha1
 * (istio/istio manifests/charts/base/files/crd-all.gen.yaml); the API server converts between
 * served versions, so each kind is watched once, in the newest version the cluster serves
 * (older Istio installs serve only v1beta1/v1alpha3). A group that is not installed is skipped
 * with a warning; kinds Portico's loader does not know (yet) are not watched at all.
 */
import { KubeApiError, type KubeApi } from './api.ts';
import type { ReflectorLogger } from './reflector.ts';

export interface WatchedKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
}

export const ISTIO_KINDS: readonly { group: string; versions: readonly string[]; kind: string; plural: string }[] = [
  ...(['Gateway', 'VirtualService', 'DestinationRule', 'ServiceEntry', 'WorkloadEntry', 'Sidecar'] as const).map((kind) => ({
    group: 'networking.istio.io',
    versions: ['v1', 'v1beta1', 'v1alpha3'],
    kind,
    plural: kind === 'ServiceEntry' ? 'serviceentries' : kind === 'WorkloadEntry' ? 'workloadentries' : `${kind.toLowerCase()}s`,
  })),
  { group: 'networking.istio.io', versions: ['v1alpha3'], kind: 'EnvoyFilter', plural: 'envoyfilters' },
  ...(['AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication'] as const).map((kind) => ({
    group: 'security.istio.io',
    versions: ['v1', 'v1beta1'],
    kind,
    plural: kind === 'AuthorizationPolicy' ? 'authorizationpolicies' : `${kind.toLowerCase()}s`,
  })),
  { group: 'extensions.istio.io', versions: ['v1alpha1'], kind: 'WasmPlugin', plural: 'wasmplugins' },
];

interface ResourceList {
  resources?: { name: string; kind: string }[];
}

/** The kinds to watch (see the file comment). `known(kind)` says whether the loader reads it. */
export async function discoverIstioKinds(api: KubeApi, known: (kind: string) => boolean, log: ReflectorLogger): Promise<WatchedKind[]> {
  const served = new Map<string, ResourceList | undefined>();
  const resources = async (group: string, version: string): Promise<ResourceList | undefined> => {
    const key = `${group}/${version}`;
    if (served.has(key)) return served.get(key);
    let r: ResourceList | undefined;
    try {
      r = await api.request<ResourceList>('GET', `/apis/${group}/${version}`);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
      r = undefined;
    }
    served.set(key, r);
    return r;
  };
  const out: WatchedKind[] = [];
  for (const k of ISTIO_KINDS) {
    if (!known(k.kind)) continue;
    let found: WatchedKind | undefined;
    for (const version of k.versions) {
      const list = await resources(k.group, version);
      if (list?.resources?.some((r) => r.name === k.plural)) {
        found = { group: k.group, version, kind: k.kind, plural: k.plural };
        break;
      }
    }
    if (found) out.push(found);
    else log.warn('Istio kind not served by the API server; not watched (install Istio\'s CRDs: istio/base chart)', { kind: `${k.kind}.${k.group}`, versions: k.versions });
  }
  return out;
}
