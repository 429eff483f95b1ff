/**
 * HA for `portico controlplane --kubernetes`: every replica serves proxies; the writers (Events,
 * status) run on the one holding the `coordination.k8s.io` Lease, as client-go's leader election
 * does it (acquire when absent or expired, renew every `renewMs`, optimistic concurrency on the
 * Lease's resourceVersion, release on shutdown so a successor need not wait for expiry). The
 * mesh CA every replica signs with is one Secret (`portico-ca`, like Istio's istio-ca-secret),
 * created atomically by whichever replica comes first.
 */
import { createRootCa, type CaPair } from '../certs/index.ts';
import { KubeApiError, type KubeApi } from './api.ts';

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaderElectionOptions {
  readonly api: KubeApi;
  readonly namespace: string;
  /** Default `portico-controlplane`. */
  readonly name?: string;
  /** This replica's id (the pod name). */
  readonly identity: string;
  /** Default 10 s: a dead leader is replaced within about that plus one renew period. */
  readonly leaseSeconds?: number;
  readonly renewMs?: number;
  readonly onChange?: (leader: boolean) => void;
  readonly log?: { info(msg: string, f?: Record<string, unknown>): void; warn(msg: string, f?: Record<string, unknown>): void };
}

export class LeaderElection {
  private timer: NodeJS.Timeout | undefined;
  private leader = false;
  private stopped = false;
  private lastRv: string | undefined;

  constructor(private readonly opts: LeaderElectionOptions) {}

  get isLeader(): boolean {
    return this.leader;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/leases`;
  }

  private readonly leaderHooks: (() => void)[] = [];

  /** Runs `fn` each time this replica becomes the leader. */
  onLeader(fn: () => void): void {
    this.leaderHooks.push(fn);
  }

  private set(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    if (leader) for (const fn of this.leaderHooks) fn();
    this.opts.log?.info(leader ? 'became the leader' : 'no longer the leader', { lease: `${this.opts.namespace}/${this.opts.name ?? 'portico-controlplane'}`, identity: this.opts.identity });
    this.opts.onChange?.(leader);
  }

  /** One acquire-or-renew round; resolves to whether we lead. */
  async tick(): Promise<boolean> {
    const name = this.opts.name ?? 'portico-controlplane';
    const duration = this.opts.leaseSeconds ?? 10;
    const now = new Date();
    let lease: Lease | undefined;
    try {
      lease = await this.opts.api.request<Lease>('GET', `${this.path}/${encodeURIComponent(name)}`);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    const mine = { holderIdentity: this.opts.identity, leaseDurationSeconds: duration, renewTime: microTime(now) };
    try {
      if (!lease) {
        await this.opts.api.request('POST', this.path, {
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: this.opts.namespace }, spec: { ...mine, acquireTime: microTime(now), leaseTransitions: 0 } },
        });
        this.set(true);
        return true;
      }
      const s = lease.spec;
      const held = s.holderIdentity === this.opts.identity;
      const renewed = s.renewTime ? Date.parse(s.renewTime) : 0;
      const expired = !s.holderIdentity || renewed + (s.leaseDurationSeconds ?? duration) * 1000 < now.getTime();
      if (!held && !expired) {
        this.set(false);
        return false;
      }
      const spec = held ? { ...s, ...mine } : { ...s, ...mine, acquireTime: microTime(now), leaseTransitions: (s.leaseTransitions ?? 0) + 1 };
      const updated = await this.opts.api.request<Lease>('PUT', `${this.path}/${encodeURIComponent(name)}`, { body: { ...lease, spec } });
      this.lastRv = updated.metadata.resourceVersion;
      this.set(true);
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) {
        this.set(false); // someone else wrote first
        return false;
      }
      throw err;
    }
  }

  start(): void {
    const loop = async (): Promise<void> => {
      if (this.stopped) return;
      try {
        await this.tick();
      } catch (err) {
        this.opts.log?.warn('leader election round failed', { error: (err as Error).message });
        this.set(false);
      }
      if (this.stopped) return;
      this.timer = setTimeout(() => void loop(), this.opts.renewMs ?? 2000);
      this.timer.unref();
    };
    void loop();
  }

  /** Stops, and hands the lease back (holder cleared) when we hold it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leader) return;
    this.set(false);
    const name = this.opts.name ?? 'portico-controlplane';
    try {
      const lease = await this.opts.api.request<Lease>('GET', `${this.path}/${encodeURIComponent(name)}`);
      if (lease.spec.holderIdentity !== this.opts.identity) return;
      await this.opts.api.request('PUT', `${this.path}/${encodeURIComponent(name)}`, { body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } } });
    } catch {
      // it expires on its own
    }
    void this.lastRv;
  }
}

/**
 * The mesh CA shared by every replica: Secret `portico-ca` (`ca.crt`, `ca.key`) in the control
 * plane's namespace, created by the first replica (an atomic create; a replica that loses the
 * race reads the winner's).
 */
export async function loadOrCreateSharedCa(api: KubeApi, namespace: string, name = 'portico-ca'): Promise<{ ca: CaPair; created: boolean }> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
  const read = async (): Promise<CaPair | undefined> => {
    try {
      const s = await api.request<{ data?: Record<string, string> }>('GET', `${path}/${encodeURIComponent(name)}`);
      const cert = s.data?.['ca.crt'];
      const key = s.data?.['ca.key'];
      if (!cert || !key) throw new Error(`Secret ${namespace}/${name} lacks ca.crt or ca.key`);
      return { certPem: Buffer.from(cert, 'base64').toString(), keyPem: Buffer.from(key, 'base64').toString() };
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  };
  const have = await read();
  if (have) return { ca: have, created: false };
  const ca = createRootCa({ commonName: 'Portico mesh CA', organization: 'Portico' });
  try {
    await api.request('POST', path, {
      body: {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'portico' } },
        data: { 'ca.crt': Buffer.from(ca.certPem).toString('base64'), 'ca.key': Buffer.from(ca.keyPem).toString('base64') },
      },
    });
    return { ca, created: true };
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 409) {
      const winner = await read();
      if (winner) return { ca: winner, created: false };
    }
    throw err;
  }
}
