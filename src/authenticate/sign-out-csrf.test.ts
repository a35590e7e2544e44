import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { EndpointRequest } from './endpoint.js'
import { checkSignOutToken, signOutToken, startedElsewhere } from './sign-out-csrf.js'

const origin = 'https://app.example.com'

function req(headers: Record<string, string>): EndpointRequest {
  return { requestId: 'r', method: 'GET', host: 'app.example.com', authority: 'app.example.com', path: '/.pomerium/sign_out', query: '', headers, body: Buffer.alloc(0), clientIp: '127.0.0.1', scheme: 'https' }
}

test('a sign-out is ours when Fetch Metadata says same-origin or none; any other site is foreign', () => {
  assert.equal(startedElsewhere(req({ 'sec-fetch-site': 'same-origin' }), origin), false)
  assert.equal(startedElsewhere(req({ 'sec-fetch-site': 'none' }), origin), false)
  assert.equal(startedElsewhere(req({ 'sec-fetch-site': 'same-site' }), origin), true)
  assert.equal(startedElsewhere(req({ 'sec-fetch-site': 'cross-site' }), origin), true)
  assert.equal(startedElsewhere(req({ 'sec-fetch-site': 'cross-site', referer: `${origin}/x` }), origin), true, 'Fetch Metadata wins')
})

test('without Fetch Metadata, Origin or Referer decide; without either it is a script', () => {
  assert.equal(startedElsewhere(req({}), origin), false)
  assert.equal(startedElsewhere(req({ referer: `${origin}/.pomerium/` }), origin), false)
  assert.equal(startedElsewhere(req({ referer: 'https://evil.example/' }), origin), true)
  assert.equal(startedElsewhere(req({ origin: 'null' }), origin), true, 'an opaque origin is foreign')
  assert.equal(startedElsewhere(req({ origin: 'https://app.example.com.evil.net' }), origin), true)
})

test('the token is bound to the CSRF cookie and the secret', () => {
  const secret = Buffer.alloc(32, 1)
  const token = signOutToken(secret, 'cookie-a')
  assert.equal(checkSignOutToken(secret, token, 'cookie-a'), true)
  assert.equal(checkSignOutToken(secret, token, 'cookie-b'), false)
  assert.equal(checkSignOutToken(Buffer.alloc(32, 2), token, 'cookie-a'), false)
  assert.equal(checkSignOutToken(secret, token, undefined), false)
  assert.equal(checkSignOutToken(secret, null, 'cookie-a'), false)
  assert.equal(checkSignOutToken(secret, `${token}x`, 'cookie-a'), false)
})

test('the token is bound to the session it signs out: a token fetched with another session (or none) does not pass', () => {
  const secret = Buffer.alloc(32, 1)
  // What a sibling subdomain can get: the token of a CSRF value it plants, for its own session.
  const planted = signOutToken(secret, 'planted', 'attacker-session')
  assert.equal(checkSignOutToken(secret, planted, 'planted', 'victim-session'), false)
  assert.equal(checkSignOutToken(secret, signOutToken(secret, 'planted'), 'planted', 'victim-session'), false)
  assert.equal(checkSignOutToken(secret, signOutToken(secret, 'planted', 'victim-session'), 'planted', 'victim-session'), true)
})
