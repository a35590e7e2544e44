/**
 * Request-target hygiene (hostile-input cases: path normalisation): the path a route is matched and authorised on is
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

/**
 * How many further decodings of an encoded `%` are followed; a path encoded deeper than this is
 * refused rather than followed further (fail closed).
 */
const MAX_DECODE_DEPTH = 4

/**
 * Why a normalised path (the output of `normaliseTarget`) could mean another path to a lenient
 * upstream, or undefined when it cannot. Such paths are matched and authorised as one path here
 * but served as another upstream, so they are refused unless the route sets
 * `allow_ambiguous_paths` (see docs/proxy.md, "Request target"):
 * - a segment that is `.`, `..` or (not last) empty once its `;` parameters are stripped, as
 *   Tomcat and Spring strip them (`/public/..;/admin` is `/admin` to them);
 * - an encoded `%` that a second decoding turns into a dot segment, a slash, a backslash or a NUL
 *   (`%252e%252e`, `%252f`);
 * - an overlong UTF-8 sequence (`%c0%ae` is `.` to a decoder that does not check), at any level.
 */
export function pathAmbiguity(path: string): string | undefined {
  // Every case needs a `;` or a `%`: the common path costs two scans.
  if (!path.includes(';') && !path.includes('%')) return undefined
  const segments = path.split('/')
  for (let i = 1; i < segments.length; i++) {
    const last = i === segments.length - 1
    let seg = segments[i] as string
    if (isDotSegmentWithParameters(seg, last)) return 'a dot segment with ";" parameters'
    if (!seg.includes('%')) continue
    // Escaped slashes still here were kept on purpose (path_with_escaped_slashes_action: keep):
    // their first decoding is that setting's business, so they decode to a neutral byte here.
    // Except around a dot segment: `..%2Fadmin` is `../admin` to an upstream that decodes and
    // then resolves, whatever the setting meant.
    if (/%(2f|5c)/i.test(seg) && seg.split(/%(?:2f|5c)/i).some((piece) => isDotPiece(percentDecode(piece)))) {
      return 'a dot segment beside an escaped slash'
    }
    seg = percentDecode(seg.replace(/%(2f|5c)/gi, '%01'))
    for (let depth = 0; ; depth++) {
      if (hasOverlongUtf8(seg)) return 'an overlong UTF-8 sequence'
      if (/[/\\\0]/.test(seg)) return 'a double-encoded slash, backslash or NUL'
      if (seg === '.' || seg === '..' || isDotSegmentWithParameters(seg, last)) return 'a dot segment hidden by percent-encoding'
      if (!HAS_ESCAPE.test(seg)) break
      // An escape that survives a decoding came from an encoded "%": a second decoding sees it.
      if (depth === MAX_DECODE_DEPTH) return 'too many levels of percent-encoding'
      seg = percentDecode(seg)
    }
  }
  return undefined
}

const HAS_ESCAPE = /%[0-9A-Fa-f]{2}/

/** `.` or `..`, with or without `;` parameters (a piece of a segment split at escaped slashes). */
function isDotPiece(piece: string): boolean {
  const bare = piece.split(';', 1)[0]
  return bare === '.' || bare === '..'
}

/** A `;` or its escape (a normalised path writes escapes in upper case; the flag is belt and braces). */
const PARAMETER_START = /;|%3B/i

/**
 * The path as Tomcat and Spring read it: each segment's `;` parameters removed (`/admin;x/secret`
 * is `/admin/secret`, `/app;jsessionid=1` is `/app`); an escaped `;` counts too, for upstreams
 * that decode before they strip. Undefined when the path has no parameters, which costs one scan.
 */
export function withoutSegmentParameters(path: string): string | undefined {
  if (!PARAMETER_START.test(path)) return undefined
  return path.replace(/(?:;|%3B)[^/]*/gi, '')
}

/**
 * Why `;` parameters on ordinary segments make a normalised path ambiguous, or undefined when they
 * cannot. Refusing every `;` would break `;jsessionid=...` and matrix parameters, so the path is
 * refused only when stripping them changes the outcome here: `sameOutcome(stripped)` says whether
 * the stripped path matches the same route and gets the same decision from that route's policy
 * (see docs/proxy.md, "Request target"). Run after `pathAmbiguity`, which already refuses the
 * dot and empty segments stripping could produce.
 */
export function parameterAmbiguity(path: string, sameOutcome: (stripped: string) => boolean): string | undefined {
  const stripped = withoutSegmentParameters(path)
  if (stripped === undefined || stripped === path || sameOutcome(stripped)) return undefined
  return '";" parameters that change which route or rule applies to it'
}

/** `..;x`, `.;x` and, except at the end, `;x`: what a servlet container reads as `..`, `.` or `//`. */
function isDotSegmentWithParameters(segment: string, last: boolean): boolean {
  const semi = segment.indexOf(';')
  if (semi === -1) return false
  const name = segment.slice(0, semi)
  return name === '.' || name === '..' || (name === '' && !last)
}

/** One percent-decoding into a byte string (one char per byte); invalid escapes stay as they are. */
function percentDecode(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
}

/** C0/C1 lead bytes, E0 followed by 80-9F and F0 followed by 80-8F encode code points in too many bytes. */
function hasOverlongUtf8(bytes: string): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes.charCodeAt(i)
    if (b < 0xc0) continue
    if (b === 0xc0 || b === 0xc1) return true
    const next = bytes.charCodeAt(i + 1)
    if (b === 0xe0 && next >= 0x80 && next <= 0x9f) return true
    if (b === 0xf0 && next >= 0x80 && next <= 0x8f) return true
  }
  return false
}
