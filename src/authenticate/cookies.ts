/**
 * Session cookie reading and writing (reference 2.2 cookie_*, security-tests 26, 31). Cookies
 * are always `Secure` and `Path=/`; `HttpOnly` unless `cookie_http_only: false`; `SameSite` and
 * `Domain` only when configured (host-only by default).
 */

export interface CookieOptions {
  readonly domain: string | undefined
  readonly httpOnly: boolean
  readonly sameSite: 'strict' | 'lax' | 'none' | undefined
  /** Lifetime in seconds; 0 makes a session cookie. */
  readonly maxAgeS: number
}

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const COOKIE_VALUE = /^[!#-+\--:<-[\]-~]*$/
/** Above this a Cookie header is not searched (cookie bombs, security-tests 26). */
const MAX_COOKIE_HEADER = 64 * 1024

function attributes(options: CookieOptions): string {
  let out = '; Path=/; Secure'
  if (options.httpOnly) out += '; HttpOnly'
  if (options.domain !== undefined && options.domain !== '') out += `; Domain=${options.domain}`
  if (options.sameSite !== undefined) out += `; SameSite=${options.sameSite[0]?.toUpperCase()}${options.sameSite.slice(1)}`
  return out
}

/** A `Set-Cookie` value; throws on a name or value that would break the header (a bug, not input). */
export function setCookie(name: string, value: string, options: CookieOptions): string {
  if (!COOKIE_NAME.test(name) || !COOKIE_VALUE.test(value)) throw new Error(`invalid cookie ${name}`)
  const maxAge = options.maxAgeS > 0 ? `; Max-Age=${Math.floor(options.maxAgeS)}` : ''
  return `${name}=${value}${maxAge}${attributes(options)}`
}

/** A `Set-Cookie` value that deletes the cookie. */
export function clearCookie(name: string, options: CookieOptions): string {
  return `${name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT${attributes(options)}`
}

/**
 * The value of cookie `name`, or undefined. Two different values for the same name (a planted
 * cookie beside the real one) are ambiguous and count as none: authorisation and forwarding must
 * never disagree about which one was meant.
 */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  const text = Array.isArray(header) ? header.join('; ') : header
  if (text.length > MAX_COOKIE_HEADER || !text.includes(name)) return undefined
  let found: string | undefined
  for (const part of text.split(';')) {
    const eq = part.indexOf('=')
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue
    let value = part.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    if (found !== undefined && found !== value) return undefined
    found = value
  }
  return found === '' ? undefined : found
}
