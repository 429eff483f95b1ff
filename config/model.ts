/**
 * Indexes over loaded resources shared by validation and compilation: resources by kind (sorted
 * by namespace/name), the service registry (ServiceEntry hosts as FQDNs), DestinationRule lookup
 * and gateway reference resolution. Pure functions; nothing here does I/O.
 */
import type { DestinationRuleSpec } from './kinds/destinationrule.ts';
import type { GatewaySpec } from './kinds/gateway.ts';
import type { ServiceEntrySpec } from './kinds/serviceentry.ts';
import type { VirtualServiceSpec } from './kinds/virtualservice.ts';
import type { WorkloadEntrySpec } from './kinds/workloadentry.ts';
import { fqdn } from './kinds/common.ts';
import type { AuthorizationPolicySpec } from './kinds/authorizationpolicy.ts';
import type { EnvoyFilterSpec } from './kinds/envoyfilter.ts';
import { DEFAULT_ROOT_NAMESPACE, type MeshConfigSpec, type RawExtensionProvider } from './kinds/meshconfig.ts';
import type { PeerAuthenticationSpec } from './kinds/peerauthentication.ts';
import type { RequestAuthenticationSpec } from './kinds/requestauthentication.ts';
import type { Resource } from './load.ts';
import { serviceEntryFromKubernetes, type EndpointSliceSpec, type KubeServiceSpec, type PodSpec } from './kinds/kubernetes.ts';

export { fqdn };

export interface RegistryEntry {
  /** The ServiceEntry, or for a Kubernetes Service the ServiceEntry Istio's registry builds from it (kind stays `Service`). */
  readonly se: Resource<ServiceEntrySpec>;
  /** The host as the ServiceEntry wrote it. */
  readonly written: string;
  /** For a Kubernetes Service: whether EndpointSlices for it were in the input (else it resolves by DNS). */
  readonly kube?: { readonly hasSlices: boolean };
}

export interface ModelIndex {
  readonly gateways: readonly Resource<GatewaySpec>[];
  readonly virtualServices: readonly Resource<VirtualServiceSpec>[];
  readonly destinationRules: readonly Resource<DestinationRuleSpec>[];
  readonly serviceEntries: readonly Resource<ServiceEntrySpec>[];
  readonly workloadEntries: readonly Resource<WorkloadEntrySpec>[];
  /** Kubernetes Services from the input, as registry ServiceEntries (sorted by key). */
  readonly kubeServices: readonly Resource<ServiceEntrySpec>[];
  /** FQDN → ServiceEntries declaring it, sorted by key. */
  readonly registry: ReadonlyMap<string, readonly RegistryEntry[]>;
  readonly gatewayKeys: ReadonlySet<string>;
  readonly envoyFilters: readonly Resource<EnvoyFilterSpec>[];
  readonly authorizationPolicies: readonly Resource<AuthorizationPolicySpec>[];
  readonly peerAuthentications: readonly Resource<PeerAuthenticationSpec>[];
  readonly requestAuthentications: readonly Resource<RequestAuthenticationSpec>[];
  /** Every MeshConfig (resource or `istio` ConfigMap); validation allows at most one. */
  readonly meshConfigs: readonly Resource<MeshConfigSpec>[];
  /** The effective MeshConfig spec (the first one; empty when none). */
  readonly mesh: MeshConfigSpec;
  readonly rootNamespace: string;
  /** MeshConfig extension providers by name (first definition wins). */
  readonly providers: ReadonlyMap<string, { readonly provider: RawExtensionProvider; readonly index: number; readonly mc: Resource<MeshConfigSpec> }>;
}

const byKey = (a: { key: string }, b: { key: string }): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

