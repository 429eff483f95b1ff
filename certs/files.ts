/**
 * Writing certificates and keys to disk. Every file is written to a temporary name and renamed
 * into place, so a gateway watching the folder never reads half a PEM; keys are 0600.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;

/** Writes `data` to `path` atomically (same-directory temp file + rename) with `mode`. */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, data, { mode, flag: 'wx' });
    chmodSync(tmp, mode); // the umask may have removed bits from `mode`
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Writes a certificate (0644) and its key (0600). The key goes first: see writeCredential. */
export function writePair(certPath: string, keyPath: string, pair: { certPem: string; keyPem: string }): void {
  writeFileAtomic(keyPath, pair.keyPem, KEY_MODE);
  writeFileAtomic(certPath, pair.certPem, CERT_MODE);
}

/** Reads a text file, or undefined when it does not exist. */
export function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}
