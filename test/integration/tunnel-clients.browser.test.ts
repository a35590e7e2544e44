/**
 * The tunnel client's sign-in through a real browser (issue 13; docs/tunnels.md): the built
 * `portcullis tcp` with `--browser-cmd` running a small script that drives headless Chromium
 * through the test provider's login form and waits until the browser lands on the client's
 * loopback listener with the token. The client caches the token, the tunnel works, and the
 * next run uses the cached token without a browser.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { browserTestOptions, CHROMIUM_ARGS, CHROMIUM_PATH } from '../fixtures/browser.js'
import { isBuilt } from '../fixtures/portcullis.js'
import { startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { clientCache, runClient, serverFlags, writeCaFile } from '../fixtures/tunnel-client.js'
import type { ClientCache } from '../fixtures/tunnel-client.js'
import { waitFor } from '../fixtures/wait.js'

/** A TCP echo that finishes its side when the client finishes its own. */
async function startEcho(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createNetServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.pipe(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/**
 * The `--browser-cmd` program: opens the URL it is given last in headless Chromium, signs in at
 * the provider's form and waits for the landing on the client's loopback listener; writes what
 * it saw to `logFile`. Chromium resolves `*.localhost` to loopback itself; the test CA is not
 * trusted, so the context ignores certificate errors (this test browser only).
 */
function browserScript(logFile: string, pidFile: string, email: string, password: string): string {
  const playwright = import.meta.resolve('playwright-core')
  return `import { appendFileSync, writeFileSync } from 'node:fs'
import { chromium } from ${JSON.stringify(playwright)}
const log = (line) => appendFileSync(${JSON.stringify(logFile)}, line + '\\n')
writeFileSync(${JSON.stringify(pidFile)}, String(process.pid))
const url = process.argv.at(-1)
log('asked ' + new URL(url).origin)
const limit = setTimeout(() => { log('error: timed out'); process.exit(3) }, 45_000)
const browser = await chromium.launch({ executablePath: ${JSON.stringify(CHROMIUM_PATH)}, headless: true, args: ${JSON.stringify(CHROMIUM_ARGS)}, timeout: 30_000 })
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  context.setDefaultTimeout(15_000)
  context.setDefaultNavigationTimeout(20_000)
  const page = await context.newPage()
  await page.goto(url)
  await page.waitForSelector('form#login')
  log('form at ' + new URL(page.url()).origin)
  await page.fill('input[name=email]', ${JSON.stringify(email)})
  await page.fill('input[name=password]', ${JSON.stringify(password)})
  const landed = (u) => u.protocol === 'http:' && u.hostname === '127.0.0.1' && u.searchParams.has('pomerium_jwt')
  await Promise.all([page.waitForURL(landed), page.click('form#login [type=submit]')])
  const at = new URL(page.url())
  log('landed ' + at.origin + at.pathname)
  log('page ' + (await page.textContent('body')).replace(/\\s+/g, ' ').trim())
} catch (err) {
  log('error: ' + err.message)
  process.exitCode = 1
} finally {
  clearTimeout(limit)
  await browser.close()
}
`
}

describe('portcullis tcp signs in through a real browser (--browser-cmd)', browserTestOptions(), () => {
  let setup: SignInSetup
  let echo: { port: number; close(): Promise<void> }
  let caFile: string
  let dir: string
  const caches: ClientCache[] = []

  before(async () => {
    assert.ok(isBuilt(), 'dist/cmd/main.js is missing: run `npm run build` first')
    echo = await startEcho()
    setup = await startSignInSetup({
      routes: () => [{ from: 'tcp+https://echo.localhost:7', to: `tcp://127.0.0.1:${echo.port}`, allow_any_authenticated_user: true }],
    })
    caFile = writeCaFile(setup.caPem)
    dir = mkdtempSync(join(tmpdir(), 'portcullis-browser-cmd-'))
  })

  after(async () => {
    // The browser script runs detached from the client: make sure it is gone.
    const pidFile = dir === undefined ? undefined : join(dir, 'browser.pid')
    if (pidFile !== undefined && existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL')
      } catch {
        // already gone
      }
    }
    await setup?.close()
    await echo?.close()
    for (const c of caches) c.remove()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    if (caFile !== undefined) rmSync(join(caFile, '..'), { recursive: true, force: true })
  })

  test('the browser signs in at the provider, lands on the client, the token is cached and the tunnel works; the next run needs no browser', async () => {
    const logFile = join(dir, 'browser.log')
    const script = join(dir, 'browser.mjs')
    writeFileSync(script, browserScript(logFile, join(dir, 'browser.pid'), 'alice@example.com', 'alice-password'))
    const cache = clientCache(setup.port)
    caches.push(cache)
    const flags = serverFlags(setup.port, caFile)
    const r = await runClient(['tcp', '--listen', '-', ...flags, '--browser-cmd', `${process.execPath} ${script}`, 'echo.localhost:7'], { env: cache.env, input: 'ping through the tunnel', timeoutMs: 90_000 })
    const readLog = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(no browser log)')
    assert.equal(r.code, 0, `client: ${r.stderr}\nbrowser: ${readLog()}`)
    // The script goes on reading the landing page after the client has its token.
    await waitFor('the browser script is done', () => /^(page|error)/m.test(readLog()), { timeoutMs: 20_000 })
    const browserLog = readLog()
    assert.equal(r.stdout, 'ping through the tunnel')
    assert.match(r.stderr, /Your browser has been opened to visit:/)
    // The browser went to the authenticate service, signed in at the provider's form and landed on the client.
    assert.match(browserLog, new RegExp(`^asked ${setup.authn.replace(/\./g, '\\.')}$`, 'm'))
    assert.match(browserLog, new RegExp(`^form at ${setup.idp.issuer.replace(/\/$/, '').replace(/\./g, '\\.')}`, 'm'))
    assert.match(browserLog, /^landed http:\/\/127\.0\.0\.1:\d+\/$/m)
    assert.match(browserLog, /^page .*you may close this window/m)
    assert.doesNotMatch(browserLog, /^error/m)
    const token = cache.token(setup.port)
    assert.ok(token, 'the token is cached')
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp?: unknown }
    assert.ok(typeof claims.exp === 'number' && claims.exp * 1000 > Date.now(), `a live JWT: ${JSON.stringify(claims)}`)

    // Again: the cached token is used; the browser command (which would fail) is not run.
    const again = await runClient(['tcp', '--listen', '-', ...flags, '--browser-cmd', '/nonexistent/browser', 'echo.localhost:7'], { env: cache.env, input: 'again', timeoutMs: 30_000 })
    assert.equal(again.code, 0, again.stderr)
    assert.equal(again.stdout, 'again')
    assert.doesNotMatch(again.stderr, /browser/)
  })
})
