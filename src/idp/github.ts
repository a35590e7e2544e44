/**
 * GitHub (`idp_provider: github`): OAuth 2, not OpenID Connect. The user comes from the REST API
 * (`GET /user`, `/user/emails`, `/user/teams`) read with the access token; there is no ID token,
 * no discovery and (for OAuth apps) no refresh token, because GitHub OAuth app tokens do not
 * expire. A refresh re-reads the user with the access token; a revoked token fails it for good.
 *
 * Endpoints: github.com (`/login/oauth/*`, API `https://api.github.com`); GitHub Enterprise Server
 * at `idp_provider_url` (`<url>/login/oauth/*`, API `<url>/api/v3`); GitHub Enterprise Cloud with
 * data residency (`https://<sub>.ghe.com`, API `https://api.<sub>.ghe.com`).
 *
 * Differences from Pomerium (docs/identity-providers.md): `sub` is the immutable numeric user id
 * (Pomerium uses the login, which can be renamed and then registered by someone else); teams are
 * read into `groups`; the GHE API is at `/api/v3`; revocation deletes only the session's token.
 */
import { calculatePKCECodeChallenge } from 'openid-client'

import { constantTimeEqual, withoutProtocolParams } from './oidc.js'
import type { IdpFetch } from './oidc.js'
import { IdentityProviderError } from './provider.js'
import type {
  AuthorizationUrlParams,
  Claims,
  IdentityProvider,
  IdentityProviderErrorCode,
  RedeemParams,
  RefreshContext,
  TokenSet,
} from './provider.js'
import { CodedError } from '../shared/errors.js'

const GITHUB_DEFAULT_URL = 'https://github.com'
const GITHUB_DEFAULT_SCOPES: readonly string[] = ['user:email', 'read:org']
/** The REST API version Portcullis is written against (sent as `X-GitHub-Api-Version`). */
const GITHUB_API_VERSION = '2022-11-28'

/**
 * How long claims read from the API are trusted before `refresh` reads them again (`expiresAt`):
 * one hour, Pomerium's refresh deadline for GitHub. The token itself does not expire.
 */
const RECHECK_MS = 3_600_000
/** Pages followed per list (100 items each) before giving up on a runaway `Link` chain. */
const MAX_PAGES = 50
const USER_AGENT = 'Portcullis'

interface GitHubProviderOptions {
  /** Provider id (`idp_id`) that sessions are bound to. */
  id: string
  /** `idp_provider_url`: unset or `https://github.com` for github.com, else the GHE server's root URL. */
  url?: string | undefined
  clientId: string
  /** GitHub requires the client secret at the token endpoint, even with PKCE. */
  clientSecret: string
  /** `idp_scopes`; default `user:email read:org`. */
  scopes?: readonly string[] | undefined
  /** `idp_request_params` (`allow_signup`, `login`, `prompt=select_account`, ...). */
  requestParams?: Readonly<Record<string, string>> | undefined
  /** Every request to GitHub goes through this fetch. */
  fetch?: IdpFetch | undefined
  /** Timeout per request, in seconds (default 30). */
  timeoutSeconds?: number | undefined
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: (() => number) | undefined
}

interface GitHubEndpoints {
  authorization: string
  token: string
  /** API root, without a trailing slash. */
  api: string
}

/** The web and API endpoints for `idp_provider_url` (see the module comment). */
export function gitHubEndpoints(url: string | undefined): GitHubEndpoints {
  const base = new URL(url ?? GITHUB_DEFAULT_URL)
  const origin = base.origin
  let api: string
  if (origin === GITHUB_DEFAULT_URL) api = 'https://api.github.com'
  else if (base.protocol === 'https:' && base.hostname.endsWith('.ghe.com')) api = `https://api.${base.host}`
  else api = `${origin}/api/v3`
  return {
    authorization: `${origin}/login/oauth/authorize`,
    token: `${origin}/login/oauth/access_token`,
    api,
  }
}

/** A non-2xx answer from the REST API. */
class GitHubApiError extends CodedError {
  readonly code = 'ERR_GITHUB_API'

  constructor(
    readonly status: number,
    readonly path: string,
    message: string,
    readonly rateLimited: boolean,
  ) {
    super(`GET ${path}: ${status}${message ? ` ${message}` : ''}`)
    this.name = 'GitHubApiError'
  }
}

