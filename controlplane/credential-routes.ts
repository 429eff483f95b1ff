/**
 * `GET /v1/credentials`: the certificate, key and CA files the current snapshot's Gateway servers
 * name (from `credentialName` Secrets or files), for gateways that take their config from the
 * control plane and have no copy of those files (`portico gateway --controlplane URL` without
 * `--config`). Snapshots carry paths, never key material; this endpoint sits behind the same
 * authentication as the snapshot stream, and only gateways call it.
 *
 *   200 {"version": "<snapshot version>", "files": {"<path>": "<base64>"}}
 */
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync } from 'fastify';
import type { Snapshot } from '../config/snapshot.ts';
import { ControlPlaneError } from './errors.ts';
import type { SnapshotFeed } from './feed.ts';

export const CREDENTIALS_PATH = '/v1/credentials';

export interface CredentialsMessage {
  readonly version: string;
  readonly files: Readonly<Record<string, string>>;
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

export const credentialRoutes: FastifyPluginAsync<{ feed: SnapshotFeed }> = async (app, { feed }) => {
  app.get(CREDENTIALS_PATH, async (_req, reply) => {
    const p = feed.latest;
    if (!p) throw new ControlPlaneError('NOT_READY', 'no snapshot yet: the config has not compiled (see /v1/status)');
    const files: Record<string, string> = {};
    for (const f of gatewayTlsFiles(p.snapshot)) {
      try {
        files[f] = (await readFile(f)).toString('base64');
      } catch {
        // rotated away between the snapshot and now: the next snapshot names the new file
      }
    }
    reply.header('cache-control', 'no-store');
    return { version: p.version, files } satisfies CredentialsMessage;
  });
};
