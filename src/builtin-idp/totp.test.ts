import assert from 'node:assert/strict'
import { test } from 'node:test'

import { base32Decode, base32Encode, generateTotpSecret, hotp, totpAt, totpUri, TotpVerifier } from './totp.js'

const SHA1_KEY = Buffer.from('12345678901234567890')
const SHA256_KEY = Buffer.from('12345678901234567890123456789012')
const SHA512_KEY = Buffer.from('1234567890123456789012345678901234567890123456789012345678901234')

test('RFC 6238 appendix B test vectors (8 digits), and their 6-digit forms', () => {
  const vectors: [number, string, string, string][] = [
    [59, '94287082', '46119246', '90693936'],
    [1111111109, '07081804', '68084774', '25091201'],
    [1111111111, '14050471', '67062674', '99943326'],
    [1234567890, '89005924', '91819424', '93441116'],
    [2000000000, '69279037', '90698825', '38618901'],
    [20000000000, '65353130', '77737706', '47863826'],
  ]
  for (const [seconds, sha1, sha256, sha512] of vectors) {
    const ms = seconds * 1000
    assert.equal(totpAt(SHA1_KEY, ms, { digits: 8 }), sha1, `SHA1 T=${seconds}`)
    assert.equal(totpAt(SHA256_KEY, ms, { digits: 8, algorithm: 'sha256' }), sha256, `SHA256 T=${seconds}`)
    assert.equal(totpAt(SHA512_KEY, ms, { digits: 8, algorithm: 'sha512' }), sha512, `SHA512 T=${seconds}`)
    // Dynamic truncation keeps the low digits: the 6-digit code is the 8-digit one's last six.
    assert.equal(totpAt(SHA1_KEY, ms), sha1.slice(2), `SHA1 6 digits T=${seconds}`)
  }
})

test('RFC 4226 appendix D HOTP values', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489']
  expected.forEach((code, counter) => assert.equal(hotp(SHA1_KEY, counter), code))
})

test('base32 round-trips and reads secrets as people copy them', () => {
  assert.equal(base32Encode(Buffer.from('foobar')), 'MZXW6YTBOI') // RFC 4648 section 10
  assert.equal(base32Decode('MZXW6YTBOI======').toString(), 'foobar')
  assert.equal(base32Decode('mzxw 6ytb oi').toString(), 'foobar')
  assert.equal(base32Decode('MZXW-6YTB\tOI\n').toString(), 'foobar', 'hyphens, tabs and newlines as pasted')
  for (let n = 0; n < 40; n++) {
    const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 255))
    assert.deepEqual(base32Decode(base32Encode(bytes)), bytes, `length ${n}`)
  }
  assert.throws(() => base32Decode('MZXW1'), /not base32/)
  const secret = generateTotpSecret()
  assert.match(secret, /^[A-Z2-7]{32}$/)
  assert.equal(base32Decode(secret).length, 20)
})

test('otpauth URI in the Key URI format', () => {
  const uri = new URL(totpUri({ secret: 'jbsw y3dp ehpk 3pxp', accountName: 'ada@example.com', issuer: 'Example Co' }))
  assert.equal(uri.protocol, 'otpauth:')
  assert.equal(uri.host, 'totp')
  assert.equal(decodeURIComponent(uri.pathname), '/Example Co:ada@example.com')
  assert.equal(uri.searchParams.get('secret'), 'JBSWY3DPEHPK3PXP')
  assert.equal(uri.searchParams.get('issuer'), 'Example Co')
  assert.equal(uri.searchParams.get('algorithm'), 'SHA1')
  assert.equal(uri.searchParams.get('digits'), '6')
  assert.equal(uri.searchParams.get('period'), '30')
  assert.doesNotMatch(uri.href, /\+/, 'spaces as %20, which every app reads')
})

test('the verifier accepts one step of drift either way, and nothing further', () => {
  const now = 1_700_000_000_000
  const verifier = new TotpVerifier({ now: () => now })
  const secret = base32Encode(SHA1_KEY)
  assert.deepEqual(verifier.verify('a', secret, totpAt(SHA1_KEY, now - 30_000)), { ok: true })
  assert.deepEqual(verifier.verify('b', secret, totpAt(SHA1_KEY, now + 30_000)), { ok: true })
  assert.deepEqual(verifier.verify('c', secret, totpAt(SHA1_KEY, now - 60_000)), { ok: false, reason: 'wrong' })
  assert.deepEqual(verifier.verify('c', secret, totpAt(SHA1_KEY, now + 60_000)), { ok: false, reason: 'wrong' })
  assert.deepEqual(verifier.verify('c', secret, '12345'), { ok: false, reason: 'malformed' })
  assert.deepEqual(verifier.verify('c', secret, 'abcdef'), { ok: false, reason: 'malformed' })
  assert.deepEqual(verifier.verify('c', secret, ` ${totpAt(SHA1_KEY, now).slice(0, 3)} ${totpAt(SHA1_KEY, now).slice(3)}`), { ok: true }, 'spaces ignored')
})

test('hostile: a code is single-use per user; an older code after a newer one is refused too', () => {
  let now = 1_700_000_000_000
  const verifier = new TotpVerifier({ now: () => now })
  const secret = base32Encode(SHA1_KEY)
  const code = totpAt(SHA1_KEY, now)
  assert.deepEqual(verifier.verify('ada', secret, code), { ok: true })
  assert.deepEqual(verifier.verify('ada', secret, code), { ok: false, reason: 'replayed' })
  assert.deepEqual(verifier.verify('bob', secret, code), { ok: true }, 'per user')
  now += 30_000
  assert.deepEqual(verifier.verify('ada', secret, code), { ok: false, reason: 'replayed' }, 'still inside the window')
  assert.deepEqual(verifier.verify('ada', secret, totpAt(SHA1_KEY, now)), { ok: true }, 'the next step works')
  assert.deepEqual(verifier.verify('ada', secret, totpAt(SHA1_KEY, now - 30_000)), { ok: false, reason: 'replayed' })
})
