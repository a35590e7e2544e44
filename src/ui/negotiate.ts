/**
 * Content negotiation (RFC 9110 section 12.5.1), the one parser of Accept headers: does the
 * client want a page, JSON or something else. Every answer Portcullis writes itself (proxy
 * errors, denials, authenticate pages, the sign-in redirect decision) asks this function, so
 * that one Accept header gets one reading everywhere.
 */

interface MediaRange {
  readonly type: string
  readonly subtype: string
  readonly q: number
  /** Position in the header: on equal quality and specificity, the client's first choice wins. */
  readonly position: number
}

/** A quality value as RFC 9110 writes it (0 to 1, at most three decimals); anything else counts as 0. */
const QVALUE = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/

function parseAccept(accept: string): MediaRange[] {
  const ranges: MediaRange[] = []
  for (const [position, part] of accept.split(',').entries()) {
    const [rangeRaw, ...params] = part.split(';')
    const range = (rangeRaw ?? '').trim().toLowerCase()
    const slash = range.indexOf('/')
    if (slash <= 0 || slash === range.length - 1) continue
    let q = 1
    for (const p of params) {
      const eq = p.indexOf('=')
      if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'q') continue
      const value = p.slice(eq + 1).trim()
      q = QVALUE.test(value) ? Number(value) : 0
    }
    ranges.push({ type: range.slice(0, slash), subtype: range.slice(slash + 1), q, position })
  }
  return ranges
}

/** 3 for `type/subtype`, 2 for `type/*`, 1 for `*\/*`, 0 when the range does not cover the type. */
function specificity(range: MediaRange, type: string, subtype: string): number {
  if (range.type === type && range.subtype === subtype) return 3
  if (range.type === type && range.subtype === '*') return 2
  if (range.type === '*' && range.subtype === '*') return 1
  return 0
}

/**
 * The type among `offered` (lower-case `type/subtype`) the client prefers, or undefined when it
 * accepts none of them. A missing or empty Accept header accepts anything: the first offered.
 *
 * Each offered type takes the quality of the most specific range that covers it (`text/html;q=0`
 * refuses HTML even beside `*\/*`). The highest quality wins; on a tie a type the client named
 * beats one it reached by a wildcard, then the one the client listed first, then the server's order.
 */
export function preferredType<T extends string>(accept: string | readonly string[] | undefined, offered: readonly [T, ...T[]]): T | undefined {
  const header = typeof accept === 'string' ? accept : accept?.join(',')
  if (header === undefined || header.trim() === '') return offered[0]
  const ranges = parseAccept(header)
  let best: { type: T; q: number; specificity: number; position: number } | undefined
  for (const type of offered) {
    const [main = '', sub = ''] = type.split('/')
    let match: { q: number; specificity: number; position: number } | undefined
    for (const range of ranges) {
      const s = specificity(range, main, sub)
      if (s > 0 && (match === undefined || s > match.specificity)) match = { q: range.q, specificity: s, position: range.position }
    }
    if (match === undefined || match.q <= 0) continue
    const better =
      best === undefined ||
      match.q > best.q ||
      (match.q === best.q && (match.specificity > best.specificity || (match.specificity === best.specificity && match.position < best.position)))
    if (better) best = { type, ...match }
  }
  return best?.type
}

/** The types an error or denial answer can take; text/plain stands for "not JSON": it gets the page. */
const ANSWER_TYPES = ['text/html', 'application/json', 'text/plain'] as const

/** True when the client prefers JSON to a page (a missing Accept or `*\/*` gets the page). */
export function prefersJson(accept: string | readonly string[] | undefined): boolean {
  return preferredType(accept, ANSWER_TYPES) === 'application/json'
}
