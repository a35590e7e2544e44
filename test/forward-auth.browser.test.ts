/**
 * Forward-auth behind a real nginx (`auth_request`, docs/delegated-authorization.md): headless
 * Chromium signs in through nginx, reaches an allowed app whose upstream receives a verifiable
 * `X-Pomerium-Jwt-Assertion`, and gets Portcullis' 403 page on a denied one; the forward-auth
 * listener refuses callers outside `trusted_proxies` and applies the proxy's path hygiene to the
 * forwarded URI.
 */
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { after, before, describe, it } from 'node:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { JSONWebKeySet } from 'jose'
import { request } from 'undici'
import type { Dispatcher } from 'undici'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { makeServerCert, testPki } from './fixtures/certs.js'
import { nginxInstalled, startNginx } from './fixtures/nginx.js'
import type { Nginx } from './fixtures/nginx.js'
import { freePort, SIGN_IN_HOSTS, startSignInSetup } from './fixtures/sign-in.js'
import type { SignInSetup } from './fixtures/sign-in.js'
import { waitFor } from './fixtures/wait.js'

const options = nginxInstalled() || process.env['CI'] ? browserTestOptions() : { skip: 'nginx is not installed (apt-get install nginx, or run .ci/run)' }

/** nginx in front of the apps, asking Portcullis' forward-auth listener (the recipe of docs/delegated-authorization.md). */
function nginxServer(port: number, portcullisPort: number, forwardAuthPort: number, upstream: string, cert: { certFile: string; keyFile: string }, caFile: string): string {
  const forwarded = `
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Forwarded-Method $request_method;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Uri $request_uri;
    proxy_set_header X-Forwarded-For $remote_addr;`
  return `
  upstream app_backend { server ${new URL(upstream).host}; }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name kube.localhost gcp.localhost;
    ssl_certificate ${cert.certFile};
    ssl_certificate_key ${cert.keyFile};
    # Portcullis' own paths on the app's host (the sign-in callback, the user page).
    location /.pomerium/ {
      proxy_pass https://127.0.0.1:${portcullisPort};
      proxy_ssl_server_name on;
      proxy_ssl_name $host;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${caFile};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location = /_portcullis/auth {
      internal;
      proxy_pass http://127.0.0.1:${forwardAuthPort}/auth;${forwarded}
    }
    # A refusal: Portcullis' whole answer (the sign-in redirect, the 403 page).
    location @portcullis {
      rewrite ^ /verify break;
      proxy_method GET;
      proxy_pass http://127.0.0.1:${forwardAuthPort};${forwarded}
    }
    location / {
      auth_request /_portcullis/auth;
      auth_request_set $pomerium_jwt $upstream_http_x_pomerium_jwt_assertion;
      error_page 401 403 = @portcullis;
      proxy_set_header X-Pomerium-Jwt-Assertion $pomerium_jwt;
      proxy_set_header Host $http_host;
      proxy_pass http://app_backend;
    }
  }`
}

