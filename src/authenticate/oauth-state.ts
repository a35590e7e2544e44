/**
 * The OAuth `state` parameter and its CSRF cookie (hostile-input case: sessions / cookies / csrf).
 *
 * `state` = base64url(`csrfToken|issuedAt|sealed(redirectUrl)`), sealed with the cookie secret;
 * the browser also gets the CSRF token in the `<cookie_name>_csrf` cookie. The callback accepts a
 * state only when its CSRF token equals the cookie's (in constant time), it is at most five
 * minutes old (one minute of skew), and the sealed redirect opens. A state from another browser,
 * a tampered one, or a replay after the CSRF cookie was cleared all fail.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { open, seal } from '../session/sealed.js'

export const STATE_LIFETIME_S = 300
const SKEW_S = 60
const PURPOSE = 'oauth-state'

interface NewState {
  /** The `state` query parameter for the authorization request. */
  readonly state: string
  /** The value of the CSRF cookie to set next to it. */
  readonly csrfToken: string
}

/**
 * A new state for `redirectUrl`. Pass the browser's current CSRF cookie as `csrfToken` to keep
 * it (sign-ins started in several tabs then all complete); a fresh one is made otherwise.
 */
export function createState(redirectUrl: string, cookieSecret: Buffer, nowS: number = Math.floor(Date.now() / 1000), csrfToken?: string): NewState {
  if (csrfToken === undefined || !/^[A-Za-z0-9_-]{43}$/.test(csrfToken)) csrfToken = randomBytes(32).toString('base64url')
  const sealed = seal(redirectUrl, cookieSecret, `${PURPOSE}|${csrfToken}|${nowS}`)
  return { state: Buffer.from(`${csrfToken}|${nowS}|${sealed}`).toString('base64url'), csrfToken }
}

type StateProblem = 'malformed' | 'csrf-mismatch' | 'expired' | 'tampered'

/** Returns the redirect URL sealed in a valid state, or what is wrong with it. */
export function verifyState(
  state: string,
  csrfCookie: string | undefined,
  cookieSecret: Buffer,
  nowS: number = Math.floor(Date.now() / 1000),
): { redirectUrl: string } | { problem: StateProblem } {
  if (state.length === 0 || state.length > 8192 || !/^[A-Za-z0-9_-]+$/.test(state)) return { problem: 'malformed' }
  const parts = Buffer.from(state, 'base64url').toString('utf8').split('|')
  if (parts.length !== 3) return { problem: 'malformed' }
  const [csrfToken, issuedText, sealed] = parts as [string, string, string]
  if (!/^\d{1,12}$/.test(issuedText)) return { problem: 'malformed' }
  const given = Buffer.from(csrfToken)
  const expected = Buffer.from(csrfCookie ?? '')
  if (csrfCookie === undefined || given.length !== expected.length || !timingSafeEqual(given, expected)) return { problem: 'csrf-mismatch' }
  const issued = Number(issuedText)
  if (nowS > issued + STATE_LIFETIME_S + SKEW_S || issued > nowS + SKEW_S) return { problem: 'expired' }
  const redirectUrl = open(sealed, cookieSecret, `${PURPOSE}|${csrfToken}|${issued}`)
  if (redirectUrl === undefined) return { problem: 'tampered' }
  return { redirectUrl }
}
