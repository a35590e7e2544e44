import assert from 'node:assert/strict'
import { test } from 'node:test'
import { clearCookie, readCookie, setCookie } from './cookies.js'

const base = { domain: undefined, httpOnly: true, sameSite: undefined, maxAgeS: 50400 } as const

test('cookies are Secure, Path=/, HttpOnly by default, host-only unless a domain is set', () => {
  assert.equal(setCookie('_pomerium', 'abc', base), '_pomerium=abc; Max-Age=50400; Path=/; Secure; HttpOnly')
  assert.equal(
    setCookie('_pomerium', 'abc', { ...base, domain: 'example.com', sameSite: 'lax', httpOnly: false }),
    '_pomerium=abc; Max-Age=50400; Path=/; Secure; Domain=example.com; SameSite=Lax',
  )
  assert.match(clearCookie('_pomerium', base), /^_pomerium=; Max-Age=0; Expires=Thu, 01 Jan 1970/)
  assert.throws(() => setCookie('_pomerium', 'a;b', base))
  assert.throws(() => setCookie('bad name', 'a', base))
})

test('reading picks our cookie only; duplicates with different values count as none', () => {
  assert.equal(readCookie('a=1; _pomerium=tok; b=2', '_pomerium'), 'tok')
  assert.equal(readCookie(['a=1', '_pomerium=tok'], '_pomerium'), 'tok')
  assert.equal(readCookie('_pomerium_csrf=x', '_pomerium'), undefined)
  assert.equal(readCookie('_pomerium=tok; _pomerium=tok', '_pomerium'), 'tok')
  assert.equal(readCookie('_pomerium=tok; _pomerium=planted', '_pomerium'), undefined)
  assert.equal(readCookie('_pomerium=', '_pomerium'), undefined)
  assert.equal(readCookie(`${'x=1; '.repeat(20000)}_pomerium=tok`, '_pomerium'), undefined, 'cookie bomb is not searched')
  assert.equal(readCookie(undefined, '_pomerium'), undefined)
})
