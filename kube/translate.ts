/**
 * API objects → the config loader's input. Pure: no I/O.
 *
 * - Istio objects (and the `istio` mesh ConfigMap) are cleaned to what a file would hold
 *   (apiVersion, kind, metadata name/namespace/labels/annotations, spec) and parsed by the same
 *   loader as files (config/load.ts `parseConfigText`), so a file and an API object with the same
 *   content compile to the same snapshot. Each is "filed" as `kubernetes:<Kind>/<ns>/<name>`,
 *   which is how its problems are reported and how an invalid object is left out.
 * - Services with their EndpointSlices (and the Pods behind them) become what Istio's registry
 *   makes of them: one MESH_INTERNAL ServiceEntry per Service, host
 *   `<name>.<ns>.svc.cluster.local`, resolution STATIC, one endpoint per ready address with the
 *   pod's labels and service account (so DestinationRule subsets select pods by label).
 *   Endpoints that are not ready (terminating, failing readiness) are left out: no new requests
 *   go to them, and requests already in flight finish on their open connections.
 */
import { stringify } from 'yaml';
import type { ConfigIssue } from '../config/errors.ts';
import { parseConfigText, type Resource } from '../config/load.ts';
import type { KubeObject } from './reflector.ts';

export const KUBE_FILE_PREFIX = 'kubernetes:';

/** `kubernetes:Kind/ns/name`: the pseudo file an API object is loaded from. */
export function objectFile(kind: string, namespace: string | undefined, name: string): string {
  return `${KUBE_FILE_PREFIX}${kind}/${namespace ? `${namespace}/` : ''}${name}`;
}

/** `Kind/ns/name` of an issue raised on an API object (its pseudo file), else undefined. */
export function objectIdOf(issue: ConfigIssue): string | undefined {
  return issue.file.startsWith(KUBE_FILE_PREFIX) ? issue.file.slice(KUBE_FILE_PREFIX.length) : undefined;
}

/** `Kind/ns/name: field.path: message` (Contracts: `portico validate --kubernetes` lines). */
export function formatKubeIssue(issue: ConfigIssue): string {
  const id = objectIdOf(issue);
  const parts = [id ?? `${issue.file}:${issue.line}`];
  if (!id && (issue.kind || issue.name)) parts.push(`${issue.kind}/${issue.name}`);
  if (issue.path) parts.push(issue.path);
  parts.push(issue.severity === 'warning' ? `warning: ${issue.message}` : issue.message);
  return parts.join(': ');
}

function cleanMetadata(o: KubeObject): Record<string, unknown> {
  const m = o.metadata;
  const out: Record<string, unknown> = { name: m.name };
  if (m.namespace) out.namespace = m.namespace;
  if (m.labels && Object.keys(m.labels).length) out.labels = m.labels;
  const ann = Object.fromEntries(Object.entries(m.annotations ?? {}).filter(([k]) => k !== 'kubectl.kubernetes.io/last-applied-configuration'));
  if (Object.keys(ann).length) out.annotations = ann;
  return out;
}

/** Parses one cleaned document through the file loader, filed under the object's id. */
export function loadDocument(doc: Record<string, unknown>, kind: string, namespace: string | undefined, name: string): { resources: Resource[]; issues: ConfigIssue[] } {
  return parseConfigText(stringify(doc, { lineWidth: 0 }), objectFile(kind, namespace, name));
}

/** An Istio object as the file loader would read it. */
export function istioDocument(o: KubeObject): Record<string, unknown> {
  return { apiVersion: o.apiVersion, kind: o.kind, metadata: cleanMetadata(o), spec: o.spec ?? {} };
}

/** The mesh ConfigMap as a file would hold it (only `data.mesh` matters). */
export function meshConfigMapDocument(o: KubeObject): Record<string, unknown> {
  const data = (o.data ?? {}) as Record<string, unknown>;
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { ...cleanMetadata(o), name: 'istio' }, data: { mesh: data.mesh ?? '' } };
}

interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

interface SlicePort {
  name?: string;
  port?: number;
  protocol?: string;
}

interface SliceEndpoint {
  addresses?: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  targetRef?: { kind?: string; name?: string; namespace?: string };
  zone?: string;
}

