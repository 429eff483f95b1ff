/**
 * Path handling for authz decisions. Envoy normalises the path before authz
 * (`normalize_path`, `merge_slashes`; RFC 3986 §5.2.4 dot-segment removal), and so do we, so that
 * `/public/../private` can never match a `/public` skip rule. The query string never takes part.
 */

const UNRESERVED = /%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g;

/**
 * Normalises the path part of a request target: drops the query and fragment, decodes
 * percent-encoded unreserved characters (so `%2e%2e` is `..`), treats `\` as `/`, merges
 * slashes and removes dot segments. Encoded `/` (`%2F`) stays encoded, as in Envoy's default.
 */
export function normalisePath(target: string): string {
  let path = target;
  const cut = path.search(/[?#]/);
  if (cut >= 0) path = path.slice(0, cut);
  path = path.replace(UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
  path = path.replace(/\\/g, '/');
  if (!path.startsWith('/')) path = `/${path}`;
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '' && !last) continue; // merge slashes
    if (seg === '.') {
      if (last) out.push('');
      continue;
    }
    if (seg === '..') {
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(seg);
  }
  return `/${out.join('/')}`;
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
