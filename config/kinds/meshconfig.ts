/**
 * MeshConfig: accepted and kept raw for now (the spec is not validated or compiled yet).
 * Later work replaces `meshconfigSpecSchema` with the real shape and compiles it into the snapshot.
 */
import type { Schema } from '../schema.ts';

export type MeshConfigSpec = Record<string, unknown>;

export const meshconfigSpecSchema: Schema = { type: 'any' };
