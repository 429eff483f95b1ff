/**
 * Credential folders: how the gateway resolves an Istio `credentialName` without Kubernetes.
 * In Istio, `credentialName: httpbin-credential` names a Secret with keys `tls.crt`, `tls.key`
 * and optionally `ca.crt`; Portico reads the same three keys as files from
 * `<credentials dir>/<credentialName>/`.
 */
import { join } from 'node:path';
import { CERT_MODE, writeFileAtomic, KEY_MODE } from './files.ts';
import { badArg } from './names.ts';
import type { CertKeyPair } from './types.ts';

export const CREDENTIAL_FILES = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

export interface CredentialPaths {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/** `httpbin.example.com` → `httpbin-credential` (the name Istio's Secure Gateways task uses). */
export function defaultCredentialName(host: string): string {
  const first = host.toLowerCase().split('.')[0] ?? '';
  return `${first === '*' ? 'wildcard' : first}-credential`;
}

/** Checks a credential name: a Kubernetes Secret name (DNS-1123 subdomain), so never a path. */
export function checkCredentialName(name: string): string {
  if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(name) || name.includes('..')) {
    throw badArg(`credential name '${name}' must be lower-case letters, digits, '-' and '.' (a Kubernetes Secret name)`);
  }
  return name;
}

export function credentialPaths(credentialsDir: string, name: string): CredentialPaths {
  const dir = join(credentialsDir, checkCredentialName(name));
  return {
    dir,
    certFile: join(dir, CREDENTIAL_FILES.cert),
    keyFile: join(dir, CREDENTIAL_FILES.key),
    caFile: join(dir, CREDENTIAL_FILES.ca),
  };
}

/**
 * Writes `tls.key`, `ca.crt`, then `tls.crt`, each atomically. A watcher should reload on
 * `tls.crt`, which changes last, and still check that the key matches before swapping.
 */
export function writeCredential(
  credentialsDir: string,
  name: string,
  pair: CertKeyPair,
  caCertPem: string,
): CredentialPaths {
  const paths = credentialPaths(credentialsDir, name);
  writeFileAtomic(paths.keyFile, pair.keyPem, KEY_MODE);
  writeFileAtomic(paths.caFile, caCertPem, CERT_MODE);
  writeFileAtomic(paths.certFile, pair.certPem, CERT_MODE);
  return paths;
}
