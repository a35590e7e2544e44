/**
 * OpenID Connect Back-Channel Logout 1.0: the provider POSTs a signed logout token to our
 * `backchannel_logout_uri` when a user's session at the provider ends. This module reads the
 * request body and validates the token (spec section 2.6, hostile-input case: sessions / cookies / csrf; tokens / jwt); ending the
 * matching sessions is the caller's business.
 *
 * Signature rules are those of ID tokens (`verifyProviderJwt` in provider-tokens.ts: asymmetric
 * algorithms the provider offers for ID tokens, its JWKS only, no `jku`/`jwk`/`x5u`/`x5c`/`crit`).
 * On top: `iat` required and at most `replayWindowSeconds` (+ skew) old, `jti` required and never
 * accepted twice within that window, the back-channel `events` member, `sub` or `sid`, no `nonce`.
 */
import { createHash } from 'node:crypto'

import { createProviderKeySource, isProviderTokenError, ProviderTokenError, verifyProviderJwt } from '../idp/provider-tokens/index.js'
import type { ProviderKeySource, ProviderKeySourceOptions } from '../idp/provider-tokens/index.js'

export { isProviderTokenError, ProviderTokenError }

/** The `events` member that makes a JWT a logout token. */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout'
/** Longest `logout_token` accepted, in characters. */
export const MAX_LOGOUT_TOKEN_LENGTH = 16 * 1024
/** Longest request body accepted: the token plus room for the parameter name and other fields. */
const MAX_BACKCHANNEL_BODY_BYTES = MAX_LOGOUT_TOKEN_LENGTH + 1024

const DEFAULT_REPLAY_WINDOW_SECONDS = 300
const DEFAULT_SKEW_SECONDS = 60
const DEFAULT_MAX_REPLAY_ENTRIES = 10_000

export interface LogoutTokenVerifierOptions extends ProviderKeySourceOptions {
  /** Our client id: `aud` must contain it. */
  clientId: string
  /**
   * How old (`iat`) a logout token may be, in seconds, and so how long its `jti` is remembered to
   * refuse a replay. Default 300.
   */
  replayWindowSeconds?: number
  /** Allowed clock skew, in seconds; default 60. */
  clockSkewSeconds?: number
  /** Bound on remembered `jti`s; when full the oldest is forgotten first. Default 10 000. */
  maxReplayEntries?: number
  /** Reuse a key source (shared with the bearer-token verifier); its issuer must be `issuerUrl`. */
  keys?: ProviderKeySource
}

/** Whom to log out: every session of `subject`, or the provider session `sid`, or the pair. */
export interface LogoutTokenResult {
  subject?: string
  sid?: string
  jti: string
}

export interface LogoutTokenVerifier {
  /**
   * Validate a logout token and remember its `jti`.
   * @throws {ProviderTokenError} with the codes of provider-tokens.ts; `ERR_TOKEN_REPLAYED` for a
   *   `jti` already accepted, `ERR_TOKEN_CLAIMS` for a token that is not a logout token.
   */
  verify(logoutToken: string): Promise<LogoutTokenResult>
  /** How many `jti`s are remembered now (bounded by `maxReplayEntries`). */
  readonly rememberedTokens: number
}

function invalid(message: string): never {
  throw new ProviderTokenError('ERR_TOKEN_CLAIMS', message)
}

