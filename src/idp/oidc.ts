/**
 * The generic OpenID Connect identity provider (`idp_provider: oidc`, and the base of the named
 * OIDC providers), over openid-client's functional API. Discovery is lazy and cached; a failed
 * discovery is retried on the next call. Outgoing HTTP goes through an injectable fetch.
 */
import { PROTOCOL_PARAMS } from '../config/providers.js'
import { createHash, timingSafeEqual } from 'node:crypto'

import * as client from 'openid-client'

import { IdentityProviderError, mergeClaims } from './provider.js'
import type {
  AuthorizationUrlParams,
  Claims,
  EndSessionParams,
  IdentityProvider,
  IdentityProviderErrorCode,
  RedeemParams,
  RefreshContext,
  TokenSet,
} from './provider.js'

const DEFAULT_OIDC_SCOPES: readonly string[] = ['openid', 'profile', 'email', 'offline_access']

/** The fetch signature openid-client uses for every outgoing request (undici's `fetch` fits). */
export { PROTOCOL_PARAMS }
export type IdpFetch = client.CustomFetch

export interface OidcProviderOptions {
  /** Provider id (`idp_id`) that sessions are bound to. */
  id: string
  /** Issuer URL; discovery reads `<issuerUrl>/.well-known/openid-configuration`. */
  issuerUrl: string
  clientId: string
  /** Absent for public clients (then no client authentication, PKCE carries the proof). */
  clientSecret?: string
  /**
   * How the client authenticates at the token and revocation endpoints. Default with a secret:
   * `client_secret_basic`, unless discovery's `token_endpoint_auth_methods_supported` lists
   * `client_secret_post` and not `client_secret_basic` (Apple); without a secret: none.
   */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post' | 'none'
  /** `idp_scopes`; default `openid profile email offline_access`. */
  scopes?: readonly string[]
  /**
   * `idp_request_params`: added to every authorization request (e.g. `prompt`, `access_type`,
   * `response_mode`). Protocol parameters (scope, state, redirect_uri, ...) here are ignored.
   */
  requestParams?: Readonly<Record<string, string>>
  /** Custom fetch for every request to the provider (discovery, token, UserInfo, JWKS, ...). */
  fetch?: IdpFetch
  /**
   * Allow plain-HTTP provider endpoints. ONLY for tests against a provider on loopback: in
   * production every provider endpoint must be HTTPS (tokens and codes travel on these requests).
   */
  allowInsecureRequests?: boolean
  /** Timeout per request to the provider, in seconds (default 30, as openid-client). */
  timeoutSeconds?: number
  /** Clock in epoch milliseconds, for `expiresAt` (default `Date.now`). */
  now?: () => number
  /** The `idp_provider` this instance serves, reported as `providerName` (default `oidc`). */
  providerName?: string
  /** The claim that becomes the user id (default `sub`; Azure: `oid`). */
  userIdClaim?: string
  /** `POST` when the provider answers with `response_mode=form_post` (Apple). Default `GET`. */
  callbackMethod?: 'GET' | 'POST'
  /**
   * Provider sign-out: `end_session` (discovery's `end_session_endpoint`, the default), `auth0`
   * (`/v2/logout?returnTo=&client_id=`), `cognito` (`/logout?client_id=&logout_uri=`), both on the
   * authorization endpoint's origin, or `none`.
   */
  signOut?: 'end_session' | 'auth0' | 'cognito' | 'none'
  /** Encode spaces in the authorization URL's query as `%20` rather than `+` (Apple insists). */
  percentEncodeSpaces?: boolean
  /**
   * Metadata to add to what discovery returned (Cognito's revocation endpoint, which its discovery
   * document omits). Called once per discovery; return undefined to keep the document as is.
   */
  completeMetadata?: (metadata: client.ServerMetadata) => Partial<client.ServerMetadata> | undefined
}


const ONE_HOUR_MS = 3_600_000

/** A fresh PKCE verifier (43 base64url characters of randomness). */
export function randomCodeVerifier(): string {
  return client.randomPKCECodeVerifier()
}

/** A fresh random nonce for an authorization request. */
export function randomNonce(): string {
  return client.randomNonce()
}

