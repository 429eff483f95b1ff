/**
 * Process-wide shared data and shared queues (proxy_get/set_shared_data, proxy_*_shared_queue).
 * As in Envoy they live in the host, keyed by VM id, so they survive a VM restart and are seen
 * by every VM with the same vm_id. Queue-ready notifications are delivered asynchronously to
 * the VM that registered the queue.
 */
import { Result } from './abi.ts';
import type { HostServices } from './engine.ts';

interface Queue {
  readonly vmId: string;
  readonly name: string;
  readonly items: Uint8Array[];
}

/** Most items a queue holds (Envoy has no cap; Portico drops the oldest beyond this). */
const MAX_QUEUE = 10_000;

export class SharedStore {
  private readonly data = new Map<string, Map<string, { value: Uint8Array; cas: number }>>();
  private readonly queues: Queue[] = [];
  private readonly queueByName = new Map<string, number>();
  private nextCas = 1;

  /** HostServices for VMs of this process; `clusterKnown` answers from the given function. */
  services(clusterKnown: (name: string) => boolean): HostServices {
    return {
      sharedGet: (vmId, key) => this.data.get(vmId)?.get(key),
      sharedSet: (vmId, key, value, cas) => {
        let m = this.data.get(vmId);
        if (!m) this.data.set(vmId, (m = new Map()));
        const cur = m.get(key);
        if (cas !== 0 && cur && cur.cas !== cas) return Result.CasMismatch;
        m.set(key, { value, cas: this.nextCas++ });
        return Result.Ok;
      },
      queueRegister: (vmId, name) => {
        const k = `${vmId}\0${name}`;
        const existing = this.queueByName.get(k);
        if (existing !== undefined) return existing;
        this.queues.push({ vmId, name, items: [] });
        const token = this.queues.length;
        this.queueByName.set(k, token);
        return token;
      },
      queueResolve: (vmId, name) => this.queueByName.get(`${vmId}\0${name}`),
      queueEnqueue: (token, value) => {
        const q = this.queues[token - 1];
        if (!q) return Result.NotFound;
        q.items.push(value);
        if (q.items.length > MAX_QUEUE) q.items.shift();
        const notify = this.owners.get(q.vmId);
        if (notify) setImmediate(() => notify(token));
        return Result.Ok;
      },
      queueDequeue: (token) => {
        const q = this.queues[token - 1];
        if (!q) return Result.NotFound;
        return q.items.shift() ?? Result.Empty;
      },
      clusterKnown,
    };
  }

  private readonly owners = new Map<string, (token: number) => void>();

  /** Routes queue-ready notifications of `vmId`'s queues to `notify` (its current VM). */
  onQueueReady(vmId: string, notify: (token: number) => void): void {
    this.owners.set(vmId, notify);
  }
}
