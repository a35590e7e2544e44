/**
 * Provider tokens as credentials (`bearer_token_format: idp_access_token | idp_identity_token`,
 * Pomerium docs: Non-interactive credentials): `Authorization: Bearer <token issued by the route's provider>` is verified
 * (JWKS, issuer, audience, expiry; see provider-tokens.ts) and cached as a session until the token
 * expires, so the next request with the same token costs one store read.
 */
import { createHash } from 'node:crypto'
import type { Logger } from '../shared/log.js'
import type { IdentityProvider } from '../idp/provider.js'
import { createProviderTokenVerifier, isProviderTokenError } from '../idp/provider-tokens/index.js'
import type { ProviderTokenVerifier } from '../idp/provider-tokens/index.js'
import type { Session, SessionStore } from './session-store.js'
import type { IdpSettings } from './settings.js'
import { userFromClaims } from './users.js'

type BearerFormat = 'idp_access_token' | 'idp_identity_token'

type BearerResult =
  | { readonly kind: 'ok'; readonly session: Session }
  | { readonly kind: 'refused'; readonly reason: string }
  | { readonly kind: 'unavailable'; readonly reason: string }

interface BearerSessionDeps {
  readonly sessions: SessionStore
  readonly providerFor: (idpId: string) => IdentityProvider | undefined
  readonly logger: Logger
  /** Sessions never outlive this, whatever the token says (`cookie_expire`). */
  readonly maxLifetimeMs: () => number
}

/** The provider token of an `Authorization: Bearer` header, unless it is one of our own (`Pomerium-`). */
export function bearerToken(authorization: string | string[] | undefined): string | undefined {
  if (typeof authorization !== 'string') return undefined
  const m = /^Bearer\s+(\S+)$/i.exec(authorization)
  if (!m?.[1] || /^Pomerium-/i.test(m[1])) return undefined
  return m[1]
}

export class BearerSessions {
  readonly #deps: BearerSessionDeps
  readonly #verifiers = new Map<string, { key: string; verifier: ProviderTokenVerifier }>()

  constructor(deps: BearerSessionDeps) {
    this.#deps = deps
  }

  #verifier(idp: IdpSettings): ProviderTokenVerifier {
    const key = JSON.stringify(idp)
    const cached = this.#verifiers.get(idp.id)
    if (cached?.key === key) return cached.verifier
    const verifier = createProviderTokenVerifier({ issuerUrl: idp.url ?? '', clientId: idp.clientId })
    this.#verifiers.set(idp.id, { key, verifier })
    return verifier
  }

  async session(token: string, format: BearerFormat, idp: IdpSettings, audiences: readonly string[]): Promise<BearerResult> {
    // The id covers the token, the provider, the format and the audiences: a token accepted under
    // one route's rules is never reused under another's (hostile-input case: protocol / availability).
    const id = `bearer-${createHash('sha256').update(`${idp.id}\n${format}\n${audiences.join(',')}\n${token}`).digest('base64url').slice(0, 32)}`
    const existing = await this.#deps.sessions.get(id)
    if (existing) return { kind: 'ok', session: existing }
    let verified
    try {
      const verifier = this.#verifier(idp)
      verified = format === 'idp_identity_token' ? await verifier.verifyIdentityToken(token, audiences) : await verifier.verifyAccessToken(token, audiences)
    } catch (err) {
      if (isProviderTokenError(err)) {
        this.#deps.logger.info({ code: err.code, idpId: idp.id }, 'provider bearer token refused')
        return err.transient ? { kind: 'unavailable', reason: 'The identity provider could not be reached to check the token.' } : { kind: 'refused', reason: 'The bearer token is not valid for this route.' }
      }
      throw err
    }
    const provider = this.#deps.providerFor(idp.id)
    let userId = verified.subject
    try {
      if (provider) userId = provider.userIdOf(verified.claims)
    } catch {
      return { kind: 'refused', reason: 'The bearer token does not name a user.' }
    }
    const now = Date.now()
    const session: Session = {
      id,
      userId,
      idpId: idp.id,
      issuedAt: now,
      expiresAt: Math.min(verified.expiresAt, now + this.#deps.maxLifetimeMs()),
      accessToken: undefined,
      refreshToken: undefined,
      idToken: undefined,
      tokenExpiresAt: undefined,
      claims: verified.claims,
      idpSubject: verified.subject,
      fromBearerToken: true,
    }
    await this.#deps.sessions.putBearerSession(session)
    await this.#deps.sessions.putUser(userFromClaims(userId, verified.claims))
    return { kind: 'ok', session }
  }
}
