/** Portico's CA: the public API of certs/. See docs/certificates.md. */
export { createRootCa, type RootCaOptions } from './ca.ts';
export { issueServerCert, type ServerCertOptions } from './server.ts';
export {
  issueWorkloadCert,
  DEFAULT_WORKLOAD_TTL_HOURS,
  MAX_WORKLOAD_TTL_HOURS,
  type WorkloadCertOptions,
} from './workload.ts';
export { createCsr, signCsr, type SignCsrOptions } from './csr.ts';
export { loadOrCreateCa, type LoadedCa, type LoadOrCreateCaOptions } from './store.ts';
export { certInfo, type CertInfo } from './info.ts';
export { needsRotation, rotationTime } from './rotation.ts';
export { spiffeIdFor, parseSpiffeId, type SpiffeIdentity } from './spiffe.ts';
export {
  CREDENTIAL_FILES,
  credentialPaths,
  defaultCredentialName,
  writeCredential,
  type CredentialPaths,
} from './credentials.ts';
export {
  DEMO_CA,
  caFilePaths,
  checkHostCertOptions,
  ensureDemoCerts,
  hostCertPaths,
  loadOrCreateGatewayCa,
  writeHostCert,
  type DemoCerts,
  type HostCertFiles,
  type HostCertOptions,
} from './host-certs.ts';
export { CertError, CertErrorCodes, isCertError, type CertErrorCode } from './errors.ts';
export type { CaPair, CertKeyPair, SignedWorkloadCert, WorkloadCert } from './types.ts';
