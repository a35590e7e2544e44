/**
 * The four services as four processes (issue 5, Pomerium docs: All-in-one vs split): a databroker, an authorize
 * service and an authenticate service, each alone, and a proxy that asks the authorize service
 * over the internal API (TLS, verified against `certificate_authority`) and passes the
 * authenticate host to `authenticate_internal_service_url`. The whole sign-in and policy flow
 * goes through them; the authorize API refuses a user's token; the proxy fails closed when the
 * authorize service is gone.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import { internalApiStatus } from '../fixtures/internal-api.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { freePort, signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let databroker: PortcullisProcess
let authorize: PortcullisProcess
let authenticate: PortcullisProcess
let authorizeUrl = ''

before(async () => {
  const authorizePort = await freePort()
  const authenticatePort = await freePort()
  const databrokerPort = await freePort()
  authorizeUrl = `https://127.0.0.1:${authorizePort}`
  const databrokerUrl = `http://127.0.0.1:${databrokerPort}`
  // The proxy is the fixture's main process; the other three share its config with their own `services`.
  setup = await startSignInSetup({
    settings: {
      services: 'proxy',
      databroker_service_url: databrokerUrl,
      authorize_service_url: authorizeUrl,
      authenticate_internal_service_url: `https://127.0.0.1:${authenticatePort}`,
      override_certificate_name: 'authn.localhost',
      pass_identity_headers: true,
      // Every process announces its own metrics listener (port 0): the identity manager test reads them.
      metrics_address: '127.0.0.1:0',
    },
    routes: (upstream) => [{ from: 'https://admin.localhost', to: upstream, policy: { allow: { and: [{ email: { is: 'alice@example.com' } }] } } }],
    withCertificateAuthority: true,
  })
  databroker = await setup.startAnother({ services: 'databroker', grpc_address: `127.0.0.1:${databrokerPort}`, grpc_insecure: true }, { readyListener: 'grpc' })
  authorize = await setup.startAnother({ services: 'authorize', grpc_address: `127.0.0.1:${authorizePort}` }, { readyListener: 'grpc' })
  authenticate = await setup.startAnother({ services: 'authenticate', address: `127.0.0.1:${authenticatePort}` })
})

after(async () => {
  await setup?.close()
})

async function get(url: string, cookie: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const res = await request(url, { dispatcher: setup.dispatcher, headers: { cookie, accept: 'text/html' } })
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
}

test('sign-in and policy through four processes: proxy, authenticate, authorize, databroker', async () => {
  assert.equal(authorize.listeners['main'], undefined, 'the authorize process serves no HTTP listener')
  assert.equal(databroker.listeners['main'], undefined, 'the databroker process serves no HTTP listener')

  const alice = await signIn(setup, `${setup.app}/start?x=1`, 'alice@example.com', 'alice-password')
  assert.equal(alice.final.href, `${setup.app}/start?x=1`)
  // The sign-in pages were answered by the authenticate process behind the proxy.
  assert.ok(alice.visited.some((u) => u.includes(`${setup.authn}/oauth2/callback`)))
  await authenticate.waitForLog((e) => e['path'] === '/oauth2/callback', 5000)
  const cookie = `_pomerium=${alice.jar.forHost(new URL(setup.app).host)['_pomerium']}`
  const ok = await get(`${setup.app}/start?x=1`, cookie)
  assert.equal(ok.status, 200)
  const echoed = JSON.parse(ok.body) as { headers: Record<string, string> }
  assert.ok(echoed.headers['x-pomerium-jwt-assertion'], 'the upstream receives the identity assertion signed by the authorize process')

  // Alice is allowed on the admin route by its policy; Bob is refused with the reason in words.
  const aliceAdmin = await signIn(setup, `https://admin.localhost:${setup.port}/`, 'alice@example.com', 'alice-password', alice.jar)
  const aliceAdminCookie = `_pomerium=${aliceAdmin.jar.forHost(`admin.localhost:${setup.port}`)['_pomerium']}`
  assert.equal((await get(`https://admin.localhost:${setup.port}/`, aliceAdminCookie)).status, 200)
  const bob = await signIn(setup, `https://admin.localhost:${setup.port}/`, 'bob@example.com', 'bob-password')
  const bobCookie = `_pomerium=${bob.jar.forHost(`admin.localhost:${setup.port}`)['_pomerium']}`
  const denied = await get(`https://admin.localhost:${setup.port}/`, bobCookie)
  assert.equal(denied.status, 403)
  assert.match(denied.body, /bob@example\.com/)
  assert.match(denied.body, /email/i)

  // The decisions were the authorize process's: its authorize log has them, the proxy's has none.
  await authorize.waitForLog((e) => e['msg'] === 'authorize check' && e['email'] === 'bob@example.com' && e['allow'] === false, 5000)
  assert.ok(!setup.portcullis.logs.some((l) => l.includes('"authorize check"')), 'the proxy made no decision itself')
})

test('the authorize API refuses a user session token', async () => {
  const { jar } = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
  const handle = jar.forHost(new URL(setup.app).host)['_pomerium'] as string
  for (const authorization of [`Bearer ${handle}`, `Pomerium ${handle}`]) {
    const status = await internalApiStatus(authorizeUrl, '/authorize/v1/check', authorization, { ca: setup.caPem, servername: 'authn.localhost' })
    assert.equal(status, 401, authorization.slice(0, 16))
  }
})

async function scrapeMetrics(p: PortcullisProcess): Promise<string> {
  const url = p.listeners['metrics']
  assert.ok(url, 'the process announces a metrics listener')
  const res = await request(`${url}/metrics`)
  assert.equal(res.statusCode, 200)
  return res.body.text()
}

test('the identity manager runs where authenticate or authorize runs, never in a proxy-only process', async () => {
  const leader = /^pomerium_identity_manager_leader [01]$/m
  assert.doesNotMatch(await scrapeMetrics(setup.portcullis), leader, 'the proxy-only process runs no identity manager')
  assert.match(await scrapeMetrics(authorize), leader, 'the authorize process runs one')
  assert.match(await scrapeMetrics(authenticate), leader, 'the authenticate process runs one')
  assert.doesNotMatch(await scrapeMetrics(databroker), leader, 'the databroker process runs none')
})

test('with the authorize service gone the proxy fails closed with 503; with the authenticate service gone, a clear 502', async () => {
  const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
  const cookie = `_pomerium=${jar.forHost(new URL(setup.app).host)['_pomerium']}`
  assert.equal((await get(`${setup.app}/`, cookie)).status, 200)
  await authorize.stop()
  for (const url of [`${setup.app}/`, `${setup.pub}/`]) {
    const res = await get(url, cookie)
    assert.equal(res.status, 503, url)
    assert.match(res.body, /authorization service is unavailable/)
  }
  await authenticate.stop()
  const res = await get(`${setup.authn}/.pomerium/sign_in`, '')
  assert.equal(res.status, 502)
  assert.match(res.body, /authenticate service is unavailable/)
})
