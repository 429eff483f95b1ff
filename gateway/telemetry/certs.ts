/**
 * The server certificates a gateway serves (every Gateway server's TLS certFile in the
 * snapshot), with subject, SANs and expiry, for admin `/certs` and the expiry gauge. Parsed
 * certificates are cached by file and mtime, so rotation on disk shows up on the next read.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Snapshot } from '../../config/snapshot.ts';

export interface CertInfo {
  readonly file: string;
  /** `gateway ns/name` entries using this file. */
  readonly usedBy: readonly string[];
  readonly hosts: readonly string[];
  readonly subject?: string;
  readonly issuer?: string;
  readonly subjectAltNames?: readonly string[];
  readonly serialNumber?: string;
  readonly validFrom?: string;
  readonly validTo?: string;
  /** Seconds until notAfter (negative once expired). */
  readonly expiresInSeconds?: number;
  readonly error?: string;
}

const cache = new Map<string, { mtimeMs: number; cert?: X509Certificate; error?: string }>();

function load(file: string): { cert?: X509Certificate; error?: string } {
  let mtimeMs: number;
  try {
    mtimeMs = statSync(file).mtimeMs;
  } catch (err) {
    return { error: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === mtimeMs) return hit;
  let entry: { mtimeMs: number; cert?: X509Certificate; error?: string };
  try {
    entry = { mtimeMs, cert: new X509Certificate(readFileSync(file)) };
  } catch (err) {
    entry = { mtimeMs, error: `not a PEM certificate: ${(err as Error).message}` };
  }
  cache.set(file, entry);
  return entry;
}

/** Every server certificate the snapshot's Gateways name, sorted by file. */
export function certificatesInUse(snapshot: Snapshot, now = Date.now()): CertInfo[] {
  const byFile = new Map<string, { usedBy: Set<string>; hosts: Set<string> }>();
  for (const g of snapshot.gateways) {
    for (const p of g.ports) {
      for (const s of p.servers) {
        const file = s.tls?.certFile;
        if (!file) continue;
        let e = byFile.get(file);
        if (!e) byFile.set(file, (e = { usedBy: new Set(), hosts: new Set() }));
        e.usedBy.add(`${g.namespace}/${g.name}`);
        for (const h of s.hosts) e.hosts.add(h);
      }
    }
  }
  return [...byFile.keys()].sort().map((file) => {
    const { usedBy, hosts } = byFile.get(file)!;
    const base = { file, usedBy: [...usedBy].sort(), hosts: [...hosts].sort() };
    const { cert, error } = load(file);
    if (!cert) return { ...base, error };
    const validTo = new Date(cert.validTo);
    return {
      ...base,
      subject: cert.subject.replace(/\n/g, ', '),
      issuer: cert.issuer.replace(/\n/g, ', '),
      subjectAltNames: cert.subjectAltName ? cert.subjectAltName.split(/,\s*/) : [],
      serialNumber: cert.serialNumber,
      validFrom: new Date(cert.validFrom).toISOString(),
      validTo: validTo.toISOString(),
      expiresInSeconds: Math.floor((validTo.getTime() - now) / 1000),
    };
  });
}
