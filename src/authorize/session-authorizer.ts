/**
 * The authorizer of the authenticate issue: public routes pass; every other route needs a live
 * session of the route's identity provider, and admits any signed-in user (the authorize issue
 * replaces that rule with the route's policy). Without a session a browser is sent to sign in
 * (302 to a signed authenticate URL) and a script gets 401 (reference fact 22).
 */
import { bearerToken } from '../authenticate/bearer-sessions.js'
import type { BearerFormat, BearerSessions } from '../authenticate/bearer-sessions.js'
import { shouldRedirectToSignIn } from '../authenticate/credentials.js'
import { signInUrl } from '../authenticate/flow.js'
import type { SessionRefresher } from '../authenticate/refresher.js'
import { loadSession } from '../authenticate/session-loader.js'
import type { SessionStore } from '../authenticate/session-store.js'
import { browserScheme } from '../authenticate/settings.js'
import type { AuthSettings, IdpSettings } from '../authenticate/settings.js'
import type { Secrets } from '../shared/secrets.js'
import type { Authorizer, CheckRequest, CheckResult } from './types.js'

export interface SessionAuthorizerDeps {
  readonly settings: () => AuthSettings
  readonly secrets: Secrets
  readonly sessions: SessionStore
  readonly refresher: SessionRefresher
  /** Provider tokens as credentials on routes with `bearer_token_format: idp_*`. */
  readonly bearer?: BearerSessions
}

const ALLOW: CheckResult = { allow: true }

const NOT_CONFIGURED: CheckResult = {
  allow: false,
  status: 403,
  reason:
    'This route is not public (allow_public_unauthenticated_access is not set) and sign-in is not configured (idp_provider is not set), so access is denied.',
}

export function createSessionAuthorizer(deps: SessionAuthorizerDeps): Authorizer {
  return {
    check(request: CheckRequest): CheckResult | Promise<CheckResult> {
      // Public routes stay synchronous: no session lookup on their hot path.
      if (request.route.allowPublicUnauthenticatedAccess) return ALLOW
      const settings = deps.settings()
      const provider = settings.enabled ? settings.providerFor(request.route) : undefined
      if (!provider) return NOT_CONFIGURED
      const bearer = settings.bearerFor(request.route)
      if (deps.bearer && (bearer.format === 'idp_access_token' || bearer.format === 'idp_identity_token')) {
        const token = bearerToken(request.headers['authorization'])
        if (token !== undefined) return checkBearer(deps.bearer, token, bearer.format, provider, bearer.audiences)
      }
      return checkSession(request, settings, provider.id, deps)
    },
  }
}

async function checkBearer(bearer: BearerSessions, token: string, format: BearerFormat, idp: IdpSettings, audiences: readonly string[]): Promise<CheckResult> {
  const result = await bearer.session(token, format, idp, audiences)
  if (result.kind === 'ok') return { allow: true, routingKey: result.session.id }
  // A request that carried a token is a script: 401 (or 503), never a sign-in redirect.
  return { allow: false, status: result.kind === 'unavailable' ? 503 : 401, reason: result.reason }
}

async function checkSession(request: CheckRequest, settings: AuthSettings, idpId: string, deps: SessionAuthorizerDeps): Promise<CheckResult> {
  const loaded = await loadSession(request, idpId, {
    sessions: deps.sessions,
    sharedSecret: deps.secrets.sharedSecret,
    cookieName: settings.cookieName,
  })
  const session = loaded.kind === 'ok' ? await deps.refresher.current(loaded.session) : undefined
  if (session) return { allow: true, routingKey: session.id }
  const carriedToken = loaded.kind === 'invalid' && loaded.source !== 'cookie'
  if (!shouldRedirectToSignIn(request.headers, carriedToken)) {
    return { allow: false, status: 401, reason: carriedToken ? 'The session token is not valid; sign in again.' : 'Sign-in required.' }
  }
  const original = `${browserScheme(request.host, request.scheme)}://${request.authority}${request.path}${request.query}`
  return {
    allow: false,
    status: 302,
    reason: 'Sign-in required: redirecting to the sign-in page.',
    location: signInUrl(settings, deps.secrets.sharedSecret, original, idpId).href,
  }
}