export function createOidcProvider(options: OidcProviderOptions): IdentityProvider {
  const now = options.now ?? Date.now
  const scope = (options.scopes ?? DEFAULT_OIDC_SCOPES).join(' ')
  const requestParams = withoutProtocolParams(options.requestParams)
  let issuer: URL
  try {
    issuer = new URL(options.issuerUrl)
  } catch (cause) {
    throw new TypeError(`identity provider ${options.id}: invalid issuer URL ${JSON.stringify(options.issuerUrl)}`, {
      cause,
    })
  }

  let pending: Promise<client.Configuration> | undefined

  function configuration(): Promise<client.Configuration> {
    pending ??= discover().catch((cause: unknown) => {
      pending = undefined // try again on the next call
      throw new IdentityProviderError(
        'ERR_IDP_DISCOVERY_FAILED',
        `identity provider ${options.id}: discovery at ${issuer.href} failed: ${describe(cause)}`,
        { cause },
      )
    })
    return pending
  }

  async function discover(): Promise<client.Configuration> {
    const execute = options.allowInsecureRequests === true ? [client.allowInsecureRequests] : []
    const timeout = options.timeoutSeconds ?? 30
    const discoveryOptions: client.DiscoveryRequestOptions = { execute, timeout }
    if (options.fetch) discoveryOptions[client.customFetch] = options.fetch
    // Azure's multi-tenant URLs (common, organizations, consumers) discover an issuer template
    // (`https://login.microsoftonline.com/{tenantid}/v2.0`); openid-client accepts it for that
    // origin and then checks each ID token's `iss` against the template filled with its `tid`.
    const discovered = await client.discovery(issuer, options.clientId, undefined, clientAuth(options), discoveryOptions)
    const patch = options.completeMetadata?.(discovered.serverMetadata())
    if (!patch || Object.keys(patch).length === 0) return discovered
    // A Configuration over the completed metadata, with the same client authentication, fetch,
    // timeout and transport rule.
    const completed = new client.Configuration(
      { ...discovered.serverMetadata(), ...patch },
      options.clientId,
      undefined,
      clientAuth(options),
    )
    if (options.fetch) completed[client.customFetch] = options.fetch
    completed.timeout = timeout
    for (const extension of execute) extension(completed)
    return completed
  }

  /** PKCE S256 exactly when discovery advertises it; `plain` is never used. */
  function pkce(config: client.Configuration): boolean {
    return config.serverMetadata().supportsPKCE('S256')
  }

  async function fetchUserInfo(
    config: client.Configuration,
    accessToken: string,
    expectedSubject: string | typeof client.skipSubjectCheck,
  ): Promise<Record<string, unknown> | undefined> {
    if (!config.serverMetadata().userinfo_endpoint) return undefined
    return { ...(await client.fetchUserInfo(config, accessToken, expectedSubject)) }
  }

  function toTokenSet(response: client.TokenEndpointResponse, idTokenClaims: client.IDToken | undefined, claims: Claims): TokenSet {
    const idTokenExpiresAt = idTokenClaims ? idTokenClaims.exp * 1000 : undefined
    const expiresAt =
      typeof response.expires_in === 'number' ? now() + response.expires_in * 1000 : (idTokenExpiresAt ?? now() + ONE_HOUR_MS)
    return {
      accessToken: response.access_token,
      ...(response.refresh_token !== undefined ? { refreshToken: response.refresh_token } : {}),
      ...(response.id_token !== undefined ? { idToken: response.id_token } : {}),
      expiresAt,
      ...(idTokenExpiresAt !== undefined ? { idTokenExpiresAt } : {}),
      claims,
    }
  }

  const userIdClaim = options.userIdClaim ?? 'sub'
  const callbackMethod = options.callbackMethod ?? 'GET'
  const signOut = options.signOut ?? 'end_session'

  const provider: IdentityProvider = {
    id: options.id,
    providerName: options.providerName ?? 'oidc',
    protocol: 'oidc',
    callbackMethod,
    formPostCallback: callbackMethod === 'POST',
    refreshWith: 'refresh_token',

    userIdOf(claims: Claims): string {
      const value = claims[userIdClaim]
      if (typeof value !== 'string' || value === '') {
        throw new IdentityProviderError(
          'ERR_IDP_EXCHANGE_FAILED',
          `identity provider ${options.id}: the user id claim "${userIdClaim}" is missing`,
        )
      }
      return value
    },

    async needsPkce() {
      return pkce(await configuration())
    },

    async authorizationUrl(params: AuthorizationUrlParams) {
      const config = await configuration()
      const query: Record<string, string> = { ...requestParams, ...withoutProtocolParams(params.extraParams) }
      query.response_type = 'code'
      query.client_id = options.clientId
      query.redirect_uri = params.redirectUri
      query.scope = scope
      query.state = params.state
      query.nonce = params.nonce
      if (pkce(config)) {
        if (!params.codeVerifier) {
          throw new TypeError(`identity provider ${options.id} supports PKCE S256: a codeVerifier is required`)
        }
        query.code_challenge = await client.calculatePKCECodeChallenge(params.codeVerifier)
        query.code_challenge_method = 'S256'
      }
      const url = client.buildAuthorizationUrl(config, query)
      // An authorization endpoint with a query of its own could repeat a protocol parameter.
      for (const name of PROTOCOL_PARAMS) {
        if (url.searchParams.getAll(name).length > 1) {
          throw new TypeError(`identity provider ${options.id}: authorization endpoint already sets "${name}"`)
        }
      }
      // URLSearchParams writes spaces as `+`; a literal `+` is already `%2B`, so this is exact.
      if (options.percentEncodeSpaces === true) url.search = url.search.replaceAll('+', '%20')
      return url
    },

    async redeem(params: RedeemParams) {
      const config = await configuration()
      const state = params.callbackUrl.searchParams.getAll('state')
      if (state.length !== 1 || !constantTimeEqual(state[0] ?? '', params.expectedState)) {
        throw new IdentityProviderError('ERR_IDP_STATE_MISMATCH', 'the sign-in state does not match this browser')
      }
      // redirect_uri of the token request is the configured one, whatever host the callback reached.
      const current = new URL(params.redirectUri)
      current.search = ''
      current.hash = ''
      for (const [name, value] of params.callbackUrl.searchParams) current.searchParams.append(name, value)

      const checks: client.AuthorizationCodeGrantChecks = {
        expectedState: params.expectedState,
        expectedNonce: params.expectedNonce,
        idTokenExpected: true,
      }
      if (params.codeVerifier !== undefined && pkce(config)) checks.pkceCodeVerifier = params.codeVerifier

      let response: Awaited<ReturnType<typeof client.authorizationCodeGrant>>
      try {
        response = await client.authorizationCodeGrant(config, current, checks)
      } catch (cause) {
        throw redeemError(options.id, cause)
      }
      const idTokenClaims = response.claims()
      if (!idTokenClaims) {
        throw new IdentityProviderError('ERR_IDP_EXCHANGE_FAILED', `identity provider ${options.id} returned no ID token`)
      }
      try {
        const info = await fetchUserInfo(config, response.access_token, idTokenClaims.sub)
        return toTokenSet(response, idTokenClaims, mergeClaims(idTokenClaimsOf(idTokenClaims), info))
      } catch (cause) {
        throw new IdentityProviderError(
          'ERR_IDP_EXCHANGE_FAILED',
          `identity provider ${options.id}: reading UserInfo after sign-in failed: ${describe(cause)}`,
          { cause, ...oauthDetails(cause) },
        )
      }
    },

    async refresh(refreshToken: string, context: RefreshContext = {}) {
      const fail = (cause: unknown, permanent: boolean, what: string): IdentityProviderError =>
        new IdentityProviderError('ERR_IDP_REFRESH_FAILED', `identity provider ${options.id}: ${what}: ${describe(cause)}`, {
          cause,
          permanent,
          ...oauthDetails(cause),
        })
      let config: client.Configuration
      try {
        config = await configuration()
      } catch (cause) {
        throw fail(cause, false, 'discovery failed before refresh')
      }
      let response: Awaited<ReturnType<typeof client.refreshTokenGrant>>
      try {
        response = await client.refreshTokenGrant(config, refreshToken)
      } catch (cause) {
        throw fail(cause, isPermanent(cause), 'refresh failed')
      }
      const idTokenClaims = response.claims()
      const previous = context.previousClaims
      if (idTokenClaims && previous && idTokenClaims.sub !== previous.sub) {
        throw fail(new Error('refreshed ID token has another subject'), true, 'refresh failed')
      }
      const subject = idTokenClaims?.sub ?? previous?.sub
      let info: Record<string, unknown> | undefined
      try {
        info = await fetchUserInfo(config, response.access_token, subject ?? client.skipSubjectCheck)
      } catch (cause) {
        throw fail(cause, isPermanent(cause), 'reading UserInfo after refresh failed')
      }
      const base = idTokenClaims ? idTokenClaimsOf(idTokenClaims) : previous
      if (base) return toTokenSet(response, idTokenClaims, mergeClaims(base, info))
      if (typeof info?.sub === 'string') return toTokenSet(response, undefined, { ...info, sub: info.sub })
      throw fail(new Error('no ID token, no previous claims and no UserInfo subject'), true, 'refresh failed')
    },

    async userInfo(accessToken: string, expectedSubject: string) {
      const config = await configuration()
      try {
        const info = await fetchUserInfo(config, accessToken, expectedSubject)
        return { ...info, sub: expectedSubject }
      } catch (cause) {
        throw new IdentityProviderError(
          'ERR_IDP_USERINFO_FAILED',
          `identity provider ${options.id}: UserInfo failed: ${describe(cause)}`,
          { cause, ...oauthDetails(cause) },
        )
      }
    },

    async revoke(token: string, hint?: 'access_token' | 'refresh_token') {
      const config = await configuration()
      if (!config.serverMetadata().revocation_endpoint) return
      try {
        await client.tokenRevocation(config, token, hint ? { token_type_hint: hint } : undefined)
      } catch (cause) {
        throw new IdentityProviderError(
          'ERR_IDP_REVOKE_FAILED',
          `identity provider ${options.id}: token revocation failed: ${describe(cause)}`,
          { cause, ...oauthDetails(cause) },
        )
      }
    },

    async endSessionUrl(params: EndSessionParams) {
      if (signOut === 'none') return undefined
      const config = await configuration()
      if (signOut === 'auth0' || signOut === 'cognito') {
        // As Pomerium: the logout endpoint on the authorization endpoint's origin (Cognito's
        // hosted-UI domain differs from its issuer), parameters in this order.
        const authorization = config.serverMetadata().authorization_endpoint
        if (!authorization) return undefined
        const url = new URL(signOut === 'auth0' ? '/v2/logout' : '/logout', authorization)
        if (signOut === 'auth0') {
          url.searchParams.set('returnTo', params.postLogoutRedirectUri)
          url.searchParams.set('client_id', options.clientId)
        } else {
          url.searchParams.set('client_id', options.clientId)
          url.searchParams.set('logout_uri', params.postLogoutRedirectUri)
        }
        return url
      }
      if (!config.serverMetadata().end_session_endpoint) return undefined
      const query: Record<string, string> = { post_logout_redirect_uri: params.postLogoutRedirectUri }
      if (params.idTokenHint !== undefined) query.id_token_hint = params.idTokenHint
      return client.buildEndSessionUrl(config, query)
    },
  }
  return provider
}

