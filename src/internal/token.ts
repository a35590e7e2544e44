/**
 * The internal API credential (hostile-input case: tokens / jwt): a short-lived HS256 JWT that one Portcullis
 * service presents to another as `Authorization: Bearer <jwt>`.
 *
 * It is signed with a key DERIVED from `shared_secret` (HKDF-SHA256, info
 * `portcullis internal api`), never with the raw secret, and it carries its own `typ` and `aud`.
 * Every user-facing token that Portcullis makes with the shared secret (session handles,
 * `pomerium_jwt`) is signed with another key and another header, so none of them can ever verify
 * here, whatever its claims; the JWT assertion and provider tokens are signed with other keys
 * altogether.
 *
 * Signing and verifying use node:crypto directly (as session handles do): the server verifies a
 * token on every call, and the exact-header comparison rules out `alg: none`, algorithm confusion
 * and `kid`/`jku` tricks without parsing the header at all.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'

/** The HKDF `info` that separates the internal API key from every other use of the secret. */
const INTERNAL_KEY_INFO = 'portcullis internal api'
/** The only audience an internal credential carries. */
const INTERNAL_AUDIENCE = 'portcullis-internal'
/** The JOSE `typ` of an internal credential. */
const INTERNAL_TOKEN_TYPE = 'portcullis-internal+jwt'
/** The longest lifetime a verifier accepts (Pomerium's bound), in seconds. */
const MAX_INTERNAL_TOKEN_LIFETIME_S = 3600
/** How long the tokens we mint live, in seconds. */
const INTERNAL_TOKEN_LIFETIME_S = 300
/** Clock skew tolerated between services, in seconds. */
const INTERNAL_TOKEN_SKEW_S = 60

const HEADER = Buffer.from(
  JSON.stringify({ alg: 'HS256', typ: INTERNAL_TOKEN_TYPE }),
).toString('base64url')
/** Bounds the work an unauthenticated caller can make us do. */
const MAX_TOKEN_LENGTH = 1024

/** Derives the internal API signing key from the 32-byte shared secret. */
export function deriveInternalKey(sharedSecret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), INTERNAL_KEY_INFO, 32))
}

/** The claims of an internal credential: exactly these three. */
interface InternalClaims {
  readonly iat: number
  readonly exp: number
  readonly aud: typeof INTERNAL_AUDIENCE
}

/**
 * Mints a credential with the DERIVED key (`deriveInternalKey`), valid from `nowS` for
 * `lifetimeS` seconds (at most one hour).
 */
export function mintInternalToken(
  key: Buffer,
  nowS: number = Math.floor(Date.now() / 1000),
  lifetimeS: number = INTERNAL_TOKEN_LIFETIME_S,
): string {
  if (!(Number.isInteger(lifetimeS) && lifetimeS > 0 && lifetimeS <= MAX_INTERNAL_TOKEN_LIFETIME_S)) {
    throw new RangeError('internal token lifetime must be 1..3600 seconds')
  }
  const claims: InternalClaims = { iat: nowS, exp: nowS + lifetimeS, aud: INTERNAL_AUDIENCE }
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  const input = `${HEADER}.${payload}`
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
}

/**
 * Whether `token` is an internal credential made with `key` (the DERIVED key): exact header,
 * valid signature (constant-time comparison), exactly the claims `iat`, `exp` and `aud`, the
 * audience `portcullis-internal`, not expired (60 s of skew), not issued in the future, and not
 * valid for more than an hour from now.
 */
export function verifyInternalToken(
  token: string,
  key: Buffer,
  nowS: number = Math.floor(Date.now() / 1000),
): boolean {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return false
  const parts = token.split('.')
  if (parts.length !== 3) return false
  const [headerText, payloadText, signatureText] = parts as [string, string, string]
  if (headerText !== HEADER) return false
  const expected = createHmac('sha256', key).update(`${headerText}.${payloadText}`).digest()
  const given = Buffer.from(signatureText, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false
  let claims: unknown
  try {
    claims = JSON.parse(Buffer.from(payloadText, 'base64url').toString('utf8'))
  } catch {
    return false
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return false
  const c = claims as Record<string, unknown>
  const keys = Object.keys(c).sort()
  if (keys.length !== 3 || keys[0] !== 'aud' || keys[1] !== 'exp' || keys[2] !== 'iat') return false
  const { aud, exp, iat } = c
  if (aud !== INTERNAL_AUDIENCE) return false
  if (!Number.isSafeInteger(exp) || !Number.isSafeInteger(iat)) return false
  const e = exp as number
  const i = iat as number
  if (e < i) return false
  if (nowS > e + INTERNAL_TOKEN_SKEW_S) return false // expired
  if (i > nowS + INTERNAL_TOKEN_SKEW_S) return false // issued in the future
  if (e > nowS + MAX_INTERNAL_TOKEN_LIFETIME_S + INTERNAL_TOKEN_SKEW_S) return false // too long-lived
  return true
}

/** Extracts the credential of an `Authorization: Bearer <jwt>` header value. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined
  const m = /^Bearer ([A-Za-z0-9_\-.]+)$/.exec(header)
  return m?.[1]
}

/** Hands out the `Authorization` header value, minting a token once per half lifetime. */
interface InternalTokenSource {
  /** `Bearer <jwt>`, reused until half of its lifetime has passed. */
  authorization(): string
}

/** Creates a token source for calls made with `sharedSecret` (the raw 32-byte secret). */
export function createInternalTokenSource(
  sharedSecret: Buffer,
  options: { lifetimeS?: number; now?: () => number } = {},
): InternalTokenSource {
  const key = deriveInternalKey(sharedSecret)
  const lifetimeS = options.lifetimeS ?? INTERNAL_TOKEN_LIFETIME_S
  const now = options.now ?? Date.now
  let value = ''
  let renewAtS = Number.NEGATIVE_INFINITY
  return {
    authorization() {
      const nowS = Math.floor(now() / 1000)
      if (nowS >= renewAtS) {
        value = `Bearer ${mintInternalToken(key, nowS, lifetimeS)}`
        renewAtS = nowS + Math.floor(lifetimeS / 2)
      }
      return value
    },
  }
}

/**
 * Returns a check of `Authorization` header values for a server that accepts calls made with
 * `sharedSecret`: only `Bearer <internal credential>` passes.
 */
export function createInternalVerifier(
  sharedSecret: Buffer,
  now: () => number = Date.now,
): (authorization: string | string[] | undefined) => boolean {
  const key = deriveInternalKey(sharedSecret)
  return (authorization) => {
    const token = bearerToken(authorization)
    return token !== undefined && verifyInternalToken(token, key, Math.floor(now() / 1000))
  }
}
