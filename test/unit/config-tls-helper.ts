/** Test-only: self-signed certificates written to a temp dir (never committed). */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

/** A self-signed certificate for `cn` with a fresh 2048-bit RSA key (PEM). */
export function selfSigned(cn: string): CertPair {
  const keys = forge.pki.rsa.generateKeyPair(2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const attrs = [{ name: 'commonName', value: cn }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** A temp dir removed after the test. */
export function tempDir(t: { after(fn: () => void): void }, prefix = 'portico-config-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `<secretsDir>/<name>/tls.crt` and `tls.key` (Kubernetes TLS secret layout). */
export function writeCredential(secretsDir: string, name: string, pair: CertPair): void {
  mkdirSync(join(secretsDir, name), { recursive: true });
  writeFileSync(join(secretsDir, name, 'tls.crt'), pair.cert);
  writeFileSync(join(secretsDir, name, 'tls.key'), pair.key);
}

let cached: { a: CertPair; b: CertPair } | undefined;
/** Two unrelated pairs, generated once per process (RSA keygen is slow). */
export function pairs(): { a: CertPair; b: CertPair } {
  cached ??= { a: selfSigned('a.example.com'), b: selfSigned('b.example.com') };
  return cached;
}
