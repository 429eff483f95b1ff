/**
 * The proxy side of snapshot distribution: one long-lived SSE stream to the control plane,
 * reconnected forever with jittered exponential backoff.
 *
 * Guarantees to `onSnapshot`:
 *  - calls never overlap (the next event is read only after the previous apply settled);
 *  - a snapshot is delivered only if its Position is newer than the last one delivered (or the
 *    `initial` one): replays, duplicates and older epochs are dropped (see protocol.ts isNewer);
 *  - a new position with the same content version is adopted silently (nothing to apply);
 *  - while the control plane is unreachable nothing is delivered: the proxy keeps what it has.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { deepFreeze } from '../config/compile.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { ControlPlaneError, errorText, type ErrorBody } from './errors.ts';
import { silentLogger, type ControlPlaneLogger } from './log.ts';
import { isHelloMessage, isNewer, isSnapshotMessage, SNAPSHOT_PATH, SseParser, STREAM_PATH, type Position, type SnapshotMessage, type SseEvent } from './protocol.ts';

import { undiciRequest } from './undici.ts';

export interface ControlPlaneTarget {
  /** Base URL of the control plane, e.g. `http://istiod.local:15010`. */
  readonly url: string;
  /** The bootstrap token; default `PORTICO_BOOTSTRAP_TOKEN` from the environment. */
  readonly token?: TokenSource;
}

/**
 * A token, or where to read it each time it is sent: a projected service-account token is
 * rotated by the kubelet (hourly, valid ~1 h past that), so a long-running proxy must re-read
 * its file for every certificate request and stream connection (see tokenFromFile).
 */
export type TokenSource = string | (() => string | undefined);

/** A TokenSource reading `file` at each use (the last good value if a read fails mid-rotation). */
export function tokenFromFile(file: string): TokenSource {
  let last = readFileSync(file, 'utf8').trim();
  return () => {
    try {
      last = readFileSync(file, 'utf8').trim() || last;
    } catch {
      // the kubelet swaps the file through a symlink; a read racing it keeps the previous token
    }
    return last;
  };
}

export interface SubscribeOptions extends ControlPlaneTarget {
  /** This proxy's id, shown in the control plane's status and logs. Default `<hostname>-<pid>`. */
  readonly node?: string;
  /** Called with each newer snapshot (deep-frozen). May be async; calls never overlap. */
  readonly onSnapshot: (snapshot: Snapshot, revision: number, position: Position) => void | Promise<void>;
  /** Connection failures, refused tokens, protocol errors, onSnapshot failures. Never fatal. */
  readonly onError?: (err: Error) => void;
  readonly logger?: ControlPlaneLogger;
  /** What the proxy already runs (e.g. from `waitForSnapshot`), so it is not sent again. */
  readonly initial?: SnapshotMessage;
  /** Backoff between reconnects: starts at min, doubles, capped at max, with jitter. Default 200 ms / 10 s. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** A stream silent for this long is dropped and reconnected. Default 3 heartbeats (as announced by the server), else 30 s. */
  readonly idleTimeoutMs?: number;
  /** Time allowed for the response headers. Default 10 s. */
  readonly connectTimeoutMs?: number;
}

export interface Subscription {
  /** The position and snapshot last delivered (or the `initial` ones). */
  current(): { readonly position?: Position; readonly snapshot?: Snapshot };
  /** True while a stream is open and has said hello. */
  connected(): boolean;
  /** Stops for good: aborts the stream and any pending reconnect. */
  close(): void;
}

export function bootstrapToken(token: TokenSource | undefined): string | undefined {
  const t = typeof token === 'function' ? token() : token;
  return t ?? (process.env.PORTICO_BOOTSTRAP_TOKEN?.trim() || undefined);
}

