/**
 * OpenID Connect Front-Channel Logout 1.0 on a route host (docs/authentication.md, "Sign-out",
 * front-channel logout). Every route advertises `frontchannel_logout_uri` as its
 * `/.pomerium/sign_out`; a provider ending its session loads that URI in a hidden iframe of its
 * own page, so the request is always cross-site and nobody can press a confirmation button.
 *
 * With `frontchannel_logout_session_required` the provider adds `iss` (its issuer identifier)
 * and `sid` (its session id); the spec requires both or neither. A pair that names the
 * signed-in session comes from that session's provider (another site would have to know the
 * provider's random session id of this very browser), so it ends the session without asking.
 * Anything else is an ordinary sign-out request and is asked about.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { EndpointResponse } from './endpoint.js'
import type { Session } from '../session/session-store.js'

/** The `iss` and `sid` query parameters of a front-channel logout request. */
interface FrontChannelLogout {
  readonly iss: string
  readonly sid: string
}

/** Longest `iss` or `sid` considered; providers' values are far shorter. */
const MAX_PARAM_LENGTH = 2048

/**
 * The `iss`/`sid` pair of a query string (with or without its `?`): each exactly once and not
 * empty, else undefined (fail closed: a repeated parameter is not a front-channel logout).
 */
export function frontChannelLogoutParams(query: string): FrontChannelLogout | undefined {
  const params = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query)
  const iss = params.getAll('iss')
  const sid = params.getAll('sid')
  if (iss.length !== 1 || sid.length !== 1) return undefined
  const [i = '', s = ''] = [iss[0], sid[0]]
  if (i === '' || s === '' || i.length > MAX_PARAM_LENGTH || s.length > MAX_PARAM_LENGTH) return undefined
  return { iss: i, sid: s }
}

/**
 * The issuer of the provider a session came from: the `iss` of its ID token, which was verified
 * against the provider's discovered issuer at sign-in. (Not the merged claims: UserInfo may
 * carry members of its own.) Undefined when the session has no readable ID token.
 */
export function sessionIssuer(session: Session): string | undefined {
  const payload = session.idToken?.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    const iss = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>)['iss'] : undefined
    return typeof iss === 'string' && iss !== '' ? iss : undefined
  } catch {
    return undefined
  }
}

/** Equality in time independent of where (or whether) the strings differ. */
function sameText(a: string, b: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(a), digest(b))
}

/**
 * Whether the request's `iss` and `sid` are the session's provider issuer and provider session
 * id. Both are compared in constant time, and always both, so the answer does not tell which
 * one was wrong. A session without a provider `sid` never matches.
 */
export function matchesSession(request: FrontChannelLogout, session: Session): boolean {
  const issuer = sessionIssuer(session)
  const sid = session.idpSessionId
  const issOk = sameText(request.iss, issuer ?? '')
  const sidOk = sameText(request.sid, sid ?? '')
  return issuer !== undefined && sid !== undefined && sid !== '' && issOk && sidOk
}

const CSP_ORIGIN = /^https?:\/\/[^\s;,']+$/

/**
 * The answer to a front-channel logout that ended the session: 200 with an empty page (it is
 * shown in the provider's hidden iframe, so no redirect chain), not cached (the spec's
 * RECOMMENDED `Cache-Control: no-cache, no-store` and `Pragma: no-cache`), framable only by the
 * provider's origin.
 */
export function frontChannelLoggedOut(issuer: string, cookies: readonly string[]): EndpointResponse {
  let ancestor = "'none'"
  try {
    const origin = new URL(issuer).origin
    if (CSP_ORIGIN.test(origin)) ancestor = origin
  } catch {
    // not a URL: the page is not framable, the session has ended all the same
  }
  return {
    status: 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-cache, no-store',
      pragma: 'no-cache',
      'content-security-policy': `default-src 'none'; frame-ancestors ${ancestor}; form-action 'none'; base-uri 'none'`,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    },
    cookies,
    body: '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head><body></body></html>',
  }
}
