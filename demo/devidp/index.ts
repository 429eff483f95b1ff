/** The dev IdP's public API: a Dex-config-compatible OpenID Provider for development. */
export { startDevIdp, dexSubject } from './server.ts';
export type { DevIdp, DevIdpOptions } from './server.ts';
export { loadDexConfig, parseDexConfig, validateDexConfig, DexConfigError } from './config.ts';
export type { DexConfig, DexStaticClient, DexStaticPassword } from './config.ts';