export function defaultNodeId(): string {
  return `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._:@/-]/g, '_').slice(0, 253);
}

function authHeaders(token: TokenSource | undefined): Record<string, string> {
  const t = bootstrapToken(token);
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** Jittered exponential backoff ("equal jitter"): half fixed, half random, so retries spread out. */
export function backoffMs(attempt: number, minMs: number, maxMs: number): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return cap / 2 + Math.random() * (cap / 2);
}

/** Reads an error answer into a ControlPlaneError with the server's message. */
export async function responseError(status: number, body: { text(): Promise<string> }, what: string): Promise<ControlPlaneError> {
  let message = '';
  try {
    const text = await body.text();
    try {
      message = (JSON.parse(text) as ErrorBody).error?.message ?? text;
    } catch {
      message = text;
    }
  } catch {
    // the body is gone with the connection; the status says enough
  }
  const kind = status === 401 ? 'UNAUTHORIZED' : status === 404 ? 'UNKNOWN_WORKLOAD' : status === 400 ? 'BAD_REQUEST' : status === 503 ? 'NOT_READY' : 'UNREACHABLE';
  return new ControlPlaneError(kind, `${what}: control plane answered ${status}${message ? `: ${message.slice(0, 500)}` : ''}`);
}

function parseMessage(ev: SseEvent): unknown {
  try {
    return JSON.parse(ev.data);
  } catch (err) {
    throw new ControlPlaneError('PROTOCOL', `'${ev.event}' event is not JSON (${errorText(err)})`);
  }
}

/** Fetches the current snapshot once (GET /v1/snapshot), deep-frozen. */
export async function fetchSnapshot(target: ControlPlaneTarget & { readonly signal?: AbortSignal }): Promise<SnapshotMessage> {
  let res;
  try {
    res = await (await undiciRequest())(new URL(SNAPSHOT_PATH, target.url), { headers: authHeaders(target.token), signal: target.signal, headersTimeout: 10_000, bodyTimeout: 30_000 });
  } catch (err) {
    throw new ControlPlaneError('UNREACHABLE', `GET ${SNAPSHOT_PATH}: ${errorText(err)}`, { cause: err });
  }
  if (res.statusCode !== 200) throw await responseError(res.statusCode, res.body, `GET ${SNAPSHOT_PATH}`);
  const msg: unknown = await res.body.json();
  if (!isSnapshotMessage(msg)) throw new ControlPlaneError('PROTOCOL', `GET ${SNAPSHOT_PATH}: the answer is not a snapshot message`);
  deepFreeze(msg.snapshot);
  return msg;
}

/**
 * Fetches the current snapshot, retrying with backoff while the control plane is down or has
 * none yet: what a proxy started with `--controlplane` needs before it can serve anything.
 */
export async function waitForSnapshot(
  target: ControlPlaneTarget & { readonly timeoutMs?: number; readonly logger?: ControlPlaneLogger; readonly maxBackoffMs?: number },
): Promise<SnapshotMessage> {
  const deadline = Date.now() + (target.timeoutMs ?? Infinity);
  const log = target.logger ?? silentLogger;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetchSnapshot(target);
    } catch (err) {
      if (err instanceof ControlPlaneError && err.code === 'PORTICO_ERR_CP_UNAUTHORIZED') throw err;
      const wait = backoffMs(attempt, 200, target.maxBackoffMs ?? 5_000);
      if (Date.now() + wait > deadline) throw err;
      log.warn('waiting for the control plane', { url: target.url, error: errorText(err), retryInMs: Math.round(wait) });
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** Subscribes to the control plane's snapshot stream. Returns at once; see `Subscription`. */
export function subscribeSnapshots(opts: SubscribeOptions): Subscription {
  const log = opts.logger ?? silentLogger;
  const node = opts.node ?? defaultNodeId();
  const minBackoff = opts.minBackoffMs ?? 200;
  const maxBackoff = opts.maxBackoffMs ?? 10_000;
  let position: Position | undefined = opts.initial && { epoch: opts.initial.epoch, startedAt: opts.initial.startedAt, revision: opts.initial.revision };
  let snapshot: Snapshot | undefined = opts.initial?.snapshot;
  let closed = false;
  let isConnected = false;
  let abort: AbortController | undefined;
  let wake: (() => void) | undefined;

  const report = (err: Error): void => {
    log.warn('control plane stream', { url: opts.url, node, error: err.message, code: (err as { code?: string }).code });
    try {
      opts.onError?.(err);
    } catch {
      // a throwing error callback must not stop the loop
    }
  };

  /** The epoch of the control plane this connection is to, once its first snapshot came. */
  let connectedEpoch: string | undefined;
  const deliver = async (msg: SnapshotMessage): Promise<void> => {
    // A replicated control plane's first snapshot on a new connection is taken whatever its epoch
    // (protocol.ts SnapshotMessage.replicated); within the connection revisions order as usual.
    const switched = msg.replicated === true && connectedEpoch !== msg.epoch && position !== undefined && msg.epoch !== position.epoch;
    connectedEpoch = msg.epoch;
    if (!switched && !isNewer(msg, position)) {
      log.info('ignored a snapshot that is not newer than the one applied', { have: position, got: { epoch: msg.epoch, revision: msg.revision } });
      if (position && msg.startedAt < position.startedAt) {
        report(new ControlPlaneError('STALE_EPOCH', `control plane epoch ${msg.epoch} started before the one already applied (${position.epoch}); its snapshots are ignored (another control plane still running, or clocks out of step?)`));
      }
      return;
    }
    const next: Position = { epoch: msg.epoch, startedAt: msg.startedAt, revision: msg.revision };
    const frozen = deepFreeze(msg.snapshot);
    const changed = frozen.version !== snapshot?.version;
    // Adopt first: a failing apply is reported, not retried by re-sending the same revision.
    position = next;
    snapshot = frozen;
    if (!changed) return;
    try {
      await opts.onSnapshot(frozen, next.revision, next);
    } catch (err) {
      report(err instanceof Error ? err : new Error(String(err)));
    }
  };

  const streamOnce = async (ac: AbortController, onHello: () => void): Promise<void> => {
    connectedEpoch = undefined;
    const u = new URL(STREAM_PATH, opts.url);
    u.searchParams.set('node', node);
    if (position) {
      u.searchParams.set('have', String(position.revision));
      u.searchParams.set('epoch', position.epoch);
    }
    const res = await (await undiciRequest())(u, {
      headers: { accept: 'text/event-stream', ...authHeaders(opts.token) },
      signal: ac.signal,
      headersTimeout: opts.connectTimeoutMs ?? 10_000,
      bodyTimeout: 0, // our own idle timer, which knows the heartbeat interval
    });
    if (res.statusCode !== 200) throw await responseError(res.statusCode, res.body, `GET ${STREAM_PATH}`);
    let idleMs = opts.idleTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => ac.abort(new ControlPlaneError('UNREACHABLE', `no data from the control plane for ${idleMs} ms; reconnecting`)), idleMs);
    };
    const parser = new SseParser();
    const decoder = new TextDecoder();
    arm();
    try {
      for await (const chunk of res.body) {
        clearTimeout(timer);
        for (const ev of parser.push(decoder.decode(chunk as Buffer, { stream: true }))) {
          if (ev.event === 'hello') {
            const hello = parseMessage(ev);
            if (!isHelloMessage(hello)) throw new ControlPlaneError('PROTOCOL', `'hello' event has the wrong shape`);
            if (opts.idleTimeoutMs === undefined && hello.heartbeatMs > 0) idleMs = Math.max(1_000, 3 * hello.heartbeatMs);
            onHello();
          } else if (ev.event === 'snapshot') {
            const msg = parseMessage(ev);
            if (!isSnapshotMessage(msg)) throw new ControlPlaneError('PROTOCOL', `'snapshot' event is not a snapshot message`);
            await deliver(msg);
          }
          // heartbeats only re-arm the idle timer
        }
        arm();
      }
    } finally {
      clearTimeout(timer);
    }
  };

  void (async () => {
    let attempt = 0;
    while (!closed) {
      const ac = new AbortController();
      abort = ac;
      try {
        await streamOnce(ac, () => {
          isConnected = true;
          attempt = 0;
          log.info('connected to the control plane', { url: opts.url, node, have: position?.revision ?? 0 });
        });
        if (!closed) report(new ControlPlaneError('UNREACHABLE', 'the control plane ended the stream'));
      } catch (err) {
        if (closed) break;
        const reason = ac.signal.aborted && ac.signal.reason instanceof Error ? ac.signal.reason : err;
        report(reason instanceof ControlPlaneError ? reason : new ControlPlaneError('UNREACHABLE', `${opts.url}: ${errorText(reason)}`, { cause: reason }));
      } finally {
        isConnected = false;
        ac.abort();
      }
      if (closed) break;
      const wait = backoffMs(attempt++, minBackoff, maxBackoff);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
  })();

  return {
    current: () => ({ position, snapshot }),
    connected: () => isConnected,
    close() {
      closed = true;
      abort?.abort();
      wake?.();
    },
  };
}
