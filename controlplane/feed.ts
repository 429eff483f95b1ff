/**
 * The control plane's one piece of mutable state: the current snapshot with its Position, the
 * last config error, and who is listening. Each snapshot is serialised exactly once, when it is
 * published; every stream and every one-shot fetch writes the same string.
 */
import { randomBytes } from 'node:crypto';
import type { Snapshot } from '../config/snapshot.ts';
import { sseEvent, type Position, type SnapshotMessage } from './protocol.ts';

export interface Published extends Position {
  readonly version: string;
  readonly snapshot: Snapshot;
  /** `SnapshotMessage` as JSON: the body of GET /v1/snapshot. */
  readonly json: string;
  /** The same as one SSE `snapshot` event. */
  readonly frame: string;
  readonly publishedAt: string;
}

export interface ConfigError {
  readonly at: string;
  /** Every problem, one `file:line: kind/name: field.path: message` line each. */
  readonly issues: readonly string[];
}

export type Listener = (p: Published) => void;

export class SnapshotFeed {
  readonly epoch: string;
  readonly startedAt: number;
  private current: Published | undefined;
  private readonly listeners = new Set<Listener>();
  private lastErrorValue: ConfigError | undefined;
  private lastBuildOk: boolean | undefined;
  /** Snapshots sent to subscribers, rejected config changes (for the metrics). */
  pushes = 0;
  rejections = 0;

  constructor(
    startedAt: number = Date.now(),
    /** SnapshotMessage.replicated: one of several equal replicas (Kubernetes source). */
    private readonly replicated = false,
  ) {
    this.startedAt = startedAt;
    this.epoch = `${startedAt.toString(36)}-${randomBytes(6).toString('hex')}`;
  }

  get latest(): Published | undefined {
    return this.current;
  }

  get lastError(): ConfigError | undefined {
    return this.lastErrorValue;
  }

  /** True when the most recent build succeeded; undefined before the first build. */
  get healthy(): boolean | undefined {
    return this.lastBuildOk;
  }

  /**
   * Makes `snapshot` current under the next revision and tells every listener. A snapshot with
   * the current content version is not a change: nothing is published and undefined returned.
   */
  publish(snapshot: Snapshot): Published | undefined {
    this.lastBuildOk = true;
    if (this.current?.version === snapshot.version) return undefined;
    const revision = (this.current?.revision ?? 0) + 1;
    const message: SnapshotMessage = { epoch: this.epoch, startedAt: this.startedAt, revision, version: snapshot.version, snapshot, ...(this.replicated ? { replicated: true } : {}) };
    const json = JSON.stringify(message);
    const p: Published = {
      epoch: this.epoch,
      startedAt: this.startedAt,
      revision,
      version: snapshot.version,
      snapshot,
      json,
      frame: sseEvent('snapshot', json, `${this.epoch}:${revision}`),
      publishedAt: new Date().toISOString(),
    };
    this.current = p;
    for (const l of [...this.listeners]) l(p);
    this.pushes += this.listeners.size;
    return p;
  }

  /** Records a rejected config change; the current snapshot stays. */
  reject(issues: readonly string[]): void {
    this.lastBuildOk = false;
    this.rejections++;
    this.lastErrorValue = { at: new Date().toISOString(), issues: [...issues] };
  }

  /** Connected proxies (open snapshot streams). */
  get subscribers(): number {
    return this.listeners.size;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
