/**
 * Token refresh (Pomerium docs: Refresh): shortly before a session's access or ID token expires, its
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
import type { IdentityProvider } from '../idp/provider.js'
import { refreshCredential, refreshSession } from './refresh.js'
import type { Session, SessionStore } from './session-store.js'

/**
 * Refresh this long before expiry, as Pomerium does; tokens that live less than four minutes are
 * refreshed in their last quarter instead (else they would be refreshed as soon as issued).
 */
export const REFRESH_LEAD_MS = 60_000
/** Never refresh one session more often than this (or a quarter of its token lifetime, if shorter). */
export const REFRESH_COOL_OFF_MS = 10_000

interface RefresherDeps {
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
    const outcome = await refreshSession(session, { sessions, provider: this.#deps.providerFor(session.idpId), nowMs: () => this.#now() })
    switch (outcome.kind) {
      case 'unrefreshable':
      case 'abandoned':
        return session
      case 'refreshed':
        logger.debug({ sessionId: session.id }, 'session refreshed')
        return outcome.session
      case 'renewed-elsewhere':
        return outcome.session
      case 'gone':
        return undefined
      case 'refused':
        logger.info({ sessionId: session.id, userId: session.userId, reason: outcome.reason }, 'the identity provider refused to refresh the session; it has ended')
        await sessions.delete(session.id)
        return undefined
      case 'failed':
        logger.warn({ sessionId: session.id, err: outcome.error }, 'session refresh failed; will retry')
        return session
    }
  }
}
