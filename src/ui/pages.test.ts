import assert from 'node:assert/strict'
import { test } from 'node:test'
import { errorPage, readableDate, routesPage, signOutConfirmPage, signedOutPage, userPage } from './pages.js'

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

test('the routes portal lists cards with logo, escaped name and description, and a link; its CSP allows the logo origins only', () => {
  const page = routesPage({
    user: `Alice ${evil}`,
    userPageUrl: '/.pomerium/',
    routes: [
      { title: `Wiki ${evil}`, description: `Docs ${evil}`, from: 'https://wiki.example.com', logoUrl: 'https://cdn.example.net/logos/wiki.svg?x="1"', url: 'https://wiki.example.com:8443/' },
      { title: 'Database', description: '', from: 'tcp+https://db.example.com:5432', logoUrl: '/logo.png', connectCommand: 'portcullis tcp db.example.com:5432' },
      { title: 'Bad logo', description: '', from: 'https://bad.example.com', logoUrl: 'javascript:alert(1)', url: 'https://bad.example.com/' },
      { title: 'Injected', description: '', from: 'https://inj.example.com', logoUrl: "https://evil.example.com;script-src 'unsafe-inline'/x.png" },
      { title: '*.apps', description: '', from: 'https://*.apps.example.com', logoUrl: '' },
    ],
  })
  assert.ok(!page.html.includes('<script>'), 'values are escaped')
  assert.ok(page.html.includes('Wiki &#60;script&#62;') && page.html.includes('Docs &#60;script&#62;') && page.html.includes('Alice &#60;script&#62;'))
  assert.ok(page.html.includes('<img src="https://cdn.example.net/logos/wiki.svg?x=&#34;1&#34;"'))
  assert.ok(page.html.includes('<a href="https://wiki.example.com:8443/">'))
  assert.ok(page.html.includes('<img src="/logo.png"'))
  assert.ok(page.html.includes('<code>portcullis tcp db.example.com:5432</code>'))
  assert.ok(!page.html.includes('javascript:'), 'only http(s), same-host and data:image logos are shown')
  assert.ok(page.html.includes('https://*.apps.example.com') && !page.html.includes('href="https://*'), 'wildcard routes have no link')
  assert.ok(page.html.includes('href="/.pomerium/"'))
  const csp = page.headers['content-security-policy'] ?? ''
  assert.match(csp, /img-src 'self' data: https:\/\/cdn\.example\.net;/)
  assert.ok(!csp.includes('evil') && !csp.includes('unsafe-inline') && !csp.includes('script-src'), csp)
  assert.equal(page.headers['x-frame-options'], 'DENY')
  assert.equal(page.headers['cache-control'], 'no-store')
})

test('the routes portal has an empty state, and the user page links to it when it is served', () => {
  const empty = routesPage({ user: 'bob@example.com', userPageUrl: '/.pomerium/', routes: [] })
  assert.ok(empty.html.includes('There are no apps you may open.'))
  assert.match(empty.headers['content-security-policy'] ?? '', /img-src 'self' data:;/)
  const base = { name: 'A', email: 'a@example.com', userId: 'u1', groups: [], claims: {}, issuedAt: new Date(0), expiresAt: new Date(1000), signOutAction: '/x', csrfToken: 't' }
  assert.ok(userPage({ ...base, routesUrl: '/.pomerium/routes' }).html.includes('<a href="/.pomerium/routes">Your apps</a>'))
  assert.ok(!userPage(base).html.includes('/.pomerium/routes'))
})

test('the user page shows dates a person can read: session times, epoch claims and ISO timestamps', () => {
  const page = userPage({
    name: 'A',
    email: 'a@example.com',
    userId: 'u1',
    groups: [],
    claims: { auth_time: 1796601600, updated_at: 1796601600, hired: '2026-12-07T01:02:03Z', age: 1796601600, label: '2026-12-07' },
    issuedAt: new Date('2026-12-07T00:00:00Z'),
    expiresAt: new Date('2026-12-07T14:00:00Z'),
    signOutAction: '/x',
    csrfToken: 't',
  })
  assert.ok(page.html.includes('<dt>Signed in</dt><dd>7 December 2026 at 00:00:00 UTC</dd>'), page.html)
  assert.ok(page.html.includes('<dt>Session ends</dt><dd>7 December 2026 at 14:00:00 UTC</dd>'))
  assert.ok(page.html.includes('<dt>auth_time</dt><dd>7 December 2026 at 00:00:00 UTC</dd>'))
  assert.ok(page.html.includes('<dt>updated_at</dt><dd>7 December 2026 at 00:00:00 UTC</dd>'))
  assert.ok(page.html.includes('<dt>hired</dt><dd>7 December 2026 at 01:02:03 UTC</dd>'))
  assert.ok(!/\d{4}-\d{2}-\d{2}T/.test(page.html), 'no ISO strings left')
  assert.ok(page.html.includes('<dt>age</dt><dd>1796601600</dd>'), 'numbers in other claims are not guessed to be dates')
  assert.ok(page.html.includes('<dt>label</dt><dd>2026-12-07</dd>'), 'a bare date is already readable')
  assert.equal(readableDate(new Date(Number.NaN)), 'unknown')
})

test('the signed-out page says what ended, warns the provider session may remain, and offers its sign-out', () => {
  const plain = signedOutPage()
  assert.match(plain.html, /Your Portcullis session has ended/)
  assert.match(plain.html, /may still be signed in at your identity provider/)
  assert.doesNotMatch(plain.html, /You have been signed out/)
  assert.doesNotMatch(plain.html, /<a /, 'no provider sign-out to offer')
  const offered = signedOutPage({ providerSignOutUrl: 'https://idp.example.com/logout?client_id=a&x="1"' })
  assert.ok(offered.html.includes('<a class="button" href="https://idp.example.com/logout?client_id=a&#38;x=&#34;1&#34;">Sign out of the identity provider too</a>'))
})
