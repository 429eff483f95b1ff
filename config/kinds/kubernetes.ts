/**
 * Kubernetes objects in config inputs (kustomize output, `kubectl get -o yaml` dumps): `Service`,
 * `discovery.k8s.io/v1 EndpointSlice` and `Pod` become the service registry as they are in a
 * cluster, so VirtualServices naming `reviews` or `centraldashboard.kubeflow.svc.cluster.local`
 * validate and route without hand-written ServiceEntries. Other Kubernetes kinds (Deployment,
 * ConfigMap, CRDs, ...) are skipped by config/load.ts with one info line each.
 *
 * Only the fields Portico reads are modelled; others are ignored without a warning (they are not
 * Istio configuration). Semantics follow Istio's Kubernetes registry
 * (pilot/pkg/serviceregistry/kube): hosts `<name>.<ns>.svc.cluster.local`, the port protocol from
 * `appProtocol`, else the port name prefix (`ConvertProtocol`), endpoints from EndpointSlices whose
 * `kubernetes.io/service-name` label names the Service.
 */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, bool, int, isPlainObject, obj, str, type Schema } from '../schema.ts';
import type { ServiceEntrySpec } from './serviceentry.ts';
import type { WorkloadEntrySpec } from './workloadentry.ts';

export interface RawServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface KubeServiceSpec {
  type?: string;
  selector?: Record<string, string>;
  ports?: RawServicePort[];
  clusterIP?: string;
  externalName?: string;
  publishNotReadyAddresses?: boolean;
}

export interface RawSliceEndpoint {
  addresses?: string[];
  conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
  targetRef?: { kind?: string; name?: string; namespace?: string };
  nodeName?: string;
  zone?: string;
}

/** An EndpointSlice has no `spec`: the loader carries its top-level fields as the spec. */
export interface EndpointSliceSpec {
  addressType?: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints?: RawSliceEndpoint[];
  ports?: { name?: string; port?: number; protocol?: string; appProtocol?: string }[];
}

export interface PodSpec {
  serviceAccountName?: string;
}

const k8s = (fields: Record<string, Schema>, opts: Parameters<typeof obj>[1] = {}): Schema => obj(fields, { unknownFields: 'ignore', ...opts });

export const kubeServiceSpecSchema: Schema = k8s({
  type: str(),
  externalName: str(),
  publishNotReadyAddresses: bool,
  ports: arr(
    k8s(
      {
        name: str(),
        port: int(1, 65535),
        targetPort: { type: 'any' },
        protocol: str(),
        appProtocol: str(),
      },
      { required: ['port'] },
    ),
    {
      check: (ports, path, r) => {
        const names = new Set<string>();
        ports.forEach((p, i) => {
          const name = isPlainObject(p) ? p.name : undefined;
          if (ports.length > 1 && (typeof name !== 'string' || name === '')) {
            r.report(`${path}[${i}].name`, ConfigErrorCodes.REQUIRED, 'a Service with several ports must name each of them');
          }
          if (typeof name === 'string' && name !== '') {
            if (names.has(name)) r.report(`${path}[${i}].name`, ConfigErrorCodes.DUPLICATE_NAME, `duplicate port name '${name}'`);
            names.add(name);
          }
        });
      },
    },
  ),
});

export const endpointSliceSpecSchema: Schema = k8s({
  addressType: str(),
  endpoints: arr(
    k8s({
      addresses: arr(str()),
      conditions: k8s({ ready: bool, serving: bool, terminating: bool }),
      targetRef: k8s({ kind: str(), name: str(), namespace: str() }),
      nodeName: str(),
      zone: str(),
    }),
  ),
  ports: arr(k8s({ name: str(), port: int(1, 65535), protocol: str(), appProtocol: str() })),
});

export const podSpecSchema: Schema = k8s({ serviceAccountName: str() });

/** Protocol names Istio's `protocol.Parse` knows (case-insensitive). */
const ISTIO_PROTOCOLS: Record<string, string> = {
  tcp: 'TCP', udp: 'UDP', grpc: 'GRPC', 'grpc-web': 'GRPC-WEB', http: 'HTTP', http2: 'HTTP2', https: 'HTTPS', tls: 'TLS',
  mongo: 'MONGO', redis: 'REDIS', mysql: 'MYSQL',
};
/** Ports Istio treats as TCP when the name says nothing (ssh, smtp, dns, mysql, mongo...): `wellKnownPorts`. */
const WELL_KNOWN_TCP = new Set([22, 25, 53, 3306, 27017]);

/**
 * Istio's `ConvertProtocol`: UDP stays UDP; `appProtocol` wins over the port name (with the
 * Kubernetes standard names `kubernetes.io/h2c|ws|wss`); otherwise the name's prefix before `-`.
 * Undefined means "detect" (Istio sniffs the protocol), which Portico treats as the name-based default.
 */
