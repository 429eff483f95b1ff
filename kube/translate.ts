/**
 * API objects → the config loader's input. Pure: no I/O.
 *
 * - Istio objects (and the `istio` mesh ConfigMap) are cleaned to what a file would hold
 *   (apiVersion, kind, metadata name/namespace/labels/annotations, spec) and parsed by the same
 *   loader as files (config/load.ts `parseConfigText`), so a file and an API object with the same
 *   content compile to the same snapshot. Each is "filed" as `kubernetes:<Kind>/<ns>/<name>`,
 *   which is how its problems are reported and how an invalid object is left out.
 * - Services, EndpointSlices and the Pods behind their endpoints are loaded the same way, as the
 *   documents a file would hold; the config package makes Istio's registry of them
 *   (config/kinds/kubernetes.ts: one `<name>.<ns>.svc.cluster.local` host per Service, ready
 *   endpoints only, subsets by pod labels).
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

/** A Service as a file would hold it (what config/kinds/kubernetes.ts reads: the spec). */
export function serviceDocument(o: KubeObject): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: cleanMetadata(o), spec: o.spec ?? {} };
}

/** An EndpointSlice as a file would hold it (its fields are top level). */
export function endpointSliceDocument(o: KubeObject): Record<string, unknown> {
  const doc: Record<string, unknown> = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: cleanMetadata(o) };
  for (const k of ['addressType', 'endpoints', 'ports']) if (o[k] !== undefined) doc[k] = o[k];
  return doc;
}

/** A Pod reduced to what the registry reads: labels and service account. */
export function podDocument(o: KubeObject): Record<string, unknown> {
  const spec = (o.spec ?? {}) as { serviceAccountName?: string };
  const meta = cleanMetadata(o);
  delete meta.annotations;
  return { apiVersion: 'v1', kind: 'Pod', metadata: meta, spec: spec.serviceAccountName ? { serviceAccountName: spec.serviceAccountName } : {} };
}

/** The Pods EndpointSlices point at (`targetRef`), so 10,000 unrelated pods are not loaded. */
export function referencedPods(slices: Iterable<KubeObject>, pods: ReadonlyMap<string, KubeObject>): KubeObject[] {
  const out = new Map<string, KubeObject>();
  for (const s of slices) {
    for (const ep of (Array.isArray(s.endpoints) ? s.endpoints : []) as { targetRef?: { kind?: string; name?: string; namespace?: string } }[]) {
      const ref = ep?.targetRef;
      if (ref?.kind !== 'Pod' || !ref.name) continue;
      const key = `${ref.namespace ?? s.metadata.namespace}/${ref.name}`;
      const pod = pods.get(key);
      if (pod) out.set(key, pod);
    }
  }
  return [...out.values()];
}

/**
 * Every `credentialName` Gateways and DestinationRules name, and every WasmPlugin
 * `imagePullSecret` (a `kubernetes.io/dockerconfigjson` Secret in the plugin's namespace, as
 * Istio reads it), with the namespaces naming it.
 */
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
    } else if (o.kind === 'WasmPlugin') {
      add(spec.imagePullSecret, o.metadata.namespace);
    }
  }
  return out;
}

/**
 * The keys of a Secret a credential directory holds: TLS (Kubernetes' and Istio's names) and a
 * `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` (WasmPlugin imagePullSecret; the
 * gateway's WasmManager reads `<secrets-dir>/<name>/.dockerconfigjson`).
 */
export const CREDENTIAL_KEYS = ['tls.crt', 'tls.key', 'ca.crt', 'cert', 'key', 'cacert', '.dockerconfigjson'] as const;

/** A Secret's credential files (decoded), or undefined when it has none of the known keys. */
export function credentialFiles(secret: KubeObject): Map<string, Buffer> | undefined {
  const data = (secret.data ?? {}) as Record<string, string>;
  const files = new Map<string, Buffer>();
  for (const k of CREDENTIAL_KEYS) if (typeof data[k] === 'string') files.set(k, Buffer.from(data[k], 'base64'));
  return files.size ? files : undefined;
}
