/**
 * The README's first command, as a newcomer would use it: `portcullis demo` (what `npm start`
 * runs after building), driven in real Chromium over plain http on `*.localhost`. Sign in at the
 * built-in provider with the printed password, open the team app, see the session page, sign out,
 * be refused by the admin console with a 403 page that says why, and be asked to sign in again.
 * Also: the sign-in details are the last thing printed and come back on Enter (no access log
 * pushes them away), the headers table reads well on a desktop, the portal names both apps, and
 * the demo's temporary folder is private and gone once it stops.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { MAIN_SCRIPT, parseLogLine, REPO_ROOT } from './fixtures/portcullis.js'
import { freePortRun } from './fixtures/sign-in.js'

interface Layout {
  count: number
  wrapped: string[]
  pageHeight: number
  pageWidth: number
  jwt: string | undefined
}

/** The last line of the demo's sign-in details. */
const BANNER_END = 'Enter prints this again'

/** Waits until `read()` includes `text` `times` times (the demo prints as it goes). */
async function waitForOutput(read: () => string, text: string, times = 1): Promise<void> {
  const deadline = Date.now() + 20_000
  while (read().split(text).length - 1 < times) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(text)} x${times} in:\n${read()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('the demo in Chromium', browserTestOptions(), () => {
  let child: ChildProcessWithoutNullStreams
  let exited: Promise<number | null>
  let browser: TestBrowser
  let page: Page
  let port = 0
  let out = ''
  const passwords: Record<string, string> = {}
  const cspViolations: string[] = []

  before(async () => {
    port = await freePortRun(3) // the provider takes PORT+1, health checks PORT+2
    child = spawn(process.execPath, [MAIN_SCRIPT, 'demo'], { cwd: REPO_ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (out += c.toString()))
    await Promise.race([
      waitForOutput(() => out, BANNER_END),
      exited.then(() => {
        throw new Error(`the demo exited:\n${out}`)
      }),
    ])
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
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(-child.pid, 'SIGTERM')
      await exited
    }
  })

  it('prints the two users and their passwords after the listening lines, and again on Enter', async () => {
    assert.deepEqual(Object.keys(passwords).sort(), ['admin@example.com', 'user@example.com'])
    const lines = out.trimEnd().split('\n')
    const lastJson = lines.findLastIndex((l) => l.startsWith('{'))
    assert.ok(lastJson < lines.findIndex((l) => l.includes('sign in as')), `the sign-in details come last:\n${out}`)
    child.stdin.write('\n')
    await waitForOutput(() => out, BANNER_END, 2)
  })

  it('PORT moves the health checks to PORT+2', () => {
    const health = out.split('\n').map(parseLogLine).find((e) => e['msg'] === 'listening' && e['listener'] === 'health')
    assert.equal(health?.['url'], `http://127.0.0.1:${port + 2}`, out)
  })

  it('keeps its config private in a private temporary folder', () => {
    const config = /config\s+(\S+config\.yaml)/.exec(out)?.[1] as string
    assert.ok(config, out)
    assert.equal((statSync(config).mode & 0o777).toString(8), '600')
    assert.equal((statSync(dirname(config)).mode & 0o777).toString(8), '700')
    for (const file of ['users.yaml']) assert.equal((statSync(`${dirname(config)}/${file}`).mode & 0o777).toString(8), '600')
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

  it('the headers table reads well on a desktop: names on one line, the long JWT folded but all there', async () => {
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
      await page.setViewportSize(viewport)
      await page.goto(`http://app.localhost:${port}/`)
      await screenshot(page, `demo-team-app-headers-${viewport.width}`)
      // A string: the test project has no DOM types; this runs in the page.
      const layout = await page.evaluate<Layout>(`(() => {
        const names = [...document.querySelectorAll('#headers td.name')]
        // One client rect per line box the name's text occupies (the cell is as tall as its row).
        const lines = (n) => {
          const range = document.createRange()
          range.selectNodeContents(n)
          return range.getClientRects().length
        }
        const jwtRow = [...document.querySelectorAll('#headers tr')].find((r) => r.querySelector('td.name').textContent === 'x-pomerium-jwt-assertion')
        return {
          count: names.length,
          wrapped: names.filter((n) => lines(n) > 1).map((n) => n.textContent),
          pageHeight: document.documentElement.scrollHeight,
          pageWidth: document.documentElement.scrollWidth,
          jwt: jwtRow?.querySelector('details')?.lastChild?.textContent,
        }
      })()`)
      assert.ok(layout.count > 5, 'the table lists the headers')
      assert.deepEqual(layout.wrapped, [], `header names on one line at ${viewport.width} px`)
      assert.ok(layout.pageWidth <= viewport.width, `no sideways scrolling at ${viewport.width} px (${layout.pageWidth})`)
      if (viewport.width >= 1280) assert.ok(layout.pageHeight < 1200, `the page fits about a screen and a half on a desktop (${layout.pageHeight} px)`)
      assert.match(layout.jwt ?? '', /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the whole identity JWT is one click away')
    }
    await page.setViewportSize({ width: 390, height: 844 })
  })

  it('the routes portal names the apps this user may open', async () => {
    await page.goto(`http://app.localhost:${port}/.pomerium/routes`)
    await screenshot(page, 'demo-routes-portal')
    const titles = await page.$$eval('li.app h2 a', (as) => as.map((a) => (a as { textContent: string | null }).textContent?.trim()))
    assert.deepEqual(titles.sort(), ['Device app', 'Team app', 'Welcome page'], 'apps by name, not by URL (the admin console is not for this user)')
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

  it('the device app sends the user to register a device, and a security key gets them in', async () => {
    const cdp = await page.context().newCDPSession(page)
    await cdp.send('WebAuthn.enable')
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    })
    await page.goto(`http://device.localhost:${port}/`)
    assert.equal(new URL(page.url()).pathname, '/.pomerium/webauthn')
    await screenshot(page, 'demo-device-page')
    await Promise.all([page.waitForURL(`http://device.localhost:${port}/`), page.click('#register')])
    assert.match((await page.textContent('h1')) ?? '', /Device app/)
    await page.goto(`http://device.localhost:${port}/.pomerium/`)
    assert.match((await page.textContent('body')) ?? '', /Any device/)
    await cdp.detach()
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

  it('the admin opens the admin console with directory groups (ids and names in the assertion); taken out of admins in the users file, refused within seconds', async () => {
    const context = await browser.newContext()
    const admin = await context.newPage()
    await admin.goto(`http://admin.localhost:${port}/`)
    await admin.fill('#email', 'admin@example.com')
    await admin.fill('#password', passwords['admin@example.com'] as string)
    const response = await Promise.all([admin.waitForNavigation(), admin.click('form#login button[type=submit]')]).then(([r]) => r)
    assert.equal(response?.status(), 200)
    // The headers table shows the assertion whole (folded under its first characters).
    const table = (await admin.textContent('#headers')) ?? ''
    assert.match(table, /x-pomerium-jwt-assertion/)
    const assertion = /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.exec(table)?.[0] ?? ''
    const payload = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')) as { groups?: string[] }
    assert.deepEqual([...(payload.groups ?? [])].sort(), ['admins', 'grp-admins', 'grp-staff', 'staff'])
    const usersFile = `${dirname(/config\s+(\S+config\.yaml)/.exec(out)?.[1] as string)}/users.yaml`
    writeFileSync(usersFile, readFileSync(usersFile, 'utf8').replace('groups: [admins, staff]', 'groups: [staff]'))
    let status = 200
    for (let i = 0; i < 100 && status !== 403; i++) {
      await new Promise((r) => setTimeout(r, 100))
      status = (await admin.goto(`http://admin.localhost:${port}/`))?.status() ?? 0
    }
    assert.equal(status, 403, 'refused once the users file says so, without signing out')
    await context.close()
  })

  it('shows the session page and signs out', async () => {
    await page.goto(`http://app.localhost:${port}/.pomerium/`)
    assert.match((await page.textContent('h1')) ?? '', /Signed in as Uma User/)
    await screenshot(page, 'demo-session')
    await Promise.all([page.waitForNavigation(), page.click('form[action="/.pomerium/sign_out"] button[type=submit]')])
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

  it('logged no access log line (the log is quiet) and removes its temporary folder when stopped', async () => {
    assert.doesNotMatch(out, /"msg":"http-request"/)
    const config = /config\s+(\S+config\.yaml)/.exec(out)?.[1] as string
    process.kill(-(child.pid as number), 'SIGTERM')
    assert.equal(await exited, 0, out)
    assert.equal(existsSync(dirname(config)), false, `${dirname(config)} is removed`)
  })
})
