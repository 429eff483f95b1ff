import { checkDnValue, checkPositive } from './names.ts';
import { generateRsaKey } from './keys.ts';
import { signCertificate } from './sign.ts';
import type { CaPair } from './types.ts';
import { DAY_MS, validityWindow } from './validity.ts';

export interface RootCaOptions {
  /** Subject CN, e.g. `example.com` (Istio's Secure Gateways task) or `Portico Root CA`. */
  readonly commonName: string;
  /** Subject O; omitted from the subject when not given. */
  readonly organization?: string;
  /** Default 3650 (ten years). */
  readonly validityDays?: number;
  /** Issue time; default now. For tests of expiry and rotation. */
  readonly now?: Date;
}

/**
 * Creates a self-signed root CA: RSA-2048, SHA-256, basicConstraints CA:true (critical),
 * keyUsage keyCertSign + cRLSign (critical), subject and authority key identifiers
 * (RFC 5280 4.2.1.1-4.2.1.3).
 */
export function createRootCa(options: RootCaOptions): CaPair {
  const commonName = checkDnValue(options.commonName, 'CA common name');
  const organization =
    options.organization === undefined ? undefined : checkDnValue(options.organization, 'CA organization');
  const days = checkPositive(options.validityDays ?? 3650, 'CA validity days');
  const key = generateRsaKey();
  const subject = [
    ...(organization ? [{ name: 'organizationName', value: organization }] : []),
    { name: 'commonName', value: commonName },
  ];
  const certPem = signCertificate(
    {
      subject,
      publicKey: key.publicKey,
      validity: validityWindow(options.now ?? new Date(), days * DAY_MS),
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ],
    },
    'self',
    key.privateKey,
  );
  return { certPem, keyPem: key.keyPem };
}
