/**
 * Attacks on the sign-in flow (hostile-input cases: open redirects; sessions, cookies and CSRF; exposed endpoints), programmatic access
 * (Pomerium docs: Non-interactive credentials) and sign-out (Pomerium docs: Sign-out), against the real Portcullis process and a real
 * OpenID provider on loopback.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import { signUrl } from '../../src/session/signed-url.js'
import { CookieJar, loginWithForm } from '../fixtures/oidc-provider.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let shared: Buffer

before(async () => {
  setup = await startSignInSetup()
  shared = Buffer.from(setup.sharedSecret, 'base64')
})
after(async () => {
  await setup.close()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

async function http(url: string, opts: { jar?: CookieJar; headers?: Record<string, string>; method?: string; body?: string } = {}): Promise<Answer> {
  const u = new URL(url)
  const cookie = opts.jar?.header(u)
  const res = await request(u, {
    dispatcher: setup.dispatcher,
    method: (opts.method ?? 'GET') as 'GET',
    headers: { ...opts.headers, ...(cookie ? { cookie } : {}) },
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  })
  const body = await res.body.text()
  const sc = res.headers['set-cookie']
  if (opts.jar && sc !== undefined) opts.jar.store(u, Array.isArray(sc) ? sc : [sc])
  return { status: res.statusCode, headers: res.headers, body }
}

function location(a: Answer): URL {
  return new URL(String(a.headers['location']))
}

/** The signed sign-in URL a protected route answers with. */
async function signInLink(target: string): Promise<URL> {
  const a = await http(target)
  assert.equal(a.status, 302)
  return location(a)
}

