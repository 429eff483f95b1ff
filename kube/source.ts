/**
 * The Kubernetes API as the control plane's config source: watches every input (kube/watches.ts
 * lists them), and after each burst of changes (debounced) builds one snapshot with the same
 * loader, validator and compiler as files.
 *
 * One invalid object never freezes the rest: an object with errors is left out and reported,
 * and the snapshot is built from the others (repeatedly, since leaving a Gateway out can make a
 * VirtualService bound to it invalid in turn). The last good version of a now-invalid object is
 * not kept: what the cluster says is what is served, minus what cannot be.
 *
 * `credentialName` Secrets are written, decoded, to a private directory (`secretsDir`, mode
 * 0700) in the layout the validator reads (`<dir>/<name>/tls.crt`...), atomically and only when
 * their bytes change, so gateways reading them pick up a rotation without a restart.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileSnapshot } from '../config/compile.ts';
import type { ConfigIssue } from '../config/errors.ts';
import { KINDS } from '../config/kinds/index.ts';
import type { Resource } from '../config/load.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { validateConfig } from '../config/validate.ts';
import type { KubeApi } from './api.ts';
import { objectKey, Reflector, type KubeObject, type ReflectorLogger } from './reflector.ts';
import {
  credentialFiles, credentialNames, endpointSliceDocument, formatKubeIssue, istioDocument, loadDocument, meshConfigMapDocument, objectFile, objectIdOf,
  podDocument, referencedPods, serviceDocument,
} from './translate.ts';
import { Analysis } from './analysis.ts';
import { discoverIstioKinds, type WatchedKind } from './watches.ts';

export interface KubeLogger extends ReflectorLogger {
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface KubeSourceOptions {
  readonly api: KubeApi;
  /** Where the mesh ConfigMap lives: `ns/name` (default `<own namespace>/istio`). */
  readonly meshConfig: { readonly namespace: string; readonly name: string };
  /** Private directory for credentialName Secrets (created, mode 0700). */
  readonly secretsDir: string;
  /** Quiet time before a rebuild (default 100 ms); a rebuild happens at least every `maxDelayMs` (1 s) under constant churn. */
  readonly debounceMs?: number;
  readonly maxDelayMs?: number;
  readonly log: KubeLogger;
  readonly cwd?: string;
  /** List everything once and build once, without watching (`portico validate --kubernetes`). */
  readonly listOnly?: boolean;
  /** Report rejected objects as Events and `status.validationMessages` (default true unless listOnly). */
  readonly analysis?: boolean;
  /** Whether this replica may write (it holds the Lease); default always. */
  readonly isWriter?: () => boolean;
}

/** One build: the snapshot (unless nothing could be built) and what was left out and why. */
export interface KubeBuild {
  readonly snapshot?: Snapshot;
  /** `Kind/ns/name` → its error issues; those objects are not in the snapshot. */
  readonly rejected: ReadonlyMap<string, readonly ConfigIssue[]>;
  readonly warnings: readonly ConfigIssue[];
  /** Problems not tied to one object (an internal compiler error): nothing was built. */
  readonly fatal: readonly ConfigIssue[];
  readonly objects: number;
}

export interface KubeInputs {
  readonly istio: Iterable<KubeObject>;
  readonly meshConfigMap?: KubeObject;
  readonly services: Iterable<KubeObject>;
  readonly slices: Iterable<KubeObject>;
  readonly pods: ReadonlyMap<string, KubeObject>;
}

type Loaded = { resources: Resource[]; issues: ConfigIssue[] };

/**
 * Loads API objects as config resources (see kube/translate.ts); problems are filed per object.
 * `cache` (uid@resourceVersion → loaded) lets a rebuild re-parse only the objects that changed.
 */
