import assert from 'node:assert/strict'
import { test } from 'node:test'
import { findHandle, shouldRedirectToSignIn } from './credentials.js'

test('a session handle is found in every form Pomerium accepts, explicit credentials before the cookie', () => {
  const cookie = { cookie: 'a=1; _pomerium=fromcookie' }
  assert.deepEqual(findHandle({ ...cookie, authorization: 'Pomerium tok' }, '', '_pomerium'), { token: 'tok', source: 'authorization' })
  assert.deepEqual(findHandle({ authorization: 'Bearer Pomerium-tok' }, '', '_pomerium'), { token: 'tok', source: 'authorization' })
  assert.deepEqual(findHandle({ 'x-pomerium-authorization': 'tok' }, '', '_pomerium'), { token: 'tok', source: 'x-pomerium-authorization' })
  assert.deepEqual(findHandle({}, '?a=1&pomerium_session=tok', '_pomerium'), { token: 'tok', source: 'query' })
  assert.deepEqual(findHandle(cookie, '', '_pomerium'), { token: 'fromcookie', source: 'cookie' })
  assert.deepEqual(findHandle({ ...cookie, authorization: 'Bearer some-api-token' }, '', '_pomerium'), { token: 'fromcookie', source: 'cookie' }, 'a plain bearer token is the app\'s, not ours')
  assert.equal(findHandle({}, '?pomerium_session=a&pomerium_session=b', '_pomerium'), undefined, 'two query handles are ambiguous')
  assert.equal(findHandle({}, '', '_pomerium'), undefined)
})

test('browsers are sent to sign in; scripts, XHR, gRPC and token-bearing requests get 401 (as Pomerium does)', () => {
  assert.equal(shouldRedirectToSignIn({}, false), true, 'no Accept')
  assert.equal(shouldRedirectToSignIn({ accept: '*/*' }, false), true)
  assert.equal(shouldRedirectToSignIn({ accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }, false), true)
  assert.equal(shouldRedirectToSignIn({ accept: 'application/json' }, false), false)
  assert.equal(shouldRedirectToSignIn({ accept: 'application/json, text/html;q=0.5' }, false), false)
  assert.equal(shouldRedirectToSignIn({ accept: 'text/plain' }, false), false)
  assert.equal(shouldRedirectToSignIn({ accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' }, false), false)
  assert.equal(shouldRedirectToSignIn({ 'content-type': 'application/grpc' }, false), false)
  assert.equal(shouldRedirectToSignIn({ accept: 'text/html' }, true), false, 'a request that carried a token')
})
