/**
 * Sign-out must not be something another site can do to a person (docs/authentication.md,
 * "Signing out"): a sign-out that another site started is asked about first, and the
 * confirmation's button carries a token that only a page of ours can know.
 *
 * The token is an HMAC of a random per-browser CSRF cookie (double submit): another site can
 * make the browser send the cookie but can neither read it nor compute the token.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { single } from './endpoint.js'
import type { EndpointRequest } from './endpoint.js'

/**
 * `session` binds the token to the session it signs out (its handle's id), where one is known:
 * the CSRF cookie carries no host prefix, so a sibling subdomain can plant a value whose token
 * it fetched itself, and only a token that names the victim's own session stays out of reach.
 */
export function signOutToken(cookieSecret: Buffer, csrfCookie: string, session = ''): string {
  return createHmac('sha256', cookieSecret).update(`sign-out|${csrfCookie}|${session}`).digest('base64url')
}

/** Whether `given` (the form's `csrf` field) is the token of `csrfCookie` and `session`; constant time. */
export function checkSignOutToken(cookieSecret: Buffer, given: string | null | undefined, csrfCookie: string | undefined, session = ''): boolean {
  if (given === null || given === undefined || csrfCookie === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(signOutToken(cookieSecret, csrfCookie, session))
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * Whether a request may have been started by a page of another origin (a link, a form, an
 * image on another site). Fetch Metadata (`Sec-Fetch-Site`) answers for current browsers:
 * `same-origin` and `none` (typed, bookmarked) are ours. Without it (an older browser, a
 * script), an `Origin` or `Referer` naming another origin still counts as foreign; a request
 * with neither is a non-browser client, which no other site can drive.
 */
export function startedElsewhere(req: EndpointRequest, origin: string): boolean {
  const site = single(req.headers['sec-fetch-site'])
  if (site !== undefined) return site !== 'same-origin' && site !== 'none'
  const from = single(req.headers['origin']) ?? single(req.headers['referer'])
  if (from === undefined) return false
  try {
    return new URL(from).origin !== origin
  } catch {
    return true
  }
}
