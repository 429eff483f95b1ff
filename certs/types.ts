/** Shapes shared by the certs modules. Everything crosses module boundaries as PEM text. */

/** A certificate and its private key (PKCS#8 `PRIVATE KEY` PEM). */
export interface CertKeyPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A CA is just a certificate/key pair whose certificate has basicConstraints CA:true. */
export type CaPair = CertKeyPair;

/** A workload (SPIFFE X.509-SVID) certificate, as returned for a CSR: the CA never sees the key. */
export interface SignedWorkloadCert {
  readonly certPem: string;
  readonly spiffeId: string;
  readonly notAfter: Date;
}

/** A workload certificate together with the key generated for it. */
export interface WorkloadCert extends SignedWorkloadCert, CertKeyPair {}
