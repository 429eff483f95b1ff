/**
 * Sidecar injection, the pure part: decide whether a Pod gets the Portico sidecar exactly as
 * Istio's injector decides it, and build the RFC 6902 JSON patch that adds it. No I/O.
 *
 * Decision (both halves, since the API server only calls the webhook when a selector matches):
 *   1. The MutatingWebhookConfiguration's four webhooks (Istio's chart, istio-discovery
 *      templates/mutatingwebhook.yaml, as `istioctl install` renders them for revision `default`):
 *        namespace.sidecar-injector  ns: istio-injection In [enabled]
 *                                    pod: sidecar.istio.io/inject NotIn [false]
 *        object.sidecar-injector     ns: istio-injection DoesNotExist, istio.io/rev DoesNotExist
 *                                    pod: sidecar.istio.io/inject In [true], istio.io/rev DoesNotExist
 *        rev.namespace...            ns: istio.io/rev In [<rev>], istio-injection DoesNotExist
 *                                    pod: sidecar.istio.io/inject NotIn [false]
 *        rev.object...               ns: istio.io/rev DoesNotExist, istio-injection DoesNotExist
 *                                    pod: sidecar.istio.io/inject NotIn [false], istio.io/rev In [<rev>]
 *      (selectors see labels only: the `sidecar.istio.io/inject` *annotation* cannot bring a pod
 *      of an unlabelled namespace in, it can only opt a pod of a labelled one out.)
 *   2. pkg/kube/inject/inject.go `injectRequired`: hostNetwork pods are never injected (the
 *      iptables rules would land in the node's namespace); kube-system, kube-public,
 *      kube-node-lease and local-path-storage are ignored; the pod *label*
 *      `sidecar.istio.io/inject` wins over the annotation; `y|yes|true|on` inject, any other
 *      non-empty value does not, empty means the namespace policy (enabled) decides.
 *   Istio re-injects an already injected pod idempotently (stripPod); Portico leaves a pod that
 *   carries `sidecar.istio.io/status` or an `istio-proxy` container alone (a warning, no patch).
 *
 * Injected (names as Istio's, so `kubectl logs -c istio-proxy` and tooling keep working):
 *   - init container `istio-init`: `portico iptables` (NET_ADMIN, NET_RAW), see kube/iptables.ts;
 *   - container `istio-proxy`: `portico sidecar --kubernetes-pod`, uid/gid 1337, identity from
 *     the downward API (POD_NAME, POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT), the projected
 *     token (audience istio-ca) at /var/run/secrets/tokens/istio-token (kube/tokenreview.ts);
 *   - volume `istio-token`; annotation `sidecar.istio.io/status`; label `security.istio.io/tlsMode: istio`.
 * App HTTP/TCP probes are rewritten as Istio's app_probe.go does: to
 * `/app-health/<container>/livez|readyz|startupz` on the sidecar's status port 15020, the
 * original in the sidecar's env `ISTIO_KUBE_APP_PROBERS`, so kubelet probes work under STRICT mTLS.
 */
import { INBOUND_LISTENER_BASE, type CaptureConfig } from './iptables.ts';
import type { KubeApi } from './api.ts';

export const PROXY_CONTAINER = 'istio-proxy';
export const INIT_CONTAINER = 'istio-init';
export const TOKEN_VOLUME = 'istio-token';
export const PROXY_UID = 1337;
export const STATUS_PORT = 15020;
export const STATUS_ANNOTATION = 'sidecar.istio.io/status';
export const INJECT_KEY = 'sidecar.istio.io/inject';
export const NS_INJECTION_LABEL = 'istio-injection';
export const REV_LABEL = 'istio.io/rev';
export const DEFAULT_REVISION = 'default';
export const APP_PROBERS_ENV = 'ISTIO_KUBE_APP_PROBERS';
export const POD_LABELS_ENV = 'PORTICO_POD_LABELS';
export const INBOUND_PORTS_ENV = 'PORTICO_INBOUND_PORTS';

