/**
 * Who is asking, and what the upstream is told about them.
 */
import type { JWTPayload } from 'jose';
import type { AuthserviceConfig } from './config.ts';
import { AuthserviceError } from './errors.ts';
import { matchesAny } from './paths.ts';

export interface Identity {
  sub: string;
  userid: string;
  groups: string[];
}

/** Extracts the user id and groups from ID token claims per USERID_CLAIM and GROUPS_CLAIM. */
export function identityFromClaims(cfg: AuthserviceConfig, claims: JWTPayload): Identity {
  const userid = claims[cfg.useridClaim];
  if (typeof userid !== 'string' || userid === '' || /[\r\n\0]/.test(userid)) {
    throw new AuthserviceError('PORTICO_ERR_MISSING_CLAIM', `the ID token has no usable '${cfg.useridClaim}' claim (USERID_CLAIM)`);
  }
  if (typeof claims.sub !== 'string') throw new AuthserviceError('PORTICO_ERR_MISSING_CLAIM', 'the ID token has no sub claim');
  const raw = claims[cfg.groupsClaim];
  const groups = (Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : [])
    .filter((g): g is string => typeof g === 'string' && g !== '' && !/[\r\n\0,]/.test(g));
  return { sub: claims.sub, userid, groups };
}

/** GROUPS_ALLOWLIST: `*` admits everyone, otherwise at least one group must be listed. */
export function groupsAllowed(cfg: AuthserviceConfig, groups: readonly string[]): boolean {
  if (cfg.groupsAllowlist === '*') return true;
  const allow = cfg.groupsAllowlist;
  return groups.some((g) => allow.includes(g));
}

/** Headers the gateway copies upstream when the check allows the request. */
export function identityHeaders(cfg: AuthserviceConfig, id: Pick<Identity, 'userid' | 'groups'>): Record<string, string> {
  return {
    [cfg.useridHeader]: `${cfg.useridPrefix}${id.userid}`,
    [cfg.groupsHeader]: id.groups.join(','),
  };
}

export interface RequestHints {
  method: string;
  normalisedPath: string;
  accept: string | undefined;
  xRequestedWith: string | undefined;
}

/**
 * True for programmatic clients, which get a 401 JSON instead of a login redirect:
 * `X-Requested-With` present, an Accept that wants JSON but not HTML, a PORTICO_API_PATHS prefix,
 * or a method other than GET/HEAD (a redirect would lose the body).
 */
export function isApiRequest(cfg: AuthserviceConfig, h: RequestHints): boolean {
  if (h.xRequestedWith) return true;
  if (h.method !== 'GET' && h.method !== 'HEAD') return true;
  if (matchesAny(h.normalisedPath, cfg.apiPathPrefixes)) return true;
  const accept = (h.accept ?? '').toLowerCase();
  if (accept.includes('text/html')) return false;
  return accept.includes('application/json') || accept.includes('+json');
}

/** Fetch destinations that are navigations (a page or a frame): https://fetch.spec.whatwg.org/#destination-table */
const NAVIGATION_DESTS = new Set(['document', 'iframe', 'frame', 'embed', 'object']);

/**
 * False for what is positively not a page navigation — a browser's sub-resource request — which
 * gets a 401 instead of a login redirect and a login-state cookie: a `Sec-Fetch-Dest` that is not
 * a document or frame (when the gateway forwards it), or an `Accept` that names neither HTML nor
 * only `*\/*` (images, stylesheets: `image/…`, `text/css,…`). Browsers always list `text/html`
 * when they navigate. `Sec-Fetch-Mode` is not used: Node's and undici's fetch send `cors` on every
 * request. A bare `*\/*` without `Sec-Fetch-Dest` (curl, scripts) still starts a login.
 * oauth2-proxy sends such requests to the login too; Kubeflow distributions (deployKF) route
 * background paths as API paths so they get 401, which is what this does by default.
 */
export function mayStartLogin(h: { accept: string | undefined; secFetchDest: string | undefined }): boolean {
  if (h.secFetchDest !== undefined && !NAVIGATION_DESTS.has(h.secFetchDest.toLowerCase())) return false;
  const accept = (h.accept ?? '').trim().toLowerCase();
  return accept === '' || accept === '*/*' || accept.includes('text/html');
}
