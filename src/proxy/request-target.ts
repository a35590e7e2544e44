/**
 * Request-target hygiene (security-tests 20-23): the path a route is matched and authorised on is
 * the path the upstream receives. Ambiguous encodings are refused instead of guessed at.
 *
 * Steps, as Envoy does them for Pomerium: only origin-form targets (`/...`) are accepted; a
 * fragment, control characters, non-ASCII bytes and bad or NUL percent-escapes are refused;
 * unreserved characters are decoded (`%61dmin` is `admin`, `%2e%2e` is `..`); `%2F`/`%5C`
 * follow `path_with_escaped_slashes_action`; dot segments are resolved and repeated slashes
 * merged. The query string is passed through untouched: it never takes part in path rules.
 */
import type { EscapedSlashesAction } from '../config/types.js'

export interface TargetOptions {
  readonly normalizePath: boolean
  readonly mergeSlashes: boolean
  readonly escapedSlashes: EscapedSlashesAction
}

export type TargetResult =
  | { readonly kind: 'ok'; readonly path: string; readonly query: string }
  /** `unescape-and-redirect`: the client is sent to the unescaped path. */
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'bad'; readonly reason: string }

const UNRESERVED = /[A-Za-z0-9\-._~]/

export function normaliseTarget(raw: string, options: TargetOptions): TargetResult {
  if (raw.length === 0 || raw.charCodeAt(0) !== 0x2f /* / */) {
    return { kind: 'bad', reason: 'the request target must be a path starting with "/"' }
  }
  let needsWork = false
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f) return { kind: 'bad', reason: 'the request target contains a control or non-ASCII character' }
    if (c === 0x23 /* # */) return { kind: 'bad', reason: 'the request target must not contain a fragment (#)' }
    if (c === 0x3f /* ? */) break
    if (c === 0x25 /* % */ || c === 0x5c /* \ */) needsWork = true
    else if (c === 0x2f && i > 0) {
      const prev = raw.charCodeAt(i - 1)
      if (prev === 0x2f) needsWork = true
    } else if (c === 0x2e /* . */ && raw.charCodeAt(i - 1) === 0x2f) needsWork = true
  }
  const q = raw.indexOf('?')
  const rawPath = q === -1 ? raw : raw.slice(0, q)
  const query = q === -1 ? '' : raw.slice(q)
  if (q !== -1 && query.includes('#')) return { kind: 'bad', reason: 'the request target must not contain a fragment (#)' }
  if (!needsWork) return { kind: 'ok', path: rawPath, query }

  let unescapedSlash = false
  let out = ''
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath[i] as string
    if (ch === '\\') {
      // A raw backslash is a path separator to many upstreams (IIS, some WSGI servers); treat it
      // as one so that authorisation and upstream agree.
      out += options.normalizePath ? '/' : ch
      continue
    }
    if (ch !== '%') {
      out += ch
      continue
    }
    const hex = rawPath.slice(i + 1, i + 3)
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { kind: 'bad', reason: 'the path has an invalid percent-encoding' }
    const code = parseInt(hex, 16)
    i += 2
    if (code === 0) return { kind: 'bad', reason: 'the path contains an encoded NUL (%00)' }
    if (code === 0x2f || code === 0x5c) {
      switch (options.escapedSlashes) {
        case 'reject':
          return { kind: 'bad', reason: 'the path contains an escaped slash (%2F or %5C)' }
        case 'keep':
          out += `%${hex.toUpperCase()}`
          break
        case 'unescape-and-forward':
        case 'unescape-and-redirect':
          out += '/'
          unescapedSlash = true
          break
      }
      continue
    }
    const decoded = String.fromCharCode(code)
    out += code < 0x80 && UNRESERVED.test(decoded) ? decoded : `%${hex.toUpperCase()}`
  }
  if (options.normalizePath) out = removeDotSegments(out)
  if (options.mergeSlashes) out = out.replace(/\/{2,}/g, '/')
  if (unescapedSlash && options.escapedSlashes === 'unescape-and-redirect') {
    return { kind: 'redirect', location: out + query }
  }
  return { kind: 'ok', path: out, query }
}

/** RFC 3986 section 5.2.4, for an absolute path. */
export function removeDotSegments(path: string): string {
  const segments = path.split('/')
  const output: string[] = []
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i] as string
    const last = i === segments.length - 1
    if (seg === '.') {
      if (last) output.push('')
    } else if (seg === '..') {
      output.pop()
      if (last) output.push('')
    } else {
      output.push(seg)
    }
  }
  return '/' + output.join('/')
}
