/**
 * Cookie tossing (docs/authentication.md, "Conflicting session cookies"): a sibling subdomain
 * sets a cookie with our session cookie's name for a parent domain. The browser then sends two
 * values, which count as none (cookies.ts `readCookie`), so sign-in would repeat forever.
 *
 * Where a session cookie is installed (the authenticate host's sign-in, a route's callback) and
 * a copy of the name is already present, the copies on parent domains and on the paths that
 * reach the page are deleted, and a marker records that this was tried. When the conflict is
 * still there on the next round trip (the marker is present and the request shows two values
 * again), the browser gets a page that explains it instead of another round trip.
 *
 * The marker is an HMAC of the host with the cookie secret, so another site cannot plant it to
 * skip the clean-up, and its path (`/.pomerium/`) keeps it away from upstreams.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { clearCookie, cookiePathsFor, foreignCookieClears, readCookie, setCookie } from '../session/cookies.js'
import type { CookieOptions } from '../session/cookies.js'

/** Long enough for one round trip through the provider's login page. */
const MARKER_MAX_AGE_S = 300
const MARKER_PATH = '/.pomerium/'

function markerName(cookieName: string): string {
  return `${cookieName}_cleared`
}

function markerValue(cookieSecret: Buffer, host: string): string {
  return createHmac('sha256', cookieSecret).update(`cookie-conflict|${host}`).digest('base64url').slice(0, 22)
}

const markerOptions: CookieOptions = { domain: undefined, httpOnly: true, sameSite: 'lax', maxAgeS: MARKER_MAX_AGE_S, path: MARKER_PATH }

export interface ConflictContext {
  readonly cookieName: string
  /** The session cookie's own attributes (its `Domain` is never cleared). */
  readonly cookie: CookieOptions
  readonly cookieSecret: Buffer
  /** The host the request is for (lower case, no port). */
  readonly host: string
}

/** Whether this browser was already through a clean-up for `host` within the last minutes. */
export function cleanupTried(headers: Readonly<Record<string, string | string[] | undefined>>, c: ConflictContext): boolean {
  const given = readCookie(headers['cookie'], markerName(c.cookieName))
  if (given === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(markerValue(c.cookieSecret, c.host))
  return a.length === b.length && timingSafeEqual(a, b)
}

/** `Set-Cookie` values that delete foreign copies seen on `pathname` and set the marker. */
export function cleanup(c: ConflictContext, pathname: string): string[] {
  return [
    ...foreignCookieClears(c.cookieName, c.host, c.cookie, cookiePathsFor(pathname)),
    setCookie(markerName(c.cookieName), markerValue(c.cookieSecret, c.host), markerOptions),
  ]
}

/**
 * For the explanatory page: delete the foreign copies once more and drop the marker, so that
 * "Try again" (after the person removed the cookie, or the other site stopped) gets a full try.
 */
export function cleanupAgain(c: ConflictContext, pathname: string): string[] {
  return [...foreignCookieClears(c.cookieName, c.host, c.cookie, cookiePathsFor(pathname)), clearCookie(markerName(c.cookieName), markerOptions)]
}

/** The explanation, in words a person can act on. */
export function conflictMessage(cookieName: string, host: string): string {
  return (
    `Your browser sends this site two different cookies named ${cookieName}: Portcullis' session cookie, and one that another site ` +
    `under a parent domain of ${host} set for that whole domain. They cannot be told apart, so signing in again would only repeat. ` +
    `Portcullis tried to remove the other cookie and could not. Delete the cookies of ${host} and of its parent domain in your ` +
    `browser's site settings (or use a private window), then try again. If it comes back, tell your administrator which other ` +
    `site you visited: it sets a cookie that belongs to Portcullis.`
  )
}
