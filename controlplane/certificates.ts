/**
 * The workload side of the CA: make a key locally, send only a CSR, get a SPIFFE certificate
 * back (istio-agent → istiod CreateCertificate). The private key never leaves this process.
 */
import { generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
// The forge-free modules only: a proxy that gets its certificates here never loads node-forge.
import { createCsr } from '../certs/csr-request.ts';
import { certInfo } from '../certs/info.ts';
import { ControlPlaneError, errorText } from './errors.ts';
import { CERTIFICATES_PATH } from './protocol.ts';
import { bootstrapToken, responseError, type ControlPlaneTarget } from './subscribe.ts';

import { undiciRequest } from './undici.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

export interface WorkloadCertificateRequest extends ControlPlaneTarget {
  /** `<namespace>/<name>` of the WorkloadEntry (a bare name means namespace `default`). */
  readonly workload: string;
  /** Reuse this RSA key (PKCS#8 PEM); default: a fresh 2048-bit key per request. */
  readonly keyPem?: string;
  readonly signal?: AbortSignal;
}

/** A signed workload certificate with its key, ready for a TLS context. */
export interface WorkloadCertificate {
  /** Leaf certificate PEM (followed by intermediates, if the CA ever has any). */
  readonly certPem: string;
  readonly keyPem: string;
  /** The mesh root, for verifying peers. */
  readonly caCertPem: string;
  readonly spiffeId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serialNumber: string;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

async function newKeyPem(): Promise<string> {
  // Async so the ~100 ms of RSA key generation does not stall the proxy's event loop.
  const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Creates a key (unless given) and a CSR, and has the control plane sign it. */
export async function requestWorkloadCertificate(req: WorkloadCertificateRequest): Promise<WorkloadCertificate> {
  const keyPem = req.keyPem ?? (await newKeyPem());
  // The subject is ignored by the signer (identity comes from the registry); it only helps logs.
  const csr = createCsr(keyPem, req.workload.slice(0, 64) || 'workload');
  const token = bootstrapToken(req.token);
  let res;
  try {
    res = await (await undiciRequest())(new URL(CERTIFICATES_PATH, req.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ csr, workload: req.workload }),
      signal: req.signal,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
  } catch (err) {
    throw new ControlPlaneError('UNREACHABLE', `POST ${CERTIFICATES_PATH}: ${errorText(err)}`, { cause: err });
  }
  if (res.statusCode !== 200) throw await responseError(res.statusCode, res.body, `certificate for ${req.workload}`);
  const body: unknown = await res.body.json();
  if (!isRecord(body) || typeof body.certChain !== 'string' || typeof body.caCert !== 'string' || typeof body.spiffeId !== 'string') {
    throw new ControlPlaneError('PROTOCOL', `POST ${CERTIFICATES_PATH}: answer lacks certChain, caCert or spiffeId`);
  }
  const info = certInfo(body.certChain);
  if (!info.uris.includes(body.spiffeId)) {
    throw new ControlPlaneError('PROTOCOL', `POST ${CERTIFICATES_PATH}: certificate does not carry the announced SPIFFE ID ${body.spiffeId}`);
  }
  return {
    certPem: body.certChain,
    keyPem,
    caCertPem: body.caCert,
    spiffeId: body.spiffeId,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    serialNumber: info.serialNumber,
  };
}
