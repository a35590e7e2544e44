/**
 * Session cookies and sign-out against what other sites can do (issue 11): cookie tossing from a
 * sibling subdomain must not trap a browser in a sign-in loop; a route's sign-out must not be
 * something another site can trigger; and the signed-out page must say what has ended. Against
 * the real Portcullis process and a real OpenID provider on loopback, with a cookie jar that
 * keeps cookies per domain and path as a browser does.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import { DomainCookieJar } from '../fixtures/domain-cookie-jar.js'
import type { CookieJar } from '../fixtures/oidc-provider.js'
import { startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup

before(async () => {
  setup = await startSignInSetup()
})
after(async () => {
  await setup.close()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  url: URL
}

async function http(url: string, jar: CookieJar, opts: { headers?: Record<string, string>; method?: string; body?: string } = {}): Promise<Answer> {
  const u = new URL(url)
  const cookie = jar.header(u)
  const res = await request(u, {
    dispatcher: setup.dispatcher,
    method: (opts.method ?? 'GET') as 'GET',
    headers: { ...opts.headers, ...(cookie ? { cookie } : {}), ...(opts.body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    signal: AbortSignal.timeout(10_000),
  })
  const body = await res.body.text()
  const sc = res.headers['set-cookie']
  jar.store(u, sc === undefined ? [] : Array.isArray(sc) ? sc : [sc])
  return { status: res.statusCode, headers: res.headers, body, url: u }
}

function unescapeHtml(text: string): string {
  return text.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code))).replace(/&amp;/g, '&')
}

interface Browsed {
  /** The last answer (not a redirect, not the provider's login form), or undefined for a loop. */
  readonly end: Answer | undefined
  readonly visited: string[]
}

/**
 * What a browser does from `start`: follow redirects, sign in at the provider's form when it
 * shows, and stop at the first other answer, or after `maxSteps` requests (a loop).
 */
async function browse(start: string, jar: CookieJar, maxSteps = 40): Promise<Browsed> {
  const visited: string[] = []
  let url = start
  let method = 'GET'
  let body: string | undefined
  for (let step = 0; step < maxSteps; step++) {
    visited.push(`${method} ${url}`)
    const a = await http(url, jar, { method, ...(body !== undefined ? { body } : {}) })
    const location = a.headers['location']
    if (a.status >= 300 && a.status < 400 && typeof location === 'string') {
      url = new URL(location, url).href
      method = 'GET'
      body = undefined
      continue
    }
    const action = /<form id="login"[^>]*action="([^"]+)"/.exec(a.body)?.[1]
    if (a.status === 200 && action !== undefined) {
      url = new URL(unescapeHtml(action), url).href
      method = 'POST'
      body = new URLSearchParams({ email: 'alice@example.com', password: 'alice-password' }).toString()
      continue
    }
    return { end: a, visited }
  }
  return { end: undefined, visited }
}

/** How often the browser came back to the page it wanted (one per sign-in round trip). */
function roundTrips(b: Browsed, start: string): number {
  return b.visited.filter((v) => v === `GET ${start}`).length
}

