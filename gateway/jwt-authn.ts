/**
 * RequestAuthentication for a sidecar's inbound side (Envoy's jwt_authn filter as Istio
 * configures it): a request carrying a token must carry a valid one (else 401), a request
 * without one passes unauthenticated (an AuthorizationPolicy with `requestPrincipals` then
 * refuses it). A valid token yields `request.auth.principal` = `iss/sub` and the claims.
 * https://istio.io/latest/docs/reference/config/security/request_authentication/
 */
import type { JWTPayload, JWTVerifyGetKey } from 'jose';

/**
 * jose, loaded when a RequestAuthentication first applies: most sidecars have none, and the
 * library costs about 10 MB of RSS.
 */
type Jose = typeof import('jose');
let josePromise: Promise<Jose> | undefined;
function loadJose(): Promise<Jose> {
  josePromise ??= import('jose');
  return josePromise;
}
import type { JwtRule, RequestAuthn, SecurityPolicies } from '../config/snapshot.ts';
import type { HeaderMap } from './headers.ts';
import { policySelects, type PolicySubject } from './policy.ts';

type Headers = Readonly<Record<string, string | string[] | undefined>>;

export type JwtOutcome =
  /** No token anywhere a rule looks: continue without a request principal. */
  | { readonly kind: 'none' }
  | { readonly kind: 'valid'; readonly principal: string; readonly claims: JWTPayload; readonly rule: JwtRule; readonly token: string; readonly where: TokenLocation }
  /** 401: present but expired, badly signed, wrong audience or an unknown issuer. */
  | { readonly kind: 'invalid'; readonly reason: string };

type TokenLocation = { readonly header: string; readonly prefix: string } | { readonly param: string } | { readonly cookie: string };

/** The RequestAuthentications that select this workload. */
export function selectRequestAuthn(security: SecurityPolicies, wl: PolicySubject): RequestAuthn[] {
  return security.requestAuthentications.filter((r) => policySelects(r, wl));
}

/** JWKS key sets, shared across snapshots so a reload does not refetch keys. */
export class JwksCache {
  private readonly remote = new Map<string, JWTVerifyGetKey>();
  private readonly local = new Map<string, JWTVerifyGetKey>();
  /**
   * Tokens already verified under a rule (Envoy's jwt_authn `jwt_cache_config`): the same token
   * against the same rule verifies the same way until it expires, so a client sending one token
   * on every request pays the signature check once. Keyed by the rule object (a new snapshot's
   * rules start empty), bounded, and an entry never outlives the token's `exp` (nor 5 minutes, so
   * a key removed from a JWKS stops admitting its tokens within that bound).
   */
  private readonly verified = new WeakMap<JwtRule, Map<string, { payload: JWTPayload; until: number }>>();

  cachedPayload(rule: JwtRule, token: string, nowSec: number): JWTPayload | undefined {
    const hit = this.verified.get(rule)?.get(token);
    if (!hit) return undefined;
    if (hit.until <= nowSec) {
      this.verified.get(rule)!.delete(token);
      return undefined;
    }
    return hit.payload;
  }

  remember(rule: JwtRule, token: string, payload: JWTPayload, nowSec: number): void {
    if (typeof payload.exp !== 'number') return; // a token that never expires is verified every time
    let m = this.verified.get(rule);
    if (!m) this.verified.set(rule, (m = new Map()));
    if (m.size >= 1000) m.delete(m.keys().next().value as string);
    m.set(token, { payload, until: Math.min(payload.exp, nowSec + 300) });
  }

