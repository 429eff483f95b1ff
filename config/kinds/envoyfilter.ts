/**
 * EnvoyFilter: accepted and kept raw for now (the spec is not validated or compiled yet).
 * Later work replaces `envoyfilterSpecSchema` with the real shape and compiles it into the snapshot.
 */
import type { Schema } from '../schema.ts';

export type EnvoyFilterSpec = Record<string, unknown>;

export const envoyfilterSpecSchema: Schema = { type: 'any' };
