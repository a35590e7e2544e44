/**
 * The server-rendered pages in real Chromium: each renders with its stylesheet under the strict
 * CSP (no violation reported), shows its heading, fits a phone-sized viewport without horizontal
 * scrolling, and is captured as a screenshot (the path is printed for a person to look at).
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { errorPage, signOutConfirmPage, signedOutPage, userPage } from '../src/ui/pages.js'
import type { RenderedPage } from '../src/ui/pages.js'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'

const pages: Record<string, { page: RenderedPage; heading: RegExp }> = {
  user: {
    page: userPage({
      name: 'Ada Lovelace',
      email: 'ada@example.com',
      userId: 'user-123',
      groups: ['admins', 'engineering'],
      claims: { email: 'ada@example.com', email_verified: true, groups: ['admins', 'engineering'], name: 'Ada Lovelace', department: 'R&D' },
      issuedAt: new Date('2026-11-29T10:00:00Z'),
      expiresAt: new Date('2026-11-30T00:00:00Z'),
      signOutAction: '/.pomerium/sign_out',
      csrfToken: 'token',
    }),
    heading: /Signed in as Ada Lovelace/,
  },
  'signed-out': { page: signedOutPage({ providerSignOutUrl: 'https://idp.example.com/logout' }), heading: /You are signed out of Portcullis/ },
  'sign-out-confirm': { page: signOutConfirmPage('/.pomerium/sign_out', 'token'), heading: /Sign out\?/ },
  error: {
    page: errorPage({ status: 400, title: 'Bad Request', message: 'The sign-in link has expired.', requestId: 'req-1', retryUrl: '/' }),
    heading: /400 Bad Request/,
  },
}

describe('pages in Chromium', browserTestOptions(), () => {
  let server: Server
  let origin = ''
  let browser: TestBrowser
  before(async () => {
    server = createServer((req, res) => {
      const entry = pages[(req.url ?? '/').slice(1)]
      if (!entry) {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, entry.page.headers).end(entry.page.html)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await new Promise<void>((r) => server.close(() => r()))
  })

  for (const [name, { heading }] of Object.entries(pages)) {
    it(`the ${name} page renders styled under its CSP and fits a phone`, async () => {
      const context = await browser.newContext({ viewport: { width: 375, height: 700 } })
      const page = await context.newPage()
      const violations: string[] = []
      page.on('console', (m) => {
        if (/Content Security Policy/i.test(m.text())) violations.push(m.text())
      })
      await page.goto(`${origin}/${name}`)
      assert.match(await page.locator('h1').innerText(), heading)
      // The stylesheet applied (nonce accepted): the layout caps the width of <main>.
      // (Expressions as strings: they run in the page, and this project's TypeScript has no DOM types.)
      assert.equal(await page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth"), '704px')
      const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth'))
      assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`)
      assert.deepEqual(violations, [])
      const file = await screenshot(page, `page-${name}`)
      console.log(`screenshot: ${file}`)
      await context.close()
    })
  }
})
