/**
 * AuthorizationPolicy: accepted and kept raw for now (the spec is not validated or compiled yet).
 * Later work replaces `authorizationpolicySpecSchema` with the real shape and compiles it into the snapshot.
 */
import type { Schema } from '../schema.ts';

export type AuthorizationPolicySpec = Record<string, unknown>;

export const authorizationpolicySpecSchema: Schema = { type: 'any' };