describe('cookie tossing: a sibling subdomain sets _pomerium for the parent domain', () => {
  const tossed = '_pomerium=tossed-by-a-sibling; Domain=localhost; Path=/; Secure'

  test('the cookie is cleared during sign-in, and the browser ends at the app', async () => {
    const jar = new DomainCookieJar()
    jar.store(new URL(`https://evil.localhost:${setup.port}/`), [tossed])
    const app = new URL(`${setup.app}/tossed`)
    assert.deepEqual(jar.values(app, '_pomerium'), ['tossed-by-a-sibling'])

    const b = await browse(app.href, jar)
    assert.ok(b.end, `no loop: ${b.visited.join('\n')}`)
    assert.equal(b.end.status, 200, b.visited.join('\n'))
    assert.equal(b.end.url.href, app.href)
    assert.ok(!jar.values(app, '_pomerium').includes('tossed-by-a-sibling'), 'the tossed cookie is gone')
    assert.equal(jar.values(app, '_pomerium').length, 1)
  })

  test('a tossed cookie that comes back every time ends on a page that explains it, never a loop', async () => {
    const jar = new DomainCookieJar()
    jar.pin(new URL(`https://evil.localhost:${setup.port}/`), tossed)
    const b = await browse(`${setup.app}/pinned`, jar)
    assert.ok(b.end, `no loop: ${b.visited.join('\n')}`)
    assert.equal(b.end.status, 409, b.visited.join('\n'))
    assert.match(b.end.body, /two different cookies named _pomerium/)
    assert.match(b.end.body, /Try again/)
    assert.ok(roundTrips(b, `${setup.app}/pinned`) <= 2, `at most two round trips: ${b.visited.join('\n')}`)
  })

  test('a tossed cookie that only the route sees (the authenticate host is elsewhere) ends the same way', async () => {
    const appHost = new URL(setup.app).hostname
    const routeOnly = `_pomerium=tossed-for-the-app; Domain=${appHost}; Path=/; Secure`

    const cleared = new DomainCookieJar()
    cleared.store(new URL(`${setup.app}/`), [routeOnly])
    const ok = await browse(`${setup.app}/route-only`, cleared)
    assert.ok(ok.end, `no loop: ${ok.visited.join('\n')}`)
    assert.equal(ok.end.status, 200, ok.visited.join('\n'))

    const pinned = new DomainCookieJar()
    pinned.pin(new URL(`${setup.app}/`), routeOnly)
    const b = await browse(`${setup.app}/route-only`, pinned)
    assert.ok(b.end, `no loop: ${b.visited.join('\n')}`)
    assert.equal(b.end.status, 409, b.visited.join('\n'))
    assert.equal(b.end.url.pathname, '/.pomerium/callback/')
    assert.match(b.end.body, /two different cookies named _pomerium/)
    assert.ok(roundTrips(b, `${setup.app}/route-only`) <= 2, `at most two round trips: ${b.visited.join('\n')}`)
  })

  test('a cookie tossed after sign-in is cleared on the next round trip', async () => {
    const jar = new DomainCookieJar()
    const first = await browse(`${setup.app}/before`, jar)
    assert.equal(first.end?.status, 200)
    jar.store(new URL(`https://evil.localhost:${setup.port}/`), [tossed])
    assert.equal(jar.values(new URL(`${setup.app}/after`), '_pomerium').length, 2)
    const b = await browse(`${setup.app}/after`, jar)
    assert.ok(b.end, `no loop: ${b.visited.join('\n')}`)
    assert.equal(b.end.status, 200, b.visited.join('\n'))
    assert.equal(jar.values(new URL(`${setup.app}/after`), '_pomerium').length, 1)
  })
})

describe('route sign-out started by another site', () => {
  async function signedIn(): Promise<DomainCookieJar> {
    const jar = new DomainCookieJar()
    const b = await browse(`${setup.app}/`, jar)
    assert.equal(b.end?.status, 200)
    return jar
  }

  test('a cross-site GET asks first; the session lives on until the button is pressed', async () => {
    const jar = await signedIn()
    const asked = await http(`${setup.app}/.pomerium/sign_out`, jar, { headers: { 'sec-fetch-site': 'cross-site' } })
    assert.equal(asked.status, 200)
    assert.match(asked.body, /Sign out\?/)
    assert.equal(asked.headers['location'], undefined)
    const csrfCookie = [asked.headers['set-cookie']].flat().find((c) => c?.startsWith('_pomerium_csrf='))
    assert.ok(csrfCookie && /Path=\/\.pomerium\//.test(csrfCookie) && /HttpOnly/.test(csrfCookie), String(csrfCookie))
    assert.equal((await http(`${setup.app}/`, jar)).status, 200, 'still signed in')

    // Another site's form cannot carry the token; it is asked again.
    const forged = await http(`${setup.app}/.pomerium/sign_out`, jar, { method: 'POST', body: 'csrf=forged', headers: { 'sec-fetch-site': 'cross-site' } })
    assert.equal(forged.status, 200)
    assert.match(forged.body, /Sign out\?/)
    assert.equal((await http(`${setup.app}/`, jar)).status, 200, 'still signed in')
    // Same-site is another site too (the sibling that tosses cookies, say).
    assert.equal((await http(`${setup.app}/.pomerium/sign_out`, jar, { headers: { 'sec-fetch-site': 'same-site' } })).status, 200)
    // Without Fetch Metadata, a Referer from another origin counts as cross-site.
    assert.equal((await http(`${setup.app}/.pomerium/sign_out`, jar, { headers: { referer: 'https://evil.example/' } })).status, 200)

    const action = unescapeHtml(/<form method="post" action="([^"]+)"/.exec(asked.body)?.[1] ?? '')
    const token = /name="csrf" value="([^"]+)"/.exec(asked.body)?.[1] ?? ''
    assert.equal(action, '/.pomerium/sign_out')
    // The button: the token decides, whatever the browser says about the origin.
    const out = await http(`${setup.app}${action}`, jar, { method: 'POST', body: `csrf=${encodeURIComponent(token)}`, headers: { 'sec-fetch-site': 'cross-site' } })
    assert.equal(out.status, 302)
    assert.equal(new URL(String(out.headers['location'])).origin, setup.authn)
    const end = await browse(String(out.headers['location']), jar)
    assert.ok(end.end)
    assert.equal((await http(`${setup.app}/`, jar)).status, 302, 'signed out')
  })

  test('hostile: a CSRF value planted by a sibling subdomain, with the token it fetched for itself, does not sign the victim out', async () => {
    // The sibling asks for the confirmation page with its own browser (and its own session).
    const attacker = await signedIn()
    const asked = await http(`${setup.app}/.pomerium/sign_out`, attacker, { headers: { 'sec-fetch-site': 'cross-site' } })
    const planted = /^_pomerium_csrf=([^;]+)/.exec([asked.headers['set-cookie']].flat().find((c) => c?.startsWith('_pomerium_csrf=')) ?? '')?.[1]
    const token = /name="csrf" value="([^"]+)"/.exec(asked.body)?.[1]
    assert.ok(planted && token)
    // It tosses that value into the victim's browser for the parent domain, then posts its token.
    const victim = await signedIn()
    victim.store(new URL(`https://evil.localhost:${setup.port}/`), [`_pomerium_csrf=${planted}; Domain=localhost; Path=/.pomerium/; Secure`])
    const forced = await http(`${setup.app}/.pomerium/sign_out`, victim, { method: 'POST', body: `csrf=${encodeURIComponent(token)}`, headers: { 'sec-fetch-site': 'cross-site' } })
    assert.equal(forced.status, 200, 'asked again, not signed out')
    assert.match(forced.body, /Sign out\?/)
    assert.equal((await http(`${setup.app}/`, victim)).status, 200, 'still signed in')
  })

  test('same-origin and user-typed sign-outs proceed at once, as before', async () => {
    for (const site of ['same-origin', 'none']) {
      const jar = await signedIn()
      const out = await http(`${setup.app}/.pomerium/sign_out`, jar, { headers: { 'sec-fetch-site': site } })
      assert.equal(out.status, 302, site)
      assert.equal(new URL(String(out.headers['location'])).origin, setup.authn)
    }
  })
})

