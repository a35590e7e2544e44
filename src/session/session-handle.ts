/**
 * The session handle (as Pomerium's): an HS256 JWT signed with the shared secret that names a
 * session and nothing more; tokens and claims stay in the databroker. It travels in the session
 * cookie, in `Authorization: Pomerium <jwt>` and friends, and as `pomerium_jwt` after programmatic
 * sign-in. Signing and verifying use node:crypto directly: this runs on every request, where a
 * JOSE library's async WebCrypto path costs ten times more (docs/performance.md).
 *
 * Decoding never throws: anything malformed, foreign-keyed, expired or signed another way is
 * simply "no session" (hostile-input case: sessions / cookies / csrf; tokens / jwt).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export interface SessionHandle {
  /** Issuer: the authenticate host. */
  readonly iss: string
  /** User id. */
  readonly sub: string
  /** Hosts the handle is good for. */
  readonly aud: readonly string[]
  /** Issued at, unix seconds. */
  readonly iat: number
  /** Expiry, unix seconds (the session's `cookie_expire`). */
  readonly exp: number
  /** Session id. */
  readonly jti: string
  /** Identity provider id the session belongs to (per-route providers). */
  readonly idp_id: string
  /** Databroker versions for read-your-writes right after sign-in. */
  readonly databroker_server_version?: string
  readonly databroker_record_version?: number
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')
/** Bounds the work an attacker can make us do with a huge bearer value. */
const MAX_HANDLE_LENGTH = 8192

export function signSessionHandle(handle: SessionHandle, key: Buffer): string {
  const payload = Buffer.from(JSON.stringify(handle)).toString('base64url')
  const signingInput = `${HEADER}.${payload}`
  return `${signingInput}.${createHmac('sha256', key).update(signingInput).digest('base64url')}`
}

/**
 * Verifies and decodes a handle; undefined unless it is an HS256 JWT made with `key`, not
 * expired (one minute of skew) and well-formed.
 */
export function verifySessionHandle(token: string, key: Buffer, nowS: number = Math.floor(Date.now() / 1000)): SessionHandle | undefined {
  if (token.length > MAX_HANDLE_LENGTH) return undefined
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  const [headerText, payloadText, signatureText] = parts as [string, string, string]
  // Only our exact header is accepted: no alg=none, no RS/ES confusion, no kid/jku/jwk games.
  if (headerText !== HEADER) return undefined
  const expected = createHmac('sha256', key).update(`${headerText}.${payloadText}`).digest()
  const given = Buffer.from(signatureText, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  let claims: unknown
  try {
    claims = JSON.parse(Buffer.from(payloadText, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  if (!isHandle(claims)) return undefined
  if (nowS > claims.exp + 60 || claims.iat > nowS + 60) return undefined
  return claims
}

function isHandle(v: unknown): v is SessionHandle {
  if (typeof v !== 'object' || v === null) return false
  const c = v as Record<string, unknown>
  return (
    typeof c['iss'] === 'string' &&
    typeof c['sub'] === 'string' &&
    Array.isArray(c['aud']) &&
    c['aud'].every((a) => typeof a === 'string') &&
    Number.isInteger(c['iat']) &&
    Number.isInteger(c['exp']) &&
    typeof c['jti'] === 'string' &&
    c['jti'] !== '' &&
    typeof c['idp_id'] === 'string' &&
    (c['databroker_server_version'] === undefined || typeof c['databroker_server_version'] === 'string') &&
    (c['databroker_record_version'] === undefined || Number.isInteger(c['databroker_record_version']))
  )
}
