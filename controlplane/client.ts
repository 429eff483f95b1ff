/**
 * The control plane client library for gateways and sidecars. See docs/controlplane.md.
 *
 *   subscribeSnapshots / connectProxyToControlPlane   config: stream of newer snapshots
 *   fetchSnapshot / waitForSnapshot                   config: one-shot (startup)
 *   requestWorkloadCertificate / CertRotator          identity: SPIFFE certificates
 */
export {
  subscribeSnapshots,
  fetchSnapshot,
  waitForSnapshot,
  defaultNodeId,
  bootstrapToken,
  tokenFromFile,
  type TokenSource,
  type ControlPlaneTarget,
  type SubscribeOptions,
  type Subscription,
} from './subscribe.ts';
export { connectProxyToControlPlane, type ConnectOptions, type SnapshotConsumer } from './connect.ts';
export { requestWorkloadCertificate, type WorkloadCertificate, type WorkloadCertificateRequest } from './certificates.ts';
export { CertRotator, type CertRotatorOptions } from './rotator.ts';
export { isNewer, type Position, type SnapshotMessage } from './protocol.ts';
export { ControlPlaneError, ControlPlaneErrors, isControlPlaneError, type ControlPlaneErrorCode } from './errors.ts';
export type { ControlPlaneLogger } from './log.ts';
