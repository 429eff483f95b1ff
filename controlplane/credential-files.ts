/**
 * Gateway side of `GET /v1/credentials`: fetches the TLS files a snapshot's Gateway servers name
 * and writes them to a private local directory under content-addressed names, then returns the
 * snapshot with its paths pointing there. A rotated Secret has new bytes, hence a new path, so
 * the gateway builds a new TLS context for it at the swap, without a restart and without
 * touching established connections. Files of older snapshots are removed two swaps later.
 * WasmPlugin pull secrets are written the same way (`<name>.dockerconfigjson`, content-addressed)
 * and named by `imagePullSecretFile`, so cluster workers, which get the snapshot over IPC, find
 * them too.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { deepFreeze } from '../config/compile.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { gatewayTlsFiles, wasmPullSecrets, CREDENTIALS_PATH, type CredentialsMessage } from './credential-routes.ts';
import { ControlPlaneError, errorText } from './errors.ts';
import { bootstrapToken, responseError, type ControlPlaneTarget } from './subscribe.ts';
import { undiciRequest } from './undici.ts';

export class CredentialFiles {
  private readonly dir: string;
  private readonly target: ControlPlaneTarget;
  /** Local file names in use by the last two snapshots. */
  private generations: Set<string>[] = [];

  constructor(target: ControlPlaneTarget, dir: string) {
    this.target = target;
    this.dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private async fetch(): Promise<CredentialsMessage> {
    const t = bootstrapToken(this.target.token);
    let res;
    try {
      res = await (await undiciRequest())(new URL(CREDENTIALS_PATH, this.target.url), {
        headers: t ? { authorization: `Bearer ${t}` } : {},
        headersTimeout: 10_000,
        bodyTimeout: 30_000,
      });
    } catch (err) {
      throw new ControlPlaneError('UNREACHABLE', `GET ${CREDENTIALS_PATH}: ${errorText(err)}`, { cause: err });
    }
    if (res.statusCode !== 200) throw await responseError(res.statusCode, res.body, `GET ${CREDENTIALS_PATH}`);
    return (await res.body.json()) as CredentialsMessage;
  }

  private write(bytes: Buffer, suffix: string, used: Set<string>): string {
    const name = `${createHash('sha256').update(bytes).digest('hex').slice(0, 24)}-${suffix}`;
    writeFileSync(join(this.dir, name), bytes, { mode: 0o600 });
    used.add(name);
    return join(this.dir, name);
  }

  /**
   * `snapshot` with every Gateway TLS path replaced by a local copy, and every WasmPlugin pull
   * secret given as a local file (unchanged when it names neither).
   */
  async localize(snapshot: Snapshot): Promise<Snapshot> {
    const wanted = gatewayTlsFiles(snapshot);
    const pulls = wasmPullSecrets(snapshot);
    if (wanted.length === 0 && pulls.length === 0) return snapshot;
    const msg = await this.fetch();
    const local = new Map<string, string>();
    const used = new Set<string>();
    for (const remote of wanted) {
      const b64 = msg.files[remote];
      if (b64 === undefined) throw new ControlPlaneError('PROTOCOL', `the control plane has no file ${remote} for snapshot ${snapshot.version} (it has moved on; the next snapshot will name the new file)`);
      local.set(remote, this.write(Buffer.from(b64, 'base64'), basename(remote), used));
    }
    // A pull secret the control plane could not give is left to the module fetch, which fails by
    // the plugin's failStrategy naming the Secret (never the rest of the snapshot).
    const pullFiles = new Map<string, string>();
    for (const name of pulls) {
      const b64 = msg.pullSecrets?.[name];
      if (b64 !== undefined) pullFiles.set(name, this.write(Buffer.from(b64, 'base64'), `${basename(name)}.dockerconfigjson`, used));
    }
    this.generations = [used, ...this.generations].slice(0, 2);
    const keep = new Set(this.generations.flatMap((g) => [...g]));
    for (const f of readdirSync(this.dir)) if (!keep.has(f)) rmSync(join(this.dir, f), { force: true });
    const copy = JSON.parse(JSON.stringify(snapshot), (key, value: unknown) =>
      (key === 'certFile' || key === 'keyFile' || key === 'caFile') && typeof value === 'string' && local.has(value) ? local.get(value) : value,
    ) as Snapshot;
    if (pullFiles.size && copy.wasmPlugins) {
      (copy as { wasmPlugins: Snapshot['wasmPlugins'] }).wasmPlugins = copy.wasmPlugins.map((p) => {
        const file = p.imagePullSecret ? pullFiles.get(p.imagePullSecret) : undefined;
        return file ? { ...p, imagePullSecretFile: file } : p;
      });
    }
    return deepFreeze(copy);
  }
}
