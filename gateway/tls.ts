/**
 * Server certificates for HTTPS listeners: one SecureContext per Gateway server, chosen by SNI.
 * Certificate files are watched; a changed file rebuilds its contexts on the next handshake, so
 * rotation needs no restart and never touches established connections.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { GatewayServer } from '../config/snapshot.ts';

const TLS_VERSIONS: Record<string, 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'> = {
  TLSV1_0: 'TLSv1',
  TLSV1_1: 'TLSv1.1',
  TLSV1_2: 'TLSv1.2',
  TLSV1_3: 'TLSv1.3',
};

export function secureContextOptions(server: GatewayServer): SecureContextOptions | undefined {
  const tls = server.tls;
  if (!tls || !tls.certFile || !tls.keyFile) return undefined;
  const opts: SecureContextOptions = {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    minVersion: TLS_VERSIONS[tls.minProtocolVersion ?? ''] ?? 'TLSv1.2',
  };
  const max = TLS_VERSIONS[tls.maxProtocolVersion ?? ''];
  if (max) opts.maxVersion = max;
  if (tls.cipherSuites?.length) opts.ciphers = tls.cipherSuites.join(':');
  if ((tls.mode === 'MUTUAL' || tls.mode === 'OPTIONAL_MUTUAL') && tls.caFile) opts.ca = readFileSync(tls.caFile);
  return opts;
}

export class CertStore {
  private readonly contexts = new Map<string, { ctx: SecureContext; server: GatewayServer; files: string[] }>();
  private readonly watched = new Set<string>();
  /** Called after a watched certificate file changed; `error` when the new pair was unusable. */
  onChange?: (file: string, error?: Error) => void;

  private key(server: GatewayServer): string {
    const t = server.tls;
    return `${t?.certFile}|${t?.keyFile}|${t?.caFile ?? ''}|${t?.minProtocolVersion ?? ''}|${t?.maxProtocolVersion ?? ''}|${t?.cipherSuites?.join(':') ?? ''}`;
  }

  /** The SecureContext for a server; throws when its files cannot be read or parsed. */
  context(server: GatewayServer): SecureContext | undefined {
    const k = this.key(server);
    const hit = this.contexts.get(k);
    if (hit) return hit.ctx;
    const opts = secureContextOptions(server);
    if (!opts) return undefined;
    const ctx = createSecureContext(opts);
    const files = [server.tls?.certFile, server.tls?.keyFile, server.tls?.caFile].filter((f): f is string => !!f);
    this.contexts.set(k, { ctx, server, files });
    for (const f of files) this.watch(f);
    return ctx;
  }

  private watch(file: string): void {
    if (this.watched.has(file)) return;
    this.watched.add(file);
    watchFile(file, { interval: 500, persistent: false }, (cur, prev) => {
      if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
      // Rebuild now; while a rotation is half written (new cert, old key) keep serving the old
      // pair, and pick the new one up when the second file lands.
      for (const entry of this.contexts.values()) {
        if (!entry.files.includes(file)) continue;
        try {
          const opts = secureContextOptions(entry.server);
          if (opts) entry.ctx = createSecureContext(opts);
          this.onChange?.(file);
        } catch (err) {
          this.onChange?.(file, err as Error);
        }
      }
    });
  }

  /** Options (files read) for `setSecureContext`, i.e. the no-SNI default certificate. */
  options(server: GatewayServer): SecureContextOptions | undefined {
    this.context(server);
    return secureContextOptions(server);
  }

  close(): void {
    for (const f of this.watched) unwatchFile(f);
    this.watched.clear();
    this.contexts.clear();
  }
}
