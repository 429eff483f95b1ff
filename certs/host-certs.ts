/**
 * Files for the HTTPS ingress flow of Istio's "Secure Gateways" task, which runs
 *   openssl req -x509 ... -subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt
 *   openssl req ... -subj "/CN=httpbin.example.com/O=httpbin organization" ... (signed by example.com)
 * and then stores the pair as the Secret `httpbin-credential`. Here: `<out>/example.com.crt|key`,
 * `<out>/<host>.crt|key` and the credential folder `<out>/credentials/<name>/`.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { checkCredentialName, credentialPaths, defaultCredentialName, writeCredential, type CredentialPaths } from './credentials.ts';
import { CERT_MODE, KEY_MODE, readIfExists, writeFileAtomic } from './files.ts';
import { badArg, checkDnsName, checkIp } from './names.ts';
import { needsRotation } from './rotation.ts';
import { issueServerCert } from './server.ts';
import { loadOrCreateCa, type LoadedCa } from './store.ts';
import type { CaPair } from './types.ts';

/** The root CA of Istio's task. */
export const DEMO_CA = { commonName: 'example.com', organization: 'example Inc.' } as const;

export interface HostCertOptions {
  readonly host: string;
  /** Extra DNS SANs besides the host. */
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Credential folder name; default `<first label>-credential`. */
  readonly credentialName?: string;
  readonly validityDays?: number;
  readonly now?: Date;
}

export interface HostCertFiles {
  readonly host: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly credentialName: string;
  readonly credential: CredentialPaths;
  /** False when ensureDemoCerts found a valid certificate and left it alone. */
  readonly issued: boolean;
}

/** Where the CA named `caName` lives: `<out>/<caName>.crt` and `.key` (spaces become `_`). */
export function caFilePaths(outDir: string, caName: string): { certFile: string; keyFile: string } {
  const base = fileBaseFor(caName);
  return { certFile: join(outDir, `${base}.crt`), keyFile: join(outDir, `${base}.key`) };
}

/** `<out>/<ca common name>.crt|.key`, loaded or created (the CLI's `--ca-name`, default example.com). */
export function loadOrCreateGatewayCa(outDir: string, caName: string = DEMO_CA.commonName, now?: Date): LoadedCa {
  const { certFile, keyFile } = caFilePaths(outDir, caName);
  return loadOrCreateCa('', {
    certFile,
    keyFile,
    commonName: caName,
    organization: caName === DEMO_CA.commonName ? DEMO_CA.organization : undefined,
    now,
  });
}

/** Paths of a host's certificate files under `outDir` (`*.example.com` → `_wildcard.example.com.crt`). */
export function hostCertPaths(outDir: string, host: string): { certFile: string; keyFile: string } {
  const base = fileBaseFor(checkDnsName(host, 'host'));
  return { certFile: join(outDir, `${base}.crt`), keyFile: join(outDir, `${base}.key`) };
}

/**
 * Checks the names in `options` (host, SANs, IPs, credential name) without touching the disk,
 * so a caller can refuse bad input before creating a CA for it.
 */
export function checkHostCertOptions(options: HostCertOptions): { host: string; credentialName: string } {
  const host = checkDnsName(options.host, 'host');
  for (const name of options.dnsNames ?? []) checkDnsName(name, 'DNS SAN');
  for (const ip of options.ipAddresses ?? []) checkIp(ip, 'IP SAN');
  const credentialName = checkCredentialName(options.credentialName ?? defaultCredentialName(host));
  return { host, credentialName };
}

/** Issues a server certificate for `host` (CN and SAN) and writes both file layouts. */
export function writeHostCert(outDir: string, ca: CaPair, options: HostCertOptions): HostCertFiles {
  const { host, credentialName } = checkHostCertOptions(options);
  const pair = issueServerCert(ca, {
    commonName: host,
    dnsNames: options.dnsNames,
    ipAddresses: options.ipAddresses,
    validityDays: options.validityDays,
    now: options.now,
  });
  const { certFile, keyFile } = hostCertPaths(outDir, host);
  writeFileAtomic(keyFile, pair.keyPem, KEY_MODE);
  writeFileAtomic(certFile, pair.certPem, CERT_MODE);
  const credential = writeCredential(join(outDir, 'credentials'), credentialName, pair, ca.certPem);
  return { host, certFile, keyFile, credentialName, credential, issued: true };
}

export interface DemoCerts {
  readonly ca: { readonly certFile: string; readonly keyFile: string; readonly created: boolean };
  /** Keyed by host, in the order given. */
  readonly hosts: Record<string, HostCertFiles>;
}

/**
 * For `portico demo`: creates the example.com CA once, and issues a server certificate plus
 * credential folder for each host only when it is missing, unreadable, not signed by the
 * current CA, not valid for the host, or past half its lifetime (see needsRotation).
 */
export function ensureDemoCerts(outDir: string, hosts: readonly string[], now: Date = new Date()): DemoCerts {
  const checked = hosts.map((h) => checkDnsName(h, 'host'));
  const names = new Map<string, string>();
  for (const host of checked) {
    const name = defaultCredentialName(host);
    const other = names.get(name);
    if (other !== undefined && other !== host) {
      throw badArg(`hosts '${other}' and '${host}' would share the credential name '${name}'`);
    }
    names.set(name, host);
  }
  const ca = loadOrCreateGatewayCa(outDir, DEMO_CA.commonName, now);
  const result: Record<string, HostCertFiles> = {};
  for (const host of checked) {
    const credentialName = defaultCredentialName(host);
    const { certFile, keyFile } = hostCertPaths(outDir, host);
    const credential = credentialPaths(join(outDir, 'credentials'), credentialName);
    const certPem = readIfExists(certFile);
    const keyPem = readIfExists(keyFile);
    if (certPem !== undefined && keyPem !== undefined && stillGood(certPem, keyPem, ca.certPem, host, now)) {
      if (readIfExists(credential.certFile) !== certPem || readIfExists(credential.caFile) !== ca.certPem) {
        writeCredential(join(outDir, 'credentials'), credentialName, { certPem, keyPem }, ca.certPem);
      }
      result[host] = { host, certFile, keyFile, credentialName, credential, issued: false };
    } else {
      result[host] = writeHostCert(outDir, ca, { host, now });
    }
  }
  return { ca: { certFile: ca.certPath, keyFile: ca.keyPath, created: ca.created }, hosts: result };
}

function stillGood(certPem: string, keyPem: string, caCertPem: string, host: string, now: Date): boolean {
  try {
    const cert = new X509Certificate(certPem);
    const caCert = new X509Certificate(caCertPem);
    return (
      cert.checkIssued(caCert) &&
      cert.verify(caCert.publicKey) &&
      cert.checkPrivateKey(createPrivateKey(keyPem)) &&
      cert.checkHost(host) !== undefined &&
      !needsRotation(new Date(cert.validFrom), new Date(cert.validTo), now)
    );
  } catch {
    return false;
  }
}

function fileBaseFor(name: string): string {
  if (!/^[A-Za-z0-9*][A-Za-z0-9.*_ -]*$/.test(name) || name.includes('..')) {
    throw badArg(`'${name}' cannot be used as a file name (letters, digits, '.', '-', '_', space)`);
  }
  return name.replace(/^\*\./, '_wildcard.').replace(/ /g, '_');
}
