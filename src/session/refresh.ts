/**
 * One session refresh (Pomerium docs: Refresh), shared by the on-demand refresher (refresher.ts) and the
 * identity manager (identity-manager.ts): which credential renews the session, the call to the
 * provider, what a refusal means, and the write of the renewed session and user. The callers
 * differ only in when they refresh and in what they do with the outcome (log, count, delete,
 * schedule a retry).
 */
import type { IdentityProvider, TokenSet } from '../idp/provider.js'
import { isIdentityProviderError } from '../idp/provider.js'
import type { Session, SessionStore } from './session-store.js'
import { userFromClaims } from './users.js'

/** The expiry that drives refresh: the earlier of the access token's and the ID token's. */
export function tokenExpiry(tokens: Pick<TokenSet, 'expiresAt' | 'idTokenExpiresAt'>): number {
  return tokens.idTokenExpiresAt !== undefined ? Math.min(tokens.expiresAt, tokens.idTokenExpiresAt) : tokens.expiresAt
}

/**
 * What renews a session: its refresh token, or for OAuth2 providers without one (GitHub) its
 * access token. Sessions made from a bearer token are never refreshed (the client owns the token).
 */
export function refreshCredential(
  session: Pick<Session, 'fromBearerToken' | 'accessToken' | 'refreshToken'>,
  provider: Pick<IdentityProvider, 'refreshWith'> | undefined,
): string | undefined {
  if (!provider || session.fromBearerToken === true) return undefined
  return provider.refreshWith === 'access_token' ? session.accessToken : session.refreshToken
}

type RefreshOutcome =
  /** No provider, or nothing to refresh with: the session stays as it is. */
  | { readonly kind: 'unrefreshable' }
  /** New tokens and claims, written to the store. */
  | { readonly kind: 'refreshed'; readonly session: Session }
  /**
   * The provider refused our credential, but another refresh (a request, another instance)
   * renewed the session meanwhile: with rotating refresh tokens ours was then spent.
   */
  | { readonly kind: 'renewed-elsewhere'; readonly session: Session }
  /** The session left the store while the refresh ran (signed out): it stays ended. `refused`: the provider had refused too. */
  | { readonly kind: 'gone'; readonly refused: boolean }
  /** The provider refused for good (revoked grant, deleted user): the caller ends the session. */
  | { readonly kind: 'refused'; readonly reason: string }
  /** A temporary failure (network, provider error): try again later. */
  | { readonly kind: 'failed'; readonly error: string }
  /** `proceed()` said no after the provider answered (the caller stopped or lost its lease). */
  | { readonly kind: 'abandoned' }

interface RefreshDeps {
  readonly sessions: SessionStore
  readonly provider: IdentityProvider | undefined
  readonly nowMs: () => number
  /** Called just before the provider is asked (the caller records the attempt). */
  readonly onAttempt?: () => void
  /** Asked after the provider answers: false abandons the refresh without writing anything. */
  readonly proceed?: () => boolean
}

export async function refreshSession(session: Session, deps: RefreshDeps): Promise<RefreshOutcome> {
  const { provider, sessions } = deps
  const credential = refreshCredential(session, provider)
  if (!provider || credential === undefined) return { kind: 'unrefreshable' }
  deps.onAttempt?.()
  let tokens: TokenSet
  try {
    const sub = typeof session.claims['sub'] === 'string' ? session.claims['sub'] : session.userId
    tokens = await provider.refresh(credential, { previousClaims: { ...session.claims, sub } })
  } catch (err) {
    if (deps.proceed?.() === false) return { kind: 'abandoned' }
    if (isIdentityProviderError(err) && err.permanent) {
      const latest = await sessions.get(session.id)
      if (!latest) return { kind: 'gone', refused: true }
      if (latest.tokenObtainedAt !== session.tokenObtainedAt && latest.refreshToken !== session.refreshToken) {
        return { kind: 'renewed-elsewhere', session: latest }
      }
      return { kind: 'refused', reason: err.oauthError ?? err.code }
    }
    return { kind: 'failed', error: isIdentityProviderError(err) ? err.message : String(err) }
  }
  if (deps.proceed?.() === false) return { kind: 'abandoned' }
  const refreshed: Session = {
    ...session,
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken ?? session.refreshToken,
    idToken: tokens.idToken ?? session.idToken,
    tokenExpiresAt: tokenExpiry(tokens),
    tokenObtainedAt: deps.nowMs(),
    claims: tokens.claims,
  }
  // A session signed out while the refresh ran must stay ended.
  const latest = await sessions.get(session.id)
  if (!latest) return { kind: 'gone', refused: false }
  // Devices that authenticated the session meanwhile (docs/devices.md) stay with it.
  const current: Session = latest.deviceCredentialIds !== undefined ? { ...refreshed, deviceCredentialIds: latest.deviceCredentialIds } : refreshed
  await sessions.update(current)
  await sessions.putUser(userFromClaims(session.userId, tokens.claims))
  return { kind: 'refreshed', session: current }
}
