/**
 * The bearer-token verifier of `bearer_token_format: idp_identity_token | idp_access_token`
 * (Pomerium docs: Non-interactive credentials): JWTs through {@link verifyProviderJwt} with a result cache, opaque access
 * tokens through the provider's UserInfo endpoint.
 */
import { TokenCache } from './cache.js'
import { DEFAULT_TIMEOUT_SECONDS, defaultFetch, isPlainObject, MAX_DOCUMENT_BYTES, parseJsonObject, readLimited } from './documents.js'
import { fail } from './errors.js'
import { createProviderKeySource } from './key-source.js'
import type { ProviderKeySource, ProviderKeySourceOptions } from './key-source.js'
import { isJwtAccessToken, MAX_TOKEN_LENGTH, verifyProviderJwt } from './verify.js'
import type { Claims } from '../provider.js'

const DEFAULT_SKEW_SECONDS = 60
/** How long a UserInfo-verified opaque access token counts as verified. */
export const OPAQUE_ACCESS_TOKEN_TTL_MS = 5 * 60_000
const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout'

/** A token that verified: who it is about, its claims, and until when the result holds. */
export interface VerifiedProviderToken {
  subject: string
  claims: Claims
  /** Epoch milliseconds: the token's `exp`, or now + 5 min for a UserInfo-checked opaque token. */
  expiresAt: number
}

export interface ProviderTokenVerifierOptions extends ProviderKeySourceOptions {
  /** The OAuth client id: the default audience of ID tokens. */
  clientId: string
  /** Allowed clock skew on `exp`, `nbf` and `iat`, in seconds; default 60. */
  clockSkewSeconds?: number
  /** Reuse a key source (shared with the logout verifier); its issuer must be `issuerUrl`. */
  keys?: ProviderKeySource
  /** Cache of verified JWTs; default a 1000-entry {@link TokenCache}; `false` disables it. */
  cache?: TokenCache<VerifiedProviderToken> | false
}

export interface ProviderTokenVerifier {
  /**
   * `bearer_token_format: idp_identity_token`. `aud` must contain the client id, or one of
   * `allowedAudiences` when that is non-empty (ID tokens the provider issued to other clients).
   * @throws {ProviderTokenError}
   */
  verifyIdentityToken(token: string, allowedAudiences?: readonly string[]): Promise<VerifiedProviderToken>
  /**
   * `bearer_token_format: idp_access_token`. A JWT access token (`typ` `at+jwt` or `JWT`) is
   * verified like an ID token with `aud` checked against `allowedAudiences`, which must be
   * non-empty; any other token is sent to the provider's UserInfo endpoint, and counts as valid
   * for five minutes when that answers 200 with a `sub` (nothing is cached for it here).
   * @throws {ProviderTokenError}
   */
  verifyAccessToken(token: string, allowedAudiences?: readonly string[]): Promise<VerifiedProviderToken>
  /** The key source, to share with the back-channel logout verifier of the same provider. */
  readonly keys: ProviderKeySource
}

