/**
 * undici's `request`, loaded on first use: importing undici's full entry costs about 20 MB of RSS,
 * which a proxy running from local config (no control plane) should not pay.
 */
let loaded: Promise<typeof import('undici').request> | undefined;

export function undiciRequest(): Promise<typeof import('undici').request> {
  loaded ??= import('undici').then((m) => m.request);
  return loaded;
}
