/** Header-map rules shared by the global and route settings. */
import { isRecord } from './coerce.js'
import { joinPath } from './issues.js'
import type { IssueCollector } from './issues.js'

/** RFC 9110 token characters: the only valid header-name characters. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** True when `name` is a valid HTTP header name. */
export function isHeaderName(name: string): boolean {
  return TOKEN.test(name)
}

/** The special `set_response_headers` key that removes the default (and inherited) headers. */
export const DISABLE_KEY = 'disable'

/** Pomerium's default security response headers (reference §0.15). */
export function securityHeaders(withHsts: boolean): Record<string, string> {
  const headers: Record<string, string> = {
    'X-Frame-Options': 'SAMEORIGIN',
    'X-XSS-Protection': '1; mode=block',
  }
  if (withHsts) headers['Strict-Transport-Security'] = 'max-age=31536000; includeSubDomains; preload'
  return headers
}

function setHeader(target: Record<string, string>, name: string, value: string): void {
  // Header names are case-insensitive: an override must replace, not duplicate, a default.
  for (const existing of Object.keys(target)) {
    if (existing.toLowerCase() === name.toLowerCase()) delete target[existing]
  }
  target[name] = value
}

/**
 * Validates a header map (`name: value`) and returns it with string values; invalid entries are
 * reported and skipped. With `allowDisable`, a `disable` key is reported as a flag: as in
 * Pomerium, its presence is what counts, whatever its value.
 */
export function readHeaderMap(
  value: unknown,
  path: string,
  issues: IssueCollector,
  allowDisable: boolean,
): { headers: Record<string, string>; disable: boolean } {
  const headers: Record<string, string> = {}
  let disable = false
  if (!isRecord(value)) return { headers, disable }
  for (const [name, v] of Object.entries(value)) {
    const p = joinPath(path, name)
    if (allowDisable && name === DISABLE_KEY) {
      disable = true
      if (v === false || v === 'false') {
        issues.warning(p, v, 'a disable key removes every response header whatever its value (as in Pomerium); delete the key to keep them', 'key')
      }
      continue
    }
    if (!isHeaderName(name)) {
      issues.error(p, name, 'expected a header name (RFC 9110 token characters only)', 'key')
      continue
    }
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      issues.error(p, v, 'expected a string header value')
      continue
    }
    setHeader(headers, name, String(v))
  }
  return { headers, disable }
}

/** `overrides` merged over `base` (names compared case-insensitively). */
export function mergeHeaders(
  base: Readonly<Record<string, string>>,
  overrides: Readonly<Record<string, string>>,
): Record<string, string> {
  const out: Record<string, string> = { ...base }
  for (const [name, v] of Object.entries(overrides)) setHeader(out, name, v)
  return out
}

/**
 * The response headers of a route, as Pomerium computes them (reference §0.15, §3.4): the global
 * headers, the route's merged over them, and nothing at all when the route has a `disable` key.
 * A route without `set_response_headers` keeps the global headers.
 */
export function routeResponseHeaders(
  global: Readonly<Record<string, string>>,
  route: { readonly headers: Readonly<Record<string, string>>; readonly disable: boolean },
): Record<string, string> {
  return route.disable ? {} : mergeHeaders(global, route.headers)
}
