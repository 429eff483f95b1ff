/**
 * The sidecar injection webhook: AdmissionReview v1 in, AdmissionReview v1 out (with an RFC 6902
 * patch from kube/inject.ts), served over TLS with a certificate from Portico's mesh CA on
 * istiod's webhook port 15017, path `/inject` (Istio's path). `ensureWebhookConfiguration` keeps
 * MutatingWebhookConfiguration `portico-sidecar-injector` as Istio's chart writes its injector:
 * the four namespace/object webhooks (kube/inject.ts `injectorWebhooks`), `failurePolicy: Fail`,
 * `sideEffects: None`, `reinvocationPolicy: Never`, CREATE of pods only. Because the selectors
 * only match labelled namespaces (or pods labelled `sidecar.istio.io/inject=true`), a webhook
 * outage never blocks pods elsewhere; in an injected namespace a pod is refused rather than
 * started without its sidecar, as with Istio.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { issueServerCert, type CaPair } from '../certs/index.ts';
import { KubeApiError, type KubeApi } from './api.ts';
import { DEFAULT_REVISION, injectionDecision, injectionPatch, injectorWebhooks, selectorJson, type InjectOptions, type PodLike } from './inject.ts';

export const WEBHOOK_PORT = 15017;
export const WEBHOOK_PATH = '/inject';
export const WEBHOOK_CONFIGURATION = 'portico-sidecar-injector';

interface AdmissionRequest {
  uid?: string;
  kind?: { kind?: string };
  namespace?: string;
  operation?: string;
  object?: PodLike;
}

/** The AdmissionReview answer for one request (pure). Namespace selectors were applied by the API server. */
export function review(body: unknown, opts: InjectOptions, log?: (msg: string, f: Record<string, unknown>) => void): Record<string, unknown> {
  const req = ((body ?? {}) as { request?: AdmissionRequest }).request;
  const uid = req?.uid ?? '';
  const answer = (response: Record<string, unknown>): Record<string, unknown> => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...response } });
  if (!req || req.kind?.kind !== 'Pod' || !req.object) return answer({ allowed: true });
  const pod: PodLike = { ...req.object, metadata: { ...req.object.metadata, namespace: req.object.metadata?.namespace ?? req.namespace } };
  const id = `Pod/${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? pod.metadata?.generateName ?? ''}`;
  const decision = injectionDecision(pod, undefined, opts.revision ?? DEFAULT_REVISION);
  if (!decision.inject) {
    log?.('pod not injected', { pod: id, reason: decision.reason });
    return answer({ allowed: true });
  }
  try {
    const r = injectionPatch(pod, opts);
    log?.('pod injected', { pod: id, inbound: [...r.capture.inbound].map(([a, l]) => `${a}=${l}`), warnings: r.warnings });
    return answer({ allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(r.patch)).toString('base64'), ...(r.warnings.length ? { warnings: r.warnings } : {}) });
  } catch (err) {
    return answer({ allowed: false, status: { code: 400, message: `portico sidecar injector: ${(err as Error).message}` } });
  }
}

export interface WebhookServerOptions {
  readonly ca: CaPair;
  readonly inject: InjectOptions;
  readonly port?: number;
  readonly host?: string;
  /** SANs of the serving certificate: the Service's DNS names (and IPs a `url` names). */
  readonly dnsNames: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly log?: (msg: string, f: Record<string, unknown>) => void;
}

export interface WebhookServer {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const [first, ...rest] = opts.dnsNames;
  const pair = issueServerCert(opts.ca, { commonName: first ?? 'portico-sidecar-injector', dnsNames: rest, ipAddresses: opts.ipAddresses, validityDays: 365 });
  const server = createServer({ cert: pair.certPem, key: pair.keyPem }, (req, res) => {
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== WEBHOOK_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`POST ${WEBHOOK_PATH} only\n`);
      return;
    }
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 8 * 1024 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('body is not an AdmissionReview (JSON)\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(review(body, opts.inject, opts.log)));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? WEBHOOK_PORT, opts.host ?? '0.0.0.0', () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** How the API server reaches the webhook: the control plane's Service (default) or a URL. */
export type WebhookClientConfig = { readonly service: { readonly namespace: string; readonly name: string; readonly port?: number } } | { readonly url: string };

/** The MutatingWebhookConfiguration Portico owns. */
export function webhookConfiguration(caPem: string, client: WebhookClientConfig, revision = DEFAULT_REVISION): Record<string, unknown> {
  const clientConfig = {
    ...('url' in client ? { url: client.url } : { service: { namespace: client.service.namespace, name: client.service.name, path: WEBHOOK_PATH, port: client.service.port ?? WEBHOOK_PORT } }),
    caBundle: Buffer.from(caPem).toString('base64'),
  };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: WEBHOOK_CONFIGURATION, labels: { 'app.kubernetes.io/part-of': 'portico', 'istio.io/rev': revision } },
    webhooks: injectorWebhooks(revision).map((w) => ({
      name: w.name,
      admissionReviewVersions: ['v1'],
      clientConfig,
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: '*' }],
      failurePolicy: 'Fail',
      matchPolicy: 'Equivalent',
      sideEffects: 'None',
      reinvocationPolicy: 'Never',
      timeoutSeconds: 10,
      namespaceSelector: selectorJson(w.namespaceSelector),
      objectSelector: selectorJson(w.objectSelector),
    })),
  };
}

const MWC_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';

/**
 * Creates the configuration, or rewrites it when its webhooks (caBundle included) differ from
 * what they must be. Resolves to what was done.
 */
export async function ensureWebhookConfiguration(api: KubeApi, caPem: string, client: WebhookClientConfig, revision = DEFAULT_REVISION): Promise<'created' | 'updated' | 'unchanged'> {
  const want = webhookConfiguration(caPem, client, revision);
  let have: { metadata: { resourceVersion?: string; labels?: Record<string, string> }; webhooks?: unknown[] } | undefined;
  try {
    have = await api.request('GET', `${MWC_PATH}/${WEBHOOK_CONFIGURATION}`);
  } catch (err) {
    if (!(err instanceof KubeApiError && err.status === 404)) throw err;
  }
  if (!have) {
    await api.request('POST', MWC_PATH, { body: want });
    return 'created';
  }
  const key = (hooks: unknown[] | undefined): string =>
    JSON.stringify(
      (hooks ?? []).map((h) => {
        const w = h as Record<string, unknown> & { clientConfig?: Record<string, unknown> };
        return [w.name, w.clientConfig?.caBundle, w.clientConfig?.url, JSON.stringify(w.clientConfig?.service ?? null), w.failurePolicy, JSON.stringify(w.namespaceSelector), JSON.stringify(w.objectSelector)];
      }),
    );
  if (key(have.webhooks) === key(want.webhooks as unknown[])) return 'unchanged';
  await api.request('PUT', `${MWC_PATH}/${WEBHOOK_CONFIGURATION}`, { body: { ...want, metadata: { ...(want.metadata as object), resourceVersion: have.metadata.resourceVersion } } });
  return 'updated';
}
