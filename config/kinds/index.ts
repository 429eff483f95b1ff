/**
 * The registry of resource kinds Portico reads. Each entry says which apiVersions are accepted
 * and how the spec is validated; `compiled: false` kinds are accepted and kept raw (their spec is
 * carried on the loaded resource) until the runtime needs them.
 */
import type { Schema } from '../schema.ts';
import { authorizationpolicySpecSchema } from './authorizationpolicy.ts';
import { destinationRuleSpecSchema } from './destinationrule.ts';
import { envoyfilterSpecSchema } from './envoyfilter.ts';
import { gatewaySpecSchema } from './gateway.ts';
import { meshconfigSpecSchema } from './meshconfig.ts';
import { peerauthenticationSpecSchema } from './peerauthentication.ts';
import { requestauthenticationSpecSchema } from './requestauthentication.ts';
import { serviceEntrySpecSchema } from './serviceentry.ts';
import { virtualServiceSpecSchema } from './virtualservice.ts';
import { workloadEntrySpecSchema } from './workloadentry.ts';
import { wasmpluginSpecSchema } from './wasmplugin.ts';
import { endpointSliceSpecSchema, kubeServiceSpecSchema, podSpecSchema } from './kubernetes.ts';

export interface KindDef {
  readonly kind: string;
  readonly apiVersions: readonly string[];
  readonly spec: Schema;
  /** Whether config/compile.ts turns this kind into snapshot entries yet. */
  readonly compiled: boolean;
  /** Whether the resource lives in a namespace (MeshConfig is mesh-wide but still keyed by one). */
  readonly namespaced: boolean;
  /** Istio (or Portico) configuration, documented field by field (the default); false for the Kubernetes kinds read for the registry. */
  readonly istio?: boolean;
  /** The object has no `spec`: its top-level fields other than apiVersion/kind/metadata are the spec (EndpointSlice). */
  readonly topLevelSpec?: boolean;
}

const NETWORKING = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];
const SECURITY = ['security.istio.io/v1', 'security.istio.io/v1beta1'];

export const KINDS: ReadonlyMap<string, KindDef> = new Map(
  (
    [
      { kind: 'Gateway', apiVersions: NETWORKING, spec: gatewaySpecSchema, compiled: true, namespaced: true },
      { kind: 'VirtualService', apiVersions: NETWORKING, spec: virtualServiceSpecSchema, compiled: true, namespaced: true },
      { kind: 'DestinationRule', apiVersions: NETWORKING, spec: destinationRuleSpecSchema, compiled: true, namespaced: true },
      { kind: 'ServiceEntry', apiVersions: NETWORKING, spec: serviceEntrySpecSchema, compiled: true, namespaced: true },
      { kind: 'WorkloadEntry', apiVersions: NETWORKING, spec: workloadEntrySpecSchema, compiled: true, namespaced: true },
      { kind: 'EnvoyFilter', apiVersions: ['networking.istio.io/v1alpha3'], spec: envoyfilterSpecSchema, compiled: false, namespaced: true },
      { kind: 'PeerAuthentication', apiVersions: SECURITY, spec: peerauthenticationSpecSchema, compiled: false, namespaced: true },
      { kind: 'AuthorizationPolicy', apiVersions: SECURITY, spec: authorizationpolicySpecSchema, compiled: false, namespaced: true },
      { kind: 'RequestAuthentication', apiVersions: SECURITY, spec: requestauthenticationSpecSchema, compiled: false, namespaced: true },
      { kind: 'WasmPlugin', apiVersions: ['extensions.istio.io/v1alpha1'], spec: wasmpluginSpecSchema, compiled: true, namespaced: true },
      { kind: 'MeshConfig', apiVersions: ['portico.dev/v1alpha1'], spec: meshconfigSpecSchema, compiled: false, namespaced: false },
      // Kubernetes objects read for the service registry (config/kinds/kubernetes.ts).
      { kind: 'Service', apiVersions: ['v1'], spec: kubeServiceSpecSchema, compiled: true, namespaced: true, istio: false },
      { kind: 'EndpointSlice', apiVersions: ['discovery.k8s.io/v1'], spec: endpointSliceSpecSchema, compiled: true, namespaced: true, istio: false, topLevelSpec: true },
      { kind: 'Pod', apiVersions: ['v1'], spec: podSpecSchema, compiled: true, namespaced: true, istio: false },
    ] satisfies KindDef[]
  ).map((d) => [d.kind, d]),
);

export type { GatewaySpec, RawServer, RawServerTls } from './gateway.ts';
export type { VirtualServiceSpec, RawHttpRoute, RawHttpMatch, RawDestination, RawHeaders } from './virtualservice.ts';
export type { DestinationRuleSpec, RawTrafficPolicy, RawPortTrafficPolicy, RawClientTls } from './destinationrule.ts';
export type { ServiceEntrySpec } from './serviceentry.ts';
export type { WorkloadEntrySpec } from './workloadentry.ts';
