/**
 * Rebuilds the snapshot when config files (or the certificates it names) change. Calls back only
 * when the version changed or the build failed; the caller keeps serving its old snapshot on
 * failure (swap, don't mutate).
 *
 * Change detection does not trust any single event: Node 20's recursive `fs.watch` on Linux
 * reports only the first of several same-directory renames (the way `sed -i` and editors save),
 * and a watch on a file follows its inode, which a rename replaces. So every directory is watched
 * on its own (non-recursive inotify sees creates, renames and deletes of its entries), and any
 * event only *suggests* a rebuild: a fingerprint of what the build reads (every YAML file's and
 * certificate's size, mtime, ctime and inode, and the file list) decides whether anything
 * changed. The same fingerprint is polled every `pollMs` as a safety net for events the kernel
 * never sends (network filesystems, inotify queue overflow).
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { buildSnapshot, type BuildOptions, type BuildResult } from './index.ts';
import { expand } from './load.ts';

export interface ConfigWatcher {
  /** Settles when the first pass (baseline fingerprint, every directory watched) is done. */
  readonly ready: Promise<void>;
  close(): void;
}

export interface WatchOptions extends BuildOptions {
  /** Debounce window for bursts of file events. Default 100 ms. */
  readonly debounceMs?: number;
  /** The version the caller already runs; a rebuild to the same version is not reported. */
  readonly initialVersion?: string;
  /** How often the fingerprint is compared without any event (0: never). Default 1000 ms. */
  readonly pollMs?: number;
}

interface DirWatch {
  readonly watcher: FSWatcher;
  /** Inode of the directory watched: a directory removed and created again needs a new watch. */
  readonly ino: number;
}

/**
 * Watches `paths` (files or directories, recursively) and the certificate files of the current
 * snapshot. The watchers keep the process alive until `close()`; watching of the given paths is
 * in place when this returns.
 */
export function watchConfig(paths: readonly string[], opts: WatchOptions, onChange: (r: BuildResult) => void): ConfigWatcher {
  const cwd = opts.cwd ?? process.cwd();
  const debounceMs = opts.debounceMs ?? 100;
  const pollMs = opts.pollMs ?? 1000;
  const roots = paths.map((p) => resolve(cwd, p));
  let lastVersion = opts.initialVersion;
  /** Fingerprint of the inputs of the last build that completed (applied or rejected). */
  let lastPrint: string | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  const dirs = new Map<string, DirWatch>();

  const watchDir = (dir: string): void => {
    if (closed) return;
    const ino = statSync(dir, { throwIfNoEntry: false })?.ino;
    const existing = dirs.get(dir);
    if (existing && existing.ino === ino) return;
    existing?.watcher.close();
    dirs.delete(dir);
    if (ino === undefined) return; // gone: its parent's watch sees it come back
    try {
      const watcher = watch(dir, { persistent: true }, () => schedule());
      watcher.on('error', () => {
        watcher.close();
        if (dirs.get(dir)?.watcher === watcher) dirs.delete(dir);
        schedule();
      });
      dirs.set(dir, { watcher, ino });
    } catch {
      // Not a directory any more or not readable: the next rescan decides again.
    }
  };

  /** Every directory under `dir` that the loader would descend into (it skips dot entries). */
  const subdirs = async (dir: string, out: Set<string>, seen: Set<string>): Promise<void> => {
    const real = await realpath(dir).catch(() => undefined);
    if (!real || seen.has(real)) return;
    seen.add(real);
    out.add(dir);
    if (real !== dir) out.add(real);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = join(dir, e.name);
      if (e.isDirectory() || (e.isSymbolicLink() && (await stat(full).catch(() => undefined))?.isDirectory())) await subdirs(full, out, seen);
    }
  };

  let certFiles: readonly string[] = [];
  /** Brings the set of directory watches in line with the tree as it is now. */
  const rescan = async (configFiles: readonly string[]): Promise<void> => {
    const want = new Set<string>();
    const seen = new Set<string>();
    for (const root of roots) {
      want.add(dirname(root)); // the path itself replaced, removed or created
      const st = await stat(root).catch(() => undefined);
      if (st?.isDirectory()) await subdirs(root, want, seen);
    }
    // Files (config given as files, certificates, symlinked ConfigMap keys): their directory,
    // and the directory of what a symlink points at.
    for (const f of [...configFiles, ...certFiles]) {
      want.add(dirname(f));
      const real = await realpath(f).catch(() => undefined);
      if (real) want.add(dirname(real));
    }
    if (closed) return;
    for (const [dir, w] of dirs) {
      if (!want.has(dir)) {
        w.watcher.close();
        dirs.delete(dir);
      }
    }
    for (const dir of want) watchDir(dir);
  };

  /**
   * The YAML files and a fingerprint of them and the certificates. A build is applied only if
   * this is the same before and after it read the files: an editor (or `writeFileSync`)
   * truncates and then writes, and a build that read in between would otherwise serve a
   * half-written config.
   */
  const fingerprint = async (): Promise<{ print: string; files: string[] }> => {
    const yaml = new Set<string>();
    for (const root of roots) for (const f of await expand(root).catch(() => [])) yaml.add(f);
    const parts: string[] = [];
    for (const f of [...new Set([...yaml, ...certFiles])].sort()) {
      const st = await stat(f).catch(() => undefined);
      parts.push(st ? `${f}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}` : `${f}:-`);
    }
    return { print: parts.join('|'), files: [...yaml] };
  };

  const rebuild = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      const before = await fingerprint();
      await rescan(before.files);
      if (before.print === lastPrint || closed) return; // an event about something the build does not read
      const r = await buildSnapshot(paths, opts);
      if (closed) return;
      if (before.print !== (await fingerprint()).print) {
        again = true; // the files moved under us: read them again once they settle
        return;
      }
      lastPrint = before.print;
      if (r.ok) {
        if (r.snapshot.files.join('\n') !== certFiles.join('\n')) {
          // New certificates to watch: the next pass fingerprints them (and rebuilds once, to the
          // same version, which is not reported).
          certFiles = r.snapshot.files;
          again = true;
        }
        // Without a version from the caller, the first build only learns it.
        const changed = lastVersion !== undefined && r.snapshot.version !== lastVersion;
        lastVersion = r.snapshot.version;
        if (changed) onChange(r);
      } else {
        if (lastVersion !== undefined) onChange(r);
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

  // Synchronously watch the roots' directories so that nothing written after this returns is
  // missed; the full tree (and the first fingerprint) follow asynchronously.
  for (const root of roots) {
    watchDir(dirname(root));
    if (statSync(root, { throwIfNoEntry: false })?.isDirectory()) watchDir(root);
  }
  const poll = pollMs > 0 ? setInterval(() => void (running || timer ? undefined : checkPoll()), pollMs) : undefined;
  poll?.unref();
  async function checkPoll(): Promise<void> {
    if (lastPrint !== undefined && (await fingerprint()).print !== lastPrint) schedule();
  }

  // The first pass builds once more: it learns the fingerprint and the certificates, and reports
  // a change made between the caller's build and this watch (a different version than theirs).
  const ready = rebuild();

  return {
    ready,
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poll) clearInterval(poll);
      for (const w of dirs.values()) w.watcher.close();
      dirs.clear();
    },
  };
}
