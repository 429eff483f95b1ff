/**
 * The wire protocol between the control plane and proxies, shared by server and client.
 *
 * Snapshots travel as Server-Sent Events (text/event-stream, WHATWG HTML "Server-sent events"):
 *
 *   event: hello       data: {"epoch","startedAt","revision","heartbeatMs"}      once, first
 *   event: snapshot    id: <epoch>:<revision>   data: SnapshotMessage             on connect, then per change
 *   event: heartbeat   data: {"epoch","revision","time"}                        every heartbeatMs
 *
 * A snapshot's place in history is its Position: (startedAt, epoch, revision). `revision`
 * counts up within one control plane process (an epoch); a restarted control plane starts a
 * new epoch whose `startedAt` is later, so its revision 1 is newer than the old epoch's 57.
 */
import type { Snapshot } from '../config/snapshot.ts';

export const STREAM_PATH = '/v1/snapshots/stream';
export const SNAPSHOT_PATH = '/v1/snapshot';
export const STATUS_PATH = '/v1/status';
export const CERTIFICATES_PATH = '/v1/certificates';
export const CA_PATH = '/v1/ca';

export interface Position {
  /** Random id of the control plane process that produced the snapshot. */
  readonly epoch: string;
  /** When that process started (ms since the Unix epoch); orders epochs. */
  readonly startedAt: number;
  /** 1, 2, 3... per successful config change within the epoch. */
  readonly revision: number;
}

export interface SnapshotMessage extends Position {
  /** The snapshot's content hash (`snapshot.version`). */
  readonly version: string;
  /**
   * True when this control plane is one of several replicas reading the same source (the
   * Kubernetes API): a proxy that connects to it takes its snapshot whatever its epoch, because
   * an older replica is as current as a newer one. Epoch order still guards single control planes
   * (an old one left running after a restart).
   */
  readonly replicated?: boolean;
  readonly snapshot: Snapshot;
}

export interface HelloMessage extends Position {
  /** 0 when the control plane has no snapshot yet. */
  readonly revision: number;
  readonly heartbeatMs: number;
}

/**
 * True when `next` comes after `have` (an absent `have` is older than everything). Epochs are
 * ordered by start time, ties broken by id so two processes never compare equal.
 */
export function isNewer(next: Position, have: Position | undefined): boolean {
  if (!have) return true;
  if (next.startedAt !== have.startedAt) return next.startedAt > have.startedAt;
  if (next.epoch !== have.epoch) return next.epoch > have.epoch;
  return next.revision > have.revision;
}

/** Encodes one SSE event. `data` must not contain newlines (JSON.stringify output never does). */
export function sseEvent(event: string, data: string, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${data}\n\n`;
}

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id?: string;
}

/**
 * Incremental SSE parser: feed it decoded text as it arrives, get complete events back.
 * Comment lines (`:`) and unknown fields are ignored, as the spec says.
 */
export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | undefined;
  /** Largest event we accept, so a broken peer cannot grow the buffer without bound. */
  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  push(text: string): SseEvent[] {
    this.buffer += text;
    const out: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.buffer);
      if (!m) break;
      // A lone '\r' at the end may be the first half of '\r\n': wait for more.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (line === '') {
        if (this.data.length > 0 || this.event !== '') {
          out.push({ event: this.event || 'message', data: this.data.join('\n'), ...(this.id !== undefined ? { id: this.id } : {}) });
        }
        this.event = '';
        this.data = [];
        this.id = undefined;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id') this.id = value;
    }
    if (this.buffer.length > this.maxBytes) throw new Error(`SSE line longer than ${this.maxBytes} bytes`);
    return out;
  }
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export function isPosition(x: unknown): x is Position {
  return (
    isRecord(x) &&
    typeof x.epoch === 'string' &&
    x.epoch.length > 0 &&
    typeof x.startedAt === 'number' &&
    Number.isFinite(x.startedAt) &&
    typeof x.revision === 'number' &&
    Number.isInteger(x.revision) &&
    x.revision >= 0
  );
}

/** Shape check of a received snapshot message (the fields every runtime reads first). */
export function isSnapshotMessage(x: unknown): x is SnapshotMessage {
  if (!isPosition(x) || x.revision < 1) return false;
  const m = x as unknown as Record<string, unknown>;
  const s = m.snapshot;
  return (
    typeof m.version === 'string' &&
    isRecord(s) &&
    s.version === m.version &&
    Array.isArray(s.gateways) &&
    Array.isArray(s.clusters) &&
    Array.isArray(s.services) &&
    Array.isArray(s.workloads) &&
    isRecord(s.mesh)
  );
}

export function isHelloMessage(x: unknown): x is HelloMessage {
  return isPosition(x) && typeof (x as unknown as Record<string, unknown>).heartbeatMs === 'number';
}

/** Node ids name proxies in logs and /v1/status. */
export const NODE_ID = /^[A-Za-z0-9._:@/-]{1,253}$/;

/** Workload names: `<namespace>/<name>`, or a bare name meaning namespace `default`. */
export function workloadKey(workload: string): string | undefined {
  const m = /^(?:([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/)?([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(workload);
  if (!m || workload.length > 317) return undefined;
  return `${m[1] ?? 'default'}/${m[3]}`;
}
