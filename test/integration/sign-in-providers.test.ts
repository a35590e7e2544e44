/**
 * Per-route identity provider clients (Pomerium docs: Access-control `idp_client_id`/`idp_client_secret`): a
 * route with its own client signs in through that client, and its sessions are bound to it.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let admin: string

before(async () => {
  setup = await startSignInSetup({
    extraClients: [{ clientId: 'portcullis-admin', clientSecret: 'admin-secret' }],
    routes: (upstream) => [{ from: 'https://admin.localhost', to: upstream, allow_any_authenticated_user: true, idp_client_id: 'portcullis-admin', idp_client_secret: 'admin-secret' }],
  })
  admin = `https://admin.localhost:${setup.port}`
})
after(async () => {
  await setup.close()
})

async function status(url: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await request(url, { dispatcher: setup.dispatcher, headers })
  await res.body.dump()
  return res.statusCode
}

test('a route with its own client signs in through it, and the other route keeps working', async () => {
  const appLink = new URL(String((await request(`${setup.app}/`, { dispatcher: setup.dispatcher })).headers['location']))
  const adminLink = new URL(String((await request(`${admin}/`, { dispatcher: setup.dispatcher })).headers['location']))
  assert.notEqual(appLink.searchParams.get('pomerium_idp_id'), adminLink.searchParams.get('pomerium_idp_id'))

  const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
  const logins = setup.idp.logins.length
  const second = await signIn(setup, `${admin}/`, 'alice@example.com', 'not-asked', jar)
  assert.equal(setup.idp.logins.length, logins, 'the provider session is reused: no second password')
  assert.ok(second.visited.some((v) => v.includes('client_id=portcullis-admin')), second.visited.join('\n'))
  const cookieFor = (base: string): string => `_pomerium=${jar.forHost(new URL(base).host)['_pomerium']}`
  assert.equal(await status(`${admin}/`, { cookie: cookieFor(admin) }), 200)
  assert.equal(await status(`${setup.app}/`, { cookie: cookieFor(setup.app) }), 200)
})

test('a session of one client is not accepted on a route bound to another', async () => {
  const login = await request(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`, { dispatcher: setup.dispatcher })
  const { loginWithForm } = await import('../fixtures/oidc-provider.js')
  const r = await loginWithForm(await login.body.text(), 'bob@example.com', 'bob-password', { dispatcher: setup.dispatcher, stopAt: (u) => u.host === '127.0.0.1:9' })
  const jwt = r.url.searchParams.get('pomerium_jwt') as string
  assert.equal(await status(`${setup.app}/`, { authorization: `Pomerium ${jwt}` }), 200)
  assert.equal(await status(`${admin}/`, { authorization: `Pomerium ${jwt}` }), 401)
})
