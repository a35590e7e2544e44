import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { test } from 'node:test'
import { calculateJwkThumbprint } from 'jose'
import { deriveSigningKeyPem, loadSigningKeys, SigningKeyError } from './signing-keys.js'

const pem = (k: { privateKey: { export(o: { format: 'pem'; type: 'pkcs8' | 'sec1' | 'pkcs1' }): string | Buffer } }, type: 'pkcs8' | 'sec1' | 'pkcs1' = 'pkcs8'): string =>
  k.privateKey.export({ format: 'pem', type }).toString()

const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ed = generateKeyPairSync('ed25519')
const secret = Buffer.from('AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 'base64')

/*
 * Known answer for the key Pomerium derives from this shared secret (config/options.go
 * deriveSigningKey: HKDF-SHA256(secret, salt nil, info "derived-jwt-signing-key") read by
 * filippo.io/keygen ECDSALegacy(P-256): 40 bytes, d = b mod (N-1) + 1). Computed independently
 * of this code with Python `cryptography` (its HKDF, Python integers, its EC arithmetic) and
 * cross-checked with an HKDF assembled by hand from HMAC-SHA256 (RFC 5869 with a zero salt):
 *   stream = 0afe7469085cea38bbdef0a6664c83ccaf228b4a9dae24323922e65ee50820744740cb195db3b3fb
 *   d      = c43bdade52f1252bb20436d5fd9abbb8e6befe69f9386216a3f70cf90835dcac
 * The kid is the hex SHA-256 of {"crv","kty","x","y"} (RFC 7638), as go-jose's Thumbprint.
 */
const KNOWN = {
  secret: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
  jwk: {
    use: 'sig',
    kty: 'EC',
    kid: 'dfdc30ede8204880a26e86348232fede98474153abe3975b99290fa48522c81b',
    crv: 'P-256',
    alg: 'ES256',
    x: '1uOUuU7VQuyIQZJTQQ85nB_uP8iBgYYDyiS8sUpYnH8',
    y: 'GDkhzIWUOKSwHp2tisJy6FYSUc9tngjTFwNlBADz8JY',
  },
  d: 'c43bdade52f1252bb20436d5fd9abbb8e6befe69f9386216a3f70cf90835dcac',
}
const KNOWN_2 = {
  secret: 'ofvG1NmrEBZzsIPRG7L1GNBkXdx8z8i7ouQ+5e4l9kU=',
  kid: 'dde96ac153a6efad85544eb252cc793f533761333c9cffbe6f84faf82394e09c',
  x: 'TdjNH7YhQZj1QMYG9LASC7ZUsT3m1vxSNQ73cJrSLhk',
  y: 'wJE7BYe08gAP4X2CsX-qM44b2MhRgtLzWNax_W7Pe5o',
}

test('derived key: matches the known answer of Pomerium’s derivation (HKDF-SHA256 → Go 1.19 ecdsa.GenerateKey)', () => {
  const keys = loadSigningKeys(undefined, Buffer.from(KNOWN.secret, 'base64'))
  assert.equal(keys.derived, true)
  assert.deepEqual(keys.jwks, { keys: [KNOWN.jwk] })
  const d = keys.signer.privateKey.export({ format: 'jwk' }).d
  assert.equal(Buffer.from(d as string, 'base64url').toString('hex'), KNOWN.d)
  const second = loadSigningKeys('', Buffer.from(KNOWN_2.secret, 'base64')).jwks.keys[0]
  assert.equal(second?.kid, KNOWN_2.kid)
  assert.equal(second?.x, KNOWN_2.x)
  assert.equal(second?.y, KNOWN_2.y)
})

test('derived key: the JWKS is published with members in Pomerium’s order', () => {
  const body = JSON.stringify(loadSigningKeys(undefined, secret).jwks)
  assert.match(body, /^\{"keys":\[\{"use":"sig","kty":"EC","kid":"[0-9a-f]{64}","crv":"P-256","alg":"ES256","x":"[\w-]{43}","y":"[\w-]{43}"\}\]\}$/)
})

test('derived key: deterministic for a secret, different for another secret', () => {
  const a = loadSigningKeys(undefined, secret).jwks
  const b = loadSigningKeys('   ', Buffer.from(secret)).jwks
  assert.deepEqual(a, b)
  const other = Buffer.from(secret)
  other[0] = 0xff
  assert.notDeepEqual(loadSigningKeys(undefined, other).jwks, a)
})

test('derived key: written as Pomerium writes it (SEC1 EC PRIVATE KEY PEM), and loading that PEM publishes the same key', () => {
  const text = deriveSigningKeyPem(secret)
  assert.match(text, /^-----BEGIN EC PRIVATE KEY-----\n/)
  const loaded = loadSigningKeys(text, Buffer.alloc(32))
  assert.equal(loaded.derived, false)
  assert.deepEqual(loaded.jwks, loadSigningKeys(undefined, secret).jwks)
})

test('several keys: the first signs, all are published (public parts only, use sig, alg, kid)', () => {
  const text = [pem(ec256, 'sec1'), pem(ec384), pem(rsa, 'pkcs1'), pem(ed)].join('\n')
  const keys = loadSigningKeys(text, secret)
  assert.equal(keys.derived, false)
  assert.equal(keys.all.length, 4)
  assert.equal(keys.signer, keys.all[0])
  assert.deepEqual(
    keys.jwks.keys.map((k) => [k.kty, k.crv, k.alg, k.use]),
    [
      ['EC', 'P-256', 'ES256', 'sig'],
      ['EC', 'P-384', 'ES384', 'sig'],
      ['RSA', undefined, 'RS256', 'sig'],
      ['OKP', 'Ed25519', 'EdDSA', 'sig'],
    ],
  )
  for (const k of keys.jwks.keys) {
    assert.equal('d' in k || 'p' in k || 'q' in k, false, 'no private members')
  }
  assert.equal(keys.jwks.keys[0]?.x, (ec256.publicKey.export({ format: 'jwk' }) as { x: string }).x)
})

test('kid: 64 lower-case hex characters, the SHA-256 RFC 7638 thumbprint of each key', async () => {
  const keys = loadSigningKeys([pem(ec256), pem(rsa), pem(ed)].join('\n'), secret)
  for (const k of keys.all) {
    assert.match(k.kid, /^[0-9a-f]{64}$/)
    const jose = await calculateJwkThumbprint(k.publicKey.export({ format: 'jwk' }), 'sha256')
    assert.equal(k.kid, Buffer.from(jose, 'base64url').toString('hex'))
  }
})

test('signing_key as base64 of PEM, as Pomerium accepts it', () => {
  const text = pem(ec256)
  const a = loadSigningKeys(Buffer.from(text).toString('base64'), secret)
  assert.deepEqual(a.jwks, loadSigningKeys(text, secret).jwks)
})

test('signing_key problems are errors naming the block', () => {
  const cases: [string, RegExp][] = [
    ['not a key', /no PEM block|expected PEM/],
    ['-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----', /block 1 \(CERTIFICATE\).*private key/],
    [`${pem(ec256)}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----`, /block 2 \(PRIVATE KEY\).*cannot be read/],
    [generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), /at least 2048 bits/],
    [generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), /curve .* not supported/],
    [
      ec256.privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'x' }).toString(),
      /ENCRYPTED PRIVATE KEY.*unencrypted/,
    ],
  ]
  for (const [text, message] of cases) {
    assert.throws(() => loadSigningKeys(text, secret), (err: unknown) => err instanceof SigningKeyError && message.test(err.message))
  }
})

test('signatures verify with the published key for every algorithm', async () => {
  const { createLocalJWKSet, compactVerify } = await import('jose')
  for (const k of [ec256, ec384, rsa, ed]) {
    const keys = loadSigningKeys(pem(k), secret)
    const header = Buffer.from(JSON.stringify({ alg: keys.signer.alg, kid: keys.signer.kid })).toString('base64url')
    const body = Buffer.from('{}').toString('base64url')
    const jws = `${header}.${body}.${keys.signer.sign(Buffer.from(`${header}.${body}`)).toString('base64url')}`
    const result = await compactVerify(jws, createLocalJWKSet({ keys: keys.jwks.keys.map((j) => ({ ...j })) }))
    assert.equal(result.protectedHeader.alg, keys.signer.alg)
  }
})