export function createLogoutTokenVerifier(options: LogoutTokenVerifierOptions): LogoutTokenVerifier {
  if (typeof options.clientId !== 'string' || options.clientId === '') {
    throw new TypeError('back-channel logout: clientId is required')
  }
  const keys = options.keys ?? createProviderKeySource(options)
  if (keys.issuer !== options.issuerUrl) throw new TypeError('back-channel logout: the shared key source has another issuer')
  const now = options.now ?? Date.now
  const windowSeconds = options.replayWindowSeconds ?? DEFAULT_REPLAY_WINDOW_SECONDS
  const skew = options.clockSkewSeconds ?? DEFAULT_SKEW_SECONDS
  const maxEntries = options.maxReplayEntries ?? DEFAULT_MAX_REPLAY_ENTRIES
  if (!(windowSeconds > 0)) throw new TypeError('back-channel logout: replayWindowSeconds must be positive')
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new TypeError('back-channel logout: maxReplayEntries must be a positive integer')
  }

  // SHA-256(jti) → forget-after (epoch ms). Entries are added with now-based expiries, so insertion
  // order is expiry order and pruning from the front is enough. A token is acceptable only while
  // `now - iat <= window + skew`, and `iat` is at most `skew` in the future when accepted, so keeping
  // each jti for `window + 2 * skew` from acceptance outlives every acceptable replay.
  const seen = new Map<string, number>()
  const rememberMs = (windowSeconds + 2 * skew) * 1000

  /** Forget expired entries, and the oldest ones while more than `keep` remain. */
  function prune(at: number, keep = maxEntries): void {
    for (const [key, until] of seen) {
      if (until > at && seen.size <= keep) break
      seen.delete(key)
    }
  }

  return {
    get rememberedTokens() {
      prune(now())
      return seen.size
    },

    async verify(logoutToken) {
      if (typeof logoutToken !== 'string' || logoutToken.length === 0 || logoutToken.length > MAX_LOGOUT_TOKEN_LENGTH) {
        throw new ProviderTokenError('ERR_TOKEN_MALFORMED', 'the logout token is empty or too long')
      }
      const { claims } = await verifyProviderJwt(keys, logoutToken, {
        typ: ['logout+jwt', 'jwt'],
        idTokenAlgorithms: true,
        audiences: [options.clientId],
        checkAzp: false,
        requireExp: false,
        requireSub: false,
        maxAgeSeconds: windowSeconds,
        clockSkewSeconds: skew,
        now: now(),
      })

      const { jti, events, sub, sid } = claims
      if (typeof jti !== 'string' || jti === '') invalid('the logout token has no jti claim')
      if (typeof events !== 'object' || events === null || Array.isArray(events)) {
        invalid('the logout token has no events claim')
      }
      const event: unknown = (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT]
      if (
        !Object.hasOwn(events, BACKCHANNEL_LOGOUT_EVENT) ||
        typeof event !== 'object' ||
        event === null ||
        Array.isArray(event)
      ) {
        invalid('the logout token events claim has no back-channel logout event')
      }
      if (sub !== undefined && (typeof sub !== 'string' || sub === '')) invalid('the logout token sub claim is not a string')
      if (sid !== undefined && (typeof sid !== 'string' || sid === '')) invalid('the logout token sid claim is not a string')
      if (sub === undefined && sid === undefined) invalid('the logout token has neither sub nor sid')
      if (Object.hasOwn(claims, 'nonce')) invalid('a logout token must not carry a nonce')

      // Replay: checked and recorded after every other check, with no await in between, so two
      // concurrent deliveries of one token cannot both pass.
      const at = now()
      prune(at)
      const key = createHash('sha256').update(jti).digest('base64url')
      if (seen.has(key)) throw new ProviderTokenError('ERR_TOKEN_REPLAYED', 'this logout token was already used')
      prune(at, maxEntries - 1)
      seen.set(key, at + rememberMs)

      const result: LogoutTokenResult = { jti }
      if (typeof sub === 'string') result.subject = sub
      if (typeof sid === 'string') result.sid = sid
      return result
    },
  }
}

/**
 * The `logout_token` of a back-channel logout request: an `application/x-www-form-urlencoded`
 * body (charset parameter allowed) of at most {@link MAX_BACKCHANNEL_BODY_BYTES} bytes with exactly
 * one non-empty `logout_token` of JWT characters, at most {@link MAX_LOGOUT_TOKEN_LENGTH} long.
 * Anything else is undefined (answer `400 invalid_request`).
 */
export function parseBackchannelRequest(contentType: string | undefined, body: Buffer): string | undefined {
  if (contentType === undefined) return undefined
  const [type = '', ...params] = contentType.split(';')
  if (type.trim().toLowerCase() !== 'application/x-www-form-urlencoded') return undefined
  for (const param of params) {
    const [name = '', value = ''] = param.split('=').map((s) => s.trim().toLowerCase())
    if (name === 'charset' && !['utf-8', 'utf8'].includes(value.replace(/^"|"$/g, ''))) return undefined
  }
  if (body.length === 0 || body.length > MAX_BACKCHANNEL_BODY_BYTES) return undefined
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body)
  } catch {
    return undefined
  }
  const values = new URLSearchParams(text).getAll('logout_token')
  if (values.length !== 1) return undefined
  const token = values[0] ?? ''
  if (token.length === 0 || token.length > MAX_LOGOUT_TOKEN_LENGTH) return undefined
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return undefined
  return token
}
