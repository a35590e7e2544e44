import assert from 'node:assert/strict'
import { test } from 'node:test'
import { clearCookie, cookieIsAmbiguous, cookiePathsFor, cookieValues, foreignCookieClears, readCookie, setCookie } from './cookies.js'

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

test('every value of a name is seen, so a tossed copy beside ours is known to be there', () => {
  assert.deepEqual(cookieValues('_pomerium=a; x=1; _pomerium=b; _pomerium=a', '_pomerium'), ['a', 'b'])
  assert.deepEqual(cookieValues('_pomerium_csrf=x', '_pomerium'), [])
  assert.deepEqual(cookieValues(undefined, '_pomerium'), [])
  assert.equal(cookieValues(`${'x=1; '.repeat(20000)}_pomerium=tok`, '_pomerium'), undefined)
  assert.equal(cookieIsAmbiguous('_pomerium=a; _pomerium=b', '_pomerium'), true)
  assert.equal(cookieIsAmbiguous('_pomerium=a; _pomerium=a', '_pomerium'), false)
})

test('the paths a cookie sent to a page can have, bounded', () => {
  assert.deepEqual(cookiePathsFor('/'), ['/'])
  assert.deepEqual(cookiePathsFor('/a/b'), ['/', '/a', '/a/', '/a/b'])
  assert.deepEqual(cookiePathsFor('/a/'), ['/', '/a', '/a/'])
  assert.equal(cookiePathsFor('/a/b/c/d/e/f/g/h/i').length, 8)
  assert.deepEqual(cookiePathsFor('/a;b/c'), ['/'], 'nothing that would end the attribute')
})

test('foreign copies are cleared on the host and its parent domains, never the copy that is ours', () => {
  const host = foreignCookieClears('_pomerium', 'app.corp.example.com', base, ['/'])
  assert.deepEqual(
    host.map((c) => /Domain=([^;]+)/.exec(c)?.[1]),
    ['app.corp.example.com', 'corp.example.com', 'example.com', 'com'],
  )
  for (const c of host) assert.match(c, /^_pomerium=; Max-Age=0; .*Path=\/; Secure/)
  // With cookie_domain, ours is the Domain=corp.example.com copy; a host-only leftover is foreign.
  const shared = foreignCookieClears('_pomerium', 'app.corp.example.com', { ...base, domain: '.corp.example.com' }, ['/', '/x'])
  assert.deepEqual(
    shared.map((c) => `${/Domain=([^;]+)/.exec(c)?.[1] ?? '(host-only)'} ${/Path=([^;]+)/.exec(c)?.[1]}`),
    ['(host-only) /', '(host-only) /x', 'app.corp.example.com /', 'app.corp.example.com /x', 'example.com /', 'example.com /x', 'com /', 'com /x'],
  )
  assert.deepEqual(foreignCookieClears('_pomerium', '127.0.0.1', base, ['/']), [], 'an IP address has no parent domains')
  assert.match(setCookie('x', 'y', { ...base, path: '/.pomerium/' }), /; Path=\/\.pomerium\/;/)
  assert.throws(() => setCookie('x', 'y', { ...base, path: '/a; Domain=evil' }))
})