function clientAuth(options: OidcProviderOptions): client.ClientAuth {
  if (options.tokenEndpointAuthMethod === undefined && options.clientSecret !== undefined) {
    // Decided per request from the discovered metadata (known only then), as golang.org/x/oauth2's
    // auto-detection lets Pomerium talk to basic-only and post-only token endpoints alike.
    const basic = client.ClientSecretBasic(options.clientSecret)
    const post = client.ClientSecretPost(options.clientSecret)
    return (as, metadata, body, headers) => {
      const methods = as.token_endpoint_auth_methods_supported
      const postOnly =
        Array.isArray(methods) && !methods.includes('client_secret_basic') && methods.includes('client_secret_post')
      ;(postOnly ? post : basic)(as, metadata, body, headers)
    }
  }
  const method = options.tokenEndpointAuthMethod ?? 'none'
  switch (method) {
    case 'none':
      return client.None()
    case 'client_secret_basic':
      return client.ClientSecretBasic(options.clientSecret)
    case 'client_secret_post':
      return client.ClientSecretPost(options.clientSecret)
  }
}

export function withoutProtocolParams(params: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(params ?? {})) {
    if (!PROTOCOL_PARAMS.has(name)) out[name] = value
  }
  return out
}

function idTokenClaimsOf(idToken: client.IDToken): Claims {
  return { ...idToken, sub: idToken.sub }
}

