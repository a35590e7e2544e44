/**
 * Keys of the built-in identity provider, all derived from one 32-byte secret with HKDF-SHA256
 * (RFC 5869), one `info` label per purpose. Deriving instead of generating means a restart keeps
 * the signing key (ID tokens already handed out still verify against the JWKS) and the cookie
 * key (sessions' cookies stay valid while the session data lasts), with nothing to store.
 */
import { createECDH, createHash, createPrivateKey, hkdfSync } from 'node:crypto'

import type { JWK } from 'oidc-provider'

function derive(secret: Buffer, label: string, length = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `portcullis builtin-idp ${label}`, length))
}

/** The key oidc-provider signs its cookies with (Keygrip). */
export function cookieKey(secret: Buffer): string {
  return derive(secret, 'cookie key').toString('base64url')
}

/** Order of the P-256 group: a private scalar must lie in [1, n-1]. */
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

/**
 * The ES256 signing key as a private JWK: the scalar is HKDF output, retried with a counter in the
 * (about 2^-32 likely) case it falls outside the group order. `kid` is the RFC 7638 thumbprint.
 */
export function signingJwk(secret: Buffer): JWK {
  for (let counter = 0; counter < 100; counter++) {
    const d = derive(secret, `signing key ES256 ${counter}`)
    const scalar = BigInt(`0x${d.toString('hex')}`)
    if (scalar === 0n || scalar >= P256_ORDER) continue
    const ecdh = createECDH('prime256v1')
    ecdh.setPrivateKey(d)
    const point = ecdh.getPublicKey() // 0x04 || x || y
    const x = point.subarray(1, 33).toString('base64url')
    const y = point.subarray(33, 65).toString('base64url')
    const jwk = { kty: 'EC', crv: 'P-256', x, y, d: d.toString('base64url') }
    createPrivateKey({ key: jwk, format: 'jwk' }) // refuses an inconsistent key
    const kid = createHash('sha256').update(JSON.stringify({ crv: 'P-256', kty: 'EC', x, y })).digest('base64url')
    return { ...jwk, kid, alg: 'ES256', use: 'sig' }
  }
  throw new Error('could not derive a P-256 key from the secret')
}
