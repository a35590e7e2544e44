/**
 * The back-channel logout endpoint (`POST /.pomerium/backchannel_logout` on the authenticate
 * host; OpenID Connect Back-Channel Logout 1.0): the provider posts a signed logout token when a
 * user's session there ends, and the matching Portcullis sessions end at once, on every route.
 * A Portcullis addition: Pomerium's open-source edition has no back-channel logout.
 */
import type { Logger } from '../shared/log.js'
import { createLogoutTokenVerifier, isProviderTokenError, parseBackchannelRequest } from './backchannel-logout.js'
import type { LogoutTokenVerifier } from './backchannel-logout.js'
import { json, single } from './endpoint.js'
import type { EndpointRequest, EndpointResponse } from './endpoint.js'
import type { SessionStore } from '../session/session-store.js'
import type { AuthSettings, IdpSettings } from '../session/settings.js'

interface BackchannelDeps {
  readonly sessions: SessionStore
  readonly logger: Logger
}

/** The unverified `iss` and `aud` of a JWT: only to choose which provider's keys verify it. */
function unverifiedIssuerAndAudience(token: string): { iss: string; aud: string[] } | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iss?: unknown; aud?: unknown }
    if (typeof payload.iss !== 'string') return undefined
    const aud = Array.isArray(payload.aud) ? payload.aud.filter((a): a is string => typeof a === 'string') : typeof payload.aud === 'string' ? [payload.aud] : []
    return { iss: payload.iss, aud }
  } catch {
    return undefined
  }
}

const trimSlash = (u: string): string => u.replace(/\/+$/, '')

export function createBackchannelLogout(deps: BackchannelDeps): (req: EndpointRequest, settings: AuthSettings) => Promise<EndpointResponse> {
  const verifiers = new Map<string, { key: string; verifier: LogoutTokenVerifier }>()
  const verifierFor = (idp: IdpSettings): LogoutTokenVerifier => {
    const key = JSON.stringify(idp)
    const cached = verifiers.get(idp.id)
    if (cached?.key === key) return cached.verifier
    const verifier = createLogoutTokenVerifier({ issuerUrl: idp.url ?? '', clientId: idp.clientId })
    verifiers.set(idp.id, { key, verifier })
    return verifier
  }
  const refuse = (description: string): EndpointResponse => json(400, { error: 'invalid_request', error_description: description })

  return async (req, settings) => {
    const token = parseBackchannelRequest(single(req.headers['content-type']), req.body)
    if (token === undefined) return refuse('expected a form body with one logout_token')
    const claimed = unverifiedIssuerAndAudience(token)
    const idp = claimed
      ? [...settings.providers.values()].find((p) => p.url !== undefined && trimSlash(p.url) === trimSlash(claimed.iss) && claimed.aud.includes(p.clientId))
      : undefined
    if (!idp) return refuse('the logout token is not from a configured provider')
    let result
    try {
      result = await verifierFor(idp).verify(token)
    } catch (err) {
      const code = isProviderTokenError(err) ? err.code : 'error'
      deps.logger.warn({ requestId: req.requestId, code, idpId: idp.id }, 'back-channel logout token refused')
      if (isProviderTokenError(err) && err.transient) return json(503, { error: 'temporarily_unavailable' })
      return refuse('the logout token is not valid')
    }
    let ended = 0
    if (result.sid !== undefined) ended += await deps.sessions.deleteWhere({ idpId: idp.id, idpSessionId: result.sid })
    else if (result.subject !== undefined) ended += await deps.sessions.deleteWhere({ idpId: idp.id, idpSubject: result.subject })
    deps.logger.info({ requestId: req.requestId, idpId: idp.id, ended }, 'back-channel logout')
    return { status: 200, headers: { 'cache-control': 'no-store' }, body: '' }
  }
}
