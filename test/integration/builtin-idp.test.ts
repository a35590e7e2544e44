// The built-in OpenID provider end to end: started on loopback HTTP, signed in through with
// Portcullis' own generic OIDC client (discovery, PKCE, code exchange, ID token checks, UserInfo,
// refresh, revocation, end-session), the login form posted with undici and cookies carried by
// hand, as a browser would.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it, test } from 'node:test'

import { Agent, fetch as undiciFetch, request } from 'undici'
import type { Dispatcher, RequestInit as UndiciRequestInit } from 'undici'

import { createOidcProvider, randomCodeVerifier, randomNonce } from '../../src/idp/oidc.js'
import type { IdentityProvider } from '../../src/idp/provider.js'
import { isIdentityProviderError } from '../../src/idp/provider.js'
import { hashPassword } from '../../src/builtin-idp/password.js'
import { startBuiltinIdp } from '../../src/builtin-idp/server.js'
import type { BuiltinIdp, BuiltinIdpOptions } from '../../src/builtin-idp/server.js'
import { base32Decode, generateTotpSecret, totpAt } from '../../src/builtin-idp/totp.js'
import { subjectFor } from '../../src/builtin-idp/users.js'
import { createLogger } from '../../src/shared/log.js'
import { browserTestOptions, launchBrowser, screenshot } from '../fixtures/browser.js'
import type { TestBrowser } from '../fixtures/browser.js'
import { testPki } from '../fixtures/certs.js'
import { CookieJar } from '../fixtures/oidc-provider.js'

const FAST = { m: 256, t: 1, p: 1 }
const PASSWORD = 'correct horse battery staple'
const CLIENT_ID = 'portcullis'
const CLIENT_SECRET = 'a-client-secret-of-some-length'
const REDIRECT_URI = 'http://127.0.0.1:1/oauth2/callback'
const POST_LOGOUT_URI = 'http://127.0.0.1:1/.pomerium/signed_out'
const TOTP_SECRET = generateTotpSecret()

let dir: string
let usersFile: string
let idp: BuiltinIdp
let rp: IdentityProvider
let clock = Date.now()
const logLines: Record<string, unknown>[] = []
const providerNotices: string[] = []
const backchannel: string[] = []
let backchannelServer: ReturnType<typeof createServer>
const restoreConsole: (() => void)[] = []
/** Every Set-Cookie line any page answered with, in order. */
const setCookieLog: string[] = []

function usersYaml(hash: string): string {
  return `# test users
users:
  - email: ada@example.com
    name: Ada Lovelace
    groups: [admins, engineering]
    claims: { department: research }
    password_hash: "${hash}"
  - email: bob@example.com
    name: Bob
    password_hash: "${hash}"
    totp_secret: ${TOTP_SECRET}
  - email: carol@example.com
    password_hash: "${hash}"
    disabled: true
  - email: dave@example.com
    password_hash: "${hash}"
  - email: erin@example.com
    password_hash: "${hash}"
  - email: frank@example.com
    password_hash: "${hash}"
  - email: heidi@example.com
    password_hash: "${slowHash}"
`
}

let hash: string
/** With the default (OWASP) cost, as in production: each check takes long enough for a burst to pile up behind it. */
let slowHash: string
const LOGIN_LIMITS = { perUser: { max: 3, windowMs: 15 * 60_000 }, perIp: { max: 1000, windowMs: 15 * 60_000 } }

function options(overrides: Partial<BuiltinIdpOptions> = {}): BuiltinIdpOptions {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  const backchannelPort = (backchannelServer.address() as AddressInfo).port
  return {
    usersFile,
    secret: Buffer.alloc(32, 7),
    logger: createLogger('debug', sink),
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        redirectUris: [REDIRECT_URI],
        postLogoutRedirectUris: [POST_LOGOUT_URI],
        backchannelLogoutUri: `http://127.0.0.1:${backchannelPort}/backchannel`,
        name: 'Portcullis <test>',
      },
    ],
    rateLimit: { ...LOGIN_LIMITS, requestsPerIp: { max: 10_000, windowMs: 60_000 } },
    accessTokenTtlSeconds: 60,
    idTokenTtlSeconds: 60,
    now: () => clock,
    watchUsersFile: false,
    ...overrides,
  }
}

before(async () => {
  // oidc-provider prints "oidc-provider WARNING/NOTICE" lines for development-only settings.
  for (const method of ['warn', 'info', 'log', 'error'] as const) {
    const original = console[method].bind(console)
    console[method] = (...args: unknown[]) => {
      if (args.some((a) => typeof a === 'string' && a.includes('oidc-provider'))) providerNotices.push(args.map(String).join(' '))
      else original(...args)
    }
    restoreConsole.push(() => (console[method] = original))
  }
  hash = await hashPassword(PASSWORD, FAST)
  slowHash = await hashPassword(PASSWORD)
  dir = mkdtempSync(join(tmpdir(), 'portcullis-idp-'))
  usersFile = join(dir, 'users.yaml')
  writeFileSync(usersFile, usersYaml(hash))
  backchannelServer = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      backchannel.push(new URLSearchParams(body).get('logout_token') ?? '')
      res.writeHead(200).end()
    })
  })
  backchannelServer.listen(0, '127.0.0.1')
  await once(backchannelServer, 'listening')
  idp = await startBuiltinIdp(options())
  rp = createOidcProvider({ id: 'builtin', issuerUrl: idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, allowInsecureRequests: true })
})

after(async () => {
  await idp.close()
  backchannelServer.close()
  rmSync(dir, { recursive: true, force: true })
  for (const restore of restoreConsole) restore()
})