export function kubePortProtocol(p: { name?: string; port?: number; protocol?: string; appProtocol?: string }): string | undefined {
  if (p.protocol === 'UDP') return 'UDP';
  let name = p.name ?? '';
  if (p.appProtocol) {
    name = p.appProtocol;
    if (name === 'kubernetes.io/h2c') return 'HTTP2';
    if (name === 'kubernetes.io/ws') return 'HTTP';
    if (name === 'kubernetes.io/wss') return 'HTTPS';
  }
  if (name.toLowerCase().startsWith('grpc-web')) return 'GRPC-WEB';
  const i = name.indexOf('-');
  const prefix = (i >= 0 ? name.slice(0, i) : name).toLowerCase();
  const known = ISTIO_PROTOCOLS[prefix];
  if (known) return known;
  return p.port !== undefined && WELL_KNOWN_TCP.has(p.port) ? 'TCP' : undefined;
}

/** What the conversion needs of each object: enough of `Resource` to stay independent of the loader. */
export interface KubeObject<S> {
  readonly name: string;
  readonly namespace: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly spec: S;
}

const labelsOf = (m: Readonly<Record<string, unknown>>): Record<string, string> =>
  isPlainObject(m.labels) ? (Object.fromEntries(Object.entries(m.labels).filter(([, v]) => typeof v === 'string')) as Record<string, string>) : {};

/**
 * Whether Istio sends an EndpointSlice endpoint to proxies: ready (unset counts as ready), or
 * serving-but-not-ready when the Service publishes not-ready addresses; terminating endpoints are
 * drained (never new traffic).
 */
export function endpointUsable(e: RawSliceEndpoint, publishNotReady: boolean): boolean {
  const c = e.conditions ?? {};
  if (c.terminating === true) return false;
  if (c.ready === false) return publishNotReady;
  return true;
}

/**
 * A Service (+ its EndpointSlices, + the Pods they point at for labels and service accounts) as
 * the ServiceEntry Istio's registry would build for it. With no EndpointSlice in the input, the
 * Service resolves by DNS (`name.ns.svc.cluster.local`, the ClusterIP in a cluster).
 */
export function serviceEntryFromKubernetes(
  svc: KubeObject<KubeServiceSpec>,
  slices: readonly KubeObject<EndpointSliceSpec>[],
  pods: ReadonlyMap<string, KubeObject<PodSpec>>,
): { spec: ServiceEntrySpec; host: string; hasSlices: boolean } {
  const host = `${svc.name}.${svc.namespace}.svc.cluster.local`;
  const spec: KubeServiceSpec = isPlainObject(svc.spec) ? svc.spec : {};
  const ports = (Array.isArray(spec.ports) ? spec.ports : []).filter((p): p is RawServicePort => isPlainObject(p) && typeof p.port === 'number');
  const sePorts = ports.map((p) =>
    strip({
      number: p.port,
      name: typeof p.name === 'string' ? p.name : '',
      protocol: kubePortProtocol(p),
      targetPort: typeof p.targetPort === 'number' ? p.targetPort : undefined,
    }),
  );
  const mine = slices.filter((s) => s.namespace === svc.namespace && labelsOf(s.metadata)['kubernetes.io/service-name'] === svc.name);
  const publishNotReady = spec.publishNotReadyAddresses === true;
  const endpoints: WorkloadEntrySpec[] = [];
  for (const slice of mine) {
    const s: EndpointSliceSpec = isPlainObject(slice.spec) ? slice.spec : {};
    if (s.addressType === 'FQDN') continue; // Istio skips FQDN slices.
    const slicePorts = (Array.isArray(s.ports) ? s.ports : []).filter(isPlainObject);
    // Service port name → the endpoint port the slice gives for it.
    const portMap: Record<string, number> = {};
    for (const sp of slicePorts) if (typeof sp.port === 'number') portMap[typeof sp.name === 'string' ? sp.name : ''] = sp.port;
    for (const e of (Array.isArray(s.endpoints) ? s.endpoints : []).filter((x): x is RawSliceEndpoint => isPlainObject(x))) {
      if (!endpointUsable(e, publishNotReady)) continue;
      const ref = isPlainObject(e.targetRef) && e.targetRef.kind === 'Pod' && typeof e.targetRef.name === 'string' ? e.targetRef : undefined;
      const pod = ref ? pods.get(`${ref.namespace ?? slice.namespace}/${ref.name}`) : undefined;
      for (const address of Array.isArray(e.addresses) ? e.addresses.slice(0, 1) : []) {
        if (typeof address !== 'string') continue;
        endpoints.push(
          strip({
            address,
            ports: { ...portMap },
            labels: pod ? labelsOf(pod.metadata) : {},
            locality: typeof e.zone === 'string' ? e.zone : undefined,
            serviceAccount: pod && typeof pod.spec?.serviceAccountName === 'string' ? pod.spec.serviceAccountName : undefined,
          }),
        );
      }
    }
  }
  const hasSlices = mine.length > 0;
  // Istio: an ExternalName Service is a DNS alias of `externalName`.
  if (spec.type === 'ExternalName' && typeof spec.externalName === 'string' && spec.externalName !== '') {
    return { host, hasSlices: false, spec: { hosts: [host], ports: sePorts, location: 'MESH_INTERNAL', resolution: 'DNS', endpoints: [{ address: spec.externalName }] } };
  }
  return {
    host,
    hasSlices,
    spec: {
      hosts: [host],
      ports: sePorts,
      location: 'MESH_INTERNAL',
      resolution: hasSlices ? 'STATIC' : 'DNS',
      endpoints,
    },
  };
}

function strip<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
