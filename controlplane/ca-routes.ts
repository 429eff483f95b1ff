/**
 * Workload certificates (istiod's CreateCertificate): POST /v1/certificates signs a CSR for the
 * identity the registry gives the named workload. (GET /v1/ca, public, is in server.ts.)
 *
 * The SPIFFE ID is built from the WorkloadEntry (`namespace`, `serviceAccount`), never from
 * the CSR: certs/signCsr takes only the public key from it.
 */
import type { FastifyPluginAsync } from 'fastify';
import { isCertError, signCsr, spiffeIdFor, CertErrorCodes, type CaPair } from '../certs/index.ts';
import { ControlPlaneError } from './errors.ts';
import type { SnapshotFeed } from './feed.ts';
import type { ControlPlaneLogger } from './log.ts';
import { CERTIFICATES_PATH, workloadKey } from './protocol.ts';

export interface CaRoutesOptions {
  readonly feed: SnapshotFeed;
  readonly ca: CaPair;
  readonly trustDomain: string;
  readonly ttlHours: number;
  readonly log: ControlPlaneLogger;
}

/** The answer to a certificate request. */
export interface CertificateResponse {
  /** The workload certificate (leaf first; the root is in `caCert`). */
  readonly certChain: string;
  readonly caCert: string;
  readonly spiffeId: string;
  /** ISO 8601. */
  readonly notAfter: string;
}

/** Istio gives a workload without `serviceAccount` the namespace's `default` account. */
const DEFAULT_SERVICE_ACCOUNT = 'default';

export const caRoutes: FastifyPluginAsync<CaRoutesOptions> = async (app, opts) => {
  const { feed, ca, log } = opts;

  app.post(CERTIFICATES_PATH, async (req, reply): Promise<CertificateResponse> => {
    const body = req.body as Record<string, unknown> | null | undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ControlPlaneError('BAD_REQUEST', 'body must be a JSON object {"csr": PEM, "workload": "<namespace>/<name>"}');
    }
    const { csr, workload } = body;
    if (typeof workload !== 'string') throw new ControlPlaneError('BAD_REQUEST', 'workload: required, a string "<namespace>/<name>"');
    if (typeof csr !== 'string' || csr.length === 0) throw new ControlPlaneError('BAD_REQUEST', 'csr: required, a PEM certificate request');
    const key = workloadKey(workload);
    if (!key) throw new ControlPlaneError('BAD_REQUEST', `workload: '${workload.slice(0, 100)}' is not "<namespace>/<name>"`);
    const current = feed.latest;
    if (!current) throw new ControlPlaneError('NOT_READY', 'no snapshot yet: the workload registry is not loaded (see /v1/status)');
    const entry = current.snapshot.workloads.find((w) => w.key === key);
    if (!entry) {
      throw new ControlPlaneError('UNKNOWN_WORKLOAD', `workload '${key}': no WorkloadEntry of that name in namespace '${key.split('/')[0]}' (revision ${current.revision})`);
    }
    const spiffeId = spiffeIdFor({
      trustDomain: opts.trustDomain,
      namespace: entry.namespace,
      serviceAccount: entry.serviceAccount ?? DEFAULT_SERVICE_ACCOUNT,
    });
    let signed;
    try {
      signed = signCsr(ca, csr, { spiffeId, ttlHours: opts.ttlHours });
    } catch (err) {
      if (isCertError(err, CertErrorCodes.CSR_INVALID) || isCertError(err, CertErrorCodes.CSR_BAD_SIGNATURE) || isCertError(err, CertErrorCodes.UNSUPPORTED_KEY)) {
        throw new ControlPlaneError('BAD_CSR', err.message, { cause: err });
      }
      throw err;
    }
    log.info('workload certificate issued', { workload: key, spiffeId, notAfter: signed.notAfter.toISOString(), remote: req.ip });
    reply.header('cache-control', 'no-store');
    return { certChain: signed.certPem, caCert: ca.certPem, spiffeId, notAfter: signed.notAfter.toISOString() };
  });
};
