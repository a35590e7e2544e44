import assert from 'node:assert/strict'
import { test } from 'node:test'
import { cleanup, cleanupAgain, cleanupTried } from './cookie-conflict.js'

const context = {
  cookieName: '_pomerium',
  cookie: { domain: undefined, httpOnly: true, sameSite: undefined, maxAgeS: 50400 },
  cookieSecret: Buffer.alloc(32, 7),
  host: 'app.example.com',
} as const

function marker(setCookies: readonly string[]): string | undefined {
  return setCookies.find((c) => c.startsWith('_pomerium_cleared='))
}

test('a clean-up deletes parent-domain copies on the reaching paths and leaves an HMAC marker under /.pomerium/', () => {
  const cookies = cleanup(context, '/reports/q1')
  const clears = cookies.filter((c) => c.startsWith('_pomerium=;'))
  assert.ok(clears.some((c) => c.includes('Domain=example.com') && c.includes('Path=/;')))
  assert.ok(clears.some((c) => c.includes('Domain=example.com') && c.includes('Path=/reports;')))
  assert.ok(!clears.some((c) => !c.includes('Domain=')), 'our own host-only cookie is not cleared')
  const set = marker(cookies)
  assert.ok(set && /Path=\/\.pomerium\/;/.test(set) && /HttpOnly/.test(set) && /Max-Age=300/.test(set), set)
  const value = /^_pomerium_cleared=([^;]+)/.exec(set)?.[1] ?? ''
  assert.equal(cleanupTried({ cookie: `_pomerium_cleared=${value}` }, context), true)
})

test('the marker cannot be planted by another site, is per host, and the explanation drops it', () => {
  assert.equal(cleanupTried({ cookie: '_pomerium_cleared=planted' }, context), false)
  assert.equal(cleanupTried({}, context), false)
  const value = /^_pomerium_cleared=([^;]+)/.exec(marker(cleanup(context, '/')) ?? '')?.[1] ?? ''
  assert.equal(cleanupTried({ cookie: `_pomerium_cleared=${value}` }, { ...context, host: 'other.example.com' }), false)
  assert.match(marker(cleanupAgain(context, '/')) ?? '', /^_pomerium_cleared=; Max-Age=0/)
})
