/**
 * Verification of a compact JWS a provider signed: header rules before any key is looked at,
 * the signature with a key of the provider's JWKS, then issuer, audience and time claims. Shared
 * by the bearer-token verifier and back-channel logout (authenticate/backchannel-logout.ts).
 */
import { compactVerify } from 'jose'

import { parseJsonObject } from './documents.js'
import { fail } from './errors.js'
import type { ProviderKeySource } from './key-source.js'

/** Signature algorithms we ever accept: asymmetric only. */
export const ASYMMETRIC_ALGORITHMS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]

/** Longest token (JWT or opaque) we look at, in characters. */
export const MAX_TOKEN_LENGTH = 64 * 1024
/** Header members that bring their own key or extensions: a token carrying one is refused. */
const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'crit', 'b64', 'enc', 'zip'] as const
const MAX_KID_LENGTH = 256

/** The parts of a compact JWS and its decoded protected header. */
interface CompactJws {
  header: Record<string, unknown>
}

const B64URL = /^[A-Za-z0-9_-]+$/
/** A signature segment may be empty (then it never verifies). */
const SIGNATURE64 = /^[A-Za-z0-9_-]*$/

function decodeSegment(segment: string): Record<string, unknown> | undefined {
  if (!B64URL.test(segment)) return undefined
  return parseJsonObject(Buffer.from(segment, 'base64url'))
}

function parseCompact(token: string): CompactJws {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    fail('ERR_TOKEN_MALFORMED', 'the token is empty or too long')
  }
  const parts = token.split('.')
  // An empty signature passes this shape check so that `alg: none` is refused as such (by
  // checkHeader); no signature ever verifies empty.
  const [header64 = '', payload64 = '', signature64 = ''] = parts
  if (parts.length !== 3 || !B64URL.test(header64) || !B64URL.test(payload64) || !SIGNATURE64.test(signature64)) {
    fail('ERR_TOKEN_MALFORMED', 'the token is not a compact JWT (three base64url parts)')
  }
  const header = decodeSegment(header64)
  if (!header) fail('ERR_TOKEN_MALFORMED', 'the token header is not a JSON object')
  return { header }
}

/** `typ` as compared: lower case, without an `application/` prefix (RFC 7515 4.1.9). */
function normaliseTyp(typ: string): string {
  const lower = typ.toLowerCase()
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower
}

/** What {@link verifyProviderJwt} accepts; each verifier fills it for its kind of token. */
interface JwtPolicy {
  /** Accepted `typ` header values, normalised (`jwt`, `at+jwt`, `logout+jwt`); an absent `typ` is accepted. */
  typ: readonly string[]
  /** Restrict `alg` to the provider's `id_token_signing_alg_values_supported` too. */
  idTokenAlgorithms: boolean
  /** `aud` must contain one of these. */
  audiences: readonly string[]
  /** When `aud` has several values, an `azp` present must be one of `audiences` (OIDC Core 3.1.3.7). */
  checkAzp: boolean
  /** `exp` must be present (it is checked whenever present). */
  requireExp: boolean
  /** `sub` must be a non-empty string. */
  requireSub: boolean
  /** When set, `iat` may be at most this many seconds (plus skew) old. */
  maxAgeSeconds?: number
  clockSkewSeconds: number
  /** Epoch milliseconds. */
  now: number
}

interface VerifiedJwt {
  header: Readonly<Record<string, unknown>>
  claims: Record<string, unknown>
}

/**
 * Check a header without any key or network: algorithm, forbidden members, `kid`, `typ`.
 * @throws {ProviderTokenError}
 */
function checkHeader(header: Record<string, unknown>, policy: JwtPolicy): { alg: string; kid: string | undefined } {
  const alg = header.alg
  if (alg === undefined) fail('ERR_TOKEN_ALGORITHM', 'the token header has no alg')
  if (typeof alg !== 'string') fail('ERR_TOKEN_ALGORITHM', 'the token header alg is not a string')
  if (alg.toLowerCase() === 'none') fail('ERR_TOKEN_ALGORITHM', 'unsigned tokens (alg none) are refused')
  if (/^hs/i.test(alg)) fail('ERR_TOKEN_ALGORITHM', 'symmetric (HMAC) signatures are refused: only the provider key may sign')
  if (!ASYMMETRIC_ALGORITHMS.includes(alg)) fail('ERR_TOKEN_ALGORITHM', 'the token signature algorithm is not accepted')
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) fail('ERR_TOKEN_HEADER', `tokens with a "${name}" header are refused`)
  }
  if (header.cty !== undefined) fail('ERR_TOKEN_HEADER', 'nested tokens (cty header) are refused')
  const kid = header.kid
  if (kid !== undefined) {
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_KID_LENGTH) {
      fail('ERR_TOKEN_HEADER', 'the token kid is not a short string')
    }
    // A kid is only ever compared with the JWKS, but path-like ones are refused outright
    // (hostile-input case: tokens / jwt). "/" alone is tolerated for exact JWKS matches (AWS Cognito kids are
    // standard base64); keysFor never refetches the JWKS for such a kid.
    // eslint-disable-next-line no-control-regex
    if (kid.includes('..') || kid.includes('\\') || /[\u0000-\u001f\u007f]/.test(kid)) {
      fail('ERR_TOKEN_HEADER', 'the token kid contains path or control characters')
    }
  }
  const typ = header.typ
  if (typ !== undefined && (typeof typ !== 'string' || !policy.typ.includes(normaliseTyp(typ)))) {
    fail('ERR_TOKEN_HEADER', 'the token type (typ header) is not accepted here')
  }
  return { alg, kid: kid }
}

