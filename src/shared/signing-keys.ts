/**
 * The keys that sign `X-Pomerium-Jwt-Assertion` (Pomerium docs: Signing / JWKS).
 *
 * `signing_key` holds one or more PEM private keys: the first signs, all are published in the
 * JWKS so that upstreams keep verifying assertions of the previous key during a rotation.
 * Without `signing_key` the key is derived from `shared_secret` exactly as Pomerium derives it
 * (`config/options.go` `deriveSigningKey`):
 *
 *   r = HKDF-SHA256(ikm = shared secret bytes, salt = none, info = "derived-jwt-signing-key")
 *   priv = keygen.ECDSALegacy(P-256, r)   // filippo.io/keygen, = Go 1.19 ecdsa.GenerateKey
 *
 * ECDSALegacy reads `N.BitLen()/8 + 8` = 40 bytes from the stream, reads them as a big-endian
 * integer b, and takes d = b mod (N - 1) + 1. So the same `shared_secret` publishes the same
 * JWKS from Portcullis and from Pomerium.
 *
 * `kid` is Pomerium's (`pkg/cryptutil/jose.go`): the lower-case hex of the RFC 7638 SHA-256
 * JWK thumbprint (go-jose `Thumbprint(crypto.SHA256)`), 64 characters.
 */
import { createECDH, createHash, createPrivateKey, createPublicKey, hkdfSync, sign as cryptoSign } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { CodedError } from './errors.js'

export type SigningAlg = 'ES256' | 'ES384' | 'ES512' | 'RS256' | 'EdDSA'

/** A published key, members in the order Pomerium (go-jose) writes them. */
export interface PublicJwk {
  readonly use: 'sig'
  readonly kty: 'EC' | 'RSA' | 'OKP'
  readonly kid: string
  readonly crv?: string
  readonly alg: SigningAlg
  readonly x?: string
  readonly y?: string
  readonly n?: string
  readonly e?: string
}

export interface SigningKey {
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  readonly alg: SigningAlg
  readonly kid: string
  readonly jwk: PublicJwk
  /** Signs a JWS signing input; ECDSA signatures are in JOSE (r||s) form. */
  sign(data: Buffer): Buffer
}

export interface SigningKeys {
  /** The first key: signs every assertion. */
  readonly signer: SigningKey
  readonly all: readonly SigningKey[]
  readonly jwks: { readonly keys: readonly PublicJwk[] }
  /** True when the key was derived from `shared_secret` (no `signing_key`). */
  readonly derived: boolean
}

/** `signing_key` could not be used; the message names the PEM block. */
export class SigningKeyError extends CodedError {
  readonly code = 'ERR_SIGNING_KEY'

  constructor(message: string) {
    super(message)
    this.name = 'SigningKeyError'
  }
}

export const DERIVED_KEY_INFO = 'derived-jwt-signing-key'

/** Order of P-256. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

/**
 * Loads `signing_key` (PEM text, or base64 of PEM as Pomerium also accepts), or derives the
 * key from the shared secret when it is unset or blank. Throws `SigningKeyError`.
 */
export function loadSigningKeys(signingKeyPem: string | undefined, sharedSecret: Buffer): SigningKeys {
  const text = signingKeyPem?.trim() ?? ''
  if (text === '') {
    const key = signingKeyFrom(deriveSigningPrivateKey(sharedSecret), 'derived')
    return { signer: key, all: [key], jwks: { keys: [key.jwk] }, derived: true }
  }
  const pem = text.includes('-----BEGIN') ? text : decodeBase64Pem(text)
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)]
  if (blocks.length === 0) throw new SigningKeyError('signing_key: no PEM block found (expected one or more PEM private keys)')
  const all = blocks.map((m, i) => {
    const label = `signing_key: PEM block ${i + 1} (${m[1] ?? '?'})`
    if (!/PRIVATE KEY$/.test(m[1] ?? '') || m[1] === 'ENCRYPTED PRIVATE KEY') throw new SigningKeyError(`${label}: expected an unencrypted private key`)
    let key: KeyObject
    try {
      key = createPrivateKey({ key: m[0], format: 'pem' })
    } catch (err) {
      throw new SigningKeyError(`${label}: cannot be read (${err instanceof Error ? err.message : String(err)})`)
    }
    return signingKeyFrom(key, label)
  })
  const signer = all[0] as SigningKey
  return { signer, all, jwks: { keys: all.map((k) => k.jwk) }, derived: false }
}

/** The derived P-256 key as Pomerium would write it: SEC1 `EC PRIVATE KEY` PEM. */
export function deriveSigningKeyPem(sharedSecret: Buffer): string {
  return deriveSigningPrivateKey(sharedSecret).export({ format: 'pem', type: 'sec1' }).toString()
}