/** String equality in time independent of where the strings differ (state comparison). */
export function constantTimeEqual(a: string, b: string): boolean {
  const hash = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(hash(a), hash(b)) && a === b
}

/** Classify a code-exchange failure. */
function redeemError(id: string, cause: unknown): IdentityProviderError {
  if (cause instanceof client.AuthorizationResponseError) {
    const code: IdentityProviderErrorCode = cause.error === 'access_denied' ? 'ERR_IDP_ACCESS_DENIED' : 'ERR_IDP_EXCHANGE_FAILED'
    return new IdentityProviderError(code, `identity provider ${id} refused the sign-in: ${cause.error}`, {
      cause,
      ...oauthDetails(cause),
    })
  }
  if (isNonceMismatch(cause)) {
    return new IdentityProviderError('ERR_IDP_NONCE_MISMATCH', `identity provider ${id}: ID token nonce does not match`, {
      cause,
    })
  }
  return new IdentityProviderError('ERR_IDP_EXCHANGE_FAILED', `identity provider ${id}: code exchange failed: ${describe(cause)}`, {
    cause,
    ...oauthDetails(cause),
  })
}

/** openid-client reports a nonce mismatch as a JWT claim comparison failure on the `nonce` claim. */
function isNonceMismatch(err: unknown): boolean {
  if (!(err instanceof client.ClientError) || err.code !== 'OAUTH_JWT_CLAIM_COMPARISON_FAILED') return false
  const inner: unknown = err.cause
  const detail: unknown = inner instanceof Error ? inner.cause : undefined
  return typeof detail === 'object' && detail !== null && (detail as { claim?: unknown }).claim === 'nonce'
}