describe('forward-auth behind nginx', options, () => {
  let setup: SignInSetup
  let nginx: Nginx
  let browser: TestBrowser
  let forwardAuthPort: number
  let app: string
  let denied: string
  /** Session cookies of the two app hosts, from the Traefik test's sign-in. */
  let cookies: { app: string; denied: string } | undefined

  before(async () => {
    forwardAuthPort = await freePort()
    setup = await startSignInSetup({
      settings: { forward_auth: { address: `127.0.0.1:${forwardAuthPort}`, trusted_proxies: ['127.0.0.1/32'] } },
      routes: (upstream) => [
        { from: 'https://kube.localhost', to: upstream, allowed_users: ['alice@example.com'], pass_identity_headers: true },
        { from: 'https://gcp.localhost', to: upstream, allowed_users: ['nobody@example.com'] },
        { from: 'https://users.localhost', prefix: '/public', to: upstream, allow_public_unauthenticated_access: true },
        { from: 'https://users.localhost', prefix: '/admin', to: upstream, allowed_users: ['nobody@example.com'] },
      ],
    })
    // The forward_auth listener may come up just after the main one (cluster workers).
    await waitFor('the forward_auth listener', () => setup.portcullis.listeners['forward_auth'] !== undefined)
    const cert = makeServerCert(testPki().ca, [...SIGN_IN_HOSTS, '127.0.0.1'])
    nginx = await startNginx((port) => nginxServer(port, setup.port, forwardAuthPort, setup.upstream.url, cert, testPki().ca.certFile))
    app = `https://kube.localhost:${nginx.port}`
    denied = `https://gcp.localhost:${nginx.port}`
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await nginx?.close()
    await setup?.close()
  })

  it('a browser signs in through nginx and reaches the app; the upstream gets a verifiable assertion', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const page = await context.newPage()
    await page.goto(`${app}/reports?q=1`)
    assert.equal(new URL(page.url()).origin, setup.idp.issuer, `sent to the provider (at ${page.url()}; nginx: ${nginx.errorLog().slice(-500)})`)
    await page.fill('input[name=email]', 'alice@example.com')
    await page.fill('input[name=password]', 'alice-password')
    await Promise.all([page.waitForURL(`${app}/reports?q=1`), page.click('form#login [type=submit]')])
    await screenshot(page, 'forward-auth-nginx-app')
    const seen = setup.upstream.requests.filter((r) => r.url === '/reports?q=1').at(-1)
    assert.ok(seen, 'the upstream got the request through nginx')
    const assertion = seen.headers['x-pomerium-jwt-assertion']
    assert.equal(typeof assertion, 'string')
    const jwks = (await (await fetchJson(`${setup.app}/.well-known/pomerium/jwks.json`, setup)).json()) as JSONWebKeySet
    const { payload } = await jwtVerify(assertion as string, createLocalJWKSet(jwks), { audience: 'kube.localhost' })
    assert.equal(payload['email'], 'alice@example.com')
    // The session cookie was set on the app's host, through nginx.
    const cookies = await context.cookies(app)
    assert.ok(cookies.some((c) => c.name === '_pomerium' && c.domain === 'kube.localhost'))

    const refused = await page.goto(`${denied}/`)
    assert.equal(refused?.status(), 403)
    const body = (await page.textContent('body')) ?? ''
    assert.match(body, /403 Forbidden/)
    assert.match(body, /Why:/)
    assert.match(body, /Request ID/)
    await screenshot(page, 'forward-auth-nginx-403')
    await context.close()
  })

  it('an API client without a session gets 401, and a forged assertion never reaches the upstream', async () => {
    const dispatcher = setup.dispatcher
    const res = await request(`${app}/api`, { dispatcher, headers: { accept: 'application/json', 'x-pomerium-jwt-assertion': 'forged' } })
    assert.equal(res.statusCode, 401)
    await res.body.dump()
    assert.ok(!setup.upstream.requests.some((r) => r.url === '/api'))
  })

  it("Traefik's ForwardAuth request (exactly the headers its documentation lists) is answered as a fronting proxy needs", async () => {
    // A signed-in browser's cookie, taken from a sign-in through nginx.
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const page = await context.newPage()
    await page.goto(`${app}/`)
    await page.fill('input[name=email]', 'alice@example.com')
    await page.fill('input[name=password]', 'alice-password')
    await Promise.all([page.waitForURL(`${app}/`), page.click('form#login [type=submit]')])
    const cookie = (await context.cookies(app)).find((c) => c.name === '_pomerium')
    assert.ok(cookie)
    // The denied app's host has its own cookie (single sign-on, then its 403).
    await page.goto(`${denied}/`)
    const deniedCookie = (await context.cookies(denied)).find((c) => c.name === '_pomerium')
    assert.ok(deniedCookie)
    await context.close()
    const traefik = (extra: Record<string, string>): Promise<Dispatcher.ResponseData> =>
      request(`http://127.0.0.1:${forwardAuthPort}/verify`, {
        headers: {
          'x-forwarded-method': 'GET',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'kube.localhost',
          'x-forwarded-uri': '/traefik?x=1',
          'x-forwarded-for': '203.0.113.9',
          accept: 'text/html',
          ...extra,
        },
      })
    const allowed = await traefik({ cookie: `_pomerium=${cookie.value}` })
    assert.equal(allowed.statusCode, 200)
    await allowed.body.dump()
    assert.equal(typeof allowed.headers['x-pomerium-jwt-assertion'], 'string', 'for authResponseHeaders')
    const anonymous = await traefik({})
    assert.equal(anonymous.statusCode, 302)
    await anonymous.body.dump()
    assert.match(String(anonymous.headers['location']), /\/\.pomerium\/sign_in\?/)
    const refused = await traefik({ cookie: `_pomerium=${deniedCookie.value}`, 'x-forwarded-host': 'gcp.localhost' })
    assert.equal(refused.statusCode, 403)
    assert.match(await refused.body.text(), /Why:/)
    cookies = { app: cookie.value, denied: deniedCookie.value }
  })

  it("Envoy's HTTP ext_authz request (the original request under /envoy, Host the app's) gets the same answers", async () => {
    assert.ok(cookies)
    const envoy = (host: string, extra: Record<string, string>): Promise<Dispatcher.ResponseData> =>
      request(`http://127.0.0.1:${forwardAuthPort}/envoy/reports?q=1`, { headers: { host, 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9', accept: 'text/html', ...extra } })
    const allowed = await envoy('kube.localhost', { cookie: `_pomerium=${cookies.app}` })
    assert.equal(allowed.statusCode, 200)
    await allowed.body.dump()
    assert.equal(typeof allowed.headers['x-pomerium-jwt-assertion'], 'string', 'for allowed_upstream_headers')
    const anonymous = await envoy('kube.localhost', {})
    assert.equal(anonymous.statusCode, 302)
    await anonymous.body.dump()
    const location = new URL(String(anonymous.headers['location']))
    assert.equal(new URL(location.searchParams.get('pomerium_redirect_uri') ?? '').pathname, '/reports', 'the original path, without the prefix')
    const refused = await envoy('gcp.localhost', { cookie: `_pomerium=${cookies.denied}` })
    assert.equal(refused.statusCode, 403)
    await refused.body.dump()
    const bad = await request(`http://127.0.0.1:${forwardAuthPort}/envoy/a/%00`, { headers: { host: 'kube.localhost', cookie: `_pomerium=${cookies.app}` } })
    assert.equal(bad.statusCode, 400)
    await bad.body.dump()
  })

  it('callers outside trusted_proxies are refused, whatever they forward', async () => {
    // From 127.0.0.2: loopback too, but not the trusted 127.0.0.1.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port: forwardAuthPort,
          path: '/verify',
          localAddress: '127.0.0.2',
          headers: { 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/', 'x-forwarded-proto': 'https', accept: 'application/json' },
        },
        (res) => {
          let body = ''
          res.on('data', (c: Buffer) => (body += c.toString()))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        },
      )
      req.on('error', reject)
      req.end()
    })
    assert.equal(answer.status, 403)
    assert.match(answer.body, /trusted_proxies/)
    await waitFor('the refusal to be logged', () => setup.portcullis.logs.some((l) => l.includes('forward-auth call refused: the caller is not in forward_auth.trusted_proxies') && l.includes('127.0.0.2')))
  })

  it('the hidden-path cases of the built-in proxy get the same answers through forward-auth', async () => {
    // The hostile paths of test/integration/hygiene.test.ts: a public /public and a protected /admin.
    const targets = [
      '/public/x', '/admin', '/other', '/public/../admin', '/public/%2e%2e/admin', '/public/%2E%2E/admin', '/public/%2E%2E%2Fadmin',
      '/public/..%2fadmin', '/public%2F..%2Fadmin', '/public/..%5cadmin', '//admin', '///admin/x', '/./admin', '/admin/.',
      '/public/./../admin', '/ADMIN', '/admin;jsessionid=x', '/admin%00', '/public%00/../admin', '/%61dmin', '/%61%64%6d%69%6e/x',
    ]
    for (const target of targets) {
      // The built-in proxy, over TLS to the main listener, as an API client without a session.
      const direct = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: setup.port, path: target, servername: 'users.localhost', ca: setup.caPem, headers: { host: `users.localhost:${setup.port}`, accept: 'application/json' } },
          (res) => (res.resume(), resolve(res.statusCode ?? 0)),
        )
        req.on('error', reject)
        req.end()
      })
      const res = await request(`http://127.0.0.1:${forwardAuthPort}/verify`, {
        headers: { accept: 'application/json', 'x-forwarded-proto': 'https', 'x-forwarded-host': `users.localhost:${setup.port}`, 'x-forwarded-uri': target, 'x-forwarded-method': 'GET' },
      })
      await res.body.dump()
      assert.equal(res.statusCode, direct, `${target}: forward-auth answered ${res.statusCode}, the proxy ${direct}`)
    }
  })

  it('the forwarded request gets the proxy’s hygiene: ambiguous paths, repeated headers, unknown hosts', async () => {
    const ask = async (headers: Record<string, string | string[]>, path = '/verify'): Promise<number> => {
      const res = await request(`http://127.0.0.1:${forwardAuthPort}${path}`, { headers: { accept: 'application/json', 'x-forwarded-proto': 'https', ...headers } })
      await res.body.dump()
      return res.statusCode
    }
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/a/%2e%2e/b', accept: 'text/html' }), 302, 'normalised, then a sign-in like any other path')
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/a/%00' }), 400, 'an encoded NUL')
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/x/%252e%252e/admin' }), 400, 'a dot segment hidden by double encoding')
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/a#x' }), 400, 'a fragment')
    assert.equal(await ask({ 'x-forwarded-host': ['kube.localhost', 'gcp.localhost'], 'x-forwarded-uri': '/' }), 400)
    assert.equal(await ask({ 'x-forwarded-host': 'unknown.localhost', 'x-forwarded-uri': '/' }), 404)
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/healthz' }), 403, 'never a 2xx for a path the proxy would answer itself')
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost' }), 400, 'no URI')
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/' }, '/auth'), 401, 'nginx mode: sign-in is a 401')
    assert.equal(await ask({ 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/' }, '/elsewhere'), 404)
  })
})

async function fetchJson(url: string, setup: SignInSetup): Promise<{ json(): Promise<unknown> }> {
  const res = await request(url, { dispatcher: setup.dispatcher })
  return { json: () => res.body.json() }
}
