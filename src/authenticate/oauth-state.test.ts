import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { createState, verifyState } from './oauth-state.js'

const secret = randomBytes(32)
const now = 1_800_000_000
const redirect = 'https://authn.example.com/.pomerium/sign_in?pomerium_redirect_uri=https%3A%2F%2Fapp.example.com%2F'

test('a state verifies with its CSRF cookie within five minutes and gives back the redirect', () => {
  const { state, csrfToken } = createState(redirect, secret, now)
  assert.deepEqual(verifyState(state, csrfToken, secret, now + 299), { redirectUrl: redirect })
  assert.deepEqual(verifyState(state, csrfToken, secret, now + 361), { problem: 'expired' })
})

test('hostile: missing or foreign CSRF cookie, tampering, another key and junk are refused (hostile-input case: sessions / cookies / csrf)', () => {
  const { state, csrfToken } = createState(redirect, secret, now)
  const other = createState(redirect, secret, now)
  assert.deepEqual(verifyState(state, undefined, secret, now), { problem: 'csrf-mismatch' })
  assert.deepEqual(verifyState(state, other.csrfToken, secret, now), { problem: 'csrf-mismatch' }, "another browser's cookie")
  const [token, issued, sealed] = Buffer.from(state, 'base64url').toString().split('|') as [string, string, string]
  const rebuilt = (t: string, i: string, s: string): string => Buffer.from(`${t}|${i}|${s}`).toString('base64url')
  assert.deepEqual(verifyState(rebuilt(token, String(now - 100), sealed), csrfToken, secret, now), { problem: 'tampered' }, 'time moved')
  assert.deepEqual(verifyState(rebuilt(token, issued, createState('https://evil.com', randomBytes(32), now).state), csrfToken, secret, now), { problem: 'tampered' })
  assert.deepEqual(verifyState(state, csrfToken, randomBytes(32), now), { problem: 'tampered' }, 'another key')
  for (const junk of ['', 'a+b', Buffer.from('x|y').toString('base64url'), Buffer.from('a|notanumber|b').toString('base64url')]) {
    assert.deepEqual(verifyState(junk, csrfToken, secret, now), { problem: 'malformed' }, junk)
  }
})