export function arrayOf<T>(v: T[] | undefined | null | unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

/** Istio parses port protocols case-insensitively (`protocol.Parse`): the index holds them upper-cased. */
function upper(port: unknown): unknown {
  if (typeof port !== 'object' || port === null || Array.isArray(port)) return port;
  const p = port as { protocol?: unknown };
  return typeof p.protocol === 'string' && p.protocol !== p.protocol.toUpperCase() ? { ...p, protocol: p.protocol.toUpperCase() } : port;
}

function normaliseGateway(gw: Resource<GatewaySpec>): Resource<GatewaySpec> {
  const servers: unknown = gw.spec?.servers;
  if (!Array.isArray(servers)) return gw;
  let changed = false;
  const norm = servers.map((s: unknown) => {
    if (typeof s !== 'object' || s === null) return s;
    const port = (s as { port?: unknown }).port;
    const up = upper(port);
    if (up === port) return s;
    changed = true;
    return { ...s, port: up };
  });
  return changed ? { ...gw, spec: { ...gw.spec, servers: norm as GatewaySpec['servers'] } } : gw;
}

function normaliseServiceEntry(se: Resource<ServiceEntrySpec>): Resource<ServiceEntrySpec> {
  const ports: unknown = se.spec?.ports;
  if (!Array.isArray(ports)) return se;
  const norm = ports.map(upper);
  return norm.some((p, i) => p !== ports[i]) ? { ...se, spec: { ...se.spec, ports: norm as ServiceEntrySpec['ports'] } } : se;
}

export function indexModel(resources: readonly Resource[]): ModelIndex {
  const of = <S>(kind: string): Resource<S>[] => (resources.filter((r) => r.kind === kind) as Resource<S>[]).sort(byKey);
  const serviceEntries = of<ServiceEntrySpec>('ServiceEntry').map(normaliseServiceEntry);
  const registry = new Map<string, RegistryEntry[]>();
  const add = (key: string, e: RegistryEntry): void => {
    const list = registry.get(key) ?? [];
    list.push(e);
    registry.set(key, list);
  };
  for (const se of serviceEntries) {
    for (const h of arrayOf<string>(se.spec?.hosts)) {
      if (typeof h !== 'string') continue;
      add(fqdn(h, se.namespace), { se, written: h });
    }
  }
  // Kubernetes Services become registry entries as in a cluster. They are added after the
  // ServiceEntries, so an explicit ServiceEntry for the same host is the one used.
  const slices = of<EndpointSliceSpec>('EndpointSlice');
  const pods = new Map(of<PodSpec>('Pod').map((p) => [p.key, p]));
  const kubeServices: Resource<ServiceEntrySpec>[] = [];
  for (const svc of of<KubeServiceSpec>('Service')) {
    const conv = serviceEntryFromKubernetes(svc, slices, pods);
    const se: Resource<ServiceEntrySpec> = { ...svc, spec: conv.spec };
    kubeServices.push(se);
    add(conv.host, { se, written: conv.host, kube: { hasSlices: conv.hasSlices } });
  }
  const gateways = of<GatewaySpec>('Gateway').map(normaliseGateway);
  const meshConfigs = of<MeshConfigSpec>('MeshConfig');
  const mesh: MeshConfigSpec = meshConfigs[0]?.spec && typeof meshConfigs[0].spec === 'object' ? meshConfigs[0].spec : {};
  const providers = new Map<string, { provider: RawExtensionProvider; index: number; mc: Resource<MeshConfigSpec> }>();
  if (meshConfigs[0]) {
    arrayOf<RawExtensionProvider>(mesh.extensionProviders).forEach((p, index) => {
      if (p && typeof p.name === 'string' && !providers.has(p.name)) providers.set(p.name, { provider: p, index, mc: meshConfigs[0] });
    });
  }
  return {
    envoyFilters: of<EnvoyFilterSpec>('EnvoyFilter'),
    authorizationPolicies: of<AuthorizationPolicySpec>('AuthorizationPolicy'),
    peerAuthentications: of<PeerAuthenticationSpec>('PeerAuthentication'),
    requestAuthentications: of<RequestAuthenticationSpec>('RequestAuthentication'),
    meshConfigs,
    mesh,
    rootNamespace: typeof mesh.rootNamespace === 'string' && mesh.rootNamespace ? mesh.rootNamespace : DEFAULT_ROOT_NAMESPACE,
    providers,
    gateways,
    virtualServices: of<VirtualServiceSpec>('VirtualService'),
    destinationRules: of<DestinationRuleSpec>('DestinationRule'),
    serviceEntries,
    workloadEntries: of<WorkloadEntrySpec>('WorkloadEntry'),
    kubeServices,
    registry,
    gatewayKeys: new Set(gateways.map((g) => g.key)),
  };
}

/** `mesh`, `ns/name` or `name` (in the referring resource's namespace) → `mesh` or `ns/name`. */
export function gatewayRef(ref: string, namespace: string): string {
  if (ref === 'mesh') return 'mesh';
  return ref.includes('/') ? ref : `${namespace}/${ref}`;
}

/** Istio host wildcard matching: `*` matches anything, `*.a.b` matches any name ending in `.a.b`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) || host === pattern;
  return pattern === host;
}

/** The ServiceEntry registry entry for an FQDN: exact host first, then the longest wildcard. */
export function lookupService(idx: ModelIndex, host: string): RegistryEntry | undefined {
  const exact = idx.registry.get(host);
  if (exact?.length) return exact[0];
  let best: RegistryEntry | undefined;
  let bestLen = -1;
  for (const [pattern, entries] of idx.registry) {
    if (pattern.startsWith('*') && hostMatches(pattern, host) && pattern.length > bestLen) {
      best = entries[0];
      bestLen = pattern.length;
    }
  }
  return best;
}

/**
 * The DestinationRule that applies to `host` for a client in `clientNs`: exact host before
 * wildcards (longest first), then the client's namespace, then the rest by namespace/name.
 */
export function lookupDestinationRule(idx: ModelIndex, host: string, clientNs: string): Resource<DestinationRuleSpec> | undefined {
  let best: { dr: Resource<DestinationRuleSpec>; score: [number, number, number] } | undefined;
  for (const dr of idx.destinationRules) {
    if (typeof dr.spec?.host !== 'string') continue;
    const pattern = fqdn(dr.spec.host, dr.namespace);
    if (!hostMatches(pattern, host)) continue;
    const score: [number, number, number] = [pattern === host ? 0 : 1, -pattern.length, dr.namespace === clientNs ? 0 : 1];
    if (!best || compareTuple(score, best.score) < 0) best = { dr, score };
  }
  return best?.dr;
}

function compareTuple(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** Whether two label selectors could both match one workload (no key with differing values). */
export function selectorsOverlap(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(a)) if (k in b && b[k] !== v) return false;
  return true;
}

/** Whether `labels` satisfy every entry of `selector`. */
export function labelsMatch(selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) if (labels?.[k] !== v) return false;
  return true;
}

/** Gateway server host `ns/host` split; namespace `*` when absent. */
export function splitServerHost(h: string): { ns: string; host: string } {
  const i = h.indexOf('/');
  return i >= 0 ? { ns: h.slice(0, i), host: h.slice(i + 1).toLowerCase() } : { ns: '*', host: h.toLowerCase() };
}

/** Whether a gateway server host allows a VirtualService from `vsNs` (Istio `ns/host` rules). */
export function serverNamespaceAllows(ns: string, gatewayNs: string, vsNs: string): boolean {
  return ns === '*' || (ns === '.' ? gatewayNs === vsNs : ns === vsNs);
}

/**
 * Intersection of a VirtualService host and a gateway server host, Istio style: the more specific
 * of the two when one covers the other, else undefined.
 */
export function intersectHosts(vsHost: string, serverHost: string): string | undefined {
  const a = vsHost.toLowerCase();
  const b = serverHost.toLowerCase();
  if (hostMatches(b, a)) return a;
  if (hostMatches(a, b)) return b;
  return undefined;
}
