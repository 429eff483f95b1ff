/**
 * Wasm module fetch and cache, off the request path: `file://`, `https://` (checked against
 * `sha256` when given) and `oci://` (OCI distribution API; `sha256` is the image manifest digest,
 * as Istio checks it). Both image forms Istio pulls are understood: the OCI artifact (a layer of
 * media type application/vnd.module.wasm.content.layer.v1+wasm holding the module) and the
 * "compat" Docker/OCI image (one tar(.gz) layer holding `plugin.wasm`).
 *
 * Cache: `<dir>/sha256/<module digest>.wasm` plus `<dir>/index.json` mapping `url|expected`
 * to the module digest, so `imagePullPolicy: IfNotPresent` needs no network once fetched.
 * Registry auth: a `.dockerconfigjson` (Kubernetes dockerconfigjson Secret format); Basic
 * credentials, or a Bearer token from the registry's token realm. A loopback registry may be
 * plain HTTP. TLS trusts the system store plus NODE_EXTRA_CA_CERTS (Node's defaults).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';

export const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

/** Default module cache folder: `$PORTICO_WASM_CACHE`, else `${PORTICO_CACHE:-~/.cache/portico}/wasm-modules`. */
export function defaultCacheDir(): string {
  return process.env.PORTICO_WASM_CACHE ?? join(process.env.PORTICO_CACHE ?? join(homedir(), '.cache/portico'), 'wasm-modules');
}

export interface FetchRequest {
  readonly url: string;
  readonly sha256?: string;
  readonly pullPolicy: 'IfNotPresent' | 'Always';
  /** Contents of a `.dockerconfigjson`, for oci:// auth. */
  readonly dockerConfig?: string;
  readonly timeoutMs?: number;
}