export function loadObjects(input: KubeInputs, cache?: Map<string, Loaded>): { resources: Resource[]; issues: ConfigIssue[]; objects: number } {
  const resources: Resource[] = [];
  const issues: ConfigIssue[] = [];
  let objects = 0;
  const used = new Set<string>();
  const take = (o: KubeObject, kind: string, doc: (o: KubeObject) => Record<string, unknown>): void => {
    const key = o.metadata.uid && o.metadata.resourceVersion ? `${kind}/${o.metadata.uid}@${o.metadata.resourceVersion}` : undefined;
    let r = key ? cache?.get(key) : undefined;
    if (!r) {
      r = loadDocument(doc(o), kind, o.metadata.namespace, o.metadata.name);
      if (key) cache?.set(key, r);
    }
    if (key) used.add(key);
    resources.push(...r.resources);
    issues.push(...r.issues);
    objects++;
  };
  for (const o of input.istio) take(o, o.kind ?? '', istioDocument);
  if (input.meshConfigMap) take(input.meshConfigMap, 'ConfigMap', meshConfigMapDocument);
  const slices = [...input.slices];
  for (const o of input.services) take(o, 'Service', serviceDocument);
  for (const o of slices) take(o, 'EndpointSlice', endpointSliceDocument);
  for (const o of referencedPods(slices, input.pods)) take(o, 'Pod', podDocument);
  if (cache) for (const k of cache.keys()) if (!used.has(k)) cache.delete(k);
  return { resources, issues, objects };
}

/**
 * Validates and compiles, leaving out every object with an error (see the file comment). Pure
 * apart from reading the credential files under `secretsDir`.
 */
export async function buildFromResources(
  loaded: { resources: readonly Resource[]; issues: readonly ConfigIssue[]; objects: number },
  opts: { secretsDir: string; cwd?: string },
): Promise<KubeBuild> {
  const rejected = new Map<string, ConfigIssue[]>();
  const reject = (issues: readonly ConfigIssue[]): ConfigIssue[] => {
    const loose: ConfigIssue[] = [];
    for (const i of issues) {
      const id = objectIdOf(i);
      if (!id) {
        loose.push(i);
        continue;
      }
      const list = rejected.get(id) ?? [];
      list.push(i);
      rejected.set(id, list);
    }
    return loose;
  };
  let fatal = reject(loaded.issues.filter((i) => i.severity === 'error'));
  let warnings = loaded.issues.filter((i) => i.severity === 'warning');
  let resources = loaded.resources.filter((r) => !rejected.has(r.file.slice('kubernetes:'.length)));
  for (let round = 0; round < 8 && fatal.length === 0; round++) {
    const v = await validateConfig({ resources, issues: [], files: [] }, { secretsDir: opts.secretsDir, cwd: opts.cwd });
    warnings = [...loaded.issues.filter((i) => i.severity === 'warning'), ...v.warnings];
    if (v.errors.length === 0) {
      try {
        const snapshot = compileSnapshot(v.config, { cwd: opts.cwd });
        return { snapshot, rejected, warnings, fatal: [], objects: loaded.objects };
      } catch (err) {
        fatal = [{ file: '', line: 0, kind: '', name: '', path: '', message: `internal compiler error: ${(err as Error).message}`, code: 'PORTICO_CFG_NOT_IMPLEMENTED', severity: 'error' }];
        break;
      }
    }
    fatal = reject(v.errors);
    const bad = new Set(rejected.keys());
    resources = resources.filter((r) => !bad.has(r.file.slice('kubernetes:'.length)));
  }
  return { rejected, warnings, fatal, objects: loaded.objects };
}