describe('sign-in links and redirects', () => {
  test('unsigned sign_in with a foreign redirect is refused (hostile-input case: redirect / open-redirect)', async () => {
    const a = await http(`${setup.authn}/.pomerium/sign_in?pomerium_redirect_uri=https://evil.com`)
    assert.equal(a.status, 400)
    assert.equal(a.headers['location'], undefined)
  })

  test('tampered, stripped, re-timed and expired signatures are all refused (hostile-input case: redirect / open-redirect)', async () => {
    const link = await signInLink(`${setup.app}/x`)
    const variants: URL[] = []
    const flip = new URL(link)
    const sig = flip.searchParams.get('pomerium_signature') as string
    flip.searchParams.set('pomerium_signature', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1))
    variants.push(flip)
    const dropped = new URL(link)
    dropped.searchParams.delete('pomerium_signature')
    variants.push(dropped)
    const later = new URL(link)
    later.searchParams.set('pomerium_expiry', String(Number(later.searchParams.get('pomerium_expiry')) + 3600))
    variants.push(later)
    const redirected = new URL(link)
    redirected.searchParams.set('pomerium_redirect_uri', 'https://evil.com/')
    variants.push(redirected)
    const old = signUrl(new URL(`${setup.authn}/.pomerium/sign_in?pomerium_redirect_uri=${encodeURIComponent(`${setup.app}/x`)}&pomerium_idp_id=${link.searchParams.get('pomerium_idp_id')}`), shared, Math.floor(Date.now() / 1000) - 3600)
    variants.push(old)
    for (const v of variants) {
      const a = await http(v.href)
      assert.equal(a.status, 400, v.href)
      assert.equal(a.headers['location'], undefined)
    }
    // The expired link's page says so and offers to go back to the app for a fresh one.
    const expired = await http(old.href)
    assert.match(expired.body, /expired/)
    assert.ok(expired.body.includes(`href="${setup.app}/x"`), 'retry link back to the app')
    // A foreign address is never offered as a retry link.
    assert.ok(!(await http(redirected.href)).body.includes('evil.com/"'))
  })

  test('even a correctly signed link never redirects off the route hosts (hostile-input case: redirect / open-redirect)', async () => {
    const idpId = (await signInLink(`${setup.app}/`)).searchParams.get('pomerium_idp_id') as string
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    const app = new URL(setup.app).host
    const hostile = [
      '//evil.com',
      '/\\evil.com',
      '\\/evil.com',
      '/%5Cevil.com',
      '/%2F%2Fevil.com',
      '/%09/evil.com',
      ' //evil.com',
      'https:evil.com',
      'http:/evil.com',
      'javascript:alert(1)',
      'data:text/html,hi',
      `https://${app}@evil.com`,
      `https://evil.com#@${app}`,
      `https://evil.com\\@${app}`,
      `https://evil.com\\.${app}`,
      'https://evilapp.localhost/',
      'https://app.localhost.evil.net/',
      `https://${app}/%0d%0aSet-Cookie:%20x=1`,
    ]
    for (const rd of hostile) {
      const url = signUrl(new URL(`${setup.authn}/.pomerium/sign_in?pomerium_redirect_uri=${encodeURIComponent(rd)}&pomerium_idp_id=${idpId}`), shared)
      const a = await http(url.href, { jar })
      if (a.status >= 300 && a.status < 400) {
        const next = location(a)
        assert.ok(['app.localhost', 'authn.localhost'].includes(next.hostname), `${rd} -> ${next.href}`)
        const cb = next.searchParams.get('pomerium_redirect_uri')
        if (cb !== null) assert.equal(new URL(cb).hostname, 'app.localhost', rd)
        assert.equal(a.headers['set-cookie'] === undefined || !String(a.headers['set-cookie']).includes('x=1'), true)
      } else {
        assert.equal(a.status, 400, rd)
      }
    }
    // A nested redirect is carried as an opaque same-host URL; Portcullis never follows `next`.
    const nested = `${setup.app}/?next=https://evil.com`
    const url = signUrl(new URL(`${setup.authn}/.pomerium/sign_in?pomerium_redirect_uri=${encodeURIComponent(nested)}&pomerium_idp_id=${idpId}`), shared)
    const a = await http(url.href, { jar })
    assert.equal(a.status, 302)
    const cb = await http(location(a).href, { jar })
    assert.equal(cb.status, 302)
    assert.equal(location(cb).href, nested)
  })

  test('the callback link is single-use and bound to its host', async () => {
    const jar = new CookieJar()
    let callback: URL | undefined
    await loginWithForm(`${setup.app}/once`, 'alice@example.com', 'alice-password', {
      jar,
      dispatcher: setup.dispatcher,
      stopAt: (u) => {
        if (u.pathname === '/.pomerium/callback/') {
          callback = u
          return true
        }
        return false
      },
    })
    assert.ok(callback)
    const first = await http(callback.href)
    assert.equal(first.status, 302)
    const replay = await http(callback.href)
    assert.equal(replay.status, 400)
    // The same sealed session on another host: refused (audience), even with a fresh signature.
    const moved = new URL(callback.href.replace('app.localhost', 'other.localhost'))
    for (const p of ['pomerium_issued', 'pomerium_expiry', 'pomerium_signature']) moved.searchParams.delete(p)
    const resigned = signUrl(moved, shared)
    assert.equal((await http(resigned.href)).status, 400)
  })
})

