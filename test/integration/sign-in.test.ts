/**
 * The sign-in flow end to end against a real OpenID provider (oidc-provider on loopback) and the
 * real Portcullis process over TLS, with a scripted browser (cookie jar + redirects): Pomerium
 * docs: Stateful flow and Sign-out; hostile-input cases: open redirects; sessions, cookies and CSRF; exposed endpoints.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import { CookieJar } from '../fixtures/oidc-provider.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import type { EchoRecord } from '../fixtures/upstreams.js'

let setup: SignInSetup

before(async () => {
  setup = await startSignInSetup()
})
after(async () => {
  await setup.close()
})

async function get(url: string, jar?: CookieJar, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(url)
  const cookie = jar?.header(u)
  const res = await request(u, { dispatcher: setup.dispatcher, headers: { ...headers, ...(cookie ? { cookie } : {}) } })
  const body = await res.body.text()
  const setCookie = res.headers['set-cookie']
  if (jar && setCookie !== undefined) jar.store(u, Array.isArray(setCookie) ? setCookie : [setCookie])
  return { status: res.statusCode, headers: res.headers, body }
}

function setCookies(h: Record<string, string | string[] | undefined>): string[] {
  const v = h['set-cookie']
  return v === undefined ? [] : Array.isArray(v) ? v : [v]
}

describe('sign-in across domains', () => {
  test('a browser is sent to a signed authenticate URL, signs in, and lands on the original URL with its query', async () => {
    const target = `${setup.app}/some/path?x=1&y=two`
    const first = await get(target)
    assert.equal(first.status, 302)
    const location = new URL(String(first.headers['location']))
    assert.equal(location.origin, setup.authn)
    assert.equal(location.pathname, '/.pomerium/sign_in')
    assert.equal(location.searchParams.get('pomerium_redirect_uri'), target)
    for (const p of ['pomerium_idp_id', 'pomerium_issued', 'pomerium_expiry', 'pomerium_signature']) assert.ok(location.searchParams.get(p), p)

    const { jar, visited } = await signIn(setup, target, 'alice@example.com', 'alice-password')
    assert.ok(visited.some((v) => v.includes('/oauth2/callback')), visited.join('\n'))
    assert.ok(visited.some((v) => v.includes('app.localhost') && v.includes('/.pomerium/callback/')), visited.join('\n'))
    const done = await get(target, jar)
    assert.equal(done.status, 200, done.body)
    const echoed = JSON.parse(done.body) as EchoRecord
    assert.equal(echoed.url, '/some/path?x=1&y=two')
    // Our cookie never reaches the upstream.
    assert.ok(!JSON.stringify(echoed.headers).includes('_pomerium'), JSON.stringify(echoed.headers))
  })

  test('a second domain signs in without the password form (single sign-on), with its own cookie', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
    const loginsBefore = setup.idp.logins.length
    const second = await signIn(setup, `${setup.other}/two`, 'bob@example.com', 'wrong-password-never-asked', jar)
    assert.equal(setup.idp.logins.length, loginsBefore, 'no second password sign-in at the provider')
    assert.ok(!second.visited.some((v) => v.startsWith('POST') && v.includes(new URL(setup.idp.issuer).host)), second.visited.join('\n'))
    const res = await get(`${setup.other}/two`, jar)
    assert.equal(res.status, 200)
    assert.ok(jar.forHost(new URL(setup.other).host)['_pomerium'])
  })

  test('API clients get 401 JSON instead of a redirect (as Pomerium does)', async () => {
    for (const headers of [{ accept: 'application/json' }, { 'x-requested-with': 'XMLHttpRequest' }, { authorization: 'Pomerium not-a-token' }]) {
      const res = await get(`${setup.app}/api`, undefined, headers)
      assert.equal(res.status, 401, JSON.stringify(headers))
      if (headers.accept === 'application/json') {
        const body = JSON.parse(res.body) as { error: string; request_id: string }
        assert.ok(body.error && body.request_id)
      }
    }
  })

  test('public routes need no sign-in', async () => {
    const res = await get(`${setup.pub}/`)
    assert.equal(res.status, 200)
  })

  test('the session cookie is Secure, HttpOnly, host-only, Path=/', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    void jar
    // Re-run the last hop by hand to see the Set-Cookie of the route callback.
    const start = await get(`${setup.other}/cookie-check`)
    const j = new CookieJar()
    const signedIn = await signIn(setup, `${setup.other}/cookie-check`, 'alice@example.com', 'alice-password', j)
    void start
    void signedIn
    const res = await get(`${setup.app}/.pomerium/sign_out`, j)
    const cleared = setCookies(res.headers).find((c) => c.startsWith('_pomerium='))
    assert.ok(cleared, 'route sign-out clears the cookie')
    assert.match(cleared, /; Path=\//)
    assert.match(cleared, /; Secure/)
    assert.match(cleared, /; HttpOnly/)
    assert.doesNotMatch(cleared, /Domain=/i)
  })
})
