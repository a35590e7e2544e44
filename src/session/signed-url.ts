/**
 * Signed URLs between the proxy and authenticate (Pomerium docs: Communication & trust, Stateful flow): the query gains
 * `pomerium_issued` and `pomerium_expiry` (issued + 5 minutes) and `pomerium_signature`, an
 * HMAC-SHA512/256 over the URL without the signature followed by both times. Verification allows
 * one minute of clock skew and compares in constant time. Only signed URLs are followed, so
 * nobody can make authenticate redirect to a host of their choosing (hostile-input case: redirect / open-redirect).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const SIGNED_URL_LIFETIME_S = 300
const LEEWAY_S = 60

const QUERY_ISSUED = 'pomerium_issued'
const QUERY_EXPIRY = 'pomerium_expiry'
const QUERY_SIGNATURE = 'pomerium_signature'

/** Go's url.QueryEscape: everything but unreserved characters escaped, space as `+`. */
function queryEscape(text: string): string {
  return encodeURIComponent(text)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
}

/** The query in canonical form: keys sorted, values in order, as Go's url.Values.Encode writes it. */
function canonicalQuery(params: URLSearchParams): string {
  const keys = [...new Set(params.keys())].sort()
  const parts: string[] = []
  for (const key of keys) for (const value of params.getAll(key)) parts.push(`${queryEscape(key)}=${queryEscape(value)}`)
  return parts.join('&')
}

function withQuery(url: URL, query: string): string {
  const base = `${url.protocol}//${url.host}${url.pathname}`
  return query === '' ? base : `${base}?${query}`
}

function mac(key: Buffer, data: string): Buffer {
  return createHmac('sha512-256', key).update(data).digest()
}

/** Returns a copy of `url` signed with `key`, valid from `nowS` for five minutes. */
export function signUrl(url: URL, key: Buffer, nowS: number = Math.floor(Date.now() / 1000)): URL {
  const params = new URLSearchParams(url.search)
  params.delete(QUERY_SIGNATURE)
  const issued = nowS
  const expiry = nowS + SIGNED_URL_LIFETIME_S
  params.set(QUERY_ISSUED, String(issued))
  params.set(QUERY_EXPIRY, String(expiry))
  const unsigned = withQuery(url, canonicalQuery(params))
  params.set(QUERY_SIGNATURE, mac(key, `${unsigned} ${issued} ${expiry}`).toString('base64url'))
  return new URL(withQuery(url, canonicalQuery(params)))
}

export type SignedUrlProblem = 'missing' | 'malformed' | 'bad-signature' | 'expired' | 'not-yet-valid'

/** Checks a signed URL; returns undefined when valid, else what is wrong with it. */
export function verifySignedUrl(url: URL, key: Buffer, nowS: number = Math.floor(Date.now() / 1000)): SignedUrlProblem | undefined {
  const params = new URLSearchParams(url.search)
  const signature = params.getAll(QUERY_SIGNATURE)
  const issuedText = params.getAll(QUERY_ISSUED)
  const expiryText = params.getAll(QUERY_EXPIRY)
  if (signature.length === 0 && issuedText.length === 0 && expiryText.length === 0) return 'missing'
  // One of each, and plain integers: a second copy could be read differently by someone else.
  if (signature.length !== 1 || issuedText.length !== 1 || expiryText.length !== 1) return 'malformed'
  if (!/^\d{1,12}$/.test(issuedText[0] as string) || !/^\d{1,12}$/.test(expiryText[0] as string)) return 'malformed'
  const issued = Number(issuedText[0])
  const expiry = Number(expiryText[0])
  const given = Buffer.from(signature[0] as string, 'base64url')
  params.delete(QUERY_SIGNATURE)
  const expected = mac(key, `${withQuery(url, canonicalQuery(params))} ${issued} ${expiry}`)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad-signature'
  if (nowS > expiry + LEEWAY_S) return 'expired'
  if (issued > nowS + LEEWAY_S) return 'not-yet-valid'
  return undefined
}
