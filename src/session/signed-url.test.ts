import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { signUrl, verifySignedUrl } from './signed-url.js'

const key = randomBytes(32)
const now = 1_800_000_000
const target = new URL('https://authn.example.com/.pomerium/sign_in?pomerium_redirect_uri=https%3A%2F%2Fapp.example.com%2Fx%3Fa%3D1&pomerium_idp_id=abc')

test('a signed URL verifies, keeps its parameters, and lasts five minutes plus one minute of skew', () => {
  const signed = signUrl(target, key, now)
  assert.equal(signed.searchParams.get('pomerium_redirect_uri'), 'https://app.example.com/x?a=1')
  assert.equal(signed.searchParams.get('pomerium_expiry'), String(now + 300))
  assert.equal(verifySignedUrl(signed, key, now), undefined)
  assert.equal(verifySignedUrl(signed, key, now + 359), undefined)
  assert.equal(verifySignedUrl(signed, key, now + 361), 'expired')
  assert.equal(verifySignedUrl(signed, key, now - 61), 'not-yet-valid')
})

test('hostile: tampering with any part of a signed URL is detected (hostile-input case: redirect / open-redirect)', () => {
  const signed = signUrl(target, key, now)
  const variants: [string, (u: URL) => void][] = [
    ['unsigned', (u) => u.searchParams.delete('pomerium_signature')],
    ['redirect changed', (u) => u.searchParams.set('pomerium_redirect_uri', 'https://evil.com')],
    ['parameter added', (u) => u.searchParams.append('x', '1')],
    ['issued changed', (u) => u.searchParams.set('pomerium_issued', String(now + 1))],
    ['expiry extended', (u) => u.searchParams.set('pomerium_expiry', String(now + 9999))],
    ['host changed', (u) => (u.host = 'evil.com')],
    ['path changed', (u) => (u.pathname = '/.pomerium/sign_out')],
    ['signature byte flipped', (u) => {
      const sig = Buffer.from(u.searchParams.get('pomerium_signature') ?? '', 'base64url')
      sig[0] = (sig[0] ?? 0) ^ 1
      u.searchParams.set('pomerium_signature', sig.toString('base64url'))
    }],
    ['second signature', (u) => u.searchParams.append('pomerium_signature', 'AAAA')],
  ]
  for (const [name, mutate] of variants) {
    const copy = new URL(signed)
    mutate(copy)
    assert.notEqual(verifySignedUrl(copy, key, now), undefined, name)
  }
  assert.equal(verifySignedUrl(signed, randomBytes(32), now), 'bad-signature', 'another key')
  assert.equal(verifySignedUrl(target, key, now), 'missing')
})
