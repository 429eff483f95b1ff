import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { createRootCa, type RootCaOptions } from './ca.ts';
import { CertError, CertErrorCodes, isCertError } from './errors.ts';
import { readIfExists, writePair } from './files.ts';
import { caSigner } from './signer.ts';
import type { CaPair } from './types.ts';

export interface LoadOrCreateCaOptions extends Partial<RootCaOptions> {
  /** File names inside the directory; default `ca.crt` and `ca.key`. */
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface LoadedCa extends CaPair {
  readonly certPath: string;
  readonly keyPath: string;
  /** True when this call created the CA (none existed, or the old one had expired). */
  readonly created: boolean;
  /** Why a new CA was created: `missing` or `expired` (the old files were renamed `*.expired`). */
  readonly reason?: 'missing' | 'expired';
}

/**
 * Reuses `dir/ca.crt` + `dir/ca.key` when both exist and form a valid, unexpired CA; creates
 * them when both are missing (key 0600). An expired CA is moved aside to `ca.crt.expired` /
 * `ca.key.expired` and replaced.
 *
 * Anything else — only one of the two files, a PEM that does not parse, a key that belongs to
 * another certificate, a non-CA certificate — throws instead of overwriting: those files may
 * be someone's real CA, and silently minting a new root would break every workload that
 * trusts the old one.
 */
export function loadOrCreateCa(dir: string, options: LoadOrCreateCaOptions = {}): LoadedCa {
  const certPath = join(dir, options.certFile ?? 'ca.crt');
  const keyPath = join(dir, options.keyFile ?? 'ca.key');
  const certPem = readIfExists(certPath);
  const keyPem = readIfExists(keyPath);
  let reason: 'missing' | 'expired' = 'missing';
  if (certPem !== undefined || keyPem !== undefined) {
    if (certPem === undefined || keyPem === undefined) {
      const [have, lack] = certPem === undefined ? [keyPath, certPath] : [certPath, keyPath];
      throw new CertError(CertErrorCodes.CA_INCOMPLETE, `${have} exists but ${lack} does not; restore it or remove both`);
    }
    const existing = { certPem, keyPem };
    try {
      caSigner(existing, options.now);
      return { ...existing, certPath, keyPath, created: false };
    } catch (err) {
      if (!isCertError(err, CertErrorCodes.CA_EXPIRED)) {
        if (err instanceof CertError) err.message = `${certPath}: ${err.message}`;
        throw err;
      }
      renameSync(certPath, `${certPath}.expired`);
      renameSync(keyPath, `${keyPath}.expired`);
      reason = 'expired';
    }
  }
  const ca = createRootCa({
    commonName: options.commonName ?? 'Portico Root CA',
    organization: options.organization ?? 'Portico',
    validityDays: options.validityDays,
    now: options.now,
  });
  writePair(certPath, keyPath, ca);
  return { ...ca, certPath, keyPath, created: true, reason };
}
