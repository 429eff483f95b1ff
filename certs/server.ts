import { isIP } from 'node:net';
import { generateRsaKey } from './keys.ts';
import { badArg, checkDnValue, checkDnsName, checkIp, checkPositive } from './names.ts';
import { signCertificate } from './sign.ts';
import { caSigner } from './signer.ts';
import type { CaPair, CertKeyPair } from './types.ts';
import { DAY_MS, validityWindow } from './validity.ts';

export interface ServerCertOptions {
  /** Subject CN, e.g. `httpbin.example.com`. Added to the DNS SANs when it is a DNS name. */
  readonly commonName: string;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Subject O, like the Istio task's `/O=httpbin organization`; omitted when not given. */
  readonly organization?: string;
  /** Default 365. Capped at the CA's own expiry. */
  readonly validityDays?: number;
  readonly now?: Date;
}

/**
 * Issues a TLS server certificate signed by `ca`: fresh RSA-2048 key, SAN with the DNS names and
 * IPs, extKeyUsage serverAuth + clientAuth, keyUsage digitalSignature + keyEncipherment,
 * authorityKeyIdentifier, random 16-byte serial.
 *
 * Unlike the openssl commands in Istio's "Secure Gateways" task (CN only), the names also go
 * into subjectAltName: clients, Node's `tls` included, ignore the CN when a SAN is present and
 * browsers ignore the CN entirely (RFC 6125 6.4.4).
 */
export function issueServerCert(ca: CaPair, options: ServerCertOptions): CertKeyPair {
  const commonName = checkDnValue(options.commonName, 'server common name');
  const now = options.now ?? new Date();
  const signer = caSigner(ca, now);
  const days = checkPositive(options.validityDays ?? 365, 'server certificate validity days');
  // The CN joins the SANs when it is a host name or IP; a free-text CN ("My Server") does not.
  const cnIsIp = isIP(commonName) !== 0;
  const cnDns = cnIsIp ? undefined : tryDnsName(commonName);
  const dnsNames = unique([
    ...(cnDns ? [cnDns] : []),
    ...(options.dnsNames ?? []).map((n) => checkDnsName(n, 'DNS SAN')),
  ]);
  const ips = unique([
    ...(cnIsIp ? [commonName] : []),
    ...(options.ipAddresses ?? []).map((ip) => checkIp(ip, 'IP SAN')),
  ]);
  if (dnsNames.length === 0 && ips.length === 0) {
    throw badArg(`server certificate for '${commonName}' needs at least one DNS name or IP address`);
  }
  const organization =
    options.organization === undefined ? undefined : checkDnValue(options.organization, 'server organization');
  const key = generateRsaKey();
  const certPem = signCertificate(
    {
      subject: [
        { name: 'commonName', value: commonName },
        ...(organization ? [{ name: 'organizationName', value: organization }] : []),
      ],
      publicKey: key.publicKey,
      validity: validityWindow(now, days * DAY_MS, signer.notAfter),
      extensions: [
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        {
          name: 'subjectAltName',
          altNames: [...dnsNames.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))],
        },
      ],
    },
    signer,
  );
  return { certPem, keyPem: key.keyPem };
}

function tryDnsName(value: string): string | undefined {
  try {
    return checkDnsName(value);
  } catch {
    return undefined;
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
