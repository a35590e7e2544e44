/**
 * Forward-auth behind a real Caddy 2 (`forward_auth`, docs/delegated-authorization.md): headless
 * Chromium signs in through Caddy, the upstream receives a verifiable assertion (and never one a
 * client forged), and a denied app shows Portcullis' 403 page.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { JSONWebKeySet } from 'jose'
import { request } from 'undici'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { caddyInstalled, startCaddy } from './fixtures/caddy.js'
import type { Caddy } from './fixtures/caddy.js'
import { makeServerCert, testPki } from './fixtures/certs.js'
import { freePort, SIGN_IN_HOSTS, startSignInSetup } from './fixtures/sign-in.js'
import { waitFor } from './fixtures/wait.js'
import type { SignInSetup } from './fixtures/sign-in.js'

const options = caddyInstalled() || process.env['CI'] ? browserTestOptions() : { skip: 'caddy is not installed (apt-get install caddy, or run .ci/run)' }

/** The Caddyfile recipe of docs/delegated-authorization.md, for two app hosts. */
function caddySites(port: number, portcullisPort: number, forwardAuthPort: number, upstream: string, cert: { certFile: string; keyFile: string }, caFile: string): string {
  return `https://kube.localhost:${port}, https://gcp.localhost:${port} {
  bind 127.0.0.1
  tls ${cert.certFile} ${cert.keyFile}
  # Portcullis' own paths on the app's host (the sign-in callback, the user page).
  handle /.pomerium/* {
    reverse_proxy https://127.0.0.1:${portcullisPort} {
      transport http {
        tls_trusted_ca_certs ${caFile}
      }
    }
  }
  handle {
    # route keeps the order as written: the client's own copy of the header is dropped first.
    route {
      request_header -X-Pomerium-Jwt-Assertion
      forward_auth 127.0.0.1:${forwardAuthPort} {
        uri /verify
        copy_headers X-Pomerium-Jwt-Assertion
      }
      reverse_proxy ${new URL(upstream).host}
    }
  }
}`
}

describe('forward-auth behind Caddy', options, () => {
  let setup: SignInSetup
  let caddy: Caddy
  let browser: TestBrowser
  let app: string
  let denied: string

  before(async () => {
    const forwardAuthPort = await freePort()
    setup = await startSignInSetup({
      settings: { forward_auth: { address: `127.0.0.1:${forwardAuthPort}`, trusted_proxies: ['127.0.0.1/32'] } },
      routes: (upstream) => [
        { from: 'https://kube.localhost', to: upstream, allowed_users: ['alice@example.com'], pass_identity_headers: true },
        { from: 'https://gcp.localhost', to: upstream, allowed_users: ['nobody@example.com'] },
      ],
    })
    // The forward_auth listener may come up just after the main one (cluster workers).
    await waitFor('the forward_auth listener', () => setup.portcullis.listeners['forward_auth'] !== undefined)
    const cert = makeServerCert(testPki().ca, [...SIGN_IN_HOSTS, '127.0.0.1'])
    caddy = await startCaddy((port) => caddySites(port, setup.port, forwardAuthPort, setup.upstream.url, cert, testPki().ca.certFile))
    app = `https://kube.localhost:${caddy.port}`
    denied = `https://gcp.localhost:${caddy.port}`
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await caddy?.close()
    await setup?.close()
  })

  it('a browser signs in through Caddy and reaches the app; the upstream gets a verifiable assertion; a denied app shows the 403 page', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const page = await context.newPage()
    await page.goto(`${app}/dashboards?id=7`)
    assert.equal(new URL(page.url()).origin, setup.idp.issuer, `sent to the provider (at ${page.url()}; caddy: ${caddy.output().slice(-800)})`)
    await page.fill('input[name=email]', 'alice@example.com')
    await page.fill('input[name=password]', 'alice-password')
    await Promise.all([page.waitForURL(`${app}/dashboards?id=7`), page.click('form#login [type=submit]')])
    await screenshot(page, 'forward-auth-caddy-app')
    const seen = setup.upstream.requests.filter((r) => r.url === '/dashboards?id=7').at(-1)
    assert.ok(seen, 'the upstream got the request through Caddy')
    const jwks = (await (await request(`${setup.app}/.well-known/pomerium/jwks.json`, { dispatcher: setup.dispatcher })).body.json()) as JSONWebKeySet
    const { payload } = await jwtVerify(seen.headers['x-pomerium-jwt-assertion'] as string, createLocalJWKSet(jwks), { audience: 'kube.localhost' })
    assert.equal(payload['email'], 'alice@example.com')

    const refused = await page.goto(`${denied}/`)
    assert.equal(refused?.status(), 403)
    assert.match((await page.textContent('body')) ?? '', /403 Forbidden[\s\S]*Why:[\s\S]*Request ID/)
    await context.close()
  })

  it('an API client gets 401, and a forged assertion never reaches the upstream', async () => {
    const res = await request(`${app}/api`, { dispatcher: setup.dispatcher, headers: { accept: 'application/json', 'x-pomerium-jwt-assertion': 'forged' } })
    assert.equal(res.statusCode, 401)
    await res.body.dump()
    assert.ok(!setup.upstream.requests.some((r) => r.url === '/api'))
  })
})
