/**
 * Proxy identity from Kubernetes: a projected service-account token (audience `istio-ca`, at
 * /var/run/secrets/tokens/istio-token, as Istio's agents send it) is checked with a TokenReview.
 * The API server verifies the signature, expiry, audience and, for bound tokens, that the pod
 * still exists; the answer names the namespace, service account and pod. Results are cached
 * for a short while by token hash (never by the token itself), as istiod does.
 */
import { createHash } from 'node:crypto';
import type { KubeApi } from './api.ts';

export const ISTIO_CA_AUDIENCE = 'istio-ca';
export const ISTIO_TOKEN_PATH = '/var/run/secrets/tokens/istio-token';

export interface KubeIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The pod the token is bound to (`authentication.kubernetes.io/pod-name`), when bound. */
  readonly pod?: string;
  readonly username: string;
}

interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string; extra?: Record<string, string[]> };
}

const SA_USER = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;

export class TokenReviewer {
  private readonly cache = new Map<string, { at: number; identity: KubeIdentity | undefined; reason: string }>();

  constructor(
    private readonly api: KubeApi,
    private readonly audience = ISTIO_CA_AUDIENCE,
    private readonly ttlMs = 30_000,
  ) {}

  /** The identity behind `token`, or `{ reason }` saying why it is refused. */
  async review(token: string): Promise<{ identity?: KubeIdentity; reason: string }> {
    const key = createHash('sha256').update(token).digest('hex');
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && now - hit.at < this.ttlMs) return { identity: hit.identity, reason: hit.reason };
    const r = await this.api.request<{ status?: TokenReviewStatus }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.audience] } },
    });
    const st = r.status ?? {};
    let identity: KubeIdentity | undefined;
    let reason = 'ok';
    const m = SA_USER.exec(st.user?.username ?? '');
    if (!st.authenticated) reason = `token not authenticated${st.error ? `: ${st.error}` : ''}`;
    else if (!(st.audiences ?? []).includes(this.audience)) reason = `token audience is not ${this.audience}`;
    else if (!m) reason = `token belongs to ${st.user?.username ?? 'nobody'}, not a service account`;
    else identity = { namespace: m[1], serviceAccount: m[3], pod: st.user?.extra?.['authentication.kubernetes.io/pod-name']?.[0], username: st.user!.username! };
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { at: now, identity, reason });
    return { identity, reason };
  }
}
