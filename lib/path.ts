/**
 * Request-path normalisation, applied before route matching, before ext_authz and before the
 * path is forwarded upstream, so that every component sees the same path (Envoy's
 * `normalize_path` + `merge_slashes` + Istio's `DECODE_AND_MERGE_SLASHES` treatment of `%2F`).
 *
 * - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), other escapes have
 *   their hex upper-cased;
 * - `%2F`, `%5C` and a raw `\` become `/` (so `/a%2F..%2Fadmin` cannot dodge a `/admin` rule);
 * - repeated slashes are merged;
 * - `.` and `..` segments are removed (RFC 3986 §5.2.4), never climbing above `/`.
 *
 * Returns undefined for paths that cannot be made safe (not starting with `/`, malformed or
 * control-character escapes, NUL): the caller answers 400.
 */
const UNRESERVED = /[A-Za-z0-9\-._~]/;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Fast check: does this path need any work at all? Most paths do not. */
function isCanonical(path: string): boolean {
  let prev = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 37 /* % */ || c === 92 /* \ */ || c < 33 || c === 127) return false;
    if (c === 47 /* / */ && prev === 47) return false;
    if (c === 46 /* . */ && prev === 47) {
      const next = path.charCodeAt(i + 1);
      if (Number.isNaN(next) || next === 47 || next === 46) return false;
    }
    prev = c;
  }
  return true;
}

export function normalizePath(path: string): string | undefined {
  if (path.length === 0 || path.charCodeAt(0) !== 47) return undefined;
  if (isCanonical(path)) return path;

  let decoded = '';
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!;
    const code = path.charCodeAt(i);
    if (code < 32 || code === 127) return undefined;
    if (ch === '%') {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      const byte = hi * 16 + lo;
      if (byte < 32 || byte === 127) return undefined;
      const c = String.fromCharCode(byte);
      i += 2;
      if (byte === 0x2f || byte === 0x5c) decoded += '/';
      else if (UNRESERVED.test(c)) decoded += c;
      else decoded += '%' + path[i - 1]!.toUpperCase() + path[i]!.toUpperCase();
      continue;
    }
    decoded += ch === '\\' ? '/' : ch;
  }

  const out: string[] = [];
  const segments = decoded.split('/');
  // segments[0] is '' (leading slash); a trailing '' keeps the trailing slash.
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '.' || seg === '..') {
      if (seg === '..') out.pop();
      if (last) out.push('');
      continue;
    }
    if (seg === '' && !last) continue; // merge slashes
    out.push(seg);
  }
  return '/' + out.join('/');
}

/** Splits a request target into path and query (`?` and after, without the `?`). */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  if (q < 0) return { path: target, query: '' };
  return { path: target.slice(0, q), query: target.slice(q + 1) };
}
