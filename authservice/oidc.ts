/**
 * The OIDC relying party, on openid-client v6. Discovery runs in the background and retries with
 * backoff until the issuer answers (the authservice reports not-ready meanwhile), because in
 * docker-compose and Kubernetes Dex often starts after us.
 */
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import type { Logger } from 'pino';
import type { AuthserviceConfig } from './config.ts';
import { AuthserviceError } from './errors.ts';

export interface LoginRequest {
  redirectUri: string;
  state: string;
  nonce: string;
  codeChallenge: string;
}

export interface TokenSet {
  idToken: string;
  refreshToken?: string;
  claims: JWTPayload;
}

export class OidcRelyingParty {
  readonly #cfg: AuthserviceConfig;
  readonly #log: Logger;
  #config: client.Configuration | undefined;
  #jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #discovering: Promise<void> | undefined;

  constructor(cfg: AuthserviceConfig, log: Logger) {
    this.#cfg = cfg;
    this.#log = log;
  }

  get ready(): boolean {
    return this.#config !== undefined;
  }

  /** Starts background discovery; resolves once the first attempt has finished (success or not). */
  start(): Promise<void> {
    this.#discovering ??= this.#attempt(0);
    return this.#discovering;
  }

  async #attempt(n: number): Promise<void> {
    if (this.#closed) return;
    try {
      const options: client.DiscoveryRequestOptions = { timeout: 10 };
      if (this.#cfg.allowInsecureIssuer) options.execute = [client.allowInsecureRequests];
      const config = await client.discovery(
        this.#cfg.issuer,
        this.#cfg.clientId,
        this.#cfg.clientSecret ? { client_secret: this.#cfg.clientSecret } : undefined,
        this.#cfg.clientSecret ? client.ClientSecretBasic(this.#cfg.clientSecret) : client.None(),
        options,
      );
      const meta = config.serverMetadata();
      if (!meta.jwks_uri) throw new Error('issuer metadata has no jwks_uri');
      this.#jwks = createRemoteJWKSet(new URL(meta.jwks_uri), { timeoutDuration: 5000, cooldownDuration: 30_000 });
      this.#config = config;
      this.#log.info({ issuer: meta.issuer, endSession: Boolean(meta.end_session_endpoint) }, 'OIDC discovery complete');
    } catch (err) {
      if (this.#closed) return;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(n, 6));
      this.#log.warn({ issuer: this.#cfg.issuer.href, err: errorText(err), retryInMs: delay }, 'OIDC discovery failed; retrying');
      this.#timer = setTimeout(() => void this.#attempt(n + 1), delay);
      this.#timer.unref();
    }
  }

  #need(): client.Configuration {
    if (!this.#config) throw new AuthserviceError('PORTICO_ERR_NOT_READY');
    return this.#config;
  }

  /**
   * Authorization URL for one login attempt. `browserAuthUrl` is OIDC_AUTH_URL already made
   * absolute for this request (a relative OIDC_AUTH_URL depends on the request's origin); when
   * absent, the discovered authorization_endpoint is used.
   */
  authorizationUrl(req: LoginRequest, browserAuthUrl?: string): URL {
    const url = client.buildAuthorizationUrl(this.#need(), {
      redirect_uri: req.redirectUri,
      scope: this.#cfg.scopes.join(' '),
      state: req.state,
      nonce: req.nonce,
      code_challenge: req.codeChallenge,
      code_challenge_method: 'S256',
    });
    if (!browserAuthUrl) return url;
    const browser = new URL(browserAuthUrl);
    for (const [k, v] of url.searchParams) browser.searchParams.append(k, v);
    return browser;
  }

  /** Exchanges the authorization code; `callbackUrl` is the redirect_uri plus the callback's query. */
  async exchangeCode(callbackUrl: URL, checks: { state: string; nonce: string; codeVerifier: string }): Promise<TokenSet> {
    const tokens = await client.authorizationCodeGrant(this.#need(), callbackUrl, {
      expectedState: checks.state,
      expectedNonce: checks.nonce,
      pkceCodeVerifier: checks.codeVerifier,
      idTokenExpected: true,
    });
    return toTokenSet(tokens);
  }

  async refresh(refreshToken: string): Promise<TokenSet> {
    const tokens = await client.refreshTokenGrant(this.#need(), refreshToken, { scope: this.#cfg.scopes.join(' ') });
    return toTokenSet(tokens, refreshToken);
  }

  /** Verifies an ID token presented as `Authorization: Bearer` (issuer, audience = CLIENT_ID, signature, expiry). */
  async verifyIdToken(token: string): Promise<JWTPayload> {
    const meta = this.#need().serverMetadata();
    if (!this.#jwks) throw new AuthserviceError('PORTICO_ERR_NOT_READY');
    try {
      const { payload } = await jwtVerify(token, this.#jwks, {
        issuer: meta.issuer,
        audience: this.#cfg.clientId,
        algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
        requiredClaims: ['sub', 'exp'],
        clockTolerance: 30,
      });
      return payload;
    } catch (err) {
      throw new AuthserviceError('PORTICO_ERR_BAD_TOKEN', undefined, { cause: err });
    }
  }

  /** RP-initiated logout URL when the issuer advertises end_session_endpoint. */
  endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string | undefined): URL | undefined {
    if (!this.#config?.serverMetadata().end_session_endpoint) return undefined;
    const params: Record<string, string> = { client_id: this.#cfg.clientId };
    if (idToken) params.id_token_hint = idToken;
    if (postLogoutRedirectUri && /^https?:\/\//.test(postLogoutRedirectUri)) params.post_logout_redirect_uri = postLogoutRedirectUri;
    return client.buildEndSessionUrl(this.#config, params);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }
}

function toTokenSet(tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers, previousRefresh?: string): TokenSet {
  const claims = tokens.claims();
  if (!tokens.id_token || !claims) throw new AuthserviceError('PORTICO_ERR_IDP', 'the token response has no ID token');
  const refreshToken = tokens.refresh_token ?? previousRefresh;
  return { idToken: tokens.id_token, claims: { ...claims }, ...(refreshToken ? { refreshToken } : {}) };
}

/** An OAuth error code from openid-client's errors (e.g. `invalid_grant`), if any. */
export function oauthErrorCode(err: unknown): string | undefined {
  if (err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError) return err.error;
  return undefined;
}

/**
 * Why a failed code exchange means "this login attempt is stale or not ours — start again"
 * (the 400 page) rather than "the IdP is broken" (502), or undefined for the latter:
 *  - `invalid_grant` (RFC 6749 §5.2: the code is expired, used or was issued to another client);
 *  - `invalid_request`: what Dex before v2.28 answers for an unknown, expired or replayed code
 *    ("Invalid or expired code parameter.", server/handlers.go `handleAuthCode`);
 *  - an ID token whose `nonce` is not this attempt's: the code was issued for another
 *    authorization request (a stale tab, or code injection — Dex before v2.28 has no PKCE).
 */
export function staleLoginReason(err: unknown): string | undefined {
  const code = oauthErrorCode(err);
  if (code === 'invalid_grant' || code === 'invalid_request') return code;
  if (err instanceof client.ClientError && err.code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED') {
    const detail = (err.cause as { cause?: { claim?: unknown } } | undefined)?.cause;
    if (detail?.claim === 'nonce') return 'nonce mismatch';
  }
  return undefined;
}

/** A short description of an error for logs; never includes tokens. */
export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${typeof code === 'string' ? `${code}: ` : ''}${err.message}`.slice(0, 300);
  }
  return String(err).slice(0, 300);
}