export class WasmFetchError extends Error {
  override readonly name = 'WasmFetchError';
  constructor(
    message: string,
    /** Digest mismatches and missing files are not retried. */
    readonly permanent = false,
  ) {
    super(message);
  }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const WASM_LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';
const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export class ModuleCache {
  private index: Record<string, string> | undefined;
  private readonly inflight = new Map<string, Promise<Uint8Array>>();

  constructor(readonly dir: string = defaultCacheDir()) {}

  /** The module bytes; rejects with WasmFetchError. Concurrent fetches of one URL share a request. */
  fetch(req: FetchRequest): Promise<Uint8Array> {
    const key = `${req.url}|${req.sha256 ?? ''}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.load(req, key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async load(req: FetchRequest, key: string): Promise<Uint8Array> {
    if (req.url.startsWith('file://')) {
      let bytes: Uint8Array;
      try {
        bytes = await readFile(req.url.slice(7));
      } catch (e) {
        throw new WasmFetchError(`cannot read ${req.url}: ${(e as Error).message}`, true);
      }
      if (req.sha256 && sha(bytes) !== req.sha256) throw new WasmFetchError(`${req.url}: sha256 ${sha(bytes)} does not match the configured ${req.sha256}`, true);
      return bytes;
    }
    if (req.pullPolicy === 'IfNotPresent') {
      const cached = await this.cached(key);
      if (cached) return cached;
    }
    const bytes = await withRetries(() => (req.url.startsWith('oci://') ? this.pullOci(req) : this.pullHttps(req)), req.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS);
    await this.store(key, bytes);
    return bytes;
  }

  private async cached(key: string): Promise<Uint8Array | undefined> {
    const idx = await this.readIndex();
    const digest = idx[key];
    if (!digest) return undefined;
    try {
      const b = await readFile(join(this.dir, 'sha256', `${digest}.wasm`));
      return sha(b) === digest ? b : undefined;
    } catch {
      return undefined;
    }
  }

  private async readIndex(): Promise<Record<string, string>> {
    if (!this.index) {
      try {
        this.index = JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8')) as Record<string, string>;
      } catch {
        this.index = {};
      }
    }
    return this.index;
  }

  private async store(key: string, bytes: Uint8Array): Promise<void> {
    const digest = sha(bytes);
    await mkdir(join(this.dir, 'sha256'), { recursive: true });
    const file = join(this.dir, 'sha256', `${digest}.wasm`);
    await writeFile(`${file}.tmp`, bytes);
    await rename(`${file}.tmp`, file);
    const idx = await this.readIndex();
    idx[key] = digest;
    await writeFile(join(this.dir, 'index.json.tmp'), JSON.stringify(idx, null, 1));
    await rename(join(this.dir, 'index.json.tmp'), join(this.dir, 'index.json'));
  }

  private async pullHttps(req: FetchRequest): Promise<Uint8Array> {
    const bytes = await get(req.url, {}, req.timeoutMs);
    if (req.sha256 && sha(bytes.body) !== req.sha256) throw new WasmFetchError(`${req.url}: sha256 ${sha(bytes.body)} does not match the configured ${req.sha256}`, true);
    return bytes.body;
  }

  private async pullOci(req: FetchRequest): Promise<Uint8Array> {
    const ref = parseOciRef(req.url);
    const auth = new RegistryAuth(ref.registry, req.dockerConfig);
    const base = `${ref.scheme}://${ref.registry}/v2/${ref.repository}`;
    let manifest = await auth.get(`${base}/manifests/${ref.digest ?? ref.tag}`, { accept: MANIFEST_TYPES }, req.timeoutMs);
    const manifestDigest = sha(manifest.body);
    if (req.sha256 && manifestDigest !== req.sha256) {
      throw new WasmFetchError(`${req.url}: image manifest digest sha256:${manifestDigest} does not match the configured sha256 ${req.sha256}`, true);
    }
    if (ref.digest && `sha256:${manifestDigest}` !== ref.digest) throw new WasmFetchError(`${req.url}: registry answered manifest sha256:${manifestDigest}`, true);
    let m = JSON.parse(manifest.body.toString()) as OciManifest;
    if (m.manifests) {
      // An index: take the first manifest (Wasm images are platform-less).
      const first = m.manifests[0];
      if (!first) throw new WasmFetchError(`${req.url}: empty image index`, true);
      manifest = await auth.get(`${base}/manifests/${first.digest}`, { accept: MANIFEST_TYPES }, req.timeoutMs);
      m = JSON.parse(manifest.body.toString()) as OciManifest;
    }
    const layers = m.layers ?? [];
    const wasmLayer = layers.find((l) => l.mediaType === WASM_LAYER) ?? (layers.length === 1 ? layers[0] : undefined);
    if (!wasmLayer) throw new WasmFetchError(`${req.url}: image has ${layers.length} layers and none of type ${WASM_LAYER}`, true);
    const blob = await auth.get(`${base}/blobs/${wasmLayer.digest}`, {}, req.timeoutMs);
    if (`sha256:${sha(blob.body)}` !== wasmLayer.digest) throw new WasmFetchError(`${req.url}: layer digest mismatch`, true);
    return extractModule(blob.body, req.url);
  }
}

interface OciManifest {
  readonly layers?: { readonly mediaType: string; readonly digest: string }[];
  readonly manifests?: { readonly digest: string }[];
}

/** The module from a layer: raw wasm, or `plugin.wasm` inside a (gzipped) tar. */
export function extractModule(layer: Buffer, url: string): Uint8Array {
  if (isWasm(layer)) return layer;
  let tar = layer;
  if (layer[0] === 0x1f && layer[1] === 0x8b) tar = gunzipSync(layer);
  for (let off = 0; off + 512 <= tar.length; ) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString().replace(/\0.*$/s, '');
    const prefix = header.subarray(345, 500).toString().replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString().replace(/\0.*$/s, '').trim() || '0', 8);
    const full = (prefix ? `${prefix}/${name}` : name).replace(/^\.\//, '');
    const data = tar.subarray(off + 512, off + 512 + size);
    if (full === 'plugin.wasm' || full.endsWith('/plugin.wasm')) {
      if (!isWasm(data)) throw new WasmFetchError(`${url}: plugin.wasm is not a WebAssembly module`, true);
      return data;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new WasmFetchError(`${url}: the image layer holds no plugin.wasm`, true);
}

function isWasm(b: Uint8Array): boolean {
  return b.length >= 8 && b[0] === 0 && b[1] === 0x61 && b[2] === 0x73 && b[3] === 0x6d;
}

export interface OciRef {
  readonly scheme: 'http' | 'https';
  readonly registry: string;
  readonly repository: string;
  readonly tag: string;
  readonly digest?: string;
}

/** `oci://host[:port]/repo/path[:tag][@sha256:...]`; loopback registries are plain HTTP. */
export function parseOciRef(url: string): OciRef {
  const rest = url.replace(/^oci:\/\//, '');
  const slash = rest.indexOf('/');
  if (slash < 0) throw new WasmFetchError(`${url}: no repository in the image reference`, true);
  const registry = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  let digest: string | undefined;
  const at = path.indexOf('@');
  if (at >= 0) {
    digest = path.slice(at + 1);
    path = path.slice(0, at);
  }
  const colon = path.lastIndexOf(':');
  const tag = colon > path.lastIndexOf('/') ? path.slice(colon + 1) : 'latest';
  const repository = colon > path.lastIndexOf('/') ? path.slice(0, colon) : path;
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127\./.test(host);
  return { scheme: loopback ? 'http' : 'https', registry, repository, tag, digest };
}

/** Credentials for one registry from a .dockerconfigjson, and the Bearer token dance. */
class RegistryAuth {
  private basic: string | undefined;
  private bearer: string | undefined;

  constructor(registry: string, dockerConfig?: string) {
    if (!dockerConfig) return;
    let cfg: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
    try {
      cfg = JSON.parse(dockerConfig);
    } catch {
      throw new WasmFetchError('imagePullSecret: .dockerconfigjson is not JSON', true);
    }
    for (const [k, v] of Object.entries(cfg.auths ?? {})) {
      const host = k.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
      if (host !== registry) continue;
      this.basic = v.auth ?? (v.username !== undefined ? Buffer.from(`${v.username}:${v.password ?? ''}`).toString('base64') : undefined);
    }
  }

  async get(url: string, headers: Record<string, string>, timeoutMs?: number): Promise<{ body: Buffer }> {
    const withAuth = (): Record<string, string> => ({ ...headers, ...(this.bearer ? { authorization: `Bearer ${this.bearer}` } : this.basic ? { authorization: `Basic ${this.basic}` } : {}) });
    try {
      return await get(url, withAuth(), timeoutMs);
    } catch (e) {
      if (!(e instanceof HttpStatusError) || e.status !== 401 || this.bearer) throw e;
      const challenge = e.wwwAuthenticate ?? '';
      if (/^bearer /i.test(challenge)) {
        this.bearer = await this.token(challenge, timeoutMs);
        return get(url, withAuth(), timeoutMs);
      }
      if (!this.basic) throw new WasmFetchError(`${url}: registry wants credentials and no imagePullSecret gives any`, true);
      throw new WasmFetchError(`${url}: registry refused the imagePullSecret credentials (401)`, true);
    }
  }

  private async token(challenge: string, timeoutMs?: number): Promise<string> {
    const params = Object.fromEntries([...challenge.slice(7).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!params.realm) throw new WasmFetchError(`registry token challenge without realm: ${challenge}`, true);
    const u = new URL(params.realm);
    if (params.service) u.searchParams.set('service', params.service);
    if (params.scope) u.searchParams.set('scope', params.scope);
    const r = await get(u.href, this.basic ? { authorization: `Basic ${this.basic}` } : {}, timeoutMs);
    const j = JSON.parse(r.body.toString()) as { token?: string; access_token?: string };
    const t = j.token ?? j.access_token;
    if (!t) throw new WasmFetchError('registry token endpoint returned no token', true);
    return t;
  }
}

class HttpStatusError extends WasmFetchError {
  constructor(
    url: string,
    readonly status: number,
    readonly wwwAuthenticate: string | undefined,
  ) {
    super(`${url}: HTTP ${status}`, status >= 400 && status < 500 && status !== 408 && status !== 429);
  }
}

const MAX_MODULE_BYTES = 256 << 20;

async function get(url: string, headers: Record<string, string>, timeoutMs = DEFAULT_FETCH_TIMEOUT_MS): Promise<{ body: Buffer }> {
  let res;
  try {
    res = await request(url, { headers, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  } catch (e) {
    throw new WasmFetchError(`${url}: ${(e as Error).message}`);
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    const www = res.headers['www-authenticate'];
    throw new HttpStatusError(url, res.statusCode, Array.isArray(www) ? www[0] : www);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > MAX_MODULE_BYTES) throw new WasmFetchError(`${url}: larger than ${MAX_MODULE_BYTES} bytes`, true);
    chunks.push(c as Buffer);
  }
  return { body: Buffer.concat(chunks) };
}

/** Retries transient failures with backoff (0.5 s, 1 s, 2 s, capped at 5 s) within the overall timeout. */
async function withRetries<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 500;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof WasmFetchError && e.permanent) throw e;
      if (Date.now() + delay >= deadline) throw e instanceof WasmFetchError ? e : new WasmFetchError(String(e));
      await new Promise((r) => setTimeout(r, delay).unref());
      delay = Math.min(delay * 2, 5000);
    }
  }
}