describe('front-channel logout from the provider (a cross-site iframe with iss and sid)', () => {
  async function signedIn(): Promise<{ jar: DomainCookieJar; cookie: string; sid: string }> {
    const jar = new DomainCookieJar()
    assert.equal((await browse(`${setup.app}/`, jar)).end?.status, 200)
    const cookie = jar.header(new URL(`${setup.app}/`))
    assert.ok(cookie)
    // The provider's session of this browser, and the `sid` it put in this client's ID token.
    const idpSession = jar.values(new URL(`${setup.idp.issuer}/`), '_session')[0]
    const stored = setup.idp.artifacts('Session').find((a) => a.id === idpSession)
    const sid = (stored?.payload.authorizations as Record<string, { sid?: string }> | undefined)?.['portcullis']?.sid
    assert.ok(sid, 'the provider session has a sid for portcullis')
    return { jar, cookie, sid }
  }

  /** Whether a cookie header still names a live session (the route's user JSON answers 200). */
  async function live(cookie: string): Promise<boolean> {
    const res = await request(`${setup.app}/.pomerium/user`, { dispatcher: setup.dispatcher, headers: { cookie, accept: 'application/json' }, signal: AbortSignal.timeout(10_000) })
    await res.body.text()
    return res.statusCode === 200
  }

  const iframe = { 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'iframe' }

  test('the right iss and sid end the session at once: an empty, uncached page for the iframe, no redirect', async () => {
    const { jar, cookie, sid } = await signedIn()
    const query = new URLSearchParams({ iss: setup.idp.issuer, sid }).toString()
    const out = await http(`${setup.app}/.pomerium/sign_out?${query}`, jar, { headers: iframe })
    assert.equal(out.status, 200)
    assert.equal(out.headers['location'], undefined)
    assert.doesNotMatch(out.body, /Sign out\?/)
    assert.match(String(out.headers['cache-control']), /no-store/)
    assert.equal(out.headers['pragma'], 'no-cache')
    assert.match(String(out.headers['content-security-policy']), new RegExp(`frame-ancestors ${setup.idp.issuer}(;|$)`))
    const cleared = [out.headers['set-cookie']].flat().find((c) => c?.startsWith('_pomerium='))
    assert.ok(cleared && /Max-Age=0/.test(cleared), String(cleared))
    // Ended in the databroker, not only forgotten by this browser: the old cookie no longer works.
    assert.equal(await live(cookie), false, 'the session has ended')
    assert.equal((await http(`${setup.app}/`, jar)).status, 302, 'signed out')
  })

  test('a wrong or missing iss or sid is an ordinary cross-site sign-out: asked about, and the session stays', async () => {
    const { jar, cookie, sid } = await signedIn()
    const iss = setup.idp.issuer
    for (const params of [
      { iss, sid: `${sid}x` },
      { iss, sid: sid.slice(0, -1) },
      { iss: `${iss}/`, sid },
      { iss: 'https://evil.example', sid },
      { sid },
      { iss },
    ]) {
      const out = await http(`${setup.app}/.pomerium/sign_out?${new URLSearchParams(params).toString()}`, jar, { headers: iframe })
      assert.equal(out.status, 200, JSON.stringify(params))
      assert.match(out.body, /Sign out\?/, JSON.stringify(params))
      assert.equal(await live(cookie), true, `still signed in after ${JSON.stringify(params)}`)
    }
    // A repeated parameter is not a front-channel logout either, even if one copy is right.
    const doubled = await http(`${setup.app}/.pomerium/sign_out?iss=${encodeURIComponent(iss)}&sid=${encodeURIComponent(sid)}&sid=other`, jar, { headers: iframe })
    assert.match(doubled.body, /Sign out\?/)
    assert.equal(await live(cookie), true)
    // Another browser's session with this browser's iss and sid: the pair names someone else.
    const other = await signedIn()
    const foreign = await http(`${setup.app}/.pomerium/sign_out?${new URLSearchParams({ iss, sid }).toString()}`, other.jar, { headers: iframe })
    assert.match(foreign.body, /Sign out\?/)
    assert.equal(await live(other.cookie), true)
    assert.equal(await live(cookie), true)
  })
})