/** Istio's IgnoredNamespaces (pkg/kube/inject: kube-system, kube-public, kube-node-lease, local-path-storage). */
export const IGNORED_NAMESPACES: ReadonlySet<string> = new Set(['kube-system', 'kube-public', 'kube-node-lease', 'local-path-storage']);

/** Annotations read at injection; any other `sidecar.istio.io/*` / `traffic.sidecar.istio.io/*` one is warned about. */
export const KNOWN_ANNOTATIONS = [
  INJECT_KEY,
  STATUS_ANNOTATION,
  'sidecar.istio.io/rewriteAppHTTPProbers',
  'sidecar.istio.io/proxyImage',
  'sidecar.istio.io/proxyCPU',
  'sidecar.istio.io/proxyMemory',
  'sidecar.istio.io/proxyCPULimit',
  'sidecar.istio.io/proxyMemoryLimit',
  'sidecar.istio.io/interceptionMode',
  'traffic.sidecar.istio.io/includeInboundPorts',
  'traffic.sidecar.istio.io/excludeInboundPorts',
  'traffic.sidecar.istio.io/includeOutboundPorts',
  'traffic.sidecar.istio.io/excludeOutboundPorts',
  'traffic.sidecar.istio.io/includeOutboundIPRanges',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges',
] as const;

export interface Probe {
  httpGet?: { path?: string; port?: number | string; host?: string; scheme?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port?: number | string; host?: string };
  grpc?: { port?: number; service?: string };
  exec?: unknown;
  timeoutSeconds?: number;
  [k: string]: unknown;
}

export interface Container {
  name: string;
  image?: string;
  ports?: { containerPort: number; name?: string; protocol?: string }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  [k: string]: unknown;
}

