/**
 * Wiring for `portico gateway|sidecar --controlplane URL`: feed a runtime from the control
 * plane instead of local files.
 *
 *   const first = await waitForSnapshot({ url, token, logger });
 *   const runtime = new GatewayRuntime(first.snapshot, {...}); await runtime.start();
 *   const link = connectProxyToControlPlane(runtime, { url, token, logger, initial: first });
 *   // on shutdown: link.close()
 */
import type { Snapshot } from '../config/snapshot.ts';
import { errorText } from './errors.ts';
import { silentLogger } from './log.ts';
import { subscribeSnapshots, type SubscribeOptions, type Subscription } from './subscribe.ts';

/** Anything that can swap in a snapshot: GatewayRuntime, or a primary broadcasting to workers. */
export interface SnapshotConsumer {
  apply(snapshot: Snapshot): Promise<void>;
}

export type ConnectOptions = Omit<SubscribeOptions, 'onSnapshot'> & {
  /** Told after each applied snapshot (metrics, tests). */
  readonly onApplied?: (snapshot: Snapshot, revision: number) => void;
};

/**
 * Subscribes `runtime` to the control plane: every newer snapshot is applied in order; a
 * snapshot the runtime refuses (e.g. its port is taken) is logged and the runtime keeps serving
 * its previous one; while the control plane is down the runtime keeps its last snapshot.
 */
export function connectProxyToControlPlane(runtime: SnapshotConsumer, opts: ConnectOptions): Subscription {
  const log = opts.logger ?? silentLogger;
  return subscribeSnapshots({
    ...opts,
    onSnapshot: async (snapshot, revision, position) => {
      try {
        await runtime.apply(snapshot);
      } catch (err) {
        log.error('snapshot from the control plane could not be applied; still serving the previous one', {
          revision,
          epoch: position.epoch,
          version: snapshot.version,
          error: errorText(err),
        });
        return;
      }
      log.info('snapshot from the control plane applied', { revision, epoch: position.epoch, version: snapshot.version });
      opts.onApplied?.(snapshot, revision);
    },
  });
}
