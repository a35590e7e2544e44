import assert from 'node:assert/strict'
import { test } from 'node:test'
import { errorPage, signOutConfirmPage, signedOutPage, userPage } from './pages.js'

const evil = '<script>alert(1)</script>"\'&'

test('the user page shows identity and claims, escaped, and never a token', () => {
  const page = userPage({
    name: evil,
    email: 'a@example.com',
    userId: 'u1',
    groups: ['eng', evil],
    claims: { email: 'a@example.com', groups: ['eng'], access_token: 'SECRET-AT', id_token: 'SECRET-IT', custom: evil },
    issuedAt: new Date(0),
    expiresAt: new Date(1000),
    signOutAction: 'https://authn.example.com/.pomerium/sign_out?x="1"',
    csrfToken: 'csrf"token',
  })
  assert.ok(!page.html.includes('<script>'), 'values are escaped')
  assert.ok(!page.html.includes('SECRET-AT') && !page.html.includes('SECRET-IT'), 'tokens are never shown')
  assert.ok(page.html.includes('&#60;script&#62;'))
  assert.ok(page.html.includes('x=&#34;1&#34;'))
  assert.equal(page.headers['cache-control'], 'no-store')
  const csp = page.headers['content-security-policy'] ?? ''
  assert.match(csp, /default-src 'none'/)
  assert.ok(!csp.includes('unsafe-inline') && !csp.includes('script-src'), 'no script can run')
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1]
  assert.ok(nonce && page.html.includes(`<style nonce="${nonce}">`))
})

test('every page has the same layout and headers; error pages escape provider text and offer a retry', () => {
  const err = errorPage({ status: 400, title: 'Bad Request', message: `provider said: ${evil}`, requestId: 'rid', retryUrl: 'https://app.example.com/' })
  assert.ok(!err.html.includes('<script>'))
  assert.ok(err.html.includes('Try again') && err.html.includes('rid'))
  for (const page of [signedOutPage(), signOutConfirmPage('/x', 't'), err]) {
    assert.match(page.html, /<footer>Portcullis<\/footer>/)
    assert.equal(page.headers['x-frame-options'], 'DENY')
  }
})