/** openid-client codes for responses that arrived but do not validate (bad ID token, claims). */
const INVALID_TOKEN_CODES = new Set([
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_INVALID_RESPONSE',
])

/**
 * Whether a refresh (or the UserInfo read after it) failed for good: the provider answered with an
 * OAuth error in the 4xx range (`invalid_grant`, `invalid_client`, `invalid_token`, ...), or sent
 * tokens that do not validate. Network errors, timeouts and 5xx answers are transient.
 */
function isPermanent(err: unknown): boolean {
  if (err instanceof client.ResponseBodyError) return err.status >= 400 && err.status < 500
  if (err instanceof client.WWWAuthenticateChallengeError) return err.status >= 400 && err.status < 500
  if (err instanceof client.ClientError) {
    if (err.code !== undefined && INVALID_TOKEN_CODES.has(err.code)) return true
    if (err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
      const response: unknown = err.cause
      return response instanceof Response && response.status >= 400 && response.status < 500
    }
  }
  return false
}

function oauthDetails(err: unknown): { oauthError?: string; oauthErrorDescription?: string } {
  let error: unknown
  let description: unknown
  if (err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError) {
    error = err.error
    description = err.error_description
  } else if (err instanceof client.WWWAuthenticateChallengeError) {
    error = err.cause[0]?.parameters.error
    description = err.cause[0]?.parameters.error_description
  }
  const out: { oauthError?: string; oauthErrorDescription?: string } = {}
  if (typeof error === 'string') out.oauthError = error
  if (typeof description === 'string') out.oauthErrorDescription = description
  return out
}

function describe(err: unknown): string {
  if (err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError) {
    return `${err.error}${err.error_description ? ` (${err.error_description})` : ''}`
  }
  if (err instanceof Error) {
    const inner = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return `${err.message}${inner}`
  }
  return String(err)
}
