/**
 * Token refresh (reference 7.3): shortly before a session's access or ID token expires, its
 * refresh token buys new ones and UserInfo is read again, so a group removed at the provider
 * stops granting access within the token lifetime. Concurrent requests of one session share one
 * refresh; a permanent refusal (revoked grant, deleted user) ends the session.
 *
 * Refresh on use: a request whose tokens have already expired waits for the refresh, one whose
 * tokens expire within the lead time triggers it in the background. Portcullis wires it off
 * (`refreshOnUse: false`) because the identity manager (src/session/identity-manager.ts)
 * refreshes on schedule under a lease; the timing constants here are shared with it.
 */
import type { Logger } from '../shared/log.js'
import type { IdentityProvider, TokenSet } from '../idp/provider.js'
import { isIdentityProviderError } from '../idp/provider.js'
import type { Session, SessionStore } from './session-store.js'
import { userFromClaims } from './users.js'

/**
 * Refresh this long before expiry, as Pomerium does; tokens that live less than four minutes are
 * refreshed in their last quarter instead (else they would be refreshed as soon as issued).
 */
export const REFRESH_LEAD_MS = 60_000
/** Never refresh one session more often than this (or a quarter of its token lifetime, if shorter). */
export const REFRESH_COOL_OFF_MS = 10_000

export interface RefresherDeps {
  readonly sessions: SessionStore
  readonly providerFor: (idpId: string) => IdentityProvider | undefined
  readonly logger: Logger
  readonly nowMs?: () => number
  /**
   * False when the identity manager refreshes sessions (the default wiring): a second refresher
   * on the request path would race it, and providers that rotate refresh tokens revoke the whole
   * grant when a spent one is used again. Requests then use the session as it is; the manager
   * keeps its claims current.
   */
  readonly refreshOnUse?: boolean
}

/** The expiry that drives refresh: the earlier of the access token's and the ID token's. */
export function tokenExpiry(tokens: Pick<TokenSet, 'expiresAt' | 'idTokenExpiresAt'>): number {
  return tokens.idTokenExpiresAt !== undefined ? Math.min(tokens.expiresAt, tokens.idTokenExpiresAt) : tokens.expiresAt
}

/** What renews a session: its refresh token, or for OAuth2 providers without one (GitHub) its access token. */
function refreshCredential(session: Session, provider: IdentityProvider | undefined): string | undefined {
  if (!provider || session.fromBearerToken === true) return undefined
  return provider.refreshWith === 'access_token' ? session.accessToken : session.refreshToken
}

export class SessionRefresher {
  readonly #deps: RefresherDeps
  readonly #inFlight = new Map<string, Promise<Session | undefined>>()
  readonly #lastAttempt = new Map<string, number>()

  constructor(deps: RefresherDeps) {
    this.#deps = deps
  }

  #now(): number {
    return this.#deps.nowMs?.() ?? Date.now()
  }

  /**
   * The session to authorise with: itself when its tokens are fresh enough, the refreshed one when
   * they had expired, or undefined when the provider refused the refresh for good (session ended).
   */
  async current(session: Session): Promise<Session | undefined> {
    if (this.#deps.refreshOnUse === false) return session
    const expiry = session.tokenExpiresAt
    if (expiry === undefined || refreshCredential(session, this.#deps.providerFor(session.idpId)) === undefined) return session
    const now = this.#now()
    const quarter = Math.max(0, expiry - (session.tokenObtainedAt ?? session.issuedAt)) / 4
    if (now < expiry - Math.min(REFRESH_LEAD_MS, quarter)) return session
    const last = this.#lastAttempt.get(session.id)
    const running = this.#inFlight.get(session.id)
    if (!running && last !== undefined && now - last < Math.min(REFRESH_COOL_OFF_MS, quarter)) return session
    const refresh = running ?? this.#start(session)
    return now >= expiry ? await refresh : session
  }

  #start(session: Session): Promise<Session | undefined> {
    this.#lastAttempt.set(session.id, this.#now())
    if (this.#lastAttempt.size > 100_000) this.#lastAttempt.clear()
    const p = this.#refresh(session).finally(() => this.#inFlight.delete(session.id))
    this.#inFlight.set(session.id, p)
    return p
  }

  async #refresh(session: Session): Promise<Session | undefined> {
    const { sessions, logger } = this.#deps
    const provider = this.#deps.providerFor(session.idpId)
    const credential = refreshCredential(session, provider)
    if (!provider || credential === undefined) return session
    let tokens: TokenSet
    try {
      tokens = await provider.refresh(credential, { previousClaims: { ...session.claims, sub: typeof session.claims['sub'] === 'string' ? session.claims['sub'] : session.userId } })
    } catch (err) {
      if (isIdentityProviderError(err) && err.permanent) {
        // Another instance may have refreshed first: with rotating refresh tokens ours is then
        // spent. Its result is in the store; only a session nobody renewed has ended.
        const latest = await sessions.get(session.id)
        if (latest && latest.tokenObtainedAt !== session.tokenObtainedAt && latest.refreshToken !== session.refreshToken) return latest
        logger.info({ sessionId: session.id, userId: session.userId, reason: err.oauthError ?? err.code }, 'the identity provider refused to refresh the session; it has ended')
        await sessions.delete(session.id)
        return undefined
      }
      logger.warn({ sessionId: session.id, err: isIdentityProviderError(err) ? err.message : String(err) }, 'session refresh failed; will retry')
      return session
    }
    const refreshed: Session = {
      ...session,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken ?? session.refreshToken,
      idToken: tokens.idToken ?? session.idToken,
      tokenExpiresAt: tokenExpiry(tokens),
      tokenObtainedAt: this.#now(),
      claims: tokens.claims,
    }
    // A session signed out while the refresh ran must stay ended.
    if (!(await sessions.get(session.id))) return undefined
    await sessions.update(refreshed)
    await sessions.putUser(userFromClaims(session.userId, tokens.claims))
    logger.debug({ sessionId: session.id }, 'session refreshed')
    return refreshed
  }
}