  keysFor(rule: JwtRule, jose: Jose): JWTVerifyGetKey | undefined {
    const { createLocalJWKSet, createRemoteJWKSet } = jose;
    if (rule.jwks) {
      let k = this.local.get(rule.jwks);
      if (!k) {
        k = createLocalJWKSet(JSON.parse(rule.jwks) as Parameters<typeof createLocalJWKSet>[0]);
        this.local.set(rule.jwks, k);
      }
      return k;
    }
    if (!rule.jwksUri) {
      // Neither jwks nor jwksUri: Istio discovers the key set from the issuer's OpenID
      // configuration (`<issuer>/.well-known/openid-configuration` → `jwks_uri`), as Kubeflow's
      // dex-jwt RequestAuthentication relies on. A failed discovery is retried on the next token.
      const key = `discovery:${rule.issuer}`;
      let k = this.remote.get(key);
      if (!k) {
        let inner: Promise<JWTVerifyGetKey> | undefined;
        const timeoutMs = rule.timeoutMs ?? 5_000;
        const discover = async (): Promise<JWTVerifyGetKey> => {
          const url = `${rule.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
          const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
          if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
          const doc = (await res.json()) as { jwks_uri?: unknown };
          if (typeof doc.jwks_uri !== 'string') throw new Error(`${url}: no jwks_uri`);
          return createRemoteJWKSet(new URL(doc.jwks_uri), { timeoutDuration: timeoutMs });
        };
        k = async (header, token) => {
          inner ??= discover().catch((err: unknown) => {
            inner = undefined;
            throw err;
          });
          return (await inner)(header, token);
        };
        this.remote.set(key, k);
      }
      return k;
    }
    if (rule.jwksUri) {
      let k = this.remote.get(rule.jwksUri);
      if (!k) {
        k = createRemoteJWKSet(new URL(rule.jwksUri), { timeoutDuration: rule.timeoutMs ?? 5_000 });
        this.remote.set(rule.jwksUri, k);
      }
      return k;
    }
    return undefined;
  }
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function cookie(headers: Headers, name: string): string | undefined {
  const raw = headers['cookie'];
  const text = Array.isArray(raw) ? raw.join('; ') : raw;
  if (!text) return undefined;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Where each rule looks for its token (Istio's default: `Authorization: Bearer`, `?access_token=`). */
function findToken(rule: JwtRule, headers: Headers, query: URLSearchParams): { token: string; where: TokenLocation } | undefined {
  for (const h of rule.fromHeaders) {
    const v = first(headers[h.name]);
    if (v === undefined) continue;
    if (h.prefix && !v.toLowerCase().startsWith(h.prefix.toLowerCase())) continue;
    const token = v.slice(h.prefix.length).trim();
    if (token) return { token, where: { header: h.name, prefix: h.prefix } };
  }
  for (const p of rule.fromParams) {
    const v = query.get(p);
    if (v) return { token: v, where: { param: p } };
  }
  for (const c of rule.fromCookies) {
    const v = cookie(headers, c);
    if (v) return { token: v, where: { cookie: c } };
  }
  return undefined;
}

/**
 * Whether any rule of these policies would find a token in the request: the synchronous pre-check
 * that keeps requests without credentials off the (async) verification path.
 */
export function hasCandidateToken(policies: readonly RequestAuthn[], headers: Headers, queryString: string): boolean {
  let query: URLSearchParams | undefined;
  for (const policy of policies) {
    for (const rule of policy.jwtRules) {
      for (const h of rule.fromHeaders) if (headers[h.name] !== undefined) return true;
      if (rule.fromParams.length > 0 && queryString) {
        query ??= new URLSearchParams(queryString);
        for (const p of rule.fromParams) if (query.has(p)) return true;
      }
      if (rule.fromCookies.length > 0 && headers['cookie'] !== undefined) {
        for (const c of rule.fromCookies) if (cookie(headers, c) !== undefined) return true;
      }
    }
  }
  return false;
}

/**
 * Validates the request's token against the rules of every selected RequestAuthentication. The
 * rule is chosen by the token's (unverified) issuer; the signature, expiry and audiences are then
 * checked with that rule's keys.
 */
export async function authenticateJwt(policies: readonly RequestAuthn[], headers: Headers, queryString: string, keys: JwksCache): Promise<JwtOutcome> {
  if (policies.length === 0) return { kind: 'none' };
  const jose = await loadJose();
  const { decodeJwt, jwtVerify } = jose;
  const query = new URLSearchParams(queryString);
  let seen: string | undefined;
  for (const policy of policies) {
    for (const rule of policy.jwtRules) {
      const found = findToken(rule, headers, query);
      if (!found) continue;
      seen = found.token;
      let iss: string | undefined;
      try {
        iss = decodeJwt(found.token).iss;
      } catch {
        return { kind: 'invalid', reason: 'Jwt is not in the form of Header.Payload.Signature' };
      }
      if (iss !== rule.issuer) continue;
      const nowSec = Math.floor(Date.now() / 1000);
      const cached = keys.cachedPayload(rule, found.token, nowSec);
      if (cached) return { kind: 'valid', principal: `${cached.iss}/${cached.sub ?? ''}`, claims: cached, rule, token: found.token, where: found.where };
      const getKey = keys.keysFor(rule, jose);
      if (!getKey) return { kind: 'invalid', reason: 'Jwks remote fetch is failed' };
      try {
        const { payload } = await jwtVerify(found.token, getKey, {
          issuer: rule.issuer,
          ...(rule.audiences.length ? { audience: [...rule.audiences] } : {}),
        });
        keys.remember(rule, found.token, payload, nowSec);
        return { kind: 'valid', principal: `${payload.iss}/${payload.sub ?? ''}`, claims: payload, rule, token: found.token, where: found.where };
      } catch (err) {
        const code = (err as { code?: string }).code;
        return { kind: 'invalid', reason: code === 'ERR_JWT_EXPIRED' ? 'Jwt is expired' : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? 'Audiences in Jwt are not allowed' : 'Jwt verification fails' };
      }
    }
  }
  return seen === undefined ? { kind: 'none' } : { kind: 'invalid', reason: 'Jwt issuer is not configured' };
}

/** Applies a valid token's effects on the upstream headers: drop it unless forwarded, output claims. */
export function applyJwtHeaders(outcome: Extract<JwtOutcome, { kind: 'valid' }>, headers: HeaderMap): void {
  const { rule, where, claims } = outcome;
  if (!rule.forwardOriginalToken && 'header' in where) delete headers[where.header];
  if (rule.outputPayloadToHeader) headers[rule.outputPayloadToHeader.toLowerCase()] = Buffer.from(JSON.stringify(claims)).toString('base64url');
  for (const { header, claim } of rule.outputClaimToHeaders) {
    const v = claims[claim];
    const name = header.toLowerCase();
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') headers[name] = String(v);
    else delete headers[name]; // never let a client-sent value stand in for a claim
  }
}
