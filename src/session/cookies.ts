/**
 * Session cookie reading and writing (Pomerium docs: Global settings cookie_*, hostile-input case: sessions / cookies / csrf). Cookies
 * are always `Secure` and `Path=/`; `HttpOnly` unless `cookie_http_only: false`; `SameSite` and
 * `Domain` only when configured (host-only by default).
 */

export interface CookieOptions {
  readonly domain: string | undefined
  readonly httpOnly: boolean
  readonly sameSite: 'strict' | 'lax' | 'none' | undefined
  /** Lifetime in seconds; 0 makes a session cookie. */
  readonly maxAgeS: number
  /** Default `/`. */
  readonly path?: string | undefined
}

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const COOKIE_VALUE = /^[!#-+\--:<-[\]-~]*$/
/** Paths a cookie may be set with: absolute, and nothing that ends the attribute. */
const COOKIE_PATH = /^\/[!#-:<-~]*$/
/** Above this a Cookie header is not searched (cookie bombs, hostile-input case: sessions / cookies / csrf). */
const MAX_COOKIE_HEADER = 64 * 1024

function attributes(options: CookieOptions): string {
  const path = options.path ?? '/'
  if (!COOKIE_PATH.test(path)) throw new Error(`invalid cookie path ${JSON.stringify(path)}`)
  let out = `; Path=${path}; Secure`
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
 * The distinct values the Cookie header carries for `name` (in order), or undefined when the
 * header is too large to search. More than one value means another cookie of the same name,
 * set for a parent domain or another path, travels beside ours.
 */
export function cookieValues(header: string | string[] | undefined, name: string): string[] | undefined {
  if (header === undefined) return []
  const text = Array.isArray(header) ? header.join('; ') : header
  if (text.length > MAX_COOKIE_HEADER) return undefined
  if (!text.includes(name)) return []
  const values: string[] = []
  for (const part of text.split(';')) {
    const eq = part.indexOf('=')
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue
    let value = part.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    if (!values.includes(value)) values.push(value)
  }
  return values
}

/** Whether the Cookie header carries two different values for `name` (see `readCookie`). */
export function cookieIsAmbiguous(header: string | string[] | undefined, name: string): boolean {
  return (cookieValues(header, name)?.length ?? 0) > 1
}

/** Most paths tried when clearing copies of a cookie (bounds the Set-Cookie headers of one answer). */
const MAX_CLEARED_PATHS = 8

/**
 * The `Path` values a cookie sent with a request for `pathname` can have: `/`, then every
 * prefix that ends before or at a `/` and the path itself (RFC 6265 5.1.4 path-match).
 */
export function cookiePathsFor(pathname: string): string[] {
  const paths = ['/']
  for (let i = 1; i <= pathname.length && paths.length < MAX_CLEARED_PATHS; i++) {
    if (i === pathname.length || pathname[i] === '/') {
      const prefix = pathname.slice(0, i)
      if (!paths.includes(prefix) && COOKIE_PATH.test(prefix)) paths.push(prefix)
      const slashed = `${prefix}/`
      if (i < pathname.length && !paths.includes(slashed) && COOKIE_PATH.test(slashed) && paths.length < MAX_CLEARED_PATHS) paths.push(slashed)
    }
  }
  return paths
}

/**
 * `Set-Cookie` values that delete every copy of cookie `name` that could reach `host` on `paths`
 * without being ours (cookie tossing: a sibling subdomain sets the name for a parent domain,
 * and the browser then sends two values that nobody can tell apart). That is: the cookie for
 * `host` and each of its parent domains as `Domain`, and the host-only cookie when ours uses a
 * `Domain`; never the copy ours is, which the caller sets anew. Browsers ignore the ones for
 * public suffixes. IP addresses have no parent domains.
 */
export function foreignCookieClears(name: string, host: string, own: CookieOptions, paths: readonly string[]): string[] {
  const ownDomain = own.domain === undefined || own.domain === '' ? undefined : own.domain.replace(/^\./, '').toLowerCase()
  const domains: (string | undefined)[] = ownDomain !== undefined ? [undefined] : []
  if (!/^[\d.]+$/.test(host) && !host.includes(':')) {
    const labels = host.toLowerCase().split('.')
    for (let i = 0; i < labels.length; i++) {
      const domain = labels.slice(i).join('.')
      if (domain !== ownDomain && /^[a-z0-9_-][a-z0-9_.-]*$/.test(domain)) domains.push(domain)
    }
  }
  const out: string[] = []
  for (const domain of domains) {
    for (const path of paths) out.push(clearCookie(name, { domain, httpOnly: false, sameSite: undefined, maxAgeS: 0, path }))
  }
  return out
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
