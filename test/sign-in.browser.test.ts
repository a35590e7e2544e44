/**
 * The whole sign-in experience in real headless Chromium against the real Portcullis process
 * and a real OpenID provider: sign in, single sign-on to a second domain, the user page, sign-out
 * through the provider's logout, sign-in required again everywhere. Each page is captured as a
 * screenshot, and no Content-Security-Policy violation may be reported on the way.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { BrowserContext, Page } from 'playwright-core'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { startSignInSetup } from './fixtures/sign-in.js'
import type { SignInSetup } from './fixtures/sign-in.js'

describe('sign-in in Chromium', browserTestOptions(), () => {
  let setup: SignInSetup
  let browser: TestBrowser
  let context: BrowserContext
  let page: Page
  const cspViolations: string[] = []

  before(async () => {
    setup = await startSignInSetup()
    browser = await launchBrowser()
    // The browser, not Portcullis, is told to accept the test CA's certificates: Chromium has
    // no per-context trust store, and these names only exist on this machine.
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } })
    page = await context.newPage()
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text())
    })
  })
  after(async () => {
    await browser?.close()
    await setup?.close()
  })

  async function fillLogin(email: string, password: string): Promise<void> {
    await page.waitForSelector('form#login')
    await page.fill('input[name=email]', email)
    await page.fill('input[name=password]', password)
    await Promise.all([page.waitForNavigation(), page.click('form#login [type=submit]')])
  }

  it('signs in at the provider and lands on the app with the original path and query', async () => {
    await page.goto(`${setup.app}/docs/page?section=2`)
    assert.equal(new URL(page.url()).origin, setup.idp.issuer, 'sent to the provider')
    await screenshot(page, 'browser-provider-login')
    await fillLogin('alice@example.com', 'alice-password')
    const url = new URL(page.url())
    assert.equal(url.origin, setup.app)
    assert.equal(`${url.pathname}${url.search}`, '/docs/page?section=2')
    const body = await page.textContent('body')
    assert.match(body ?? '', /"url":"\/docs\/page\?section=2"/)
    const cookies = await context.cookies(setup.app)
    const session = cookies.find((c) => c.name === '_pomerium')
    assert.ok(session)
    assert.equal(session.secure, true)
    assert.equal(session.httpOnly, true)
    assert.equal(session.domain, 'app.localhost', 'host-only')
  })

  it('opens a second domain without a password prompt', async () => {
    await page.goto(`${setup.other}/second`)
    assert.equal(new URL(page.url()).origin, setup.other)
    assert.match((await page.textContent('body')) ?? '', /"url":"\/second"/)
  })

  it('shows the user page on a route host and on the authenticate host', async () => {
    for (const base of [setup.app, setup.authn]) {
      await page.goto(`${base}/.pomerium/`)
      assert.match((await page.textContent('h1')) ?? '', /Signed in as Alice Example/)
      assert.match((await page.textContent('body')) ?? '', /admins, staff/)
      await screenshot(page, `browser-user-page-${new URL(base).hostname}`)
      const overflow = await page.evaluate<boolean>('document.documentElement.scrollWidth > window.innerWidth')
      assert.equal(overflow, false, 'fits a phone screen')
    }
  })

  it('opens the routes portal from the user page: cards with links to the apps', async () => {
    await page.goto(`${setup.app}/.pomerium/`)
    await Promise.all([page.waitForNavigation(), page.click('a[href="/.pomerium/routes"]')])
    assert.equal(new URL(page.url()).href, `${setup.app}/.pomerium/routes`)
    assert.match((await page.textContent('h1')) ?? '', /Your apps/)
    const links = await page.$$eval('li.app h2 a', (as) => as.map((a) => (a as { href: string }).href))
    assert.deepEqual(links, [`${setup.app}/`, `${setup.other}/`, `${setup.pub}/`])
    await screenshot(page, 'browser-routes-portal')
    const overflow = await page.evaluate<boolean>('document.documentElement.scrollWidth > window.innerWidth')
    assert.equal(overflow, false, 'fits a phone screen')
    await Promise.all([page.waitForNavigation(), page.click(`li.app h2 a[href="${setup.other}/"]`)])
    assert.equal(new URL(page.url()).origin, setup.other, 'a card opens its app')
  })

  it('signs out through the provider, and every domain needs sign-in again', async () => {
    await page.goto(`${setup.app}/.pomerium/`)
    await Promise.all([page.waitForNavigation(), page.click('form button[type=submit]')])
    // oidc-provider asks before ending its own session; a real provider may too.
    if (await page.$('form#op\\.logoutForm')) {
      await screenshot(page, 'browser-provider-logout')
      await Promise.all([page.waitForNavigation(), page.click('form#op\\.logoutForm button[autofocus], form#op\\.logoutForm [type=submit], button[name=logout]')])
    }
    assert.equal(new URL(page.url()).href, `${setup.authn}/.pomerium/signed_out`)
    assert.match((await page.textContent('h1')) ?? '', /signed out/)
    await screenshot(page, 'browser-signed-out')
    for (const base of [setup.app, setup.other]) {
      await page.goto(`${base}/after`)
      assert.equal(new URL(page.url()).origin, setup.idp.issuer, `${base} asks for sign-in again`)
      assert.ok(await page.$('form#login'), 'the password form again')
    }
  })

  it('shows clear error pages: a bad sign-in link and the sign-out confirmation', async () => {
    const res = await page.goto(`${setup.authn}/.pomerium/sign_in?pomerium_redirect_uri=https://evil.example/`)
    assert.equal(res?.status(), 400)
    assert.match((await page.textContent('body')) ?? '', /not signed/)
    assert.match((await page.textContent('body')) ?? '', /Request ID/)
    await screenshot(page, 'browser-error-bad-link')
    await page.goto(`${setup.authn}/.pomerium/sign_out`)
    assert.match((await page.textContent('h1')) ?? '', /Sign out\?/)
    await screenshot(page, 'browser-sign-out-confirm')
    const denied = await page.goto(`${setup.authn}/oauth2/callback?error=access_denied&error_description=${encodeURIComponent('<b>nope</b>')}`)
    assert.equal(denied?.status(), 401)
    assert.equal(await page.$('b'), null, 'provider text is escaped')
    await screenshot(page, 'browser-error-provider')
  })

  it('reported no Content-Security-Policy violation', () => {
    assert.deepEqual(cspViolations, [])
  })
})