/** HKDF-SHA256 stream → Go 1.19 `ecdsa.GenerateKey` (keygen.ECDSALegacy) on P-256. */
export function deriveSigningPrivateKey(sharedSecret: Buffer): KeyObject {
  // HKDF without salt = HashLen zero bytes (RFC 5869 2.2), as Go's hkdf.New(sha256.New, s, nil, info).
  const stream = Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), DERIVED_KEY_INFO, 40))
  const b = BigInt(`0x${stream.toString('hex')}`)
  const d = (b % (P256_N - 1n)) + 1n
  const dBytes = Buffer.from(d.toString(16).padStart(64, '0'), 'hex')
  const ecdh = createECDH('prime256v1')
  ecdh.setPrivateKey(dBytes)
  const point = ecdh.getPublicKey() // 04 || X || Y
  return createPrivateKey({
    format: 'jwk',
    key: {
      kty: 'EC',
      crv: 'P-256',
      d: dBytes.toString('base64url'),
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33, 65).toString('base64url'),
    },
  })
}

/** Lower-case hex of the RFC 7638 SHA-256 thumbprint, as Pomerium's `kid`. */
export function thumbprintKid(jwk: { kty: string; crv?: string; x?: string; y?: string; n?: string; e?: string }): string {
  let canonical: string
  switch (jwk.kty) {
    case 'EC':
      canonical = JSON.stringify({ crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y })
      break
    case 'RSA':
      canonical = JSON.stringify({ e: jwk.e, kty: 'RSA', n: jwk.n })
      break
    case 'OKP':
      canonical = JSON.stringify({ crv: jwk.crv, kty: 'OKP', x: jwk.x })
      break
    default:
      throw new SigningKeyError(`unsupported key type ${jwk.kty}`)
  }
  return createHash('sha256').update(canonical).digest('hex')
}

function signingKeyFrom(privateKey: KeyObject, label: string): SigningKey {
  const publicKey = createPublicKey(privateKey)
  const exported = publicKey.export({ format: 'jwk' }) as Record<string, unknown>
  const field = (name: string): string => {
    const v = exported[name]
    if (typeof v !== 'string') throw new SigningKeyError(`${label}: public key has no ${name}`)
    return v
  }
  let alg: SigningAlg
  let jwk: PublicJwk
  let signer: (data: Buffer) => Buffer
  const type: string = privateKey.asymmetricKeyType ?? '?'
  switch (type) {
    case 'ec': {
      const curve = field('crv')
      const hash = curve === 'P-256' ? 'sha256' : curve === 'P-384' ? 'sha384' : curve === 'P-521' ? 'sha512' : undefined
      if (hash === undefined) throw new SigningKeyError(`${label}: EC curve ${curve} is not supported (P-256, P-384, P-521)`)
      alg = curve === 'P-256' ? 'ES256' : curve === 'P-384' ? 'ES384' : 'ES512'
      const x = field('x')
      const y = field('y')
      jwk = { use: 'sig', kty: 'EC', kid: thumbprintKid({ kty: 'EC', crv: curve, x, y }), crv: curve, alg, x, y }
      signer = (data) => cryptoSign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' })
      break
    }
    case 'rsa': {
      const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0
      if (bits < 2048) throw new SigningKeyError(`${label}: RSA keys must have at least 2048 bits (this one has ${bits})`)
      alg = 'RS256'
      const n = field('n')
      const e = field('e')
      jwk = { use: 'sig', kty: 'RSA', kid: thumbprintKid({ kty: 'RSA', n, e }), alg, n, e }
      signer = (data) => cryptoSign('sha256', data, privateKey)
      break
    }
    case 'ed25519': {
      alg = 'EdDSA'
      const x = field('x')
      jwk = { use: 'sig', kty: 'OKP', kid: thumbprintKid({ kty: 'OKP', crv: 'Ed25519', x }), crv: 'Ed25519', alg, x }
      signer = (data) => cryptoSign(null, data, privateKey)
      break
    }
    default:
      throw new SigningKeyError(`${label}: key type ${type} is not supported (EC P-256/P-384/P-521, RSA, Ed25519)`)
  }
  return { privateKey, publicKey, alg, kid: jwk.kid, jwk: Object.freeze(jwk), sign: signer }
}

function decodeBase64Pem(text: string): string {
  const decoded = Buffer.from(text.replace(/\s+/g, ''), 'base64').toString('utf8')
  if (!decoded.includes('-----BEGIN')) throw new SigningKeyError('signing_key: expected PEM text or base64 of PEM')
  return decoded
}
