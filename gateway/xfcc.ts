/**
 * `x-forwarded-client-cert` as Envoy writes it on a sidecar's inbound side (Istio sets
 * `forward_client_cert_details: SANITIZE_SET` with Hash, Subject and URI): the client's value is
 * always discarded and replaced by the mTLS peer's, or removed when there is no peer.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert
 */
import type { HeaderMap } from './headers.ts';
import type { MtlsPeer } from './mtls.ts';

/** `By=<own URI>;Hash=<sha256 hex>;Subject="<subject>";URI=<peer URI>`. Workload certs have an empty subject. */
export function formatXfcc(ownUri: string, peer: MtlsPeer, subject = ''): string {
  return `By=${ownUri};Hash=${peer.hash};Subject="${subject.replace(/["\\]/g, '\\$&')}";URI=${peer.uri ?? ''}`;
}

/** SANITIZE_SET: replace whatever the client sent. */
export function setXfcc(headers: HeaderMap, ownUri: string, peer: MtlsPeer | undefined): void {
  delete headers['x-forwarded-client-cert'];
  if (peer) headers['x-forwarded-client-cert'] = formatXfcc(ownUri, peer);
}
