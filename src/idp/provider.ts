/**
 * The identity-provider boundary of the authenticate service: the few operations sign-in, refresh
 * and sign-out need, independent of the library or protocol behind them. The generic OpenID
 * Connect implementation is `oidc.ts`; named providers (Pomerium docs: Identity providers) are that
 * implementation with the defaults of `defaults.ts`.
 */

import { CodedError } from '../shared/errors.js'

/** Claims about the signed-in user: ID token claims merged with UserInfo (see {@link mergeClaims}). */
export type Claims = { sub: string } & Record<string, unknown>

/** What a successful code exchange or refresh yields. */
export interface TokenSet {
  accessToken: string
  /** Absent when the provider issued none (no `offline_access`, say); a refresh may also omit it. */
  refreshToken?: string
  /** The raw ID token. A refresh response may carry none: keep the previous one for `id_token_hint`. */
  idToken?: string
  /** Access-token expiry, epoch milliseconds (`expires_in`, else the ID token's `exp`, else one hour). */
  expiresAt: number
  /** ID-token expiry, epoch milliseconds, when an ID token came with this response. */
  idTokenExpiresAt?: number
  /** ID token claims merged with UserInfo claims; UserInfo wins except for `sub`, which must match. */
  claims: Claims
}

export interface AuthorizationUrlParams {
  /** The callback URL registered at the provider (`https://authn.example.com/oauth2/callback`). */
  redirectUri: string
  /** Opaque CSRF-bound state; returned unchanged in the callback. */
  state: string
  /** Bound into the ID token; checked by {@link IdentityProvider.redeem}. */
  nonce: string
  /** PKCE verifier; required when {@link IdentityProvider.needsPkce} is true, ignored otherwise. */
  codeVerifier?: string
  /**
   * Per-request parameters (e.g. `login_hint`). Protocol parameters (`scope`, `state`, `nonce`,
   * `redirect_uri`, `client_id`, `response_type`, `code_challenge*`, `request*`) are ignored.
   */
  extraParams?: Readonly<Record<string, string>>
}

export interface RedeemParams {
  /**
   * The callback request's URL, carrying `code`, `state` (and `iss`, or `error`). For a
   * `response_mode=form_post` callback, append the posted form fields as query parameters.
   */
  callbackUrl: URL
  /** The same redirect URI sent in the authorization request (without a query string). */
  redirectUri: string
  /** The state sent in the authorization request; compared in constant time. */
  expectedState: string
  /** The nonce sent in the authorization request; the ID token must carry exactly this value. */
  expectedNonce: string
  /** The PKCE verifier of this sign-in, when one was used. */
  codeVerifier?: string
}

export interface EndSessionParams {
  /** The session's raw ID token. */
  idTokenHint?: string
  /** Where the provider sends the browser after logout; must be registered at the provider. */
  postLogoutRedirectUri: string
}

/** Refresh context: the claims of the session being refreshed. */
export interface RefreshContext {
  /**
   * The session's current claims. Their `sub` must match the refreshed tokens' subject; they are
   * kept (under the new UserInfo) when the refresh response carries no new ID token.
   */
  previousClaims?: Claims
}

/** A narrow view of one configured identity provider. Implementations are safe to share. */
export interface IdentityProvider {
  /** The provider id (`idp_id`) that sessions are bound to. */
  readonly id: string

  /** The configured `idp_provider` (`oidc`, `google`, ..., `github`, or `builtin`). */
  readonly providerName: string

  /**
   * `oidc`: ID tokens, discovery, UserInfo. `oauth2`: plain OAuth 2 with provider REST APIs
   * (GitHub): no ID token, so no `idp_identity_token` bearer tokens and no `id_token_hint`.
   */
  readonly protocol: 'oidc' | 'oauth2'

  /**
   * How the provider delivers the authorization response to the callback: `GET` (query string) or
   * `POST` (`response_mode=form_post`, Apple). For `POST` the callback is a cross-site top-level
   * POST, so the CSRF cookie must be `SameSite=None` (see {@link formPostCallback}).
   */
  readonly callbackMethod: 'GET' | 'POST'

  /** True exactly when {@link callbackMethod} is `POST`: the CSRF cookie needs `SameSite=None`. */
  readonly formPostCallback: boolean

  /**
   * Which stored token {@link refresh} takes: `refresh_token` for OpenID providers, or
   * `access_token` for providers without refresh tokens whose access tokens do not expire (GitHub
   * OAuth apps): `refresh` then re-reads the user with that access token.
   */
  readonly refreshWith: 'refresh_token' | 'access_token'

  /**
   * The Portcullis user id (session `user_id`, handle `sub`) for a user's claims: `sub` by default,
   * `oid` for Azure (stable across the applications of a tenant), the numeric user id for GitHub.
   * @throws {IdentityProviderError} `ERR_IDP_EXCHANGE_FAILED` when the claim is missing or not a string
   */
  userIdOf(claims: Claims): string

  /**
   * Whether sign-ins must use PKCE: true exactly when the provider's discovery document lists
   * `S256` in `code_challenge_methods_supported` (`plain` is never used). Triggers discovery.
   * @throws {IdentityProviderError} `ERR_IDP_DISCOVERY_FAILED`
   */
  needsPkce(): Promise<boolean>

