/**
 * The README's first command, as a newcomer would use it: `portcullis demo` (what `npm start`
 * runs after building), driven in real Chromium over plain http on `*.localhost`. Sign in at the
 * built-in provider with the printed password, open the team app, see the session page, sign out,
 * be refused by the admin console with a 403 page that says why, and be asked to sign in again.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { MAIN_SCRIPT, REPO_ROOT } from './fixtures/portcullis.js'
import { freePortPair } from './fixtures/sign-in.js'

describe('the demo in Chromium', browserTestOptions(), () => {
  let child: ChildProcess
  let browser: TestBrowser
  let page: Page
  let port = 0
  const passwords: Record<string, string> = {}
  const cspViolations: string[] = []

  before(async () => {
    port = await freePortPair() // the provider takes PORT+1
    child = spawn(process.execPath, [MAIN_SCRIPT, 'demo'], { cwd: REPO_ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo did not start:\n${out}`)), 20_000)
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString()
        if (out.includes('"msg":"listening"')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', () => reject(new Error(`the demo exited:\n${out}`)))
    })
    for (const m of out.matchAll(/sign in as\s+(\S+)\s+password (\S+)/g)) passwords[m[1] as string] = m[2] as string
    browser = await launchBrowser()
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } })
    page = await context.newPage()
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text())
    })
  })
  after(async () => {
    await browser?.close()
    if (child?.pid !== undefined) {
      process.kill(-child.pid, 'SIGTERM')
      await new Promise((r) => child.once('exit', r))
    }
  })

  it('prints the two users and their passwords', () => {
    assert.deepEqual(Object.keys(passwords).sort(), ['admin@example.com', 'user@example.com'])
  })

  it('signs a user in at the built-in provider and opens the team app', async () => {
    await page.goto(`http://localhost:${port}/`)
    assert.match((await page.textContent('h1')) ?? '', /Portcullis demo/)
    await screenshot(page, 'demo-welcome')
    await Promise.all([page.waitForNavigation(), page.click('text=Team app')])
    await page.waitForSelector('form#login')
    await screenshot(page, 'demo-login')
    await page.fill('#email', 'user@example.com')
    await page.fill('#password', passwords['user@example.com'] as string)
    await Promise.all([page.waitForNavigation(), page.click('form#login button[type=submit]')])
    assert.equal(new URL(page.url()).host, `app.localhost:${port}`)
    assert.match((await page.textContent('h1')) ?? '', /Team app/)
    await screenshot(page, 'demo-team-app')
  })

  it('the regular user is refused by the admin console with a 403 page that says why', async () => {
    const res = await page.goto(`http://admin.localhost:${port}/`)
    assert.equal(res?.status(), 403)
    const body = (await page.textContent('body')) ?? ''
    assert.match(body, /403 Forbidden/)
    assert.match(body, /Admin console/)
    assert.match(body, /Why:/)
    assert.match(body, /group/)
    assert.match(body, /user@example\.com/)
    assert.match(body, /Request ID/)
    await screenshot(page, 'demo-403-admin-console')
  })

  it('a wrong password is refused with a clear message', async () => {
    const context = await browser.newContext()
    const other = await context.newPage()
    await other.goto(`http://app.localhost:${port}/`)
    await other.fill('#email', 'admin@example.com')
    await other.fill('#password', 'not-the-password')
    await Promise.all([other.waitForNavigation(), other.click('form#login button[type=submit]')])
    assert.match((await other.textContent('body')) ?? '', /Wrong email or password/)
    await context.close()
  })

  it('shows the session page and signs out', async () => {
    await page.goto(`http://app.localhost:${port}/.pomerium/`)
    assert.match((await page.textContent('h1')) ?? '', /Signed in as Uma User/)
    await screenshot(page, 'demo-session')
    await Promise.all([page.waitForNavigation(), page.click('form button[type=submit]')])
    // The provider confirms its own sign-out.
    if (!page.url().includes('/.pomerium/signed_out')) {
      await screenshot(page, 'demo-provider-logout')
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
    }
    assert.match(page.url(), /\/\.pomerium\/signed_out$/)
    await page.goto(`http://app.localhost:${port}/`)
    assert.ok(await page.$('form#login'), 'signed out: the password form again')
  })

  it('reported no Content-Security-Policy violation', () => {
    assert.deepEqual(cspViolations, [])
  })
})