export function createGitHubProvider(options: GitHubProviderOptions): IdentityProvider {
  const now = options.now ?? Date.now
  const endpoints = gitHubEndpoints(options.url)
  const apiUrl = new URL(`${endpoints.api}/`)
  const scope = (options.scopes && options.scopes.length > 0 ? options.scopes : GITHUB_DEFAULT_SCOPES).join(' ')
  const requestParams = withoutProtocolParams(options.requestParams)
  const timeoutMs = (options.timeoutSeconds ?? 30) * 1000
  const doFetch: IdpFetch = options.fetch ?? ((url, init) => fetch(url, init as RequestInit))
  const id = options.id

  function request(
    url: string,
    method: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<Response> {
    return doFetch(url, {
      method,
      headers: { 'user-agent': USER_AGENT, ...headers },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    })
  }

  function apiHeaders(accessToken: string): Record<string, string> {
    return {
      accept: 'application/vnd.github+json',
      authorization: `Bearer ${accessToken}`,
      'x-github-api-version': GITHUB_API_VERSION,
    }
  }

  /** GET one API resource: parsed JSON and the response headers. */
  async function apiGet(url: URL, accessToken: string): Promise<{ body: unknown; headers: Headers }> {
    const path = url.pathname.slice(apiUrl.pathname.length - 1)
    const response = await request(url.href, 'GET', apiHeaders(accessToken))
    if (response.status !== 200) {
      let message = ''
      try {
        const error = (await response.json()) as { message?: unknown }
        if (typeof error.message === 'string') message = error.message.slice(0, 200)
      } catch {
        // not JSON
      }
      const rateLimited =
        (response.status === 403 || response.status === 429) &&
        (response.headers.get('x-ratelimit-remaining') === '0' || response.headers.has('retry-after'))
      throw new GitHubApiError(response.status, path, message, rateLimited)
    }
    return { body: await response.json(), headers: response.headers }
  }

  /** GET every page of a list (`per_page=100`, following `Link: <...>; rel="next"` on the API origin). */
  async function apiList(path: string, accessToken: string): Promise<unknown[]> {
    let url: URL | undefined = new URL(path.replace(/^\//, ''), apiUrl)
    url.searchParams.set('per_page', '100')
    const items: unknown[] = []
    for (let page = 0; url; page++) {
      if (page >= MAX_PAGES) throw new Error(`GET ${path}: more than ${MAX_PAGES} pages`)
      const { body, headers } = await apiGet(url, accessToken)
      if (!Array.isArray(body)) throw new Error(`GET ${path}: expected a JSON array`)
      items.push(...(body as unknown[]))
      url = nextPage(headers.get('link'), url)
    }
    return items
  }

  /** The `rel="next"` URL of a `Link` header, refused unless it stays under the API root. */
  function nextPage(link: string | null, current: URL): URL | undefined {
    if (!link) return undefined
    for (const match of link.matchAll(/<([^>]*)>\s*;\s*rel="([^"]*)"/g)) {
      const [, target = '', rels = ''] = match
      if (!rels.split(/\s+/).includes('next')) continue
      const next = new URL(target, current)
      // The access token goes with the request: never follow a link off the API.
      if (next.origin !== apiUrl.origin || !next.pathname.startsWith(apiUrl.pathname)) {
        throw new Error(`pagination link leaves the API (${next.origin}${next.pathname})`)
      }
      return next
    }
    return undefined
  }

  /** The user behind an access token, as claims. */
  async function readUser(accessToken: string): Promise<Claims> {
    const { body, headers } = await apiGet(new URL('user', apiUrl), accessToken)
    const user = body as Record<string, unknown>
    if (typeof user.id !== 'number' || !Number.isSafeInteger(user.id) || typeof user.login !== 'string') {
      throw new Error('GET /user: no numeric id and login')
    }
    // Classic OAuth tokens report their scopes; read teams only when one that allows it was granted
    // (`read:org`, `write:org`, `admin:org`, `user`, `repo`), so `idp_scopes` without org access
    // still signs in (with no groups). No header (other token kinds): try, and fail on refusal.
    const granted = parseScopes(headers.get('x-oauth-scopes'))
    const teamsAllowed =
      granted === undefined || ['read:org', 'write:org', 'admin:org', 'user', 'repo'].some((s) => granted.includes(s))
    const [emails, teams] = await Promise.all([
      apiList('/user/emails', accessToken),
      teamsAllowed ? apiList('/user/teams', accessToken) : Promise.resolve([]),
    ])

    const claims: Claims = {
      sub: String(user.id),
      preferred_username: user.login,
      // Pomerium's GitHub claim for the login.
      user: user.login,
    }
    if (typeof user.name === 'string' && user.name !== '') claims.name = user.name
    if (typeof user.avatar_url === 'string' && user.avatar_url !== '') claims.picture = user.avatar_url

    // As Pomerium: only a verified primary address becomes `email`. An unverified primary one is
    // not exposed (policies match `email`), only reported through `email_verified: false`.
    const primary = emails.find(
      (e): e is { email: string; verified?: unknown } =>
        typeof e === 'object' && e !== null && (e as { primary?: unknown }).primary === true &&
        typeof (e as { email?: unknown }).email === 'string',
    )
    if (primary) {
      if (primary.verified === true) {
        claims.email = primary.email
        claims.email_verified = true
      } else {
        claims.email_verified = false
      }
    }

    const groups: string[] = []
    for (const team of teams) {
      const t = team as { slug?: unknown; organization?: { login?: unknown } | null }
      const org = t.organization?.login
      if (typeof t.slug === 'string' && typeof org === 'string') groups.push(`${org}/${t.slug}`)
    }
    claims.groups = [...new Set(groups)].sort()
    return claims
  }

  function tokenSet(accessToken: string, claims: Claims, expiresInSeconds?: number): TokenSet {
    const recheck = now() + RECHECK_MS
    const expiresAt =
      expiresInSeconds !== undefined ? Math.min(recheck, now() + expiresInSeconds * 1000) : recheck
    return { accessToken, expiresAt, claims }
  }

  function fail(code: IdentityProviderErrorCode, what: string, cause: unknown, extra: { permanent?: boolean } = {}): IdentityProviderError {
    return new IdentityProviderError(code, `identity provider ${id} (GitHub): ${what}: ${describe(cause)}`, {
      cause,
      ...extra,
    })
  }

  /** POST the code to the token endpoint. GitHub answers most errors with 200 and `{"error": ...}`. */
  async function exchange(code: string, redirectUri: string, codeVerifier: string | undefined) {
    const form = new URLSearchParams({
      client_id: options.clientId,
      client_secret: options.clientSecret,
      code,
      redirect_uri: redirectUri,
    })
    if (codeVerifier !== undefined) form.set('code_verifier', codeVerifier)
    let response: Response
    let body: Record<string, unknown>
    try {
      response = await request(
        endpoints.token,
        'POST',
        { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        form.toString(),
      )
      body = (await response.json()) as Record<string, unknown>
    } catch (cause) {
      throw fail('ERR_IDP_EXCHANGE_FAILED', 'code exchange failed', cause)
    }
    if (typeof body.error === 'string') {
      const description = typeof body.error_description === 'string' ? body.error_description : undefined
      throw new IdentityProviderError(
        'ERR_IDP_EXCHANGE_FAILED',
        `identity provider ${id} (GitHub) refused the code: ${body.error}${description ? ` (${description})` : ''}`,
        { oauthError: body.error, ...(description !== undefined ? { oauthErrorDescription: description } : {}) },
      )
    }
    const tokenType = typeof body.token_type === 'string' ? body.token_type.toLowerCase() : ''
    if (response.status !== 200 || typeof body.access_token !== 'string' || body.access_token === '' || tokenType !== 'bearer') {
      throw new IdentityProviderError(
        'ERR_IDP_EXCHANGE_FAILED',
        `identity provider ${id} (GitHub): unexpected token response (HTTP ${response.status})`,
      )
    }
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : undefined
    return { accessToken: body.access_token, expiresIn }
  }

  const provider: IdentityProvider = {
    id,
    providerName: 'github',
    protocol: 'oauth2',
    callbackMethod: 'GET',
    formPostCallback: false,
    refreshWith: 'access_token',

    userIdOf(claims: Claims): string {
      if (!/^[1-9]\d*$/.test(claims.sub)) {
        throw new IdentityProviderError('ERR_IDP_EXCHANGE_FAILED', `identity provider ${id} (GitHub): no numeric user id`)
      }
      return claims.sub
    },

    // GitHub accepts S256 PKCE for OAuth apps; older GHE servers ignore the parameters.
    needsPkce() {
      return Promise.resolve(true)
    },

    async authorizationUrl(params: AuthorizationUrlParams) {
      if (!params.codeVerifier) {
        throw new TypeError(`identity provider ${id} (GitHub) uses PKCE S256: a codeVerifier is required`)
      }
      const url = new URL(endpoints.authorization)
      const query: Record<string, string> = { ...requestParams, ...withoutProtocolParams(params.extraParams) }
      // No nonce: GitHub issues no ID token to carry one.
      query.response_type = 'code'
      query.client_id = options.clientId
      query.redirect_uri = params.redirectUri
      query.scope = scope
      query.state = params.state
      query.code_challenge = await calculatePKCECodeChallenge(params.codeVerifier)
      query.code_challenge_method = 'S256'
      for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value)
      return url
    },

    async redeem(params: RedeemParams) {
      const search = params.callbackUrl.searchParams
      const state = search.getAll('state')
      if (state.length !== 1 || !constantTimeEqual(state[0] ?? '', params.expectedState)) {
        throw new IdentityProviderError('ERR_IDP_STATE_MISMATCH', 'the sign-in state does not match this browser')
      }
      const error = search.get('error')
      if (error !== null) {
        const description = search.get('error_description') ?? undefined
        throw new IdentityProviderError(
          error === 'access_denied' ? 'ERR_IDP_ACCESS_DENIED' : 'ERR_IDP_EXCHANGE_FAILED',
          `identity provider ${id} (GitHub) refused the sign-in: ${error}`,
          { oauthError: error, ...(description !== undefined ? { oauthErrorDescription: description } : {}) },
        )
      }
      const codes = search.getAll('code')
      if (codes.length !== 1 || codes[0] === '') {
        throw new IdentityProviderError('ERR_IDP_EXCHANGE_FAILED', `identity provider ${id} (GitHub): no single authorization code`)
      }
      const redirectUri = new URL(params.redirectUri)
      redirectUri.search = ''
      redirectUri.hash = ''
      const { accessToken, expiresIn } = await exchange(codes[0] ?? '', redirectUri.href, params.codeVerifier)
      try {
        const claims = await readUser(accessToken)
        return tokenSet(accessToken, claims, expiresIn)
      } catch (cause) {
        throw fail('ERR_IDP_EXCHANGE_FAILED', 'reading the user after sign-in failed', cause)
      }
    },

    async refresh(accessToken: string, context: RefreshContext = {}) {
      let claims: Claims
      try {
        claims = await readUser(accessToken)
      } catch (cause) {
        throw fail('ERR_IDP_REFRESH_FAILED', 're-reading the user failed', cause, { permanent: isPermanent(cause) })
      }
      const previous = context.previousClaims
      if (previous && previous.sub !== claims.sub) {
        throw fail('ERR_IDP_REFRESH_FAILED', 'refresh failed', new Error('the token now belongs to another user'), {
          permanent: true,
        })
      }
      return tokenSet(accessToken, claims)
    },

    async userInfo(accessToken: string, expectedSubject: string) {
      let claims: Claims
      try {
        claims = await readUser(accessToken)
      } catch (cause) {
        throw fail('ERR_IDP_USERINFO_FAILED', 'reading the user failed', cause)
      }
      if (claims.sub !== expectedSubject) {
        throw fail('ERR_IDP_USERINFO_FAILED', 'reading the user failed', new Error('the token belongs to another user'))
      }
      return claims
    },

    /**
     * `DELETE /applications/{client_id}/token` (basic auth with the client credentials): revokes
     * this token only, not the user's whole authorization of the app. An unknown token (404) is
     * already unusable, so that counts as done. GitHub has no refresh tokens to revoke.
     */
    async revoke(token: string, hint?: 'access_token' | 'refresh_token') {
      if (hint === 'refresh_token') return
      const url = new URL(`applications/${encodeURIComponent(options.clientId)}/token`, apiUrl)
      const basic = Buffer.from(`${options.clientId}:${options.clientSecret}`).toString('base64')
      let response: Response
      try {
        response = await request(
          url.href,
          'DELETE',
          {
            accept: 'application/vnd.github+json',
            authorization: `Basic ${basic}`,
            'content-type': 'application/json',
            'x-github-api-version': GITHUB_API_VERSION,
          },
          JSON.stringify({ access_token: token }),
        )
        await response.body?.cancel()
      } catch (cause) {
        throw fail('ERR_IDP_REVOKE_FAILED', 'token revocation failed', cause)
      }
      if (response.status !== 204 && response.status !== 404) {
        throw new IdentityProviderError(
          'ERR_IDP_REVOKE_FAILED',
          `identity provider ${id} (GitHub): token revocation failed: HTTP ${response.status}`,
        )
      }
    },

    endSessionUrl() {
      return Promise.resolve(undefined)
    },
  }
  return provider
}

/** `X-OAuth-Scopes: read:org, user:email` (token responses use commas too); undefined when absent. */
function parseScopes(header: string | null): string[] | undefined {
  if (header === null) return undefined
  return header.split(/[\s,]+/).filter((s) => s !== '')
}

/**
 * Whether a failed re-read must end the session: GitHub refused the token (401: revoked, app
 * authorization removed, user suspended) or the request (other 4xx except rate limits). Network
 * errors, timeouts, rate limits and 5xx answers are transient.
 */
function isPermanent(err: unknown): boolean {
  if (err instanceof GitHubApiError) return err.status >= 400 && err.status < 500 && !err.rateLimited
  return false
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const inner = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return `${err.message}${inner}`
  }
  return String(err)
}
