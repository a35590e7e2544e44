import assert from 'node:assert/strict'
import { test } from 'node:test'
import { allowedRedirect } from './redirects.js'

const policy = { hosts: new Set(['app.example.com', 'a.example.com']), allowLoopbackHttp: false }

test('hostile: the post-login return URL table of hostile-input case: redirect / open-redirect is refused, allowed hosts pass', () => {
  const refused = [
    '//evil.com',
    '/\\evil.com',
    '\\/evil.com',
    '/%5Cevil.com',
    '/%2F%2Fevil.com',
    '/%09/evil.com',
    '/%0a/evil.com',
    '/%0d/evil.com',
    ' //evil.com',
    'https:evil.com',
    'http:/evil.com',
    'javascript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'https://app.example.com@evil.com',
    'https://evil.com#@app.example.com',
    'https://evil.com\\@app.example.com',
    'https://evil.com\\.app.example.com',
    'https://evil.com',
    'http://app.example.com/',
    'https://app.example.com%2F@evil.com/',
    'https://app.example.com\r\nLocation: https://evil.com',
    'https://app.example.com/\u2028',
    '',
  ]
  for (const target of refused) assert.equal(allowedRedirect(target, policy), undefined, JSON.stringify(target))
  assert.equal(allowedRedirect('https://app.example.com/x?next=https://evil.com', policy)?.host, 'app.example.com', 'a nested URL is only an opaque query value')
  assert.equal(allowedRedirect('https://APP.example.com:8443/x', policy)?.hostname, 'app.example.com')
})

test('hostile: suffix look-alikes of an allowed host are refused (hostile-input case: redirect / open-redirect)', () => {
  for (const host of ['evilexample.com', 'app.example.com.evil.net', 'evil-app.example.com', 'example.com']) {
    assert.equal(allowedRedirect(`https://${host}/`, policy), undefined, host)
  }
  assert.ok(allowedRedirect('https://a.example.com/', policy))
})

test('programmatic login: loopback http on any port only when allowed (hostile-input case: redirect / open-redirect)', () => {
  const programmatic = { hosts: new Set<string>(), allowLoopbackHttp: true }
  assert.ok(allowedRedirect('http://127.0.0.1:8000/cb', programmatic))
  assert.ok(allowedRedirect('http://localhost:9999/cb', programmatic))
  assert.ok(allowedRedirect('http://[::1]:9999/cb', programmatic))
  assert.equal(allowedRedirect('https://evil.com/cb', programmatic), undefined)
  assert.equal(allowedRedirect('http://127.0.0.1.evil.com/cb', programmatic), undefined)
  assert.equal(allowedRedirect('http://127.0.0.1:8000/cb', policy), undefined)
})
