/**
 * `jwt_claims_headers` (Pomerium docs: Claim headers): upstream headers carrying claims of the assertion.
 *
 * Map form `{X-Email: email}` names the header; list form `[email, given_name]` (or a comma
 * string) gives `x-pomerium-claim-<claim>` with the claim name verbatim, as Pomerium's
 * `PomeriumJWTHeaderName` does (its docs say underscores become dashes; its code does not).
 *
 * A header's value is the claim of the assertion payload: arrays joined with `,`, numbers and
 * booleans as text; a claim the payload lacks gives an empty value.
 *
 * Header safety (hostile-input case: redirect / open-redirect): a value containing CR, LF, NUL or any other control
 * character except TAB is never sent: the header is **dropped** (its name stays in the remove
 * list, so the client's copy is gone too). Non-ASCII text is sent as UTF-8 bytes, as Envoy
 * does; Node writes header strings one byte per character, so the value is re-encoded.
 */

/** Control characters a header value must not carry (TAB is allowed). */
// eslint-disable-next-line no-control-regex
const FORBIDDEN_IN_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/
// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/

/** Names an identity header may never take: framing, routing and hop-by-hop headers. */
const FORBIDDEN_NAMES = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'http2-settings',
])

/** RFC 9110 token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** The header name `jwt_claims_headers` list form gives a claim. */
export function claimHeaderName(claim: string): string {
  return `x-pomerium-claim-${claim}`
}

/**
 * Normalises `jwt_claims_headers` (map, list, or comma-separated string) to `Header: claim`.
 * The config loader already does this for `config.raw`; this accepts either form for callers
 * that hold the setting as written.
 */
export function normaliseClaimHeaders(value: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (value === undefined || value === null) return out
  if (typeof value === 'string') {
    for (const c of value.split(',')) {
      const claim = c.trim()
      if (claim !== '') out[claimHeaderName(claim)] = claim
    }
  } else if (Array.isArray(value)) {
    for (const c of value) if (typeof c === 'string' && c.trim() !== '') out[claimHeaderName(c.trim())] = c.trim()
  } else if (typeof value === 'object') {
    for (const [header, claim] of Object.entries(value as Record<string, unknown>)) if (typeof claim === 'string') out[header] = claim
  }
  return out
}

/** Why a `jwt_claims_headers` entry cannot be used, or undefined when it can. */
export function claimHeaderProblem(header: string, claim: string): string | undefined {
  if (!TOKEN.test(header)) return 'header name must be an RFC 9110 token'
  if (FORBIDDEN_NAMES.has(header.toLowerCase())) return `${header} cannot carry a claim (framing or hop-by-hop header)`
  if (claim === '') return 'claim name must not be empty'
  return undefined
}

/** Whether an identity header may be set under this (lower-case) name. */
export function isSettableHeaderName(lower: string): boolean {
  return TOKEN.test(lower) && !FORBIDDEN_NAMES.has(lower)
}

/**
 * A claim as Pomerium's `getClaimStringSlice` reads it: every element of a list (a scalar is a
 * one-element list) as text; null, objects and nested lists are skipped. Undefined when the
 * claim is absent.
 */
export function claimStrings(value: unknown): string[] | undefined {
  if (value === undefined) return undefined
  const list = Array.isArray(value) ? (value as unknown[]) : [value]
  const out: string[] = []
  for (const v of list) {
    if (typeof v === 'string') out.push(v)
    else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') out.push(String(v))
  }
  return out
}

/** A payload value as header text (Pomerium `getHeaderStringValue`): arrays joined with `,`. */
export function headerText(value: unknown): string {
  if (value === undefined || value === null) return ''
  if (Array.isArray(value)) return value.map(headerText).join(',')
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  return JSON.stringify(value)
}

/**
 * The value as it may go on the wire, or undefined when it must not be sent (CR, LF, NUL or
 * another control character). Non-ASCII text becomes its UTF-8 bytes, one per character.
 */
export function wireValue(text: string): string | undefined {
  if (FORBIDDEN_IN_VALUE.test(text)) return undefined
  return NON_ASCII.test(text) ? Buffer.from(text, 'utf8').toString('latin1') : text
}

/** Like `wireValue` for text that is already wire bytes (a request header value). */
export function wireSafe(bytes: string): string | undefined {
  return FORBIDDEN_IN_VALUE.test(bytes) ? undefined : bytes
}

/**
 * Claim headers for one assertion payload: lower-case header name → wire value. Headers whose
 * value is unsafe, or whose name may not be set, are left out.
 */
export function claimHeaderValues(
  payload: Readonly<Record<string, unknown>>,
  claimHeaders: Readonly<Record<string, string>>,
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const header in claimHeaders) {
    const lower = header.toLowerCase()
    if (!isSettableHeaderName(lower)) continue
    const value = wireValue(headerText(payload[claimHeaders[header] as string]))
    if (value !== undefined) out[lower] = value
  }
  return out
}