export interface PodLike {
  metadata?: { name?: string; generateName?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { hostNetwork?: boolean; containers?: Container[]; initContainers?: Container[]; volumes?: unknown[]; serviceAccountName?: string; [k: string]: unknown };
}

export interface InjectDecision {
  readonly inject: boolean;
  /** Why, for logs and the AdmissionReview's `status.message`-less answers. */
  readonly reason: string;
}

interface Requirement {
  readonly key: string;
  readonly op: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values?: readonly string[];
}

export interface LabelSelector {
  readonly matchExpressions: readonly Requirement[];
}

export interface WebhookSelectors {
  readonly name: string;
  readonly namespaceSelector: LabelSelector;
  readonly objectSelector: LabelSelector;
}

/** The four webhooks of Istio's injector configuration for `revision` (see the header). */
export function injectorWebhooks(revision = DEFAULT_REVISION): WebhookSelectors[] {
  const notFalse: Requirement = { key: INJECT_KEY, op: 'NotIn', values: ['false'] };
  return [
    { name: 'rev.namespace.sidecar-injector.istio.io', namespaceSelector: { matchExpressions: [{ key: REV_LABEL, op: 'In', values: [revision] }, { key: NS_INJECTION_LABEL, op: 'DoesNotExist' }] }, objectSelector: { matchExpressions: [notFalse] } },
    { name: 'rev.object.sidecar-injector.istio.io', namespaceSelector: { matchExpressions: [{ key: REV_LABEL, op: 'DoesNotExist' }, { key: NS_INJECTION_LABEL, op: 'DoesNotExist' }] }, objectSelector: { matchExpressions: [notFalse, { key: REV_LABEL, op: 'In', values: [revision] }] } },
    { name: 'namespace.sidecar-injector.istio.io', namespaceSelector: { matchExpressions: [{ key: NS_INJECTION_LABEL, op: 'In', values: ['enabled'] }] }, objectSelector: { matchExpressions: [notFalse] } },
    { name: 'object.sidecar-injector.istio.io', namespaceSelector: { matchExpressions: [{ key: NS_INJECTION_LABEL, op: 'DoesNotExist' }, { key: REV_LABEL, op: 'DoesNotExist' }] }, objectSelector: { matchExpressions: [{ key: INJECT_KEY, op: 'In', values: ['true'] }, { key: REV_LABEL, op: 'DoesNotExist' }] } },
  ];
}

/** Kubernetes label selector semantics (k8s.io/apimachinery labels.Selector). */
export function selectorMatches(sel: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  return sel.matchExpressions.every((r) => {
    const has = Object.hasOwn(labels, r.key);
    switch (r.op) {
      case 'In':
        return has && (r.values ?? []).includes(labels[r.key]!);
      case 'NotIn':
        return !has || !(r.values ?? []).includes(labels[r.key]!);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
    }
  });
}

/** The selector as the API wants it (`operator`, not `op`). */
export function selectorJson(sel: LabelSelector): Record<string, unknown> {
  return { matchExpressions: sel.matchExpressions.map((r) => ({ key: r.key, operator: r.op, ...(r.values ? { values: [...r.values] } : {}) })) };
}

/** Whether the pod gets a sidecar (see the header for the rules and their sources). */
export function injectionDecision(pod: PodLike, namespaceLabels: Readonly<Record<string, string>> | undefined, revision = DEFAULT_REVISION): InjectDecision {
  const meta = pod.metadata ?? {};
  const labels = meta.labels ?? {};
  const annotations = meta.annotations ?? {};
  // Without namespace labels (the webhook: the API server has applied the selectors already).
  const hook = namespaceLabels === undefined ? { name: 'the webhook' } : injectorWebhooks(revision).find((w) => selectorMatches(w.namespaceSelector, namespaceLabels) && selectorMatches(w.objectSelector, labels));
  if (!hook) return { inject: false, reason: 'no injector webhook selects this pod (namespace label istio-injection=enabled or istio.io/rev, or pod label sidecar.istio.io/inject=true)' };
  if (pod.spec?.hostNetwork) return { inject: false, reason: 'hostNetwork pod: the iptables rules would change the node, not the pod' };
  if (meta.namespace && IGNORED_NAMESPACES.has(meta.namespace)) return { inject: false, reason: `namespace ${meta.namespace} is never injected` };
  if (annotations[STATUS_ANNOTATION] !== undefined || (pod.spec?.containers ?? []).some((c) => c.name === PROXY_CONTAINER)) {
    return { inject: false, reason: `already injected (${STATUS_ANNOTATION} or an ${PROXY_CONTAINER} container present)` };
  }
  // The label is the newer API and wins over the annotation (inject.go).
  const value = (Object.hasOwn(labels, INJECT_KEY) ? labels[INJECT_KEY] : annotations[INJECT_KEY]) ?? '';
  if (value === '') return { inject: true, reason: `selected by ${hook.name}; namespace policy enabled` };
  if (['y', 'yes', 'true', 'on'].includes(value.toLowerCase())) return { inject: true, reason: `${INJECT_KEY}=${value}` };
  return { inject: false, reason: `${INJECT_KEY}=${value}` };
}

export interface InjectOptions {
  /** The Portico image for both injected containers (`sidecar.istio.io/proxyImage` overrides it). */
  readonly image: string;
  /** Where the sidecar gets its snapshot and certificate, e.g. http://portico-controlplane.portico-system.svc:15010. */
  readonly controlPlaneUrl: string;
  /** MeshConfig defaultConfig `holdApplicationUntilProxyStarts` is not modelled; sidecar goes first anyway. */
  readonly revision?: string;
}

export type JsonPatchOp = { op: 'add' | 'replace' | 'remove'; path: string; value?: unknown };

export interface InjectResult {
  readonly patch: JsonPatchOp[];
  readonly warnings: string[];
  /** The inbound capture the init container and the sidecar agree on: app port → sidecar listener. */
  readonly capture: CaptureConfig;
}

/** A JSON Pointer segment (RFC 6901: `~` → `~0`, `/` → `~1`). */
export function pointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** A comma-separated port list annotation; `where` names it in errors. */
export function parsePorts(value: string | undefined, where: string): number[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((p) => {
    const s = p.trim();
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new Error(`${where}: '${s}' is not a port number (1-65535)`);
    return n;
  });
}

function parseCidrs(value: string | undefined, where: string): string[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((c) => {
    const s = c.trim();
    if (s === '*') return s;
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(s);
    if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || (m[5] !== undefined && Number(m[5]) > 32)) throw new Error(`${where}: '${s}' is not an IPv4 CIDR (IPv6 ranges are not captured)`);
    return m[5] === undefined ? `${s}/32` : s;
  });
}

