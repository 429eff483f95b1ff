/**
 * Access to the Kubernetes API through @kubernetes/client-node: which credentials to use
 * (the precedence the docs promise), plain JSON requests to any path, and its Watch.
 *
 * Precedence: `--kubeconfig FILE`, else the in-cluster service account (KUBERNETES_SERVICE_HOST
 * and /var/run/secrets/kubernetes.io/serviceaccount/token), else `$KUBECONFIG` / ~/.kube/config.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { RequestOptions as HttpsRequestOptions } from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { Agent, fetch } from 'undici';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigChoice {
  readonly kubeconfig?: string;
}

/** Loads credentials in the documented order; `source` says which one was used. */
export function loadKubeConfig(opts: KubeConfigChoice = {}): { kc: KubeConfig; source: string } {
  const kc = new KubeConfig();
  if (opts.kubeconfig) {
    kc.loadFromFile(opts.kubeconfig);
    return { kc, source: `--kubeconfig ${opts.kubeconfig}` };
  }
  if (process.env.KUBERNETES_SERVICE_HOST && existsSync(`${SA_DIR}/token`)) {
    kc.loadFromCluster();
    return { kc, source: 'in-cluster service account' };
  }
  kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes API access: give --kubeconfig FILE, run in a pod with a service account, or set KUBECONFIG');
  return { kc, source: process.env.KUBECONFIG ? `KUBECONFIG ${process.env.KUBECONFIG}` : 'default kubeconfig' };
}

/** The namespace this process runs in: the service account's, else POD_NAMESPACE, else `fallback`. */
export function ownNamespace(fallback: string): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return readFileSync(`${SA_DIR}/namespace`, 'utf8').trim() || fallback;
  } catch {
    return fallback;
  }
}

/** An API error with the server's Status message. */
export class KubeApiError extends Error {
  readonly status: number;
  readonly reason?: string;
  constructor(method: string, path: string, status: number, body: unknown) {
    const b = body as { message?: string; reason?: string } | undefined;
    super(`${method} ${path}: ${status}${b?.message ? ` ${b.message}` : ''}`);
    this.status = status;
    this.reason = b?.reason;
  }
}

export interface RequestOptions {
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  /** Default application/json; patches use merge-patch or apply-patch types. */
  readonly contentType?: string;
  readonly signal?: AbortSignal;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export class KubeApi {
  readonly kc: KubeConfig;
  readonly watcher: Watch;
  readonly server: string;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.watcher = new Watch(kc);
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/$/, '');
  }

  /** One JSON request; 2xx returns the parsed body, anything else throws KubeApiError. */
  /**
   * Credentials for one request through KubeConfig's public `applyToHTTPSOptions` (it re-reads
   * rotating service-account tokens and runs exec plugins), as an undici Agent per TLS identity.
   */
  private async transport(): Promise<{ headers: Record<string, string>; dispatcher: Agent }> {
    const o: HttpsRequestOptions = {};
    await this.kc.applyToHTTPSOptions(o);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.headers ?? {})) if (v !== undefined) headers[k.toLowerCase()] = String(v);
    const tls = { ca: o.ca as string | Buffer | undefined, cert: o.cert as string | Buffer | undefined, key: o.key as string | Buffer | undefined, rejectUnauthorized: o.rejectUnauthorized !== false };
    const id = `${String(tls.ca ?? '')}|${String(tls.cert ?? '')}|${String(tls.key ?? '')}|${tls.rejectUnauthorized}`;
    let agent = this.agents.get(id);
    if (!agent) {
      agent = new Agent({ connect: tls });
      this.agents.set(id, agent);
    }
    return { headers, dispatcher: agent };
  }

  private readonly agents = new Map<string, Agent>();

  /** Closes the connection pools (watches use the library's own). */
  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.close()));
    this.agents.clear();
  }

  async request<T>(method: Method, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const { headers, dispatcher } = await this.transport();
    headers.accept = 'application/json';
    if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const res = await fetch(url, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      dispatcher,
      signal: opts.signal,
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = { message: text.slice(0, 200) };
    }
    if (res.status < 200 || res.status > 299) throw new KubeApiError(method, path, res.status, body);
    return body as T;
  }
}
