/**
 * Who made a request, as the authentication hook found out: the bootstrap token (any proxy the
 * operator trusts), or a Kubernetes service-account token checked by TokenReview (one pod's
 * identity). Kept per request without decorating fastify's types.
 */
import type { FastifyRequest } from 'fastify';

export type CallerIdentity =
  | { readonly kind: 'bootstrap' }
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'kubernetes'; readonly namespace: string; readonly serviceAccount: string; readonly pod?: string };

const identities = new WeakMap<object, CallerIdentity>();

export function setIdentity(req: FastifyRequest, id: CallerIdentity): void {
  identities.set(req.raw, id);
}

export function identityOf(req: FastifyRequest): CallerIdentity {
  return identities.get(req.raw) ?? { kind: 'anonymous' };
}