/** Istio's protocol selection: `appProtocol`, else the port name's prefix (`http-web`), else HTTP. */
// https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/
export function portProtocol(p: ServicePort): string {
  if (p.protocol === 'UDP') return 'UDP';
  const explicit = (p.appProtocol ?? '').toLowerCase().replace(/^kubernetes\.io\//, '');
  const byName = (p.name ?? '').toLowerCase().split('-')[0];
  const known: Record<string, string> = {
    http: 'HTTP', http2: 'HTTP2', h2c: 'HTTP2', https: 'HTTPS', grpc: 'GRPC', 'grpc-web': 'GRPC-WEB',
    tcp: 'TCP', tls: 'TLS', mongo: 'MONGO', mysql: 'MYSQL', redis: 'REDIS', ws: 'HTTP', wss: 'HTTPS',
  };
  if (explicit === 'grpc-web' || (p.name ?? '').toLowerCase().startsWith('grpc-web')) return 'GRPC-WEB';
  return known[explicit] ?? known[byName] ?? 'HTTP';
}

/** The ServiceEntry port name for a Service port (Services may leave a single port unnamed). */
function portName(p: ServicePort): string {
  return p.name || `port-${p.port}`;
}

export interface RegistryInput {
  readonly services: Iterable<KubeObject>;
  /** Every EndpointSlice; grouped here by `kubernetes.io/service-name`. */
  readonly slices: Iterable<KubeObject>;
  /** `ns/name` → Pod, for labels and service accounts behind each endpoint. */
  readonly pods: ReadonlyMap<string, KubeObject>;
}

/** One ServiceEntry document per Service (see the file comment). */
export function serviceEntryDocuments(input: RegistryInput): { doc: Record<string, unknown>; service: KubeObject }[] {
  const slicesBySvc = new Map<string, KubeObject[]>();
  for (const s of input.slices) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc || !s.metadata.namespace) continue;
    const k = `${s.metadata.namespace}/${svc}`;
    const list = slicesBySvc.get(k) ?? [];
    list.push(s);
    slicesBySvc.set(k, list);
  }
  const out: { doc: Record<string, unknown>; service: KubeObject }[] = [];
  for (const svc of input.services) {
    const ns = svc.metadata.namespace ?? 'default';
    const spec = (svc.spec ?? {}) as { type?: string; ports?: ServicePort[]; externalName?: string };
    const ports = (spec.ports ?? []).filter((p) => typeof p?.port === 'number');
    const host = `${svc.metadata.name}.${ns}.svc.cluster.local`;
    const sePorts = ports.map((p) =>
      Object.assign({ number: p.port, name: portName(p), protocol: portProtocol(p) }, typeof p.targetPort === 'number' ? { targetPort: p.targetPort } : {}),
    );
    const base = { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: svc.metadata.name, namespace: ns } };
    if (spec.type === 'ExternalName' && spec.externalName) {
      out.push({ service: svc, doc: { ...base, spec: { hosts: [host], location: 'MESH_EXTERNAL', resolution: 'DNS', ports: sePorts, endpoints: [{ address: spec.externalName }] } } });
      continue;
    }
    const endpoints = new Map<string, Record<string, unknown>>();
    for (const slice of (slicesBySvc.get(`${ns}/${svc.metadata.name}`) ?? []).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))) {
      const addressType = slice.addressType as string | undefined;
      if (addressType !== 'IPv4' && addressType !== 'IPv6') continue;
      const slicePorts = (slice.ports ?? []) as SlicePort[];
      for (const ep of (slice.endpoints ?? []) as SliceEndpoint[]) {
        // ready unset means ready (discovery.k8s.io/v1); terminating endpoints have ready=false.
        if (ep.conditions?.ready === false) continue;
        const pod = ep.targetRef?.kind === 'Pod' && ep.targetRef.name ? input.pods.get(`${ep.targetRef.namespace ?? ns}/${ep.targetRef.name}`) : undefined;
        const podSpec = (pod?.spec ?? {}) as { serviceAccountName?: string };
        const epPorts: Record<string, number> = {};
        for (const sp of ports) {
          const match = slicePorts.find((x) => (x.name ?? '') === (sp.name ?? ''));
          if (match?.port) epPorts[portName(sp)] = match.port;
        }
        for (const address of ep.addresses ?? []) {
          if (endpoints.has(address)) continue;
          const e: Record<string, unknown> = { address, ports: epPorts };
          const labels = pod?.metadata.labels;
          if (labels && Object.keys(labels).length) e.labels = labels;
          if (podSpec.serviceAccountName) e.serviceAccount = podSpec.serviceAccountName;
          if (ep.zone) e.locality = ep.zone;
          endpoints.set(address, e);
        }
      }
    }
    const eps = [...endpoints.values()].sort((a, b) => (String(a.address) < String(b.address) ? -1 : 1));
    out.push({ service: svc, doc: { ...base, spec: { hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: sePorts, endpoints: eps } } });
  }
  return out;
}

/** Every `credentialName` Gateways and DestinationRules name, with the namespaces naming it. */
export function credentialNames(objects: Iterable<KubeObject>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const add = (name: unknown, ns: string | undefined): void => {
    if (typeof name !== 'string' || !name || !ns) return;
    const set = out.get(name) ?? new Set<string>();
    set.add(ns);
    out.set(name, set);
  };
  for (const o of objects) {
    const spec = (o.spec ?? {}) as Record<string, unknown>;
    if (o.kind === 'Gateway') {
      for (const s of Array.isArray(spec.servers) ? spec.servers : []) add((s as { tls?: { credentialName?: unknown } })?.tls?.credentialName, o.metadata.namespace);
    } else if (o.kind === 'DestinationRule') {
      const tp = spec.trafficPolicy as { tls?: { credentialName?: unknown } } | undefined;
      add(tp?.tls?.credentialName, o.metadata.namespace);
      for (const s of Array.isArray(spec.subsets) ? spec.subsets : []) add((s as { trafficPolicy?: { tls?: { credentialName?: unknown } } })?.trafficPolicy?.tls?.credentialName, o.metadata.namespace);
    }
  }
  return out;
}

/** The keys of a TLS Secret a credential directory holds (Kubernetes' and Istio's names). */
export const CREDENTIAL_KEYS = ['tls.crt', 'tls.key', 'ca.crt', 'cert', 'key', 'cacert'] as const;

/** A Secret's credential files (decoded), or undefined when it has none of the known keys. */
export function credentialFiles(secret: KubeObject): Map<string, Buffer> | undefined {
  const data = (secret.data ?? {}) as Record<string, string>;
  const files = new Map<string, Buffer>();
  for (const k of CREDENTIAL_KEYS) if (typeof data[k] === 'string') files.set(k, Buffer.from(data[k], 'base64'));
  return files.size ? files : undefined;
}
