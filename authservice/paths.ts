/**
 * Path handling for authz decisions. The path is normalised by lib/path.ts — the same code and the
 * same MeshConfig `pathNormalization` mode as the gateway — so `/public/../private` can never
 * match a `/public` skip rule, and a path is under a skip prefix here exactly when the gateway
 * routes it as under that prefix. The query string and fragment never take part.
 */
import { DEFAULT_PATH_NORMALIZATION, normalizePath, type PathNormalization } from '../lib/path.ts';

/**
 * Normalises the path part of a request target (query and fragment dropped). Undefined when the
 * path cannot be normalised (malformed or control-character escapes): the gateway answers those
 * with 400 itself, so such a request never matches a skip prefix here.
 */
export function normalisePath(target: string, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION): string | undefined {
  let path = target;
  const cut = path.search(/[?#]/);
  if (cut >= 0) path = path.slice(0, cut);
  if (!path.startsWith('/')) path = `/${path}`;
  return normalizePath(path, mode);
}

/**
 * True when the normalised `path` is under `prefix`: equal to it, or continuing with `/` (a
 * prefix that ends in `/` needs nothing more). `/public` matches `/public` and `/public/x` but not
 * `/publicity` — stricter than oidc-authservice's plain string prefix, on purpose.
 */
export function underPrefix(path: string, prefix: string): boolean {
  if (prefix.endsWith('/')) return path.startsWith(prefix) || path === prefix.slice(0, -1);
  return path === prefix || path.startsWith(`${prefix}/`);
}

/**
 * SKIP_AUTH_URLS: true when the normalised `path` lies strictly below one of the entries, each
 * taken as a directory (`/dex` and `/dex/` both mean `/dex/…`); the bare `/dex` (and `/dex?x=1`)
 * is checked. oidc-authservice matched a plain string prefix of the path (`strings.HasPrefix`,
 * so `/dex` also let `/dex`, `/dexter` through), but Kubeflow routes Dex with `prefix: /dex/`
 * and Istio's prefix match is a plain prefix too, so the bare `/dex` falls to the next route —
 * usually the central dashboard's catch-all `prefix: /` — and must not skip authentication.
 */
export function belowAny(path: string, dirs: readonly string[]): boolean {
  for (const d of dirs) if (path.startsWith(d)) return true;
  return false;
}

/** SKIP_AUTH_URLS entries in the form belowAny takes (a trailing `/`). */
export function asDirectories(prefixes: readonly string[]): string[] {
  return prefixes.map((p) => (p.endsWith('/') ? p : `${p}/`));
}

/** True when the normalised path is under any prefix in the list. */
export function matchesAny(path: string, prefixes: readonly string[]): boolean {
  return prefixes.some((p) => underPrefix(path, p));
}

const BAD_CHARS = /[\u0000-\u0020\u007f\\]/;

/**
 * Returns `raw` when it is a safe same-origin relative URL (`/path?query`), else undefined.
 * Refuses `//host`, `/\host`, absolute URLs, control characters and whitespace anywhere, and the
 * same tricks hidden behind percent-encoding (decoded up to three times).
 */
export function safeReturnPath(raw: string | undefined): string | undefined {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 4096) return undefined;
  let candidate = raw;
  let stable = false;
  for (let round = 0; round < 4 && !stable; round++) {
    if (!candidate.startsWith('/') || candidate.startsWith('//') || BAD_CHARS.test(candidate)) return undefined;
    let decoded: string;
    try {
      decoded = decodeURIComponent(candidate);
    } catch {
      return undefined;
    }
    stable = decoded === candidate;
    candidate = decoded;
  }
  if (!stable) return undefined; // still encoded after several rounds: nobody legitimate does that
  try {
    const base = 'http://portico.invalid';
    const u = new URL(raw, base);
    if (u.origin !== base) return undefined;
  } catch {
    return undefined;
  }
  return raw;
}