describe('OAuth state, CSRF, PKCE and codes', () => {
  async function toCallback(email: string, password: string): Promise<{ jar: CookieJar; callback: URL; authorize: URL }> {
    const jar = new CookieJar()
    let authorize: URL | undefined
    const r = await loginWithForm(`${setup.app}/`, email, password, {
      jar,
      dispatcher: setup.dispatcher,
      stopAt: (u) => {
        if (u.pathname.endsWith('/auth') && u.searchParams.has('client_id')) authorize ??= u
        return u.pathname === '/oauth2/callback'
      },
    })
    assert.ok(authorize)
    return { jar, callback: r.url, authorize }
  }

  test('the authorization request carries each protocol parameter once, PKCE S256 and a nonce (hostile-input case: sessions / cookies / csrf)', async () => {
    const link = await signInLink(`${setup.app}/`)
    link.searchParams.append('scope', 'openid admin')
    link.searchParams.append('redirect_uri', 'https://evil.com/')
    link.searchParams.append('state', 'attacker')
    // Added parameters break the signature: the link is refused outright.
    assert.equal((await http(link.href)).status, 400)
    const { authorize } = await toCallback('alice@example.com', 'alice-password')
    for (const p of ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method']) {
      assert.equal(authorize.searchParams.getAll(p).length, 1, p)
    }
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256')
    assert.equal(authorize.searchParams.get('redirect_uri'), `${setup.authn}/oauth2/callback`)
  })

  test('a finished callback cannot be replayed, and the code is single-use (hostile-input case: sessions / cookies / csrf)', async () => {
    const { jar, callback } = await toCallback('alice@example.com', 'alice-password')
    const first = await http(callback.href, { jar })
    assert.equal(first.status, 302)
    const replay = await http(callback.href, { jar })
    assert.equal(replay.status, 400)
  })

  test('a callback without the CSRF cookie, or with another browser\'s, fails', async () => {
    const a = await toCallback('alice@example.com', 'alice-password')
    const b = await toCallback('bob@example.com', 'bob-password')
    const noCookies = await http(a.callback.href)
    assert.equal(noCookies.status, 400)
    // Bob's browser presenting Alice's callback: the state's CSRF token is not Bob's.
    const crossed = await http(a.callback.href, { jar: b.jar })
    assert.equal(crossed.status, 400)
    assert.match(crossed.body, /CSRF/)
  })

  test('a tampered state fails', async () => {
    const { jar, callback } = await toCallback('alice@example.com', 'alice-password')
    const state = callback.searchParams.get('state') as string
    const tampered = new URL(callback)
    tampered.searchParams.set('state', state.slice(0, -4) + (state.endsWith('AAAA') ? 'BBBB' : 'AAAA'))
    assert.equal((await http(tampered.href, { jar })).status, 400)
  })

  test('provider errors are shown escaped, with 401 for access_denied (hostile-input case: exposed endpoints / information leaks)', async () => {
    const a = await http(`${setup.authn}/oauth2/callback?error=access_denied&error_description=${encodeURIComponent('<script>alert(1)</script>')}`)
    assert.equal(a.status, 401)
    assert.ok(!a.body.includes('<script>alert(1)</script>'))
    assert.ok(a.body.includes('&#60;script&#62;'))
    assert.match(String(a.headers['content-security-policy']), /default-src 'none'/)
    const b = await http(`${setup.authn}/oauth2/callback?error=server_error`)
    assert.equal(b.status, 400)
  })
})

describe('sessions', () => {
  test('a planted cookie never becomes authenticated: every sign-in makes a new session (hostile-input case: sessions / cookies / csrf)', async () => {
    const attacker = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
    const planted = attacker.jar.forHost(new URL(setup.authn).host)['_pomerium'] as string
    assert.ok(planted)
    const victim = new CookieJar()
    victim.store(new URL(setup.authn), [`_pomerium=${planted}; Path=/`])
    // The sign-in page clears the planted cookie before going to the provider.
    const link = await signInLink(`${setup.app}/`)
    const start = await http(link.href, { jar: new CookieJar() })
    assert.ok(String(start.headers['set-cookie']).includes('_pomerium=;'))
    const signedIn = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    const issued = signedIn.jar.forHost(new URL(setup.authn).host)['_pomerium'] as string
    assert.notEqual(issued, planted)
    const me = await http(`${setup.app}/.pomerium/user`, { jar: signedIn.jar })
    assert.equal((JSON.parse(me.body) as { email: string }).email, 'alice@example.com')
  })

  test('garbage, truncated, foreign and re-signed cookies mean "not signed in", never 500 (hostile-input case: sessions / cookies / csrf)', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    const good = jar.forHost(new URL(setup.app).host)['_pomerium'] as string
    const [h, p] = good.split('.') as [string, string, string]
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'someone-else' })).toString('base64url')}.${good.split('.')[2]}`
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`
    for (const value of ['AAAA', good.slice(0, -5), good + 'x', forged, none, 'a.b.c', '"quoted"']) {
      const a = await http(`${setup.app}/`, { headers: { cookie: `_pomerium=${value}` } })
      assert.equal(a.status, 302, value)
      const api = await http(`${setup.app}/`, { headers: { cookie: `_pomerium=${value}`, accept: 'application/json' } })
      assert.equal(api.status, 401, value)
    }
  })

  test('the user page shows identity, never tokens, with no-store and a strict CSP (hostile-input case: exposed endpoints / information leaks)', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    for (const base of [setup.app, setup.authn]) {
      const a = await http(`${base}/.pomerium/`, { jar })
      assert.equal(a.status, 200, base)
      assert.match(a.body, /alice@example\.com/)
      assert.match(a.body, /admins/)
      assert.doesNotMatch(a.body, /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\./, 'no JWTs on the page')
      assert.equal(a.headers['cache-control'], 'no-store')
      assert.match(String(a.headers['content-security-policy']), /default-src 'none'/)
    }
    const redirect = await http(`${setup.app}/.pomerium`, { jar })
    assert.equal(redirect.status, 302)
    assert.equal(redirect.headers['location'], '/.pomerium/')
    const me = await http(`${setup.app}/.pomerium/user`, { jar })
    const body = JSON.parse(me.body) as Record<string, unknown>
    assert.equal(body['email'], 'alice@example.com')
    assert.deepEqual(body['groups'], ['admins', 'staff'])
    for (const k of ['iss', 'aud', 'exp', 'iat', 'jti', 'access_token', 'id_token', 'refresh_token']) assert.equal(body[k], undefined, k)
    assert.equal((await http(`${setup.app}/.pomerium/user`)).status, 401)
  })

  test('/.well-known/pomerium describes this host', async () => {
    const a = await http(`${setup.app}/.well-known/pomerium`)
    assert.equal(a.status, 200)
    assert.equal(a.headers['access-control-allow-origin'], '*')
    const doc = JSON.parse(a.body) as Record<string, string>
    assert.equal(doc['issuer'], `${setup.app}/`)
    assert.equal(doc['authentication_callback_endpoint'], `${setup.authn}/oauth2/callback`)
    assert.equal(doc['jwks_uri'], `${setup.app}/.well-known/pomerium/jwks.json`)
  })
})

