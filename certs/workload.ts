/**
 * SPIFFE X.509-SVID workload certificates, shaped like the ones istiod issues: empty subject,
 * exactly one URI SAN (the SPIFFE ID) and the SAN extension marked critical because the
 * subject is empty (RFC 5280 4.2.1.6; SPIFFE X509-SVID.md 4).
 */
import type forge from 'node-forge';
import { generateRsaKey } from './keys.ts';
import { badArg, checkDnsName, checkPositive } from './names.ts';
import { signCertificate } from './sign.ts';
import { caSigner } from './signer.ts';
import { spiffeIdFor } from './spiffe.ts';
import type { CaPair, WorkloadCert } from './types.ts';
import { HOUR_MS, validityWindow } from './validity.ts';

/** Istio's default workload certificate lifetime (DEFAULT_WORKLOAD_CERT_TTL). */
export const DEFAULT_WORKLOAD_TTL_HOURS = 24;
/** Istio's MAX_WORKLOAD_CERT_TTL: longer requests are refused, not silently shortened. */
export const MAX_WORKLOAD_TTL_HOURS = 90 * 24;

export interface WorkloadCertOptions {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Default 24. At most 2160 (90 days). */
  readonly ttlHours?: number;
  /** Optional DNS SANs (e.g. `reviews.default.svc.cluster.local`). */
  readonly dnsNames?: readonly string[];
  readonly now?: Date;
}

/** Generates a key and issues a workload certificate for `spiffe://<td>/ns/<ns>/sa/<sa>`. */
export function issueWorkloadCert(ca: CaPair, options: WorkloadCertOptions): WorkloadCert {
  const spiffeId = spiffeIdFor(options);
  checkTtlHours(options.ttlHours); // fail before the ~150 ms key generation
  const key = generateRsaKey();
  const { certPem, notAfter } = signWorkload(ca, key.publicKey, {
    spiffeId,
    ttlHours: options.ttlHours,
    dnsNames: options.dnsNames,
    now: options.now,
  });
  return { certPem, keyPem: key.keyPem, spiffeId, notAfter };
}

export interface WorkloadSignOptions {
  readonly spiffeId: string;
  readonly ttlHours?: number;
  readonly dnsNames?: readonly string[];
  readonly now?: Date;
}

/** Signs a workload certificate for an already-checked SPIFFE ID and a given public key. */
export function signWorkload(
  ca: CaPair,
  publicKey: forge.pki.rsa.PublicKey,
  options: WorkloadSignOptions,
): { certPem: string; notAfter: Date } {
  const now = options.now ?? new Date();
  const signer = caSigner(ca, now);
  const ttlHours = checkTtlHours(options.ttlHours);
  const dnsNames = [...new Set((options.dnsNames ?? []).map((n) => checkDnsName(n, 'workload DNS SAN')))];
  const validity = validityWindow(now, ttlHours * HOUR_MS, signer.notAfter);
  const certPem = signCertificate(
    {
      subject: [],
      publicKey,
      validity,
      extensions: [
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        {
          name: 'subjectAltName',
          critical: true,
          altNames: [{ type: 6, value: options.spiffeId }, ...dnsNames.map((value) => ({ type: 2, value }))],
        },
      ],
    },
    signer,
  );
  return { certPem, notAfter: validity.notAfter };
}

function checkTtlHours(value: number | undefined): number {
  const ttlHours = checkPositive(value ?? DEFAULT_WORKLOAD_TTL_HOURS, 'workload certificate ttlHours');
  if (ttlHours > MAX_WORKLOAD_TTL_HOURS) {
    throw badArg(`workload certificate ttlHours ${ttlHours} exceeds the maximum of ${MAX_WORKLOAD_TTL_HOURS} (90 days)`);
  }
  return ttlHours;
}