describe('the signed-out page', () => {
  test('says Portcullis signed out, not the provider, and offers the provider sign-out; "stay signed in" there signs straight back in', async () => {
    const jar = new DomainCookieJar()
    assert.equal((await browse(`${setup.app}/`, jar)).end?.status, 200)
    const out = await http(`${setup.app}/.pomerium/sign_out`, jar, { headers: { 'sec-fetch-site': 'same-origin' } })
    const atAuthn = await http(String(out.headers['location']), jar)
    const endSession = new URL(String(atAuthn.headers['location']))
    assert.equal(endSession.origin, setup.idp.issuer)

    // At the provider's prompt, the person does not confirm ("stay signed in").
    const prompt = await http(endSession.href, jar)
    assert.equal(prompt.status, 200)
    const action = /<form id="op\.logoutForm"[^>]*action="([^"]+)"/.exec(prompt.body)?.[1]
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(prompt.body)?.[1]
    assert.ok(action && xsrf)
    const declined = await http(new URL(unescapeHtml(action), endSession).href, jar, { method: 'POST', body: new URLSearchParams({ xsrf }).toString() })
    const back = new URL(String(declined.headers['location']), endSession)
    assert.equal(back.origin + back.pathname, `${setup.authn}/.pomerium/signed_out`)

    const page = await http(back.href, jar)
    assert.equal(page.status, 200)
    assert.doesNotMatch(page.body, /You have been signed out/)
    assert.match(page.body, /Your Portcullis session has ended/)
    assert.match(page.body, /may still be signed in at your identity provider/)
    assert.match(page.body, /signs you straight back in/)
    const link = /<a class="button" href="([^"]+)">Sign out of the identity provider too<\/a>/.exec(page.body)?.[1]
    assert.ok(link, 'the provider sign-out is offered')
    const providerOut = new URL(unescapeHtml(link))
    assert.equal(providerOut.origin, setup.idp.issuer)
    assert.equal(providerOut.searchParams.get('client_id'), 'portcullis')
    assert.equal(providerOut.searchParams.get('post_logout_redirect_uri'), `${setup.authn}/.pomerium/signed_out`)

    // What the page warns about: the provider's session remained, so the next visit signs straight back in.
    const again = await browse(`${setup.app}/`, jar)
    assert.equal(again.end?.status, 200)
    assert.ok(!again.visited.some((v) => v.startsWith('POST ')), 'no password asked')

    // The offered link works: the provider asks, and after "yes" the next visit asks for the password.
    const prompt2 = await http(providerOut.href, jar)
    assert.equal(prompt2.status, 200)
    assert.match(prompt2.body, /op\.logoutForm/)
  })
})