describe('programmatic access', () => {
  test('the login URL is only given for whitelisted redirect hosts (hostile-input case: redirect / open-redirect)', async () => {
    const evil = await http(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=https://evil.com/cb`)
    assert.equal(evil.status, 400)
    assert.equal((await http(`${setup.app}/.pomerium/api/v1/login`)).status, 404)
    assert.equal((await http(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=http://127.0.0.1:8000/cb`, { method: 'POST' })).status, 405)
    const ok = await http(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=http://127.0.0.1:8000/cb`)
    assert.equal(ok.status, 200)
    assert.match(String(ok.headers['content-type']), /^text\/plain/)
    const url = new URL(ok.body)
    assert.equal(url.origin, setup.authn)
    assert.equal(url.searchParams.get('pomerium_programmatic'), 'true')
    assert.equal(url.searchParams.get('pomerium_callback_uri'), `${setup.app}/.pomerium/callback/`)
  })

  test('after sign-in the client gets pomerium_jwt, accepted in every header form; invalid ones get 401', async () => {
    const login = await http(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:8000/cb?keep=1')}`)
    const r = await loginWithForm(login.body, 'bob@example.com', 'bob-password', {
      dispatcher: setup.dispatcher,
      stopAt: (u) => u.host === '127.0.0.1:8000',
    })
    assert.equal(r.url.pathname, '/cb')
    assert.equal(r.url.searchParams.get('keep'), '1')
    const jwt = r.url.searchParams.get('pomerium_jwt') as string
    assert.ok(jwt)
    const forms: Record<string, string>[] = [
      { authorization: `Pomerium ${jwt}` },
      { authorization: `Bearer Pomerium-${jwt}` },
      { 'x-pomerium-authorization': jwt },
    ]
    for (const headers of forms) {
      const a = await http(`${setup.app}/api/thing`, { headers })
      assert.equal(a.status, 200, JSON.stringify(Object.keys(headers)))
      const echoed = JSON.parse(a.body) as { headers: Record<string, string> }
      assert.ok(!JSON.stringify(echoed.headers).includes(jwt), 'the token is not forwarded')
    }
    assert.equal((await http(`${setup.app}/api/thing?pomerium_session=${jwt}`)).status, 200)
    for (const headers of [{ authorization: `Pomerium ${jwt}x` }, { 'x-pomerium-authorization': 'garbage' }, { authorization: `Bearer Pomerium-${jwt.slice(0, -3)}` }]) {
      assert.equal((await http(`${setup.app}/api/thing`, { headers })).status, 401)
    }
    // The token is bound to the hosts of its sign-in.
    assert.equal((await http(`${setup.other}/api/thing`, { headers: { authorization: `Pomerium ${jwt}` } })).status, 401)
  })
})

describe('sign-out', () => {
  test('route sign-out ends the session everywhere, through the provider logout (hostile-input case: redirect / open-redirect; sessions / cookies / csrf)', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    await signIn(setup, `${setup.other}/`, 'alice@example.com', 'x', jar)
    const appCookie = jar.forHost(new URL(setup.app).host)['_pomerium'] as string
    const otherCookie = jar.forHost(new URL(setup.other).host)['_pomerium'] as string
    assert.equal((await http(`${setup.app}/`, { jar })).status, 200)

    const refreshTokens = (): number => setup.idp.artifacts('RefreshToken').filter((a) => !a.consumed).length
    const liveBefore = refreshTokens()
    const out = await http(`${setup.app}/.pomerium/sign_out?pomerium_redirect_uri=https://evil.com`, { jar })
    assert.equal(out.status, 302)
    const toAuthn = location(out)
    assert.equal(toAuthn.origin, setup.authn)
    assert.notEqual(toAuthn.searchParams.get('pomerium_redirect_uri'), 'https://evil.com')
    const atAuthn = await http(toAuthn.href, { jar })
    assert.equal(atAuthn.status, 302)
    const end = location(atAuthn)
    assert.equal(end.origin, setup.idp.issuer)
    assert.ok(end.searchParams.get('id_token_hint'))
    assert.equal(end.searchParams.get('post_logout_redirect_uri'), `${setup.authn}/.pomerium/signed_out`)
    assert.ok(refreshTokens() < liveBefore, 'the refresh token was revoked at the provider')

    for (const [base, cookie] of [[setup.app, appCookie], [setup.other, otherCookie]] as const) {
      const a = await http(`${base}/`, { headers: { cookie: `_pomerium=${cookie}` } })
      assert.equal(a.status, 302, `${base} needs sign-in again`)
    }
    const signedOut = await http(`${setup.authn}/.pomerium/signed_out`)
    assert.equal(signedOut.status, 200)
    assert.match(signedOut.body, /signed out/)
  })

  test('an unsigned sign-out asks first, and its button needs the CSRF token', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
    const page = await http(`${setup.authn}/.pomerium/sign_out`, { jar })
    assert.equal(page.status, 200)
    const action = /<form method="post" action="([^"]+)"/.exec(page.body)?.[1]?.replace(/&#38;/g, '&')
    const token = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1]
    assert.ok(action && token)
    // A cross-site POST without the token (and without the signed action) is refused.
    const forged = await http(`${setup.authn}/.pomerium/sign_out`, { jar, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'csrf=nope' })
    assert.equal(forged.status, 400)
    assert.equal((await http(`${setup.app}/`, { jar })).status, 200, 'still signed in')
    const real = await http(`${setup.authn}/.pomerium/sign_out`, { jar, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${encodeURIComponent(token)}` })
    assert.equal(real.status, 302)
    assert.equal((await http(`${setup.app}/`, { jar })).status, 302, 'signed out')
  })

  test('hostile: a CSRF cookie planted by a sibling subdomain, with the token it fetched for its own session, does not sign the victim out', async () => {
    // The sibling signs in itself and reads the confirmation page: its CSRF value and token.
    const { jar: attacker } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    const page = await http(`${setup.authn}/.pomerium/sign_out`, { jar: attacker })
    const planted = attacker.forHost(new URL(setup.authn).host)['_pomerium_csrf']
    const token = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1]
    assert.ok(planted && token)
    // It tosses that value into the victim's browser, then has it post the token.
    const { jar: victim } = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
    victim.store(new URL(setup.authn), [`_pomerium_csrf=${planted}; Path=/`])
    const forced = await http(`${setup.authn}/.pomerium/sign_out`, { jar: victim, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${encodeURIComponent(token)}` })
    assert.equal(forced.status, 400)
    assert.equal((await http(`${setup.app}/`, { jar: victim })).status, 200, 'still signed in')
  })
})
