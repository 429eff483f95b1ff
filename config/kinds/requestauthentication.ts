/**
 * RequestAuthentication: accepted and kept raw for now (the spec is not validated or compiled yet).
 * Later work replaces `requestauthenticationSpecSchema` with the real shape and compiles it into the snapshot.
 */
import type { Schema } from '../schema.ts';

export type RequestAuthenticationSpec = Record<string, unknown>;

export const requestauthenticationSpecSchema: Schema = { type: 'any' };
