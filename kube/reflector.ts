/**
 * List + watch of one resource collection, as client-go's Reflector does it: list (paged), then
 * watch from the list's resourceVersion asking for bookmarks, resume from the last version seen
 * when a watch ends, re-list when the server says the version is gone (410), and back off
 * (jittered, doubling to 30 s) on errors. Never polls: a quiet collection costs one open watch.
 *
 * The watch protocol itself is @kubernetes/client-node's `Watch` (query parameters passed
 * through, so `allowWatchBookmarks` reaches the server).
 */
import { KubeApiError, type KubeApi } from './api.ts';

export interface ObjectMeta {
  readonly name: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly generation?: number;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly deletionTimestamp?: string;
  readonly ownerReferences?: readonly { kind: string; name: string; uid: string }[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

interface ObjectList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

export interface ReflectorLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface ReflectorOptions {
  readonly api: KubeApi;
  /** Collection path, e.g. `/api/v1/services` or `/apis/networking.istio.io/v1/namespaces/a/gateways`. */
  readonly path: string;
  /** apiVersion and kind stamped on listed items (lists do not carry them per item). */
  readonly apiVersion: string;
  readonly kind: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Called after every change to the object set (after the first list, once). */
  readonly onChange: () => void;
  readonly log?: ReflectorLogger;
  /** List once and do not watch (one-shot readers such as `portico validate --kubernetes`). */
  readonly listOnly?: boolean;
  /** Server-side watch timeout (the server sends a bookmark, then ends the watch; we resume). Default 120. */
  readonly watchTimeoutSeconds?: number;
}

const MAX_BACKOFF_MS = 30_000;

export function objectKey(o: { metadata: { name: string; namespace?: string } }): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

export class Reflector {
  /** `ns/name` (or `name` for cluster-scoped kinds) → object. Read-only for callers. */
  readonly objects = new Map<string, KubeObject>();
  private resourceVersion = '';
  private stopped = false;
  private abort: AbortController | undefined;
  private backoffMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private syncedOnce = false;
  private readonly synced: Promise<void>;
  private resolveSynced!: () => void;
  private rejectSynced!: (err: Error) => void;
  /** Lists done (1 + one per 410 or error); for tests and /v1/status. */
  lists = 0;
  /** The last error, until the next successful list or watch event. */
  lastError: string | undefined;

  constructor(private readonly opts: ReflectorOptions) {
    this.synced = new Promise((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    this.synced.catch(() => undefined);
  }

  get name(): string {
    return `${this.opts.kind} ${this.opts.path}`;
  }

  /**
   * Starts and resolves after the first successful list. A first list that is refused (403,
   * 404) rejects, so a missing permission or CRD is reported at startup; later errors retry.
   */
  start(): Promise<void> {
    void this.relist();
    return this.synced;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort?.abort();
    this.abort = undefined;
  }

  private schedule(fn: () => void, why: string): void {
    if (this.stopped) return;
    this.backoffMs = Math.min(this.backoffMs ? this.backoffMs * 2 : 200, MAX_BACKOFF_MS);
    const wait = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
    this.opts.log?.warn('kubernetes watch retrying', { resource: this.name, why, retryInMs: wait });
    this.timer = setTimeout(fn, wait);
    this.timer.unref();
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    const fresh = new Map<string, KubeObject>();
    let rv = '';
    try {
      let cont: string | undefined;
      do {
        const page = await this.opts.api.request<ObjectList>('GET', this.opts.path, {
          query: { limit: 500, continue: cont, labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector },
        });
        for (const item of page.items ?? []) {
          item.apiVersion ??= this.opts.apiVersion;
          item.kind ??= this.opts.kind;
          fresh.set(objectKey(item), item);
        }
        cont = page.metadata?.continue || undefined;
        rv = page.metadata?.resourceVersion ?? '';
      } while (cont);
    } catch (err) {
      this.lastError = (err as Error).message;
      if (!this.syncedOnce && err instanceof KubeApiError && (err.status === 403 || err.status === 404 || err.status === 401)) {
        this.stopped = true;
        this.rejectSynced(err);
        return;
      }
      this.schedule(() => void this.relist(), `list failed: ${(err as Error).message}`);
      return;
    }
    if (this.stopped) return;
    this.lists++;
    this.lastError = undefined;
    this.objects.clear();
    for (const [k, v] of fresh) this.objects.set(k, v);
    this.resourceVersion = rv;
    if (!this.syncedOnce) {
      this.syncedOnce = true;
      this.resolveSynced();
    }
    this.opts.onChange();
    if (!this.opts.listOnly) void this.watch();
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    const started = Date.now();
    let events = 0;
    let gone = false;
    let finished = false;
    const done = (err: unknown): void => {
      if (finished) return;
      finished = true;
      this.abort = undefined;
      if (this.stopped) return;
      const status = (err as { statusCode?: number; code?: number } | null)?.statusCode ?? (err as { code?: number } | null)?.code;
      if (gone || status === 410) {
        this.opts.log?.info('kubernetes watch expired; listing again', { resource: this.name });
        this.backoffMs = 0;
        void this.relist();
        return;
      }
      const timedOut = (err as { name?: string } | null)?.name === 'TimeoutError' || (err as { name?: string } | null)?.name === 'AbortError';
      if (err && !timedOut) {
        this.lastError = (err as Error).message ?? String(err);
        this.schedule(() => void this.watch(), `watch failed: ${this.lastError}`);
        return;
      }
      // A normal end (server timeout, bookmark-only quiet period): resume from the last version.
      // One that ends at once without events is treated like an error, so it cannot spin.
      if (events === 0 && Date.now() - started < 1000) {
        this.schedule(() => void this.watch(), 'watch closed immediately');
        return;
      }
      this.backoffMs = 0;
      void this.watch();
    };
    try {
      this.abort = await this.opts.api.watcher.watch(
        this.opts.path,
        {
          resourceVersion: this.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: this.opts.watchTimeoutSeconds ?? 120,
          labelSelector: this.opts.labelSelector,
          fieldSelector: this.opts.fieldSelector,
        },
        (type: string, obj: KubeObject & { code?: number }) => {
          if (this.stopped) return;
          events++;
          if (type === 'ERROR') {
            if (obj.code === 410) gone = true;
            else this.lastError = `watch error event: ${JSON.stringify(obj).slice(0, 300)}`;
            return;
          }
          const rv = obj.metadata?.resourceVersion;
          if (type === 'BOOKMARK') {
            if (rv) this.resourceVersion = rv;
            return;
          }
          if (!obj.metadata?.name) return;
          obj.apiVersion ??= this.opts.apiVersion;
          obj.kind ??= this.opts.kind;
          if (type === 'ADDED' || type === 'MODIFIED') this.objects.set(objectKey(obj), obj);
          else if (type === 'DELETED') this.objects.delete(objectKey(obj));
          else return;
          if (rv) this.resourceVersion = rv;
          this.lastError = undefined;
          this.backoffMs = 0;
          this.opts.onChange();
        },
        done,
      );
      if (finished) this.abort = undefined;
      if (this.stopped) this.abort?.abort();
    } catch (err) {
      done(err);
    }
  }
}
