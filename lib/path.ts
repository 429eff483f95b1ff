/**
 * Request-path normalisation: the ONE implementation, used by the gateway (routing, ext_authz,
 * AuthorizationPolicy, the path sent upstream), the sidecar and the authservice (SKIP_AUTH_URLS),
 * so that every component sees the same path. Modes follow MeshConfig `pathNormalization`
 * (https://istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/#MeshConfig-ProxyPathNormalization
 * and https://istio.io/latest/docs/ops/best-practices/security/#understand-path-normalization-in-authorization-policy):
 *
 * - `NONE`: the path is used as received.
 * - `BASE` (Istio's default, Envoy `normalize_path`): RFC 3986 — percent-encoded unreserved
 *   characters decoded (§6.2.2.2; so `%2e%2e` is `..`), other escapes' hex upper-cased (§6.2.2.1),
 *   `\` becomes `/`, `.` and `..` segments removed (§5.2.4, never above `/`). Slashes are NOT merged
 *   and `%2F`/`%5C` are NOT decoded.
 * - `MERGE_SLASHES`: BASE, then repeated slashes merged (Envoy `merge_slashes`).
 * - `DECODE_AND_MERGE_SLASHES`: `%2F`/`%5C` decoded to `/`/`\` first (Envoy
 *   `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`), then MERGE_SLASHES.
 *
 * Returns undefined for paths that cannot be made safe (not starting with `/`; in the normalising
 * modes also malformed or control-character escapes): the caller answers 400.
 */

export const PATH_NORMALIZATIONS = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];
/** Istio's default (`DEFAULT` in MeshConfig means this). */
export const DEFAULT_PATH_NORMALIZATION: PathNormalization = 'BASE';

/** MeshConfig spelling (`DEFAULT` included) → mode; undefined for anything else. */
export function parsePathNormalization(value: string | undefined): PathNormalization | undefined {
  if (value === undefined || value === 'DEFAULT') return DEFAULT_PATH_NORMALIZATION;
  return (PATH_NORMALIZATIONS as readonly string[]).includes(value) ? (value as PathNormalization) : undefined;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte === 0x2d || byte === 0x2e || byte === 0x5f || byte === 0x7e;
}

/** Fast check: does this path need any work in `mode`? Most paths do not. */
function isCanonical(path: string, merge: boolean): boolean {
  let prev = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 37 /* % */ || c === 92 /* \ */ || c < 33 || c === 127) return false;
    if (merge && c === 47 /* / */ && prev === 47) return false;
    if (c === 46 /* . */ && prev === 47) {
      const next = path.charCodeAt(i + 1);
      if (Number.isNaN(next) || next === 47 || next === 46) return false;
    }
    prev = c;
  }
  return true;
}

/** Normalises the path part of a request target (no query) as MeshConfig `pathNormalization` says. */
export function normalizePath(path: string, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION): string | undefined {
  if (path.length === 0 || path.charCodeAt(0) !== 47) return undefined;
  if (mode === 'NONE') return path;
  const merge = mode !== 'BASE';
  if (isCanonical(path, merge)) return path;
  const decodeSlashes = mode === 'DECODE_AND_MERGE_SLASHES';

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
      i += 2;
      if (decodeSlashes && (byte === 0x2f || byte === 0x5c)) decoded += '/';
      else if (isUnreserved(byte)) decoded += String.fromCharCode(byte);
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
    if (merge && seg === '' && !last) continue;
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
