/**
 * Where sign-in and sign-out may send a browser (hostile-input cases: open redirects). A redirect target is
 * accepted only as an absolute https (or, for loopback programmatic clients, http) URL whose host
 * is exactly one of the allowed hosts; everything ambiguous is refused rather than normalised,
 * because browsers and servers disagree about how to read it.
 */
import { isBrowserLoopbackHost } from '../shared/loopback.js'

export interface RedirectPolicy {
  /** Lower-case host names (route `from` hosts, the authenticate host). */
  readonly hosts: ReadonlySet<string>
  /** Suffixes such as `.example.com` from wildcard routes (`*.example.com`); one label or more before them. */
  readonly wildcardSuffixes?: readonly string[]
  /**
   * Also accept http:// and any port on loopback hosts (programmatic login: `localhost` in
   * `programmatic_redirect_domain_whitelist` means any loopback address).
   */
  readonly allowLoopbackHttp: boolean
}

/** Any control character, space, backslash, or characters browsers strip or reinterpret. */
function hasUnsafeCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c <= 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x5c || c === 0x2028 || c === 0x2029 || c === 0xfeff) return true
  }
  return false
}

/** Returns the parsed target when it may be redirected to, else undefined. */
export function allowedRedirect(target: string, policy: RedirectPolicy): URL | undefined {
  if (target.length === 0 || target.length > 4096 || hasUnsafeCharacter(target)) return undefined
  // Percent-encoded slashes, backslashes or controls in the authority part are never needed.
  if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*%/i.test(target)) return undefined
  if (!/^https?:\/\/[^/?#@]+(?:[/?#]|$)/i.test(target)) return undefined
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return undefined
  }
  if (url.username !== '' || url.password !== '') return undefined
  const host = url.hostname.toLowerCase()
  const listed = policy.hosts.has(host) || (policy.wildcardSuffixes ?? []).some((s) => host.endsWith(s) && host.length > s.length)
  if (policy.allowLoopbackHttp && isBrowserLoopbackHost(host)) return url
  // Plain http only ever for loopback hosts (the demo on *.localhost): nothing leaves the machine.
  if (url.protocol === 'http:') return listed && isBrowserLoopbackHost(host) ? url : undefined
  if (url.protocol !== 'https:') return undefined
  return listed ? url : undefined
}
