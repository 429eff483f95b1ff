/**
 * Workload certificates (istiod's CreateCertificate): POST /v1/certificates signs a CSR for the
 * identity the registry gives the named workload. (GET /v1/ca, public, is in server.ts.)
 *
 * The SPIFFE ID is built from the WorkloadEntry (`namespace`, `serviceAccount`), never from
 * the CSR: certs/signCsr takes only the public key from it.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { isCertError, signCsr, spiffeIdFor, CertErrorCodes, type CaPair } from '../certs/index.ts';
import { ControlPlaneError } from './errors.ts';
import type { SnapshotFeed } from './feed.ts';
import type { CallerIdentity } from './identity.ts';
import type { ControlPlaneLogger } from './log.ts';
import { CERTIFICATES_PATH, workloadKey } from './protocol.ts';

export interface CaRoutesOptions {
  readonly feed: SnapshotFeed;
  readonly ca: CaPair;
  readonly trustDomain: string;
  readonly ttlHours: number;
  readonly log: ControlPlaneLogger;
  /** Who is asking (server.ts's authentication hook); a Kubernetes identity decides the SPIFFE id. */
  readonly identityOf?: (req: FastifyRequest) => CallerIdentity;
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
    if (typeof csr !== 'string' || csr.length === 0) throw new ControlPlaneError('BAD_REQUEST', 'csr: required, a PEM certificate request');
    const who = opts.identityOf?.(req) ?? { kind: 'anonymous' as const };
    let spiffeId: string;
    let key: string;
    if (who.kind === 'kubernetes') {
      // The identity is the TokenReview's (namespace, service account, bound pod); a `workload`
      // the proxy names must be that pod. Contracts: POST /v1/certificates with the istio-ca token.
      const podKey = who.pod ? `${who.namespace}/${who.pod}` : undefined;
      if (workload !== undefined) {
        const named = typeof workload === 'string' ? workloadKey(workload) : undefined;
        if (!named || named !== podKey) {
          throw new ControlPlaneError('UNAUTHORIZED', `workload: '${String(workload).slice(0, 100)}' is not the pod this token is bound to (${podKey ?? `an unbound token of ${who.namespace}/${who.serviceAccount}`})`);
        }
      }
      key = podKey ?? `${who.namespace}/${who.serviceAccount}`;
      spiffeId = spiffeIdFor({ trustDomain: opts.trustDomain, namespace: who.namespace, serviceAccount: who.serviceAccount });
    } else {
      if (typeof workload !== 'string') throw new ControlPlaneError('BAD_REQUEST', 'workload: required, a string "<namespace>/<name>"');
      const k = workloadKey(workload);
      if (!k) throw new ControlPlaneError('BAD_REQUEST', `workload: '${workload.slice(0, 100)}' is not "<namespace>/<name>"`);
      key = k;
      const current = feed.latest;
      if (!current) throw new ControlPlaneError('NOT_READY', 'no snapshot yet: the workload registry is not loaded (see /v1/status)');
      const entry = current.snapshot.workloads.find((w) => w.key === key);
      if (!entry) {
        throw new ControlPlaneError('UNKNOWN_WORKLOAD', `workload '${key}': no WorkloadEntry of that name in namespace '${key.split('/')[0]}' (revision ${current.revision})`);
      }
      spiffeId = spiffeIdFor({
        trustDomain: opts.trustDomain,
        namespace: entry.namespace,
        serviceAccount: entry.serviceAccount ?? DEFAULT_SERVICE_ACCOUNT,
      });
    }
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
