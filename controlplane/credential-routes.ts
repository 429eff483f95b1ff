/**
 * `GET /v1/credentials`: the certificate, key and CA files the current snapshot's Gateway servers
 * name (from `credentialName` Secrets or files), for gateways that take their config from the
 * control plane and have no copy of those files (`portico gateway --controlplane URL` without
 * `--config`). Snapshots carry paths, never key material; this endpoint sits behind the same
 * authentication as the snapshot stream, and only gateways call it.
 *
 * WasmPlugin `imagePullSecret`s ride along (`pullSecrets`: name → the `.dockerconfigjson` under
 * the control plane's secrets directory), as istiod hands a pull secret to the proxy's agent with
 * the WasmPlugin rather than letting proxies read Secrets.
 *
 *   200 {"version": "<snapshot version>", "files": {"<path>": "<base64>"}, "pullSecrets": {"<name>": "<base64>"}}
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Snapshot } from '../config/snapshot.ts';
import { ControlPlaneError } from './errors.ts';
import type { SnapshotFeed } from './feed.ts';
import type { CallerIdentity } from './identity.ts';

export const CREDENTIALS_PATH = '/v1/credentials';

export interface CredentialsMessage {
  readonly version: string;
  readonly files: Readonly<Record<string, string>>;
  /** imagePullSecret name → `.dockerconfigjson` (base64); absent from control planes before it. */
  readonly pullSecrets?: Readonly<Record<string, string>>;
}

/**
 * The imagePullSecret names of the snapshot's WasmPlugins a caller may get: for a pod's token,
 * those of plugins in its namespace or the root namespace (the plugins that can apply to it).
 */
export function wasmPullSecrets(snapshot: Snapshot, namespace?: string): string[] {
  const names = new Set<string>();
  for (const p of snapshot.wasmPlugins ?? []) {
    if (!p.imagePullSecret) continue;
    if (namespace !== undefined && p.namespace !== namespace && p.namespace !== snapshot.security.rootNamespace) continue;
    names.add(p.imagePullSecret);
  }
  return [...names].sort();
}

/** Every TLS file a snapshot's Gateway servers name, sorted. */
export function gatewayTlsFiles(snapshot: Snapshot): string[] {
  const files = new Set<string>();
  for (const gw of snapshot.gateways) {
    for (const port of gw.ports) {
      for (const s of port.servers) {
        for (const f of [s.tls?.certFile, s.tls?.keyFile, s.tls?.caFile]) if (f) files.add(f);
      }
    }
  }
  return [...files].sort();
}

export const credentialRoutes: FastifyPluginAsync<{ feed: SnapshotFeed; identityOf: (req: FastifyRequest) => CallerIdentity; secretsDir: string }> = async (app, { feed, identityOf, secretsDir }) => {
  app.get(CREDENTIALS_PATH, async (req, reply) => {
    const p = feed.latest;
    if (!p) throw new ControlPlaneError('NOT_READY', 'no snapshot yet: the config has not compiled (see /v1/status)');
    // A pod's token only gets the credentials of Gateways in its own namespace (where Istio
    // also looks credentialName Secrets up); the bootstrap token gets all of them.
    const who = identityOf(req);
    const gateways = who.kind === 'kubernetes' ? p.snapshot.gateways.filter((g) => g.namespace === who.namespace) : p.snapshot.gateways;
    const files: Record<string, string> = {};
    for (const f of gatewayTlsFiles({ ...p.snapshot, gateways })) {
      try {
        files[f] = (await readFile(f)).toString('base64');
      } catch {
        // rotated away between the snapshot and now: the next snapshot names the new file
      }
    }
    const pullSecrets: Record<string, string> = {};
    for (const name of wasmPullSecrets(p.snapshot, who.kind === 'kubernetes' ? who.namespace : undefined)) {
      try {
        pullSecrets[name] = (await readFile(join(secretsDir, name, '.dockerconfigjson'))).toString('base64');
      } catch {
        // not written (yet): the gateway's fetch fails by the plugin's failStrategy and says so
      }
    }
    reply.header('cache-control', 'no-store');
    return { version: p.version, files, pullSecrets } satisfies CredentialsMessage;
  });
};
