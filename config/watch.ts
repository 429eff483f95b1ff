/**
 * Rebuilds the snapshot when config files (or the certificates it names) change. Calls back only
 * when the version changed or the build failed; the caller keeps serving its old snapshot on
 * failure (swap, don't mutate).
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { buildSnapshot, type BuildOptions, type BuildResult } from './index.ts';
import { expand } from './load.ts';

export interface ConfigWatcher {
  close(): void;
}

export interface WatchOptions extends BuildOptions {
  /** Debounce window for bursts of file events. Default 100 ms. */
  readonly debounceMs?: number;
  /** The version the caller already runs; a rebuild to the same version is not reported. */
  readonly initialVersion?: string;
}

/**
 * Watches `paths` (files or directories, recursively) and the certificate files of the current
 * snapshot. Directories of watched files are watched too, so atomic replace-by-rename (how
 * editors and Kubernetes secret mounts update files) is seen. The watchers keep the process
 * alive until `close()`; watching of the given paths is in place when this returns.
 */
export function watchConfig(paths: readonly string[], opts: WatchOptions, onChange: (r: BuildResult) => void): ConfigWatcher {
  const cwd = opts.cwd ?? process.cwd();
  const debounceMs = opts.debounceMs ?? 100;
  let lastVersion = opts.initialVersion;
  let lastFailed = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  const watchers = new Map<string, FSWatcher>();

  const watchTarget = (target: string, recursive: boolean): void => {
    if (closed || watchers.has(target)) return;
    try {
      const w = watch(target, { recursive }, () => schedule());
      w.on('error', () => {
        w.close();
        watchers.delete(target);
      });
      watchers.set(target, w);
    } catch {
      // Missing path: its parent directory is watched, so creation is still noticed.
    }
  };

  const watchPaths = (files: readonly string[]): void => {
    for (const p of paths) {
      const abs = resolve(cwd, p);
      const isDir = statSync(abs, { throwIfNoEntry: false })?.isDirectory() ?? false;
      // Recursive fs.watch exists on Linux from Node 20; fall back to flat when unsupported.
      if (isDir) {
        try {
          watchTarget(abs, true);
        } catch {
          watchTarget(abs, false);
        }
      }
      watchTarget(dirname(abs), false);
    }
    for (const f of files) {
      watchTarget(f, false);
      watchTarget(dirname(f), false);
    }
  };

  let certFiles: readonly string[] = [];
  /**
   * Size, mtime and inode of every input. A build is applied only if this is the same before and
   * after it read the files: an editor (or `writeFileSync`) truncates and then writes, and a build
   * that read in between would otherwise serve a half-written config (seen as 404s and closed
   * ports in the reload-under-load test).
   */
  const fingerprint = async (): Promise<string> => {
    const files = new Set<string>(certFiles);
    for (const p of paths) for (const f of await expand(resolve(cwd, p)).catch(() => [])) files.add(f);
    const parts: string[] = [];
    for (const f of [...files].sort()) {
      const st = await stat(f).catch(() => undefined);
      parts.push(st ? `${f}:${st.size}:${st.mtimeMs}:${st.ino}` : `${f}:-`);
    }
    return parts.join('|');
  };

  const rebuild = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      const before = await fingerprint();
      const r = await buildSnapshot(paths, opts);
      if (closed) return;
      if (before !== (await fingerprint())) {
        again = true; // the files moved under us: read them again once they settle
        return;
      }
      if (r.ok) {
        certFiles = r.snapshot.files;
        watchPaths(r.snapshot.files);
        if (r.snapshot.version !== lastVersion || lastFailed) {
          const changed = r.snapshot.version !== lastVersion;
          lastVersion = r.snapshot.version;
          lastFailed = false;
          if (changed) onChange(r);
        }
      } else {
        lastFailed = true;
        onChange(r);
      }
    } finally {
      running = false;
      if (again && !closed) {
        again = false;
        schedule();
      }
    }
  };

  function schedule(): void {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void rebuild();
    }, debounceMs);
  }

  watchPaths([]);
  void (async () => {
    if (lastVersion !== undefined) return;
    // Learn the current version without reporting it, so the first callback is a real change.
    const r = await buildSnapshot(paths, opts);
    if (r.ok) {
      lastVersion ??= r.snapshot.version;
      if (!closed) watchPaths(r.snapshot.files);
    }
  })();

  return {
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