/** Writes `files` into `dir` atomically, only when they differ; returns whether anything changed. */
function syncDir(dir: string, files: ReadonlyMap<string, Buffer>): boolean {
  let changed = false;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [name, bytes] of files) {
    const path = join(dir, name);
    let old: Buffer | undefined;
    try {
      old = readFileSync(path);
    } catch {
      old = undefined;
    }
    if (old && old.equals(bytes)) continue;
    writeFileSync(`${path}.tmp`, bytes, { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
    changed = true;
  }
  for (const name of readdirSync(dir)) {
    if (!files.has(name)) {
      rmSync(join(dir, name), { force: true });
      changed = true;
    }
  }
  return changed;
}

export class KubeSource {
  private readonly opts: KubeSourceOptions;
  private readonly reflectors: Reflector[] = [];
  private istio: Reflector[] = [];
  private services!: Reflector;
  private slices!: Reflector;
  private pods!: Reflector;
  private mesh!: Reflector;
  /** Namespace → Secret reflector, for namespaces whose Gateways name credentials. */
  private readonly secretWatches = new Map<string, Reflector>();
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt = 0;
  private building = false;
  private again = false;
  private closed = false;
  private started = false;
  private readonly listeners = new Set<(b: KubeBuild) => void>();
  kinds: readonly WatchedKind[] = [];
  private analysis: Analysis | undefined;
  private readonly loadCache = new Map<string, Loaded>();
  last: KubeBuild | undefined;
  builds = 0;

  /** Re-reports the current problems (a replica that just became the leader). */
  reportAgain(): void {
    if (this.last && this.analysis) void this.analysis.report(this.last.rejected, (id) => this.find(id));
  }

  constructor(opts: KubeSourceOptions) {
    this.opts = opts;
    mkdirSync(opts.secretsDir, { recursive: true, mode: 0o700 });
    if (opts.analysis ?? !opts.listOnly) this.analysis = new Analysis(opts.api, opts.log);
  }

  /** The watched object behind `Kind/ns/name`, with its Istio kind when it is one. */
  private find(id: string): { obj: KubeObject; kind?: WatchedKind } | undefined {
    const slash = id.indexOf('/');
    const kind = id.slice(0, slash);
    const key = id.slice(slash + 1);
    const i = this.kinds.findIndex((k) => k.kind === kind);
    if (i >= 0) {
      const obj = this.istio[i]?.objects.get(key);
      return obj ? { obj, kind: this.kinds[i] } : undefined;
    }
    const r = kind === 'Service' ? this.services : kind === 'EndpointSlice' ? this.slices : kind === 'Pod' ? this.pods : kind === 'ConfigMap' ? this.mesh : undefined;
    const obj = r?.objects.get(key);
    return obj ? { obj } : undefined;
  }

  onBuild(fn: (b: KubeBuild) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private reflector(path: string, apiVersion: string, kind: string, extra: { fieldSelector?: string } = {}): Reflector {
    const r = new Reflector({ api: this.opts.api, path, apiVersion, kind, onChange: () => this.changed(), log: this.opts.log, listOnly: this.opts.listOnly, ...extra });
    this.reflectors.push(r);
    return r;
  }

  /** Discovers the served Istio versions, lists everything, and resolves after the first build. */
  async start(): Promise<KubeBuild> {
    const { api, log } = this.opts;
    this.kinds = await discoverIstioKinds(api, (kind) => KINDS.has(kind), log);
    this.istio = this.kinds.map((k) => this.reflector(`/apis/${k.group}/${k.version}/${k.plural}`, `${k.group}/${k.version}`, k.kind));
    this.services = this.reflector('/api/v1/services', 'v1', 'Service');
    this.slices = this.reflector('/apis/discovery.k8s.io/v1/endpointslices', 'discovery.k8s.io/v1', 'EndpointSlice');
    this.pods = this.reflector('/api/v1/pods', 'v1', 'Pod');
    const m = this.opts.meshConfig;
    this.mesh = this.reflector(`/api/v1/namespaces/${encodeURIComponent(m.namespace)}/configmaps`, 'v1', 'ConfigMap', { fieldSelector: `metadata.name=${m.name}` });
    await Promise.all(this.reflectors.map((r) => r.start()));
    this.started = true;
    this.syncSecretWatches();
    await Promise.all([...this.secretWatches.values()].map((r) => r.start().catch((err: Error) => log.error('cannot read Secrets', { error: err.message }))));
    return this.rebuildNow();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const r of this.reflectors) r.stop();
    for (const r of this.secretWatches.values()) r.stop();
    this.secretWatches.clear();
  }

  /** Per-reflector state, for /v1/status. */
  status(): Record<string, unknown> {
    return {
      kinds: this.kinds.map((k) => `${k.kind}.${k.group}/${k.version}`),
      watches: [...this.reflectors, ...this.secretWatches.values()].map((r) => ({ resource: r.name, objects: r.objects.size, lists: r.lists, error: r.lastError ?? null })),
      rejected: Object.fromEntries([...(this.last?.rejected ?? new Map<string, readonly ConfigIssue[]>())].map(([id, issues]) => [id, issues.map(formatKubeIssue)])),
    };
  }

  private changed(): void {
    if (!this.started || this.closed) return;
    const now = Date.now();
    if (!this.timer) this.firstChangeAt = now;
    else clearTimeout(this.timer);
    const debounce = this.opts.debounceMs ?? 100;
    const wait = Math.max(0, Math.min(debounce, this.firstChangeAt + (this.opts.maxDelayMs ?? 1000) - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.rebuildNow();
    }, wait);
    this.timer.unref();
  }

  /** Secret watches follow the namespaces whose Gateways/DestinationRules name credentials. */
  private syncSecretWatches(): Set<string> {
    const names = credentialNames(this.istio.flatMap((r) => [...r.objects.values()]));
    const namespaces = new Set<string>();
    for (const nss of names.values()) for (const ns of nss) namespaces.add(ns);
    for (const [ns, r] of this.secretWatches) {
      if (!namespaces.has(ns)) {
        r.stop();
        this.secretWatches.delete(ns);
      }
    }
    for (const ns of namespaces) {
      if (this.secretWatches.has(ns)) continue;
      const r = new Reflector({
        api: this.opts.api,
        path: `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets`,
        apiVersion: 'v1',
        kind: 'Secret',
        onChange: () => this.changed(),
        log: this.opts.log,
        listOnly: this.opts.listOnly,
      });
      this.secretWatches.set(ns, r);
      if (this.started) r.start().catch((err: Error) => this.opts.log.error('cannot read Secrets', { namespace: ns, error: err.message }));
    }
    return namespaces;
  }

  /** Writes the referenced Secrets' files (see the file comment). */
  private syncSecrets(): void {
    const names = credentialNames(this.istio.flatMap((r) => [...r.objects.values()]));
    const wanted = new Map<string, Map<string, Buffer>>();
    for (const [name, nss] of names) {
      for (const dirName of [name, `${name}-cacert`]) {
        // Istio reads a credential from the namespace of the Gateway naming it; the first such
        // namespace (sorted) holding the Secret wins when several Gateways share a name.
        for (const ns of [...nss].sort()) {
          const secret = this.secretWatches.get(ns)?.objects.get(`${ns}/${dirName}`);
          const files = secret && credentialFiles(secret);
          if (files) {
            wanted.set(dirName, files);
            break;
          }
        }
      }
    }
    for (const [name, files] of wanted) syncDir(join(this.opts.secretsDir, name), files);
    for (const entry of readdirSync(this.opts.secretsDir)) if (!wanted.has(entry)) rmSync(join(this.opts.secretsDir, entry), { recursive: true, force: true });
  }

  /** Builds now (or right after the running build) and tells the listeners. */
  async rebuildNow(): Promise<KubeBuild> {
    if (this.building) {
      this.again = true;
      return new Promise((resolve) => {
        const off = this.onBuild((b) => {
          off();
          resolve(b);
        });
      });
    }
    this.building = true;
    try {
      let b: KubeBuild;
      do {
        this.again = false;
        this.syncSecretWatches();
        this.syncSecrets();
        const loaded = loadObjects(
          {
          istio: this.istio.flatMap((r) => [...r.objects.values()]),
          meshConfigMap: this.mesh.objects.get(`${this.opts.meshConfig.namespace}/${this.opts.meshConfig.name}`),
          services: this.services.objects.values(),
          slices: this.slices.objects.values(),
          pods: this.pods.objects,
          },
          this.loadCache,
        );
        b = await buildFromResources(loaded, { secretsDir: this.opts.secretsDir, cwd: this.opts.cwd });
      } while (this.again && !this.closed);
      this.builds++;
      this.last = b;
      for (const l of [...this.listeners]) l(b);
      const analysis = this.analysis;
      if (analysis && (this.opts.isWriter?.() ?? true)) void analysis.report(b.rejected, (id) => this.find(id));
      return b;
    } finally {
      this.building = false;
    }
  }
}

export { objectFile, objectKey, formatKubeIssue };
