/**
 * `portico certs`: the openssl steps of Istio's "Secure Gateways" (HTTPS ingress) task.
 *
 *   portico certs ca    [--out DIR] [--cn NAME] [--org ORG] [--days N] [--force]
 *   portico certs issue --host HOST [--san NAME]... [--ip IP]... [--out DIR] [--name NAME]
 *                       [--days N] [--ca-name NAME]
 *   portico certs info  FILE...
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createRootCa } from '../../certs/ca.ts';
import { CertError, CertErrorCodes } from '../../certs/errors.ts';
import { writePair } from '../../certs/files.ts';
import { caFilePaths, checkHostCertOptions, DEMO_CA, loadOrCreateGatewayCa, writeHostCert } from '../../certs/host-certs.ts';
import { certInfo } from '../../certs/info.ts';

export { ensureDemoCerts, type DemoCerts, type HostCertFiles } from '../../certs/host-certs.ts';

export const DEFAULT_OUT_DIR = 'certs/out';

const USAGE = `usage:
  portico certs ca    [--out DIR] [--cn NAME] [--org ORG] [--days N] [--force]
      create a root CA: DIR/NAME.crt and DIR/NAME.key (default DIR=${DEFAULT_OUT_DIR}, NAME=${DEMO_CA.commonName})
  portico certs issue --host HOST [--san NAME]... [--ip IP]... [--out DIR] [--name NAME] [--days N] [--ca-name NAME]
      issue a server certificate for HOST (CN and SAN) signed by DIR/<ca-name>.crt (created if missing),
      written as DIR/HOST.crt + DIR/HOST.key and as the credential folder
      DIR/credentials/NAME/{tls.crt,tls.key,ca.crt} (NAME default <first label of HOST>-credential)
  portico certs info  FILE...
      print subject, issuer, SANs, validity and fingerprint of PEM certificates
`;

class UsageError extends Error {}

/** Runs `portico certs <subcommand>`; returns the exit code (0 ok, 1 failure, 2 bad arguments). */
export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'ca':
        return caCommand(rest);
      case 'issue':
        return issueCommand(rest);
      case 'info':
        return infoCommand(rest);
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return 0;
      case undefined:
        throw new UsageError('missing subcommand');
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  } catch (err) {
    if (err instanceof UsageError || isArgError(err)) {
      process.stderr.write(`portico certs: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof CertError) {
      process.stderr.write(`portico certs: ${err.message} [${err.code}]\n`);
      return 1;
    }
    throw err;
  }
}

function caCommand(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      cn: { type: 'string' },
      org: { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
    },
  });
  const out = resolve(values.out ?? DEFAULT_OUT_DIR);
  const cn = values.cn ?? DEMO_CA.commonName;
  const { certFile, keyFile } = caFilePaths(out, cn);
  const existing = [certFile, keyFile].filter((p) => existsSync(p));
  if (existing.length > 0 && !values.force) {
    throw new CertError(
      CertErrorCodes.EXISTS,
      `${existing.map(show).join(' and ')} already ${existing.length > 1 ? 'exist' : 'exists'}; certificates signed by that CA would stop verifying if it were replaced. Use --force to replace it`,
    );
  }
  const ca = createRootCa({
    commonName: cn,
    organization: values.org ?? (cn === DEMO_CA.commonName ? DEMO_CA.organization : undefined),
    validityDays: days(values.days, 3650),
  });
  writePair(certFile, keyFile, ca);
  const info = certInfo(ca.certPem);
  say(`wrote ${show(certFile)}  (CA certificate, ${oneLine(info.subject)}, valid until ${info.notAfter.toISOString()})`);
  say(`wrote ${show(keyFile)}  (CA private key, mode 0600)`);
  return 0;
}

function issueCommand(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      host: { type: 'string' },
      san: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
      out: { type: 'string' },
      name: { type: 'string' },
      days: { type: 'string' },
      'ca-name': { type: 'string' },
    },
  });
  if (!values.host) throw new UsageError('--host is required');
  const out = resolve(values.out ?? DEFAULT_OUT_DIR);
  const validityDays = days(values.days, 365);
  const request = {
    host: values.host,
    dnsNames: values.san,
    ipAddresses: values.ip,
    credentialName: values.name,
    validityDays,
  };
  checkHostCertOptions(request); // refuse bad names before creating a CA for them
  const ca = loadOrCreateGatewayCa(out, values['ca-name'] ?? DEMO_CA.commonName);
  say(`${ca.created ? 'created' : 'using'} CA ${show(ca.certPath)}${ca.created ? ` and ${show(ca.keyPath)} (mode 0600)` : ''}`);
  const files = writeHostCert(out, ca, request);
  const info = certInfo(readCert(files.certFile));
  say(`wrote ${show(files.certFile)}  (${oneLine(info.subject)}; SAN ${sanList(info)}; valid until ${info.notAfter.toISOString()})`);
  say(`wrote ${show(files.keyFile)}  (mode 0600)`);
  say(`wrote ${show(files.credential.dir)}/{tls.crt,tls.key,ca.crt}  (credentialName: ${files.credentialName})`);
  return 0;
}

function infoCommand(argv: string[]): number {
  const { positionals } = parseArgs({ args: argv, options: {}, allowPositionals: true, strict: true });
  if (positionals.length === 0) throw new UsageError('certs info needs at least one certificate file');
  for (const file of positionals) {
    const info = certInfo(readCert(file));
    say(`${file}:`);
    say(`  subject:     ${oneLine(info.subject)}`);
    say(`  issuer:      ${oneLine(info.issuer)}`);
    say(`  SAN:         ${sanList(info)}`);
    say(`  not before:  ${info.notBefore.toISOString()}`);
    say(`  not after:   ${info.notAfter.toISOString()}`);
    say(`  CA:          ${info.isCa}`);
    say(`  serial:      ${info.serialNumber}`);
    say(`  sha256:      ${info.fingerprint256}`);
  }
  return 0;
}

function days(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 36500) {
    throw new UsageError(`--days must be a whole number of days from 1 to 36500, got '${value}'`);
  }
  return Number(value);
}

function readCert(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CertError(CertErrorCodes.FILE_READ, `cannot read ${file}: ${(err as Error).message}`);
  }
}

function isArgError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) ||
    (err instanceof CertError && err.code === CertErrorCodes.BAD_ARGUMENT)
  );
}

function sanList(info: { dnsNames: string[]; ipAddresses: string[]; uris: string[] }): string {
  const all = [...info.dnsNames.map((d) => `DNS:${d}`), ...info.ipAddresses.map((i) => `IP:${i}`), ...info.uris.map((u) => `URI:${u}`)];
  return all.length > 0 ? all.join(', ') : '(none)';
}

function oneLine(dn: string): string {
  return dn.split('\n').join(', ') || '(empty)';
}

function show(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
