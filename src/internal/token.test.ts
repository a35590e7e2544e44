import assert from 'node:assert/strict'
import { createHmac, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  bearerToken,
  createInternalTokenSource,
  createInternalVerifier,
  deriveInternalKey,
  mintInternalToken,
  verifyInternalToken,
} from './token.js'
import { signSessionHandle } from '../session/session-handle.js'

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')

/** Signs any header and claims with HS256 under `key`. */
function forge(header: unknown, claims: unknown, key: Buffer): string {
  const input = `${b64(header)}.${b64(claims)}`
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
}

describe('internal credential', () => {
  const secret = randomBytes(32)
  const key = deriveInternalKey(secret)
  const now = Math.floor(Date.now() / 1000)
  const header = { alg: 'HS256', typ: 'portcullis-internal+jwt' }
  const claims = { iat: now, exp: now + 300, aud: 'portcullis-internal' }

  it('derives a key distinct from the shared secret, stable per secret', () => {
    assert.equal(key.length, 32)
    assert.notDeepEqual(key, secret)
    assert.deepEqual(deriveInternalKey(secret), key)
    assert.notDeepEqual(deriveInternalKey(randomBytes(32)), key)
  })

  it('accepts what it mints, with exactly the documented header and claims', () => {
    const t = mintInternalToken(key, now)
    assert.ok(verifyInternalToken(t, key, now))
    const [h, p] = t.split('.') as [string, string]
    assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url').toString()), header)
    assert.deepEqual(JSON.parse(Buffer.from(p, 'base64url').toString()), claims)
    assert.ok(verifyInternalToken(forge(header, claims, key), key, now))
    assert.throws(() => mintInternalToken(key, now, 3601), RangeError)
  })

  it('refuses every other token', () => {
    const refused: Record<string, string> = {
      'expired beyond the skew': forge(header, { ...claims, iat: now - 400, exp: now - 61 }, key),
      'wrong audience': forge(header, { ...claims, aud: 'authenticate' }, key),
      'audience as a list': forge(header, { ...claims, aud: ['portcullis-internal'] }, key),
      'wrong typ': forge({ alg: 'HS256', typ: 'JWT' }, claims, key),
      'no typ': forge({ alg: 'HS256' }, claims, key),
      'extra header field': forge({ ...header, kid: 'x' }, claims, key),
      'alg none': `${b64({ alg: 'none', typ: 'portcullis-internal+jwt' })}.${b64(claims)}.`,
      'signed with the raw shared secret': forge(header, claims, secret),
      'issued in the future': forge(header, { ...claims, iat: now + 120, exp: now + 300 }, key),
      'lives longer than an hour': forge(header, { ...claims, exp: now + 2 * 3600 }, key),
      'extra claim': forge(header, { ...claims, sub: 'alice' }, key),
      'missing exp': forge(header, { iat: now, aud: 'portcullis-internal' }, key),
      'string exp': forge(header, { ...claims, exp: String(now + 300) }, key),
      'session handle': signSessionHandle(
        { iss: 'authenticate.localhost', sub: 'u', aud: ['portcullis-internal'], iat: now, exp: now + 300, jti: 's', idp_id: 'i' },
        secret,
      ),
      'session handle under the derived key': signSessionHandle(
        { iss: 'authenticate.localhost', sub: 'u', aud: ['portcullis-internal'], iat: now, exp: now + 300, jti: 's', idp_id: 'i' },
        key,
      ),
      'tampered signature': `${mintInternalToken(key, now).slice(0, -2)}AA`,
      garbage: 'not.a.jwt',
      empty: '',
    }
    for (const [what, token] of Object.entries(refused)) {
      assert.equal(verifyInternalToken(token, key, now), false, what)
    }
    assert.ok(verifyInternalToken(forge(header, { ...claims, iat: now - 400, exp: now - 59 }, key), key, now), 'within the skew')
  })

  it('the token source reuses a token until half its lifetime', () => {
    let t = 1_000_000_000_000
    const source = createInternalTokenSource(secret, { now: () => t, lifetimeS: 300 })
    const first = source.authorization()
    assert.match(first, /^Bearer /)
    t += 149_000
    assert.equal(source.authorization(), first)
    t += 1_000
    assert.notEqual(source.authorization(), first)
  })

  it('the verifier takes only the Bearer scheme', () => {
    const verify = createInternalVerifier(secret)
    const token = mintInternalToken(key)
    assert.ok(verify(`Bearer ${token}`))
    assert.equal(verify(`Pomerium ${token}`), false)
    assert.equal(verify(`bearer ${token}`), false)
    assert.equal(verify(token), false)
    assert.equal(verify(undefined), false)
    assert.equal(verify([`Bearer ${token}`]), false)
    assert.equal(bearerToken(`Bearer ${token} extra`), undefined)
  })
})