/** RFC 6750 `b64token`: what an opaque bearer token may contain. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/
export function createProviderTokenVerifier(options: ProviderTokenVerifierOptions): ProviderTokenVerifier {
  if (typeof options.clientId !== 'string' || options.clientId === '') {
    throw new TypeError('provider tokens: clientId is required')
  }
  const keys = options.keys ?? createProviderKeySource(options)
  if (keys.issuer !== options.issuerUrl) throw new TypeError('provider tokens: the shared key source has another issuer')
  const now = options.now ?? Date.now
  const skew = options.clockSkewSeconds ?? DEFAULT_SKEW_SECONDS
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000
  const fetchImpl = options.fetch ?? defaultFetch
  const cache = options.cache === false ? undefined : (options.cache ?? new TokenCache<VerifiedProviderToken>({ now }))

  async function verifyJwt(
    kind: 'id' | 'at',
    token: string,
    audiences: readonly string[],
  ): Promise<VerifiedProviderToken> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      fail('ERR_TOKEN_MALFORMED', 'the token is empty or too long')
    }
    // Everything the outcome depends on besides the token: a cache shared between verifiers (other
    // issuers, other clients) or routes (other audiences) can never hand one's result to another.
    const context = JSON.stringify([kind, keys.issuer, options.clientId, [...audiences].sort()])
    const cached = cache?.get(token, context)
    if (cached) return structuredClone(cached)
    const { claims } = await verifyProviderJwt(keys, token, {
      typ: kind === 'id' ? ['jwt'] : ['at+jwt', 'jwt'],
      idTokenAlgorithms: kind === 'id',
      audiences,
      checkAzp: kind === 'id',
      requireExp: true,
      requireSub: true,
      clockSkewSeconds: skew,
      now: now(),
    })
    if (kind === 'id' && isPlainObject(claims.events) && Object.hasOwn(claims.events, BACKCHANNEL_LOGOUT_EVENT)) {
      fail('ERR_TOKEN_CLAIMS', 'a logout token is not an ID token')
    }
    const subject = claims.sub as string
    const result: VerifiedProviderToken = { subject, claims: { ...claims, sub: subject }, expiresAt: (claims.exp as number) * 1000 }
    cache?.set(token, structuredClone(result), result.expiresAt, context)
    return result
  }

  async function viaUserInfo(token: string): Promise<VerifiedProviderToken> {
    if (token.length > MAX_TOKEN_LENGTH || !B64TOKEN.test(token)) {
      fail('ERR_TOKEN_MALFORMED', 'the access token contains characters a bearer token cannot have')
    }
    const { userinfoEndpoint } = await keys.metadata()
    if (userinfoEndpoint === undefined) {
      fail('ERR_TOKEN_UNVERIFIABLE', 'the identity provider has no UserInfo endpoint to check opaque access tokens with')
    }
    let response: Response
    try {
      response = await fetchImpl(userinfoEndpoint, {
        method: 'GET',
        headers: { accept: 'application/json', authorization: `Bearer ${token}` },
        body: undefined,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (cause) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider UserInfo endpoint could not be reached', cause)
    }
    if (response.status === 400 || response.status === 401 || response.status === 403) {
      await response.body?.cancel()
      fail('ERR_TOKEN_REJECTED', 'the identity provider did not accept the access token')
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider UserInfo endpoint failed')
    }
    const type = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/json') {
      await response.body?.cancel()
      fail('ERR_TOKEN_UNVERIFIABLE', 'the identity provider UserInfo response is not plain JSON (signed UserInfo is not supported)')
    }
    let body: Buffer
    try {
      body = await readLimited(response, MAX_DOCUMENT_BYTES)
    } catch (cause) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider UserInfo response could not be read', cause)
    }
    const info = parseJsonObject(body)
    if (!info || typeof info.sub !== 'string' || info.sub === '') {
      fail('ERR_TOKEN_REJECTED', 'the identity provider UserInfo response has no subject')
    }
    return { subject: info.sub, claims: { ...info, sub: info.sub }, expiresAt: now() + OPAQUE_ACCESS_TOKEN_TTL_MS }
  }

  return {
    keys,

    verifyIdentityToken(token, allowedAudiences) {
      const audiences = allowedAudiences && allowedAudiences.length > 0 ? allowedAudiences : [options.clientId]
      return verifyJwt('id', token, audiences)
    },

    async verifyAccessToken(token, allowedAudiences) {
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
        fail('ERR_TOKEN_MALFORMED', 'the token is empty or too long')
      }
      if (!isJwtAccessToken(token)) return viaUserInfo(token)
      if (!allowedAudiences || allowedAudiences.length === 0) {
        fail(
          'ERR_TOKEN_AUDIENCE_NOT_CONFIGURED',
          'a JWT access token needs idp_access_token_allowed_audiences to be configured; none is',
        )
      }
      return verifyJwt('at', token, allowedAudiences)
    },
  }
}