function numericClaim(claims: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const value = claims[name]
  if (value === undefined) {
    if (required) fail('ERR_TOKEN_CLAIMS', `the token has no ${name} claim`)
    return undefined
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) fail('ERR_TOKEN_CLAIMS', `the token ${name} claim is not a number`)
  return value
}

/** Issuer, audience and time checks on verified claims. */
function checkClaims(claims: Record<string, unknown>, issuer: string, policy: JwtPolicy): void {
  if (typeof claims.iss !== 'string') fail('ERR_TOKEN_CLAIMS', 'the token has no iss claim')
  if (claims.iss !== issuer) fail('ERR_TOKEN_ISSUER', 'the token was issued by another issuer')

  const aud = claims.aud
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined
  if (!audiences || audiences.length === 0 || !audiences.every((a) => typeof a === 'string')) {
    fail('ERR_TOKEN_CLAIMS', 'the token has no aud claim')
  }
  if (!audiences.some((a) => policy.audiences.includes(a))) {
    fail('ERR_TOKEN_AUDIENCE', 'the token is meant for another audience')
  }
  if (policy.checkAzp && new Set(audiences).size > 1 && claims.azp !== undefined) {
    if (typeof claims.azp !== 'string' || !policy.audiences.includes(claims.azp)) {
      fail('ERR_TOKEN_AUDIENCE', 'the token was issued to another client (azp)')
    }
  }

  const now = policy.now / 1000
  const skew = policy.clockSkewSeconds
  const exp = numericClaim(claims, 'exp', policy.requireExp)
  const iat = numericClaim(claims, 'iat', true) ?? 0
  const nbf = numericClaim(claims, 'nbf', false)
  if (exp !== undefined && exp <= now - skew) fail('ERR_TOKEN_EXPIRED', 'the token has expired')
  if (nbf !== undefined && nbf > now + skew) fail('ERR_TOKEN_NOT_YET_VALID', 'the token is not valid yet (nbf)')
  if (iat > now + skew) fail('ERR_TOKEN_NOT_YET_VALID', 'the token was issued in the future (iat)')
  if (policy.maxAgeSeconds !== undefined && now - iat > policy.maxAgeSeconds + skew) {
    fail('ERR_TOKEN_EXPIRED', 'the token was issued too long ago (iat)')
  }
  if (policy.requireSub && (typeof claims.sub !== 'string' || claims.sub === '')) {
    fail('ERR_TOKEN_CLAIMS', 'the token has no sub claim')
  }
}

/**
 * Verify a compact JWS issued by `keys.issuer`: header rules, signature with a provider key, then
 * issuer, audience and time claims per `policy`. Cheap refusals (header) happen before any
 * request to the provider.
 * @throws {ProviderTokenError}
 */
export async function verifyProviderJwt(keys: ProviderKeySource, token: string, policy: JwtPolicy): Promise<VerifiedJwt> {
  const { header } = parseCompact(token)
  const { alg, kid } = checkHeader(header, policy)
  if (policy.idTokenAlgorithms) {
    const meta = await keys.metadata()
    if (!meta.idTokenSigningAlgs.includes(alg)) {
      fail('ERR_TOKEN_ALGORITHM', 'the provider does not sign ID tokens with this algorithm')
    }
  }
  const candidates = await keys.keysFor(alg, kid)
  if (candidates.length === 0) fail('ERR_TOKEN_UNKNOWN_KEY', 'no key of the identity provider matches the token (kid, alg)')

  let payload: Uint8Array | undefined
  for (const key of candidates.slice(0, 10)) {
    try {
      payload = (await compactVerify(token, key, { algorithms: [alg] })).payload
      break
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') continue
      if (code === 'ERR_JWS_INVALID') fail('ERR_TOKEN_MALFORMED', 'the token is not a valid JWS', err)
      if (code === 'ERR_JOSE_ALG_NOT_ALLOWED' || code === 'ERR_JOSE_NOT_SUPPORTED') {
        fail('ERR_TOKEN_ALGORITHM', 'the token signature algorithm is not accepted', err)
      }
      fail('ERR_TOKEN_SIGNATURE', 'the token signature could not be verified', err)
    }
  }
  if (!payload) fail('ERR_TOKEN_SIGNATURE', 'the token signature does not verify with the identity provider key')
  const claims = parseJsonObject(Buffer.from(payload))
  if (!claims) fail('ERR_TOKEN_MALFORMED', 'the token payload is not a JSON object')
  checkClaims(claims, keys.issuer, policy)
  return { header, claims }
}

/** Whether a bearer token is a JWT access token (three parts, JOSE header with `typ` at+jwt or JWT). */
export function isJwtAccessToken(token: string): boolean {
  const parts = token.split('.')
  if (parts.length !== 3 || !B64URL.test(parts[1] ?? '') || !SIGNATURE64.test(parts[2] ?? '')) return false
  const header = decodeSegment(parts[0] ?? '')
  const typ = header?.typ
  return typeof typ === 'string' && ['at+jwt', 'jwt'].includes(normaliseTyp(typ))
}