  /**
   * The provider URL to send the browser to: `response_type=code`, `client_id`, `redirect_uri`,
   * `scope`, `state`, `nonce` and (with PKCE) an S256 `code_challenge`, each exactly once, plus the
   * configured request parameters and `extraParams`.
   * @throws {IdentityProviderError} `ERR_IDP_DISCOVERY_FAILED`
   * @throws {TypeError} when PKCE is needed and no `codeVerifier` was given
   */
  authorizationUrl(params: AuthorizationUrlParams): Promise<URL>

  /**
   * Handle the callback: check `state`, exchange the code (with the PKCE verifier), validate the
   * ID token (signature, issuer, audience, expiry, nonce), then read UserInfo and merge claims
   * (a UserInfo failure here is `ERR_IDP_EXCHANGE_FAILED`).
   * @throws {IdentityProviderError} `ERR_IDP_STATE_MISMATCH`, `ERR_IDP_ACCESS_DENIED`,
   *   `ERR_IDP_NONCE_MISMATCH`, `ERR_IDP_EXCHANGE_FAILED`, `ERR_IDP_DISCOVERY_FAILED`
   */
  redeem(params: RedeemParams): Promise<TokenSet>

  /**
   * Use a refresh token, validate any new ID token, and re-read UserInfo so claim changes at the
   * provider (groups) show up. `permanent` on the error tells whether the session must end.
   * Every failure, discovery included (then transient), is `ERR_IDP_REFRESH_FAILED`.
   *
   * `refreshToken` is the session's access token instead when {@link refreshWith} is
   * `access_token` (GitHub): the user is re-read with it, and a revoked token fails permanently.
   * @throws {IdentityProviderError} `ERR_IDP_REFRESH_FAILED`
   */
  refresh(refreshToken: string, context?: RefreshContext): Promise<TokenSet>

  /**
   * Read the UserInfo endpoint; the response's `sub` must equal `expectedSubject`. Returns just
   * `{ sub }` when the provider has no UserInfo endpoint.
   * @throws {IdentityProviderError} `ERR_IDP_USERINFO_FAILED`, `ERR_IDP_DISCOVERY_FAILED`
   */
  userInfo(accessToken: string, expectedSubject: string): Promise<Claims>

  /**
   * Revoke a token (RFC 7009). Resolves without a request when the provider has no revocation
   * endpoint.
   * @throws {IdentityProviderError} `ERR_IDP_REVOKE_FAILED`, `ERR_IDP_DISCOVERY_FAILED`
   */
  revoke(token: string, hint?: 'access_token' | 'refresh_token'): Promise<void>

  /**
   * The RP-initiated logout URL (`end_session_endpoint` with `id_token_hint`, `client_id` and
   * `post_logout_redirect_uri`), or undefined when the provider has none. Auth0 and Cognito use
   * their own logout endpoints (`/v2/logout?returnTo=&client_id=`, `/logout?client_id=&logout_uri=`,
   * on the authorization endpoint's origin, as Pomerium); GitHub and Apple have none.
   * @throws {IdentityProviderError} `ERR_IDP_DISCOVERY_FAILED`
   */
  endSessionUrl(params: EndSessionParams): Promise<URL | undefined>
}

export const IDP_ERROR_CODES = [
  'ERR_IDP_DISCOVERY_FAILED',
  'ERR_IDP_STATE_MISMATCH',
  'ERR_IDP_NONCE_MISMATCH',
  'ERR_IDP_ACCESS_DENIED',
  'ERR_IDP_EXCHANGE_FAILED',
  'ERR_IDP_REFRESH_FAILED',
  'ERR_IDP_USERINFO_FAILED',
  'ERR_IDP_REVOKE_FAILED',
] as const

export type IdentityProviderErrorCode = (typeof IDP_ERROR_CODES)[number]

/**
 * A failure talking to, or a response refused from, an identity provider. `message` is safe to
 * log; `oauthError`/`oauthErrorDescription` are the provider's text and must be escaped if shown.
 */
export class IdentityProviderError extends CodedError {
  readonly code: IdentityProviderErrorCode
  /**
   * For `ERR_IDP_REFRESH_FAILED`: true when retrying cannot help (the provider refused the grant,
   * e.g. `invalid_grant` after revocation or deprovisioning), so the session must end; false for
   * transient failures (network, timeouts, 5xx). False for every other code.
   */
  readonly permanent: boolean
  /** The OAuth `error` code the provider returned, if any. */
  readonly oauthError: string | undefined
  readonly oauthErrorDescription: string | undefined

  constructor(
    code: IdentityProviderErrorCode,
    message: string,
    options: { cause?: unknown; permanent?: boolean; oauthError?: string; oauthErrorDescription?: string } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'IdentityProviderError'
    this.code = code
    this.permanent = options.permanent ?? false
    this.oauthError = options.oauthError
    this.oauthErrorDescription = options.oauthErrorDescription
  }
}

export function isIdentityProviderError(err: unknown): err is IdentityProviderError {
  return err instanceof IdentityProviderError
}

/**
 * Merge ID token claims with UserInfo claims as Pomerium does: every key of both, UserInfo winning
 * where both have one, except `sub`, which must be equal (OpenID Connect Core 5.3.2).
 * @throws {Error} when the subjects differ
 */
export function mergeClaims(idTokenClaims: Claims, userInfo: Readonly<Record<string, unknown>> | undefined): Claims {
  if (!userInfo) return { ...idTokenClaims }
  if (userInfo.sub !== undefined && userInfo.sub !== idTokenClaims.sub) {
    throw new Error('UserInfo subject does not match the ID token subject')
  }
  return { ...idTokenClaims, ...userInfo, sub: idTokenClaims.sub }
}