const PROBE_KINDS = [
  ['livenessProbe', 'livez'],
  ['readinessProbe', 'readyz'],
  ['startupProbe', 'startupz'],
] as const;

function resolvePort(c: Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port === 'string' && /^\d+$/.test(port)) return Number(port);
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

/** What the sidecar calls for one rewritten probe (Istio's ISTIO_KUBE_APP_PROBERS value shape). */
export interface AppProber {
  httpGet?: { path: string; port: number; scheme: 'HTTP' | 'HTTPS'; host?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port: number; host?: string };
  timeoutSeconds?: number;
}

function clone<T>(x: T): T {
  return structuredClone(x);
}

/**
 * The JSON patch adding the sidecar, init container, token volume, status annotation and
 * rewritten probes. Throws (the webhook then denies the pod with the message) on an invalid
 * annotation value, naming it.
 */
export function injectionPatch(pod: PodLike, opts: InjectOptions): InjectResult {
  const meta = pod.metadata ?? {};
  const ann = meta.annotations ?? {};
  const where = `Pod/${meta.namespace ?? ''}/${meta.name ?? meta.generateName ?? ''}: metadata.annotations`;
  const warnings: string[] = [];
  for (const k of Object.keys(ann)) {
    if ((k.startsWith('sidecar.istio.io/') || k.startsWith('traffic.sidecar.istio.io/') || k === 'proxy.istio.io/config') && !(KNOWN_ANNOTATIONS as readonly string[]).includes(k)) {
      warnings.push(`${where}.${k}: accepted but not enforced by Portico's injector`);
    }
  }
  const mode = ann['sidecar.istio.io/interceptionMode'];
  if (mode !== undefined && mode !== 'REDIRECT') warnings.push(`${where}.sidecar.istio.io/interceptionMode: '${mode}' is not supported; REDIRECT is used`);

  const containers = clone(pod.spec?.containers ?? []);
  // Inbound capture: every containerPort (Istio's default `*`), or the annotation's list.
  const declared = [...new Set(containers.flatMap((c) => (c.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort)))].sort((a, b) => a - b);
  const includeIn = ann['traffic.sidecar.istio.io/includeInboundPorts'];
  let inbound: number[];
  if (includeIn === undefined || includeIn.trim() === '*') {
    if (includeIn?.trim() === '*') warnings.push(`${where}.traffic.sidecar.istio.io/includeInboundPorts: '*' captures the declared containerPorts only (${declared.join(',') || 'none'}): Portico needs one listener per captured port`);
    inbound = declared;
  } else inbound = parsePorts(includeIn, `${where}.traffic.sidecar.istio.io/includeInboundPorts`);
  const excludeIn = new Set([...parsePorts(ann['traffic.sidecar.istio.io/excludeInboundPorts'], `${where}.traffic.sidecar.istio.io/excludeInboundPorts`), STATUS_PORT]);
  inbound = [...new Set(inbound)].filter((p) => !excludeIn.has(p));
  const used = new Set([...declared, STATUS_PORT, 15001]);
  const listeners = new Map<number, number>();
  let next = INBOUND_LISTENER_BASE;
  for (const p of inbound) {
    while (used.has(next)) next++;
    listeners.set(p, next);
    used.add(next++);
  }
  const capture: CaptureConfig = {
    inbound: listeners,
    excludeOutboundPorts: parsePorts(ann['traffic.sidecar.istio.io/excludeOutboundPorts'], `${where}.traffic.sidecar.istio.io/excludeOutboundPorts`),
    includeOutboundPorts: parsePorts(ann['traffic.sidecar.istio.io/includeOutboundPorts'], `${where}.traffic.sidecar.istio.io/includeOutboundPorts`),
    includeOutboundIPRanges: ann['traffic.sidecar.istio.io/includeOutboundIPRanges'] !== undefined ? parseCidrs(ann['traffic.sidecar.istio.io/includeOutboundIPRanges'], `${where}.traffic.sidecar.istio.io/includeOutboundIPRanges`) : ['*'],
    excludeOutboundIPRanges: parseCidrs(ann['traffic.sidecar.istio.io/excludeOutboundIPRanges'], `${where}.traffic.sidecar.istio.io/excludeOutboundIPRanges`),
  };

  // Probes (app_probe.go): HTTP and TCP probes go to the sidecar's status port.
  const rewriteValue = ann['sidecar.istio.io/rewriteAppHTTPProbers'];
  const rewrite = rewriteValue === undefined || !['false', 'n', 'no', 'off'].includes(rewriteValue.toLowerCase());
  const probers: Record<string, AppProber> = {};
  if (rewrite) {
    for (const c of containers) {
      for (const [field, suffix] of PROBE_KINDS) {
        const probe = c[field];
        if (!probe) continue;
        const path = `/app-health/${c.name}/${suffix}`;
        const at = `Pod/${meta.namespace ?? ''}/${meta.name ?? meta.generateName ?? ''}: spec.containers[${c.name}].${field}`;
        let prober: AppProber | undefined;
        if (probe.httpGet) {
          const port = resolvePort(c, probe.httpGet.port);
          if (port === undefined) {
            warnings.push(`${at}.httpGet.port: '${String(probe.httpGet.port)}' names no containerPort; probe not rewritten`);
            continue;
          }
          const scheme = (probe.httpGet.scheme ?? 'HTTP').toUpperCase() === 'HTTPS' ? 'HTTPS' : 'HTTP';
          prober = { httpGet: { path: probe.httpGet.path ?? '/', port, scheme, ...(probe.httpGet.host ? { host: probe.httpGet.host } : {}), ...(probe.httpGet.httpHeaders?.length ? { httpHeaders: probe.httpGet.httpHeaders } : {}) } };
        } else if (probe.tcpSocket) {
          const port = resolvePort(c, probe.tcpSocket.port);
          if (port === undefined) {
            warnings.push(`${at}.tcpSocket.port: '${String(probe.tcpSocket.port)}' names no containerPort; probe not rewritten`);
            continue;
          }
          prober = { tcpSocket: { port, ...(probe.tcpSocket.host ? { host: probe.tcpSocket.host } : {}) } };
        } else if (probe.grpc) {
          warnings.push(`${at}.grpc: gRPC probes are not rewritten; under STRICT mTLS they fail unless port ${probe.grpc.port} is excluded from capture (traffic.sidecar.istio.io/excludeInboundPorts)`);
          continue;
        } else continue; // exec probes run in the container: nothing to rewrite
        if (probe.timeoutSeconds !== undefined) prober.timeoutSeconds = probe.timeoutSeconds;
        probers[path] = prober;
        const { httpGet: _h, tcpSocket: _t, ...rest } = probe;
        c[field] = { ...rest, httpGet: { path, port: STATUS_PORT, scheme: 'HTTP' } };
      }
    }
  }

  const image = ann['sidecar.istio.io/proxyImage'] ?? opts.image;
  const resources: Record<string, Record<string, string>> = {};
  const res = (kind: 'requests' | 'limits', key: 'cpu' | 'memory', a: string): void => {
    const v = ann[a];
    if (v !== undefined) (resources[kind] ??= {})[key] = v;
  };
  res('requests', 'cpu', 'sidecar.istio.io/proxyCPU');
  res('requests', 'memory', 'sidecar.istio.io/proxyMemory');
  res('limits', 'cpu', 'sidecar.istio.io/proxyCPULimit');
  res('limits', 'memory', 'sidecar.istio.io/proxyMemoryLimit');
  const inboundArg = [...listeners].map(([a, l]) => `${a}=${l}`).join(',');
  const labels = { ...(meta.labels ?? {}) };
  const fieldEnv = (name: string, fieldPath: string): Record<string, unknown> => ({ name, valueFrom: { fieldRef: { fieldPath } } });
  const proxy: Container = {
    name: PROXY_CONTAINER,
    image,
    args: ['sidecar', '--controlplane', opts.controlPlaneUrl, '--kubernetes-pod', '--token-file', '/var/run/secrets/tokens/istio-token', '--metrics-port', String(STATUS_PORT)],
    env: [
      fieldEnv('POD_NAME', 'metadata.name'),
      fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('INSTANCE_IP', 'status.podIP'),
      fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      { name: POD_LABELS_ENV, value: JSON.stringify(labels) },
      { name: INBOUND_PORTS_ENV, value: inboundArg },
      ...(Object.keys(probers).length ? [{ name: APP_PROBERS_ENV, value: JSON.stringify(probers) }] : []),
    ],
    ports: [{ containerPort: STATUS_PORT, name: 'http-status', protocol: 'TCP' }],
    readinessProbe: { httpGet: { path: '/healthz/ready', port: STATUS_PORT }, initialDelaySeconds: 1, periodSeconds: 2, failureThreshold: 30 },
    securityContext: { runAsUser: PROXY_UID, runAsGroup: PROXY_UID, runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] } },
    volumeMounts: [{ name: TOKEN_VOLUME, mountPath: '/var/run/secrets/tokens', readOnly: true }],
    ...(Object.keys(resources).length ? { resources } : {}),
  };
  const init: Container = {
    name: INIT_CONTAINER,
    image,
    args: ['iptables', ...iptablesArgs(capture)],
    securityContext: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, privileged: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } },
  };
  const volume = { name: TOKEN_VOLUME, projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } };
  const status = { initContainers: [INIT_CONTAINER], containers: [PROXY_CONTAINER], volumes: [TOKEN_VOLUME], revision: opts.revision ?? DEFAULT_REVISION };

  // `add` on an existing member replaces it (RFC 6902 4.1), so one op per field works either way.
  const patch: JsonPatchOp[] = [
    { op: 'add', path: '/spec/initContainers', value: [init, ...(pod.spec?.initContainers ?? [])] },
    // The sidecar first: kubelet starts containers in order, so it is up before the app.
    { op: 'add', path: '/spec/containers', value: [proxy, ...containers] },
    { op: 'add', path: '/spec/volumes', value: [...(pod.spec?.volumes ?? []), volume] },
    { op: 'add', path: '/metadata/annotations', value: { ...ann, [STATUS_ANNOTATION]: JSON.stringify(status) } },
    { op: 'add', path: '/metadata/labels', value: { ...labels, 'security.istio.io/tlsMode': 'istio' } },
  ];
  return { patch, warnings, capture };
}

/** `portico iptables` arguments for a capture config (what the init container runs). */
export function iptablesArgs(c: CaptureConfig): string[] {
  const out = ['--inbound-ports', [...c.inbound].map(([a, l]) => `${a}=${l}`).join(',')];
  if (c.excludeOutboundPorts.length) out.push('--exclude-outbound-ports', c.excludeOutboundPorts.join(','));
  if (c.includeOutboundPorts.length) out.push('--include-outbound-ports', c.includeOutboundPorts.join(','));
  if (c.includeOutboundIPRanges.join(',') !== '*') out.push('--include-outbound-ip-ranges', c.includeOutboundIPRanges.join(','));
  if (c.excludeOutboundIPRanges.length) out.push('--exclude-outbound-ip-ranges', c.excludeOutboundIPRanges.join(','));
  return out;
}

/** The image of the first container of pod `namespace/name` (the control plane's own, for the proxy). */
export async function ownImage(api: Pick<KubeApi, 'request'>, namespace: string, name: string): Promise<string | undefined> {
  const pod = await api.request<{ spec?: { containers?: { image?: string }[] } }>('GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`);
  return pod.spec?.containers?.[0]?.image;
}