interface Page {
  status: number
  url: URL
  html: string
  headers: Record<string, string | string[] | undefined>
}

/** A browser without a browser: GET/POST with the jar's cookies, following nothing by itself. */
async function fetchPage(jar: CookieJar, url: URL, form?: Record<string, string>, dispatcher?: Dispatcher): Promise<Page> {
  const headers: Record<string, string> = {}
  const cookie = jar.header(url)
  if (cookie) headers.cookie = cookie
  if (form) headers['content-type'] = 'application/x-www-form-urlencoded'
  const response = await request(url, {
    method: form ? 'POST' : 'GET',
    headers,
    ...(form ? { body: new URLSearchParams(form).toString() } : {}),
    ...(dispatcher ? { dispatcher } : {}),
    signal: AbortSignal.timeout(10_000),
  })
  const setCookie = response.headers['set-cookie']
  const lines = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie]
  jar.store(url, lines)
  setCookieLog.push(...lines)
  return { status: response.statusCode, url, html: await response.body.text(), headers: response.headers }
}

/** Follows redirects until a page answers, or until the RP callback (not requested). */
async function follow(jar: CookieJar, start: Page, dispatcher?: Dispatcher): Promise<Page | URL> {
  let page = start
  for (let i = 0; i < 10; i++) {
    const location = page.headers.location
    if (page.status < 300 || page.status >= 400 || typeof location !== 'string') return page
    const next = new URL(location, page.url)
    if (next.href.startsWith(REDIRECT_URI) || next.href.startsWith(POST_LOGOUT_URI)) return next
    page = await fetchPage(jar, next, undefined, dispatcher)
  }
  throw new Error('redirect loop')
}

function setCookies(page: Page): string[] {
  const value = page.headers['set-cookie']
  return value === undefined ? [] : Array.isArray(value) ? value : [value]
}

function formAction(page: Page, id: string): URL {
  const action = new RegExp(`<form id="${id.replace('.', '\\.')}"[^>]*action="([^"]+)"`).exec(page.html)?.[1]
  assert.ok(action, `form ${id} in ${page.html}`)
  return new URL(action.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c))), page.url)
}

function alertText(page: Page): string | undefined {
  return /id="login-error"[^>]*>([^<]*)/.exec(page.html)?.[1]
}

interface SignIn {
  rp: IdentityProvider
  jar: CookieJar
  state: string
  nonce: string
  verifier: string
  loginPage: Page
}

async function startSignIn(jar = new CookieJar(), extraParams?: Record<string, string>, client = rp): Promise<SignIn> {
  const state = randomNonce()
  const nonce = randomNonce()
  const verifier = randomCodeVerifier()
  const url = await client.authorizationUrl({ redirectUri: REDIRECT_URI, state, nonce, codeVerifier: verifier, ...(extraParams ? { extraParams } : {}) })
  const page = await follow(jar, await fetchPage(jar, url))
  assert.ok(!(page instanceof URL), 'expected the sign-in page')
  return { rp: client, jar, state, nonce, verifier, loginPage: page }
}

async function submitLogin(s: SignIn, email: string, password: string): Promise<Page | URL> {
  return follow(s.jar, await fetchPage(s.jar, formAction(s.loginPage, 'login'), { email, password }))
}

async function redeem(s: SignIn, callback: URL) {
  return s.rp.redeem({ callbackUrl: callback, redirectUri: REDIRECT_URI, expectedState: s.state, expectedNonce: s.nonce, codeVerifier: s.verifier })
}

test('discovery advertises a code-flow provider with required S256 PKCE, ES256 and the endpoints Portcullis uses', async () => {
  const response = await request(`${idp.issuer}/.well-known/openid-configuration`)
  const doc = (await response.body.json()) as Record<string, unknown>
  assert.equal(doc.issuer, idp.issuer)
  assert.deepEqual(doc.code_challenge_methods_supported, ['S256'])
  assert.deepEqual(doc.response_types_supported, ['code'])
  assert.deepEqual(doc.id_token_signing_alg_values_supported, ['ES256'])
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'revocation_endpoint', 'end_session_endpoint', 'jwks_uri']) {
    assert.equal(typeof doc[endpoint], 'string', endpoint)
  }
  assert.equal(doc.backchannel_logout_supported, true)
  assert.ok((doc.scopes_supported as string[]).includes('offline_access'))
  for (const claim of ['email', 'email_verified', 'name', 'groups', 'department']) assert.ok((doc.claims_supported as string[]).includes(claim), claim)
  assert.equal(await rp.needsPkce(), true)
})

