/**
 * PeerAuthentication: accepted and kept raw for now (the spec is not validated or compiled yet).
 * Later work replaces `peerauthenticationSpecSchema` with the real shape and compiles it into the snapshot.
 */
import type { Schema } from '../schema.ts';

export type PeerAuthenticationSpec = Record<string, unknown>;

export const peerauthenticationSpecSchema: Schema = { type: 'any' };
