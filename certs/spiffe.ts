/**
 * SPIFFE IDs in Istio's form, `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
 * Character rules from the SPIFFE ID spec (spiffe/spiffe standards/SPIFFE-ID.md, 2.1 and 2.2).
 */
import { badArg } from './names.ts';

export interface SpiffeIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Builds and checks an Istio-style SPIFFE ID. */
export function spiffeIdFor({ trustDomain, namespace, serviceAccount }: SpiffeIdentity): string {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw badArg(`trust domain '${trustDomain}' must be lower-case letters, digits, '.', '-' or '_'`);
  }
  checkSegment(namespace, 'namespace');
  checkSegment(serviceAccount, 'service account');
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** Parses an Istio-style SPIFFE ID; throws a BAD_ARGUMENT CertError for anything else. */
export function parseSpiffeId(id: string): SpiffeIdentity {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  if (!m) throw badArg(`SPIFFE ID '${id}' is not of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>`);
  const identity = { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! };
  spiffeIdFor(identity);
  return identity;
}

function checkSegment(value: string, what: string): void {
  if (!SEGMENT.test(value) || value === '.' || value === '..') {
    throw badArg(`${what} '${value}' must be non-empty letters, digits, '.', '-' or '_' (and not '.' or '..')`);
  }
}