test('sign in with email and password: code, tokens, claims; then UserInfo, refresh, revocation and end-session', async () => {
  const mark = setCookieLog.length
  const s = await startSignIn()
  assert.equal(s.loginPage.status, 200)
  assert.match(s.loginPage.html, /<form id="login"/)
  assert.match(s.loginPage.html, /to continue to Portcullis &#60;test&#62;/, 'client name shown, escaped')
  const csp = String(s.loginPage.headers['content-security-policy'])
  assert.match(csp, /default-src 'none'; style-src 'nonce-[A-Za-z0-9+/=]+'/)
  assert.match(csp, /form-action 'self' http:\/\/127\.0\.0\.1:1;/, 'the RP callback origin is allowed after the form posts')
  assert.doesNotMatch(s.loginPage.html, /<script/)
  const cookies = setCookieLog.slice(mark)
  assert.ok(cookies.some((c) => /^portcullis_idp_interaction=[^;]+; path=\/interaction\//.test(c)), cookies.join('\n'))
  for (const cookie of cookies) {
    assert.match(cookie, /; samesite=lax/i, cookie)
    assert.match(cookie, /; httponly/i, cookie)
    assert.doesNotMatch(cookie, /; secure/i, 'plain http on loopback: browsers would drop Secure cookies')
  }

  const callback = await submitLogin(s, 'ADA@example.com', PASSWORD)
  assert.ok(callback instanceof URL, 'redirected to the callback')
  assert.equal(callback.searchParams.get('iss'), idp.issuer)
  const tokens = await redeem(s, callback)
  assert.equal(tokens.claims.sub, subjectFor('ada@example.com'))
  assert.equal(tokens.claims.email, 'ada@example.com')
  assert.equal(tokens.claims.email_verified, true)
  assert.equal(tokens.claims.name, 'Ada Lovelace')
  assert.deepEqual(tokens.claims.groups, ['admins', 'engineering'])
  assert.equal(tokens.claims.department, 'research')
  assert.deepEqual(tokens.claims.amr, ['pwd'])
  assert.ok(tokens.refreshToken, 'offline_access was asked for, so a refresh token came')
  assert.ok(tokens.idToken)
  const header = JSON.parse(Buffer.from(tokens.idToken.split('.')[0] ?? '', 'base64url').toString()) as { alg: string }
  assert.equal(header.alg, 'ES256')
  // The ID token itself carries the claims (Pomerium reads them from there).
  const payload = JSON.parse(Buffer.from(tokens.idToken.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>
  assert.deepEqual(payload.groups, ['admins', 'engineering'])
  assert.equal(payload.email, 'ada@example.com')

  const info = await rp.userInfo(tokens.accessToken, tokens.claims.sub)
  assert.equal(info.email, 'ada@example.com')
  assert.deepEqual(info.groups, ['admins', 'engineering'])

  assert.ok(tokens.refreshToken)
  const refreshed = await rp.refresh(tokens.refreshToken, { previousClaims: tokens.claims })
  assert.notEqual(refreshed.accessToken, tokens.accessToken)
  assert.ok(refreshed.idToken && refreshed.idToken !== tokens.idToken, 'a new ID token')
  assert.equal(refreshed.claims.sub, tokens.claims.sub)
  assert.deepEqual(refreshed.claims.groups, ['admins', 'engineering'])
  const refreshToken = refreshed.refreshToken ?? tokens.refreshToken

  // A second sign-in rides on the provider session: no form.
  const again = await startSignInExpectingCallback(s.jar)
  assert.ok(again)

  const endSession = await rp.endSessionUrl({ idTokenHint: refreshed.idToken, postLogoutRedirectUri: POST_LOGOUT_URI })
  assert.ok(endSession)
  assert.equal(endSession.origin, idp.issuer)

  await rp.revoke(refreshToken, 'refresh_token')
  await assert.rejects(
    () => rp.refresh(refreshToken, { previousClaims: tokens.claims }),
    (err: unknown) => isIdentityProviderError(err) && err.code === 'ERR_IDP_REFRESH_FAILED' && err.permanent && err.oauthError === 'invalid_grant',
  )
  await rp.revoke(refreshed.accessToken, 'access_token')
  await assert.rejects(
    () => rp.userInfo(refreshed.accessToken, tokens.claims.sub),
    (err: unknown) => isIdentityProviderError(err) && err.code === 'ERR_IDP_USERINFO_FAILED',
  )
})

async function startSignInExpectingCallback(jar: CookieJar, client = rp): Promise<boolean> {
  const state = randomNonce()
  const nonce = randomNonce()
  const verifier = randomCodeVerifier()
  const url = await client.authorizationUrl({ redirectUri: REDIRECT_URI, state, nonce, codeVerifier: verifier })
  const result = await follow(jar, await fetchPage(jar, url))
  assert.ok(result instanceof URL, 'straight back to the callback')
  const tokens = await client.redeem({ callbackUrl: result, redirectUri: REDIRECT_URI, expectedState: state, expectedNonce: nonce, codeVerifier: verifier })
  assert.ok(tokens.refreshToken, 'offline_access survives single sign-on too')
  return true
}

test('RP-initiated logout: styled confirmation, back-channel logout token, redirect to the registered URI', async () => {
  const s = await startSignIn()
  const callback = await submitLogin(s, 'dave@example.com', PASSWORD)
  assert.ok(callback instanceof URL)
  const tokens = await redeem(s, callback)
  const endSession = await rp.endSessionUrl({ ...(tokens.idToken ? { idTokenHint: tokens.idToken } : {}), postLogoutRedirectUri: POST_LOGOUT_URI })
  assert.ok(endSession)
  const confirm = await fetchPage(s.jar, endSession)
  assert.equal(confirm.status, 200)
  assert.match(confirm.html, /<h1>Sign out here too\?<\/h1>/)
  assert.match(confirm.html, /You are signing out of Portcullis &#60;test&#62;\./, 'the application named, escaped')
  // Each button says what it does for the next visit.
  assert.match(confirm.html, /id="logout-explain"><strong>Sign out<\/strong> ends your sign-in here as well\. The next time you open Portcullis &#60;test&#62;[^<]*you will be asked for your password again/)
  assert.match(confirm.html, /id="stay-explain"><strong>Stay signed in<\/strong> keeps your sign-in here\. The next time you open Portcullis &#60;test&#62;, you will be signed straight back in without typing your password/)
  assert.match(confirm.html, /<button id="logout"[^>]*name="logout" value="yes"[^>]*>Sign out<\/button><button id="stay"[^>]*>Stay signed in<\/button>/)
  assert.match(String(confirm.headers['content-security-policy']), /style-src 'nonce-/)
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.html)?.[1]
  assert.ok(xsrf)
  const before = backchannel.length
  const done = await follow(s.jar, await fetchPage(s.jar, formAction(confirm, 'op.logoutForm'), { xsrf, logout: 'yes' }))
  assert.ok(done instanceof URL && done.href.startsWith(POST_LOGOUT_URI), 'back at the registered post-logout URI')
  assert.equal(backchannel.length, before + 1, 'one logout token sent')
  const logoutToken = JSON.parse(Buffer.from(backchannel.at(-1)?.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>
  assert.equal(logoutToken.sub, subjectFor('dave@example.com'))
  assert.equal(logoutToken.iss, idp.issuer)
  // The provider session is gone: the next sign-in shows the form again.
  const next = await startSignIn(s.jar)
  assert.match(next.loginPage.html, /<form id="login"/)
})

/** An end-session request naming no post-logout address, which Portcullis' client always sends. */
function endSessionWithoutReturn(idToken: string | undefined): URL {
  assert.ok(idToken)
  const url = new URL('/session/end', idp.issuer)
  url.searchParams.set('id_token_hint', idToken)
  return url
}

test('RP-initiated logout, "Stay signed in": the application is signed out, the next sign-in needs no password', async () => {
  const s = await startSignIn()
  const callback = await submitLogin(s, 'erin@example.com', PASSWORD)
  assert.ok(callback instanceof URL)
  const tokens = await redeem(s, callback)
  // Without a post-logout address, the provider's own page says what happened.
  const endSession = endSessionWithoutReturn(tokens.idToken)
  const confirm = await fetchPage(s.jar, endSession)
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.html)?.[1]
  assert.ok(xsrf)
  const before = backchannel.length
  const done = await follow(s.jar, await fetchPage(s.jar, formAction(confirm, 'op.logoutForm'), { xsrf }))
  assert.ok(!(done instanceof URL))
  assert.equal(done.status, 200)
  assert.match(done.html, /<h1 id="signed-out">You are signed out of Portcullis &#60;test&#62;<\/h1>/)
  assert.match(done.html, /You are still signed in here, so the next time you open Portcullis &#60;test&#62; you will be signed straight back in/)
  assert.equal(backchannel.length, before + 1, 'the application signing out is told so over back-channel logout, as with "Sign out"')
  assert.ok(await startSignInExpectingCallback(s.jar), 'as the page said: straight back in')
})

test('RP-initiated logout, "Sign out" without a post-logout address: the page says the password is asked next time', async () => {
  const s = await startSignIn()
  const callback = await submitLogin(s, 'erin@example.com', PASSWORD)
  assert.ok(callback instanceof URL)
  const tokens = await redeem(s, callback)
  const endSession = endSessionWithoutReturn(tokens.idToken)
  const confirm = await fetchPage(s.jar, endSession)
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.html)?.[1]
  assert.ok(xsrf)
  const done = await follow(s.jar, await fetchPage(s.jar, formAction(confirm, 'op.logoutForm'), { xsrf, logout: 'yes' }))
  assert.ok(!(done instanceof URL))
  assert.match(done.html, /<h1 id="signed-out">You have been signed out<\/h1><p>The next time you open an application that signs in here, you will be asked for your password again\./)
  const next = await startSignIn(s.jar)
  assert.match(next.loginPage.html, /<form id="login"/, 'as the page said: the password again')
})

test('wrong password, unknown email and disabled account all get the same answer, logged without the password', async () => {
  const cases: [string, string, string][] = [
    ['erin@example.com', 'not the password', 'wrong_password'],
    ['nobody@example.com', PASSWORD, 'unknown_user'],
    ['carol@example.com', PASSWORD, 'disabled'],
  ]
  for (const [email, password, reason] of cases) {
    const s = await startSignIn()
    const page = await submitLogin(s, email, password)
    assert.ok(!(page instanceof URL), `${email} must not get a code`)
    assert.equal(page.status, 401, email)
    assert.equal(alertText(page), 'Wrong email or password.', email)
    assert.match(page.html, new RegExp(`value="${email}"`), 'the email stays filled in')
    const line = logLines.findLast((l) => l.event === 'builtin_idp_login_failed')
    assert.equal(line?.reason, reason)
    assert.equal(line?.email, email)
  }
  const all = JSON.stringify(logLines)
  assert.ok(!all.includes('not the password') && !all.includes(PASSWORD), 'no password in any log line')
})

test('TOTP: a correct password asks for a code; a wrong code is refused; a used code cannot be replayed', async () => {
  const key = base32Decode(TOTP_SECRET)
  const s = await startSignIn()
  const codePage = await submitLogin(s, 'bob@example.com', PASSWORD)
  assert.ok(!(codePage instanceof URL))
  assert.equal(codePage.status, 200)
  assert.match(codePage.html, /<form id="totp"/)
  assert.match(codePage.html, /autocomplete="one-time-code"/)
  const wrong = String((Number(totpAt(key, clock)) + 1) % 1_000_000).padStart(6, '0')
  const refused = await follow(s.jar, await fetchPage(s.jar, formAction(codePage, 'totp'), { code: wrong }))
  assert.ok(!(refused instanceof URL))
  assert.equal(refused.status, 401)
  assert.equal(alertText(refused), 'Wrong or already used code.')
  const code = totpAt(key, clock)
  const callback = await follow(s.jar, await fetchPage(s.jar, formAction(refused, 'totp'), { code }))
  assert.ok(callback instanceof URL, 'the right code completes the sign-in')
  const tokens = await redeem(s, callback)
  assert.equal(tokens.claims.email, 'bob@example.com')
  assert.deepEqual(tokens.claims.amr, ['pwd', 'otp', 'mfa'])

  // Someone who saw the code tries it within the same 30 seconds.
  const replay = await startSignIn()
  const replayCodePage = await submitLogin(replay, 'bob@example.com', PASSWORD)
  assert.ok(!(replayCodePage instanceof URL))
  const replayed = await follow(replay.jar, await fetchPage(replay.jar, formAction(replayCodePage, 'totp'), { code }))
  assert.ok(!(replayed instanceof URL), 'a used code is refused')
  assert.equal(alertText(replayed), 'Wrong or already used code.')
  assert.equal(logLines.findLast((l) => l.event === 'builtin_idp_login_failed')?.reason, 'totp_replayed')
  // The next step's code works.
  clock += 30_000
  const later = await follow(replay.jar, await fetchPage(replay.jar, formAction(replayed, 'totp'), { code: totpAt(key, clock) }))
  assert.ok(later instanceof URL)
})

test('the TOTP step cannot be skipped by going back to the provider with the interaction cookie', async () => {
  const s = await startSignIn()
  const codePage = await submitLogin(s, 'bob@example.com', PASSWORD)
  assert.ok(!(codePage instanceof URL))
  const uid = /\/interaction\/([^/]+)\/totp/.exec(formAction(codePage, 'totp').pathname)?.[1]
  assert.ok(uid)
  // Resuming the authorization without finishing the interaction must not yield a code.
  const resumed = await follow(s.jar, await fetchPage(s.jar, new URL(`/auth/${uid}`, idp.issuer)))
  assert.ok(!(resumed instanceof URL), 'no code without the second factor')
  assert.match(resumed.html, /<form id="login"/, 'back to the password')
  assert.doesNotMatch(resumed.url.pathname, new RegExp(uid), 'in a new interaction')
})

test('rate limit: after 3 failures the email is locked and the password is not even checked', async () => {
  for (let i = 0; i < 3; i++) {
    const s = await startSignIn()
    const page = await submitLogin(s, 'frank@example.com', `wrong-${i}`)
    assert.ok(!(page instanceof URL))
    assert.equal(page.status, 401)
  }
  const s = await startSignIn()
  const locked = await submitLogin(s, 'Frank@Example.com', PASSWORD)
  assert.ok(!(locked instanceof URL), 'even the right password is refused while locked')
  assert.equal(locked.status, 429)
  assert.equal(alertText(locked), 'Too many attempts, try again in 15 minutes.')
  assert.ok(Number(locked.headers['retry-after']) > 800)
  assert.equal(logLines.findLast((l) => l.event === 'builtin_idp_login_failed')?.reason, 'rate_limited')
  // The window slides past the failures.
  clock += 15 * 60_000 + 1
  const later = await startSignIn()
  const callback = await submitLogin(later, 'frank@example.com', PASSWORD)
  assert.ok(callback instanceof URL)
})

test('hostile: a concurrent burst of passwords for one account: beyond the limit each gets 429 unchecked', async () => {
  const s = await startSignIn()
  const action = formAction(s.loginPage, 'login')
  const cookie = s.jar.header(action) ?? ''
  const mark = logLines.length
  // 60 guesses at once, as a script would send them: none is answered before the others arrive.
  const statuses = await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      const response = await request(action, {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ email: 'heidi@example.com', password: `guess-${i}` }).toString(),
        signal: AbortSignal.timeout(60_000),
      })
      await response.body.dump()
      return response.statusCode
    }),
  )
  const failures = logLines.slice(mark).filter((l) => l.event === 'builtin_idp_login_failed' && l.email === 'heidi@example.com')
  assert.equal(failures.filter((l) => l.reason === 'wrong_password').length, 3, 'three passwords checked (the per-email limit)')
  assert.equal(statuses.filter((status) => status === 401).length, 3, statuses.join(' '))
  assert.equal(statuses.filter((status) => status === 429).length, 57, statuses.join(' '))
  assert.equal(failures.filter((l) => l.reason === 'rate_limited').length, 57)
  // The right password after the burst is refused too: the burst used up the account's attempts.
  const after = await submitLogin(s, 'heidi@example.com', PASSWORD)
  assert.ok(!(after instanceof URL))
  assert.equal(after.status, 429)
})

test('a user disabled in the file can no longer refresh; reloading a broken file keeps the users', async () => {
  const s = await startSignIn()
  const callback = await submitLogin(s, 'ada@example.com', PASSWORD)
  assert.ok(callback instanceof URL)
  const tokens = await redeem(s, callback)
  assert.ok(tokens.refreshToken)

  writeFileSync(usersFile, 'users: [\n')
  idp.reloadUsers()
  assert.ok(logLines.some((l) => l.msg === 'built-in IdP: users file invalid, keeping the previous users'))
  await rp.refresh(tokens.refreshToken, { previousClaims: tokens.claims })

  writeFileSync(usersFile, usersYaml(hash).replace('    claims: { department: research }\n', '    claims: { department: research }\n    disabled: true\n'))
  idp.reloadUsers()
  await assert.rejects(
    () => rp.refresh(tokens.refreshToken ?? '', { previousClaims: tokens.claims }),
    (err: unknown) => isIdentityProviderError(err) && err.permanent,
  )
  writeFileSync(usersFile, usersYaml(hash))
  idp.reloadUsers()
})

test('hostile: requests without PKCE, with plain PKCE or an unregistered redirect URI are refused', async () => {
  const base = new URL(`${idp.issuer}/auth`)
  const params = { client_id: CLIENT_ID, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's', nonce: 'n' }
  const noPkce = new URL(base)
  for (const [k, v] of Object.entries(params)) noPkce.searchParams.set(k, v)
  const refused = await fetchPage(new CookieJar(), noPkce)
  assert.equal(refused.status, 303)
  assert.equal(new URL(String(refused.headers.location)).searchParams.get('error'), 'invalid_request')

  const plain = new URL(noPkce)
  plain.searchParams.set('code_challenge', 'a'.repeat(43))
  plain.searchParams.set('code_challenge_method', 'plain')
  const plainRefused = await fetchPage(new CookieJar(), plain)
  assert.equal(new URL(String(plainRefused.headers.location)).searchParams.get('error'), 'invalid_request')

  const evil = new URL(noPkce)
  evil.searchParams.set('redirect_uri', 'https://evil.example/cb')
  const evilRefused = await fetchPage(new CookieJar(), evil)
  assert.equal(evilRefused.status, 400, 'an error page, not a redirect to the attacker')
  assert.equal(evilRefused.headers.location, undefined)
  assert.match(evilRefused.html, /redirect_uri did not match/)
  assert.doesNotMatch(evilRefused.html, /<script/)
})

test('hostile: sign-in and sign-out requests are limited per address, and a flood of them signs nobody out', async () => {
  // Small limits to keep this short: 3 requests a minute per address, 4 pending sign-ins kept.
  const limited = await startBuiltinIdp(options({ rateLimit: { ...LOGIN_LIMITS, requestsPerIp: { max: 3, windowMs: 60_000 } }, storeLimits: { Interaction: 4 } }))
  const limitedRp = createOidcProvider({ id: 'builtin-limited', issuerUrl: limited.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, allowInsecureRequests: true })
  const floodAgents = Array.from({ length: 10 }, (_, i) => new Agent({ localAddress: `127.0.0.${i + 2}` }))
  const anonymous = async (path: string, dispatcher?: Dispatcher): Promise<Page> => {
    const url = new URL(path, limited.issuer)
    const params = { client_id: CLIENT_ID, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
    return fetchPage(new CookieJar(), url, undefined, dispatcher)
  }
  try {
    // Ada starts signing in (one request of 127.0.0.1's three), two more sign-ins start from her address...
    const s = await startSignIn(new CookieJar(), undefined, limitedRp)
    for (let i = 0; i < 2; i++) assert.equal((await anonymous('/auth')).status, 303)
    // ...and her sign-in still completes: resuming it (/auth/<uid>) is not a new request.
    const callback = await submitLogin(s, 'ada@example.com', PASSWORD)
    assert.ok(callback instanceof URL, 'signed in')
    const tokens = await redeem(s, callback)
    assert.ok(tokens.refreshToken)

    const refused = await anonymous('/auth')
    assert.equal(refused.status, 429)
    assert.ok(Number(refused.headers['retry-after']) > 0 && Number(refused.headers['retry-after']) <= 60)
    assert.match(refused.html, /Too many sign-ins or sign-outs were started from your network\. Try again in \d+ seconds?\./)
    assert.deepEqual(setCookies(refused), [], 'nothing stored for a refused request')
    for (const path of ['/AUTH/', '/session/end']) assert.equal((await anonymous(path)).status, 429, `${path} is the same endpoint`)

    // Ten other addresses flood: each gets its three, then 429.
    const flood: Page[] = []
    for (const agent of floodAgents) for (let i = 0; i < 5; i++) flood.push(await anonymous('/auth', agent))
    assert.equal(flood.filter((p) => p.status === 303).length, 30, flood.map((p) => `${p.status} ${p.html.slice(0, 300)}`).join('\n'))
    assert.equal(flood.filter((p) => p.status === 429).length, 20)
    // An abandoned sign-in is kept at most 10 minutes.
    const started = flood.find((p) => p.status === 303)
    assert.ok(started)
    const interactionCookie = setCookies(started).find((c) => c.startsWith('portcullis_idp_interaction='))
    const expires = Date.parse(/; expires=([^;]+)/.exec(interactionCookie ?? '')?.[1] ?? '')
    const answered = Date.parse(String(started.headers.date))
    assert.ok(expires - answered <= 10 * 60_000 && expires - answered > 9 * 60_000, interactionCookie)

    // The 30 interactions pushed out only other interactions: Ada's refresh token, grant and
    // provider session are all still there.
    const refreshed = await limitedRp.refresh(tokens.refreshToken, { previousClaims: tokens.claims })
    assert.equal(refreshed.claims.email, 'ada@example.com')
    clock += 60_001 // her address's window has passed
    assert.ok(await startSignInExpectingCallback(s.jar, limitedRp), 'single sign-on: straight back in')
  } finally {
    await Promise.all(floodAgents.map((agent) => agent.close()))
    await limited.close()
  }
})

test('hostile: the sign-in page is bound to the browser that started it', async () => {
  const s = await startSignIn()
  const stranger = new CookieJar()
  const page = await fetchPage(stranger, formAction(s.loginPage, 'login'), { email: 'ada@example.com', password: PASSWORD })
  assert.equal(page.status, 400)
  assert.match(page.html, /Sign-in expired/)
})

test('a restart with the same secret keeps the signing key; oidc-provider printed no warnings', async () => {
  const jwks = async (issuer: string): Promise<unknown> => await (await request(`${issuer}/jwks`)).body.json()
  const first = await jwks(idp.issuer)
  const second = await startBuiltinIdp(options({ watchUsersFile: false }))
  try {
    assert.deepEqual(await jwks(second.issuer), first)
    const keys = (first as { keys: Record<string, unknown>[] }).keys
    assert.equal(keys.length, 1)
    assert.equal(keys[0]?.crv, 'P-256')
    assert.equal(keys[0]?.d, undefined, 'no private part published')
  } finally {
    await second.close()
  }
  assert.deepEqual(providerNotices, [])
  const errors = logLines.filter((l) => l.level === 'error' && l.msg !== 'built-in IdP: users file invalid, keeping the previous users')
  assert.deepEqual(errors, [])
})

test('start-up refuses unsafe or broken settings with a clear message', async () => {
  await assert.rejects(() => startBuiltinIdp(options({ secret: Buffer.alloc(16) })), /secret must be 32 bytes/)
  await assert.rejects(() => startBuiltinIdp(options({ issuer: 'http://idp.example.com' })), /must be https \(plain http only on loopback\)/)
  await assert.rejects(() => startBuiltinIdp(options({ issuer: 'https://idp.example.com' })), /needs tls, or trustProxy/)
  await assert.rejects(() => startBuiltinIdp(options({ issuer: 'https://idp.example.com/path', trustProxy: true })), /scheme, host and port only/)
  await assert.rejects(() => startBuiltinIdp(options({ usersFile: join(dir, 'missing.yaml') })), /users file .*missing\.yaml is invalid:\n {2}cannot be read/)
  await assert.rejects(
    () => startBuiltinIdp(options({ clients: [{ clientId: 'c', clientSecret: 'short', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [] }] })),
    /clientSecret must be at least 16 characters/,
  )
})

test('error boundary: a handler that throws or rejects costs one request the 500 page with a request id, not the process', async () => {
  const lines: Record<string, unknown>[] = []
  const faulty = await startBuiltinIdp(
    options({
      logger: createLogger('error', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }),
      testFault: (path) => {
        if (path === '/__fault/throw') throw new Error('injected fault (thrown)')
        if (path === '/__fault/reject') return new Promise<never>((_, reject) => setImmediate(() => reject(new Error('injected fault (rejected)'))))
        return undefined
      },
    }),
  )
  try {
    for (const kind of ['throw', 'reject']) {
      const res = await request(`${faulty.issuer}/__fault/${kind}`)
      assert.equal(res.statusCode, 500)
      const requestId = String(res.headers['x-request-id'])
      assert.match(requestId, /^[0-9a-f-]{36}$/)
      const html = await res.body.text()
      assert.match(html, /Something went wrong/)
      assert.ok(html.includes(`Request id: ${requestId}`), 'the page shows the request id')
      const logged = lines.find((l) => l['requestId'] === requestId)
      assert.equal((logged?.['err'] as { message?: string } | undefined)?.message, `injected fault (${kind === 'throw' ? 'thrown' : 'rejected'})`)
      const next = await request(`${faulty.issuer}/.well-known/openid-configuration`)
      assert.equal(next.statusCode, 200, 'the next request is served')
      await next.body.dump()
    }
  } finally {
    await faulty.close()
  }
})

test('over HTTPS: the whole flow works and every provider cookie is Secure', async () => {
  const pki = testPki()
  const tlsIdp = await startBuiltinIdp(options({ tls: { cert: pki.server.certPem, key: pki.server.keyPem } }))
  const dispatcher = new Agent({ connect: { ca: pki.ca.certPem } })
  try {
    assert.match(tlsIdp.issuer, /^https:\/\/127\.0\.0\.1:\d+$/)
    const tlsRp = createOidcProvider({
      id: 'builtin-tls',
      issuerUrl: tlsIdp.issuer,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      fetch: (url, init) => undiciFetch(url, { ...(init as unknown as UndiciRequestInit), dispatcher }),
    })
    const jar = new CookieJar()
    const mark = setCookieLog.length
    const state = randomNonce()
    const nonce = randomNonce()
    const verifier = randomCodeVerifier()
    const url = await tlsRp.authorizationUrl({ redirectUri: REDIRECT_URI, state, nonce, codeVerifier: verifier })
    const login = await follow(jar, await fetchPage(jar, url, undefined, dispatcher), dispatcher)
    assert.ok(!(login instanceof URL))
    const posted = await fetchPage(jar, formAction(login, 'login'), { email: 'ada@example.com', password: PASSWORD }, dispatcher)
    const callback = await follow(jar, posted, dispatcher)
    assert.ok(callback instanceof URL)
    const all = setCookieLog.slice(mark)
    assert.ok(all.some((c) => c.startsWith('portcullis_idp_session=')), all.join('\n'))
    for (const cookie of all) assert.match(cookie, /; secure/i, cookie)
    const tokens = await tlsRp.redeem({ callbackUrl: callback, redirectUri: REDIRECT_URI, expectedState: state, expectedNonce: nonce, codeVerifier: verifier })
    assert.equal(tokens.claims.email, 'ada@example.com')
  } finally {
    await dispatcher.close()
    await tlsIdp.close()
  }
})

test('behind a trusted TLS-terminating proxy: https issuer, Secure cookies, client address from X-Forwarded-For', async () => {
  const proxied = await startBuiltinIdp(options({ issuer: 'https://idp.example.test', trustProxy: true }))
  try {
    assert.equal(proxied.issuer, 'https://idp.example.test')
    const origin = `http://127.0.0.1:${proxied.port}`
    const viaProxy = { host: 'idp.example.test', 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.1, 203.0.113.77' }
    const discovery = (await (await request(`${origin}/.well-known/openid-configuration`, { headers: viaProxy })).body.json()) as Record<string, unknown>
    assert.equal(discovery.authorization_endpoint, 'https://idp.example.test/auth')
    const auth = new URL(`${origin}/auth`)
    const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'
    const query = { client_id: CLIENT_ID, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, code_challenge: challenge, code_challenge_method: 'S256' }
    for (const [k, v] of Object.entries(query)) auth.searchParams.set(k, v)
    const response = await request(auth, { headers: viaProxy })
    await response.body.dump()
    assert.equal(response.statusCode, 303)
    const location = new URL(String(response.headers.location), 'https://idp.example.test')
    assert.match(location.pathname, /^\/interaction\/[A-Za-z0-9_-]+$/)
    const cookies = setCookies({ status: 0, url: auth, html: '', headers: response.headers })
    assert.ok(cookies.length > 0)
    for (const cookie of cookies) assert.match(cookie, /; secure/i, cookie)
    // A failed sign-in is logged with the address the proxy saw (the last X-Forwarded-For entry).
    const jar = new CookieJar()
    jar.store(new URL(`${origin}/`), cookies)
    const form = await request(`${origin}${location.pathname}/login`, {
      method: 'POST',
      headers: { ...viaProxy, cookie: jar.header(new URL(`${origin}${location.pathname}/login`)) ?? '', 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ email: 'ada@example.com', password: 'wrong password' }).toString(),
    })
    assert.equal(form.statusCode, 401)
    await form.body.dump()
    assert.equal(logLines.findLast((l) => l.event === 'builtin_idp_login_failed')?.ip, '203.0.113.77')
  } finally {
    await proxied.close()
  }
})

describe('in Chromium: the pages work under their CSP (redirects after a form post included) and fit a phone', browserTestOptions(), () => {
  let browser: TestBrowser
  let appServer: ReturnType<typeof createServer>
  let appOrigin = ''
  let browserIdp: BuiltinIdp
  let browserRp: IdentityProvider

  before(async () => {
    // The application: its callback and signed-out pages just answer, so the browser lands there.
    appServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('app'))
    appServer.listen(0, '127.0.0.1')
    await once(appServer, 'listening')
    appOrigin = `http://127.0.0.1:${(appServer.address() as AddressInfo).port}`
    browserIdp = await startBuiltinIdp(
      options({
        clients: [
          {
            clientId: CLIENT_ID,
            clientSecret: CLIENT_SECRET,
            redirectUris: [`${appOrigin}/oauth2/callback`],
            postLogoutRedirectUris: [`${appOrigin}/signed_out`],
            name: 'Demo app',
          },
        ],
      }),
    )
    browserRp = createOidcProvider({ id: 'builtin-browser', issuerUrl: browserIdp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, allowInsecureRequests: true })
    browser = await launchBrowser()
  })

  after(async () => {
    await browser?.close()
    await browserIdp?.close()
    appServer?.close()
  })

  async function openSignIn(name: string) {
    const context = await browser.newContext({ viewport: { width: 375, height: 700 } })
    const page = await context.newPage()
    const violations: string[] = []
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text())
    })
    const state = randomNonce()
    const nonce = randomNonce()
    const verifier = randomCodeVerifier()
    const redirectUri = `${appOrigin}/oauth2/callback`
    await page.goto((await browserRp.authorizationUrl({ redirectUri, state, nonce, codeVerifier: verifier })).href)
    const fits = async (shot: string): Promise<void> => {
      assert.equal(await page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth"), '416px', 'stylesheet applied')
      const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth'))
      assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`)
      console.log(`screenshot: ${await screenshot(page, `builtin-idp-${name}-${shot}`)}`)
    }
    const redeemHere = async () => {
      await page.waitForURL(`${redirectUri}?**`)
      return browserRp.redeem({ callbackUrl: new URL(page.url()), redirectUri, expectedState: state, expectedNonce: nonce, codeVerifier: verifier })
    }
    return { context, page, violations, fits, redeemHere }
  }

  it('password sign-in, a wrong password, then RP-initiated logout', async () => {
    const { context, page, violations, fits, redeemHere } = await openSignIn('password')
    assert.equal(await page.locator('h1').innerText(), 'Sign in')
    assert.match(await page.locator('main').innerText(), /to continue to Demo app/)
    await fits('login')
    await page.fill('#email', 'ada@example.com')
    await page.fill('#password', 'not the password')
    await page.click('button[type=submit]')
    assert.equal(await page.locator('#login-error').innerText(), 'Wrong email or password.')
    assert.equal(await page.inputValue('#email'), 'ada@example.com')
    await fits('wrong-password')
    await page.fill('#password', PASSWORD)
    await page.click('button[type=submit]')
    const tokens = await redeemHere()
    assert.equal(tokens.claims.email, 'ada@example.com')
    assert.deepEqual(violations, [], 'form-action allowed the redirect chain to the application')

    const endSession = await browserRp.endSessionUrl({ ...(tokens.idToken ? { idTokenHint: tokens.idToken } : {}), postLogoutRedirectUri: `${appOrigin}/signed_out` })
    assert.ok(endSession)
    await page.goto(endSession.href)
    assert.equal(await page.locator('h1').innerText(), 'Sign out here too?')
    await fits('logout-confirm')
    await page.click('#logout')
    await page.waitForURL(`${appOrigin}/signed_out**`)
    assert.deepEqual(violations, [])
    await context.close()
  })

  it('TOTP sign-in', async () => {
    const { context, page, violations, fits, redeemHere } = await openSignIn('totp')
    await page.fill('#email', 'bob@example.com')
    await page.fill('#password', PASSWORD)
    await page.click('button[type=submit]')
    assert.equal(await page.locator('h1').innerText(), 'Enter your code')
    await fits('code')
    clock += 90_000 // a step no other test used
    await page.fill('#code', totpAt(base32Decode(TOTP_SECRET), clock))
    await page.click('button[type=submit]')
    const tokens = await redeemHere()
    assert.deepEqual(tokens.claims.amr, ['pwd', 'otp', 'mfa'])
    assert.deepEqual(violations, [])
    await context.close()
  })
})
