/**
 * Browser smoke test: real headless Chromium signs in at the test IdP's login form and completes
 * an authorization code flow (PKCE) against a tiny relying party on loopback, then signs out
 * through RP-initiated logout. Proves the browser fixture and the IdP work together before any
 * Portcullis sign-in test relies on them.
 *
 * Skips loudly when Chromium is missing outside CI; fails under CI.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import * as oidc from 'openid-client'
import type { BrowserContext } from 'playwright-core'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { startTestIdp } from './fixtures/oidc-provider.js'
import type { TestIdp } from './fixtures/oidc-provider.js'

interface TinyRp {
  origin: string
  server: Server
  /** Set once the IdP knows our redirect URI. */
  configure(config: oidc.Configuration): void
}

/**
 * A relying party in a few lines: /login starts a PKCE code flow, /callback exchanges the code and
 * shows who signed in, /logout sends the user to the IdP's end_session endpoint.
 */
async function startTinyRp(): Promise<TinyRp> {
  let config: oidc.Configuration | undefined
  const pending = new Map<string, string>() // state → PKCE verifier
  let idToken: string | undefined
  let origin = ''
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin)
    const html = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><body>${body}</body>`)
    }
    void (async () => {
      if (!config) return html(503, 'not configured')
      if (url.pathname === '/login') {
        const verifier = oidc.randomPKCECodeVerifier()
        const state = oidc.randomState()
        pending.set(state, verifier)
        const target = oidc.buildAuthorizationUrl(config, {
          redirect_uri: `${origin}/callback`,
          scope: 'openid email profile offline_access',
          code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
          code_challenge_method: 'S256',
          state,
        })
        res.writeHead(302, { location: target.href }).end()
        return
      }
      if (url.pathname === '/callback') {
        const state = url.searchParams.get('state') ?? ''
        const verifier = pending.get(state)
        if (!verifier) return html(400, 'unknown state')
        pending.delete(state)
        const tokens = await oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: verifier, expectedState: state })
        idToken = tokens.id_token
        const claims = tokens.claims()
        return html(
          200,
          `<p id="who">${typeof claims?.email === 'string' ? claims.email : ''}</p>` +
            `<p id="groups">${Array.isArray(claims?.groups) ? claims.groups.map(String).join(',') : ''}</p>` +
            `<p id="refresh">${tokens.refresh_token ? 'yes' : 'no'}</p>`,
        )
      }
      if (url.pathname === '/logout' && idToken) {
        const target = oidc.buildEndSessionUrl(config, {
          id_token_hint: idToken,
          post_logout_redirect_uri: `${origin}/signed-out`,
        })
        res.writeHead(302, { location: target.href }).end()
        return
      }
      if (url.pathname === '/signed-out') return html(200, '<p id="bye">signed out</p>')
      html(404, 'not found')
    })().catch((err: unknown) => html(500, `<pre id="rp-error">${String(err)}</pre>`))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    origin,
    server,
    configure: (c) => {
      config = c
    },
  }
}

void describe('browser smoke: Chromium signs in at the test IdP', { timeout: 90_000, ...browserTestOptions() }, () => {
  let browser: TestBrowser
  let idp: TestIdp
  let rp: TinyRp
  let context: BrowserContext

  before(async () => {
    rp = await startTinyRp()
    idp = await startTestIdp({
      clients: [
        {
          clientId: 'tiny-rp',
          clientSecret: 'tiny-secret',
          redirectUris: [`${rp.origin}/callback`],
          postLogoutRedirectUris: [`${rp.origin}/signed-out`],
        },
      ],
      users: { 'alice@example.com': { password: 'correct horse', name: 'Alice', groups: ['admins'] } },
    })
    rp.configure(
      await oidc.discovery(new URL(idp.issuer), 'tiny-rp', undefined, oidc.ClientSecretBasic('tiny-secret'), {
        execute: [oidc.allowInsecureRequests],
      }),
    )
    browser = await launchBrowser()
  })

  after(async () => {
    await browser?.close()
    await idp?.close()
    rp?.server.closeAllConnections()
    await new Promise<void>((r) => (rp ? rp.server.close(() => r()) : r()))
  })

  beforeEach(async () => {
    context = await browser.newContext()
  })

  afterEach(async () => {
    await context.close()
  })

  void it('fills the login form and completes the code flow', async () => {
    const page = await context.newPage()
    await page.goto(`${rp.origin}/login`)
    assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), page.url())
    await page.fill('#email', 'alice@example.com')
    await page.fill('#password', 'correct horse')
    const loginShot = await screenshot(page, 'idp-login-form')
    await Promise.all([page.waitForURL(`${rp.origin}/callback?**`), page.click('#submit')])
    assert.equal(await page.textContent('#who'), 'alice@example.com')
    assert.equal(await page.textContent('#groups'), 'admins')
    assert.equal(await page.textContent('#refresh'), 'yes')
    const doneShot = await screenshot(page, 'rp-signed-in')
    console.log(`screenshots: ${loginShot} ${doneShot}`)
    assert.equal(idp.logins.at(-1)?.email, 'alice@example.com')
    assert.deepEqual(idp.serverErrors, [])
  })

  void it('shows an error for a wrong password, then signs out through end_session', async () => {
    const page = await context.newPage()
    await page.goto(`${rp.origin}/login`)
    await page.fill('#email', 'alice@example.com')
    await page.fill('#password', 'wrong')
    await page.click('#submit')
    assert.match((await page.textContent('#login-error')) ?? '', /wrong password/)
    await page.fill('#password', 'correct horse')
    await Promise.all([page.waitForURL(`${rp.origin}/callback?**`), page.click('#submit')])

    await page.goto(`${rp.origin}/logout`)
    assert.ok(page.url().startsWith(`${idp.issuer}/session/end`), page.url())
    await Promise.all([page.waitForURL(`${rp.origin}/signed-out**`), page.click('#logout')])
    assert.equal(await page.textContent('#bye'), 'signed out')
    // The IdP session is over: a new sign-in shows the form again.
    await page.goto(`${rp.origin}/login`)
    assert.ok(await page.isVisible('#email'))
  })
})
