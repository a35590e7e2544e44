/**
 * No secret in any log line (issue 6): a real Portcullis with a real OpenID provider, logging at
 * `debug` with every access and authorize log field (including `headers` and the credential
 * headers by name), goes through a full run: browser sign-in, the session handle in each of its
 * carriers, programmatic login, `/.pomerium/user`, token refresh, identity headers, provider
 * tokens as bearer credentials, Basic credentials for an upstream, a denied request, forged and
 * expired cookies, a junk and a replayed OAuth callback, and both kinds of sign-out. Every secret
 * that existed in the run is collected: the configured secrets (and forms derived from them),
 * every cookie set, every token the provider issued (read from its token responses and its
 * store), authorization codes, OAuth states, signatures and sealed hand-offs of the redirects,
 * the JWT assertion the upstream received, and the Basic credentials. Then no log line of the
 * process (stdout or stderr) may hold any of them, nor any 16-character piece of one.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { ServerResponse } from 'node:http'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import { signSessionHandle, verifySessionHandle } from '../../src/session/session-handle.js'
import { sessionTokenKey } from '../../src/session/session-store.js'
import { deriveSigningPrivateKey } from '../../src/shared/signing-keys.js'
import { ACCESS_LOG_FIELDS, AUTHORIZE_LOG_FIELDS } from '../../src/config/schema.js'
import { CookieJar, loginWithForm } from '../fixtures/oidc-provider.js'
import { parseLogLine } from '../fixtures/portcullis.js'
import { SIGN_IN_HOSTS, signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { waitFor } from '../fixtures/wait.js'

/** Pieces shorter than this are too likely to occur by chance; secrets are matched by every piece this long. */
const PIECE = 16
/** Query parameters that carry credentials, codes, states, signatures or sealed sessions. */
const SECRET_PARAMS = ['code', 'state', 'pomerium_signature', 'pomerium_session_encrypted', 'pomerium_jwt', 'pomerium_session', 'id_token_hint', 'csrf']
/** Provider store kinds whose ids are the values handed out (opaque tokens, codes) or kept in its cookies. */
const IDP_KINDS = ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'Session', 'Interaction']
/** Header names whose values upstreams received that are credentials. */
const UPSTREAM_CREDENTIAL_HEADERS = ['authorization', 'x-pomerium-jwt-assertion', 'x-pomerium-authorization', 'cookie']

/** value → what it is (every way it was met). */
const secrets = new Map<string, Set<string>>()

function addSecret(label: string, value: string | undefined): void {
  if (value === undefined) return
  const v = value.trim()
  if (v.length < 8) return
  const labels = secrets.get(v) ?? new Set<string>()
  labels.add(label)
  secrets.set(v, labels)
}

function noteUrl(url: URL, depth = 0): void {
  for (const name of SECRET_PARAMS) for (const v of url.searchParams.getAll(name)) addSecret(`query parameter ${name}`, v)
  if (depth > 3) return
  // Redirect targets nest URLs (with their own signatures, states, sealed sessions) in parameters.
  for (const [, v] of url.searchParams) {
    if (/^https?:\/\//.test(v)) {
      try {
        noteUrl(new URL(v), depth + 1)
      } catch {
        // Not a URL after all.
      }
    }
  }
}

function noteSetCookie(line: string): void {
  const pair = line.split(';')[0] ?? ''
  const eq = pair.indexOf('=')
  if (eq > 0) addSecret(`cookie ${pair.slice(0, eq).trim()}`, decodeURIComponent(pair.slice(eq + 1).trim()))
  if (eq > 0) addSecret(`cookie ${pair.slice(0, eq).trim()}`, pair.slice(eq + 1).trim())
}

/** A jar that also records every cookie ever set and every URL requested through it (sign-in flows). */
class RecordingJar extends CookieJar {
  override store(url: URL, setCookie: string[]): void {
    noteUrl(url)
    for (const line of setCookie) noteSetCookie(line)
    super.store(url, setCookie)
  }
}

/** ID, access and refresh tokens as the provider sent them (its token endpoint answers, read in this process). */
let tokenResponses = 0
const idTokens: string[] = []
const accessTokens: string[] = []
function noteIdpBody(text: string): void {
  if (!text.includes('_token')) return
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return
  }
  if (typeof body !== 'object' || body === null) return
  const b = body as Record<string, unknown>
  let any = false
  for (const key of ['access_token', 'refresh_token', 'id_token']) {
    const v = b[key]
    if (typeof v !== 'string') continue
    any = true
    addSecret(`provider ${key}`, v)
    if (key === 'id_token') idTokens.push(v)
    if (key === 'access_token') accessTokens.push(v)
  }
  if (any) tokenResponses++
}

// The provider runs in this process: its answers go through ServerResponse.end (Koa ends every
// string, Buffer and JSON body with one call), which is wrapped for the length of this file.
// eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be called with its receiver (apply) and put back
const originalEnd = ServerResponse.prototype.end
function recordingEnd(this: ServerResponse, ...args: unknown[]): ServerResponse {
  const chunk = args[0]
  if (typeof chunk === 'string') noteIdpBody(chunk)
  else if (Buffer.isBuffer(chunk)) noteIdpBody(chunk.toString('utf8'))
  return (originalEnd as unknown as (...a: unknown[]) => ServerResponse).apply(this, args)
}

let setup: SignInSetup
let pollTimer: NodeJS.Timeout | undefined
const upstreamCredentialsSeen = new Set<string>()
const jars: CookieJar[] = []
/** Values the collection must have picked up on its own (checked before the scan). */
const mustHave: string[] = []

function pollIdpStore(): void {
  for (const kind of IDP_KINDS) for (const a of setup.idp.artifacts(kind)) addSecret(`provider ${kind} id`, a.id)
}

function noteUpstreamRequests(): void {
  for (const r of setup.upstream.requests) {
    for (const name of UPSTREAM_CREDENTIAL_HEADERS) {
      const v = r.headers[name]
      for (const one of v === undefined ? [] : Array.isArray(v) ? v : [v]) {
        upstreamCredentialsSeen.add(name)
        addSecret(`upstream ${name} header`, one)
        // `Bearer x` / `Basic x` / `Pomerium x`: the credential itself too.
        addSecret(`upstream ${name} header`, one.replace(/^\S+\s+/, ''))
      }
    }
  }
}

before(async () => {
  ServerResponse.prototype.end = recordingEnd as typeof originalEnd
  setup = await startSignInSetup({
    // Short provider tokens, so sessions are refreshed during the run (sign-in-refresh.test.ts).
    idp: { tokenLifetimes: { accessToken: 3, idToken: 3 } },
    settings: {
      log_level: 'debug',
      access_log_fields: [...ACCESS_LOG_FIELDS, 'headers.Authorization', 'headers.Cookie', 'headers.X-Pomerium-Authorization', 'headers.X-Pomerium-Jwt-Assertion', 'headers.Proxy-Authorization'],
      authorize_log_fields: [...AUTHORIZE_LOG_FIELDS, 'headers.authorization', 'headers.cookie', 'headers.x-pomerium-authorization', 'headers.proxy-authorization'],
    },
    routes: (upstream) => [
      { from: 'https://admin.localhost', to: upstream, allow_any_authenticated_user: true, pass_identity_headers: true },
      { from: 'https://users.localhost', to: upstream, allowed_users: ['bob@example.com'] },
      { from: 'https://api.localhost', to: upstream, allow_any_authenticated_user: true, bearer_token_format: 'idp_identity_token' },
      { from: 'https://kube.localhost', to: upstream, allow_any_authenticated_user: true, bearer_token_format: 'idp_access_token' },
    ],
  })
  pollTimer = setInterval(pollIdpStore, 100)
})

after(async () => {
  if (pollTimer) clearInterval(pollTimer)
  ServerResponse.prototype.end = originalEnd
  await setup.close()
})

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
}

async function http(url: string, opts: { jar?: CookieJar; headers?: Record<string, string>; method?: string; body?: string } = {}): Promise<Answer> {
  const u = new URL(url)
  noteUrl(u)
  const headers: Record<string, string> = { accept: 'text/html', ...opts.headers }
  const cookie = opts.jar?.header(u)
  if (cookie !== undefined && headers['cookie'] === undefined) headers['cookie'] = cookie
  const res = await request(u, {
    method: opts.method ?? 'GET',
    headers,
    body: opts.body ?? null,
    dispatcher: setup.dispatcher,
  })
  const body = await res.body.text()
  const sc = res.headers['set-cookie']
  const lines = sc === undefined ? [] : Array.isArray(sc) ? sc : [sc]
  for (const l of lines) noteSetCookie(l)
  opts.jar?.store(u, lines)
  const location = res.headers['location']
  if (typeof location === 'string') noteUrl(new URL(location, u))
  return { status: res.statusCode, headers: res.headers, body }
}

function cookieOf(jar: CookieJar, base: string, name = '_pomerium'): string {
  const v = jar.forHost(new URL(base).host)[name]
  assert.ok(v, `${name} cookie for ${base}`)
  return v
}

function hostUrl(name: string): string {
  return `https://${name}:${setup.port}`
}

test('a full run: sign-in, every credential form, refresh, denials, junk and sign-out', async () => {
  const admin = hostUrl('admin.localhost')
  const users = hostUrl('users.localhost')
  const api = hostUrl('api.localhost')
  const kube = hostUrl('kube.localhost')

  // Browser sign-in, then single sign-on to the other domains.
  const jar = new RecordingJar()
  jars.push(jar)
  const first = await signIn(setup, `${setup.app}/start?x=1`, 'alice@example.com', 'alice-password', jar)
  for (const v of first.visited) noteUrl(new URL(v.slice(v.indexOf(' ') + 1)))
  assert.equal((await http(`${setup.app}/start?x=1`, { jar })).status, 200)
  await signIn(setup, `${admin}/`, 'alice@example.com', 'unused', jar)
  await signIn(setup, `${users}/`, 'alice@example.com', 'unused', jar)
  const handle = cookieOf(jar, setup.app)
  assert.ok(verifySessionHandle(handle, Buffer.from(setup.sharedSecret, 'base64')), 'the _pomerium cookie is the session handle')
  addSecret('session handle', handle)

  // The session handle in each of its carriers.
  assert.equal((await http(`${setup.app}/cookie`, { jar })).status, 200)
  assert.equal((await http(`${setup.app}/pomerium`, { headers: { authorization: `Pomerium ${handle}` } })).status, 200)
  assert.equal((await http(`${setup.app}/bearer`, { headers: { authorization: `Bearer Pomerium-${handle}` } })).status, 200)
  assert.equal((await http(`${setup.app}/xpa`, { headers: { 'x-pomerium-authorization': handle } })).status, 200)
  assert.equal((await http(`${setup.app}/query?pomerium_session=${handle}`)).status, 200)

  // /.pomerium/user and the user page.
  const me = await http(`${setup.app}/.pomerium/user`, { jar })
  assert.equal(me.status, 200)
  assert.equal((JSON.parse(me.body) as { email: string }).email, 'alice@example.com')
  assert.equal((await http(`${setup.app}/.pomerium/`, { jar })).status, 200)

  // Programmatic login: the login URL, the provider (its session reused), pomerium_jwt.
  const login = await http(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`)
  assert.equal(login.status, 200)
  noteUrl(new URL(login.body))
  const programmatic = await loginWithForm(login.body, 'alice@example.com', 'alice-password', {
    jar,
    dispatcher: setup.dispatcher,
    stopAt: (u) => u.host === '127.0.0.1:9',
  })
  noteUrl(programmatic.url)
  const jwt = programmatic.url.searchParams.get('pomerium_jwt')
  assert.ok(jwt)
  mustHave.push(jwt)
  assert.equal((await http(`${setup.app}/api`, { headers: { authorization: `Pomerium ${jwt}`, accept: 'application/json' } })).status, 200)
  assert.equal((await http(`${setup.app}/api`, { headers: { authorization: `Bearer Pomerium-${jwt}`, accept: 'application/json' } })).status, 200)

  // Identity headers (the JWT assertion) for the upstream.
  assert.equal((await http(`${admin}/identity`, { jar })).status, 200)
  noteUpstreamRequests()
  assert.ok(upstreamCredentialsSeen.has('x-pomerium-jwt-assertion'), 'the upstream got a JWT assertion')

  // Provider tokens as bearer credentials, while the latest ones are fresh.
  const idToken = idTokens.at(-1)
  const accessToken = accessTokens.at(-1)
  assert.ok(idToken && accessToken)
  assert.equal((await http(`${api}/id-token`, { headers: { authorization: `Bearer ${idToken}`, accept: 'application/json' } })).status, 200)
  assert.equal((await http(`${kube}/access-token`, { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } })).status, 200)

  // Basic credentials meant for an upstream, on a public route and beside a session.
  const basicUser = `basic-user-${randomBytes(9).toString('base64url')}`
  const basicPassword = `basic-password-${randomBytes(12).toString('base64url')}`
  const basic = Buffer.from(`${basicUser}:${basicPassword}`).toString('base64')
  addSecret('Basic credentials (encoded)', basic)
  addSecret('Basic user', basicUser)
  addSecret('Basic password', basicPassword)
  assert.equal((await http(`${setup.pub}/basic`, { headers: { authorization: `Basic ${basic}` } })).status, 200)
  assert.equal((await http(`${setup.app}/basic`, { jar, headers: { authorization: `Basic ${basic}` } })).status, 200)
  assert.equal((await http(`${setup.pub}/proxy`, { headers: { 'proxy-authorization': `Basic ${basic}` } })).status, 200)

  // A denied request (the route admits bob only) and an unauthenticated one.
  assert.equal((await http(`${users}/denied`, { jar })).status, 403)
  assert.equal((await http(`${setup.app}/anonymous`, { headers: { accept: 'application/json' } })).status, 401)

  // Forged and expired cookies: a made-up signature, and a genuine signature past its expiry.
  const [h, p] = handle.split('.') as [string, string, string]
  const forged = `${h}.${p}.${randomBytes(32).toString('base64url')}`
  addSecret('forged handle', forged)
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Parameters<typeof signSessionHandle>[0]
  const now = Math.floor(Date.now() / 1000)
  const expired = signSessionHandle({ ...claims, iat: now - 7200, exp: now - 3600 }, Buffer.from(setup.sharedSecret, 'base64'))
  addSecret('expired handle', expired)
  assert.equal((await http(`${setup.app}/forged`, { headers: { cookie: `_pomerium=${forged}` } })).status, 302)
  assert.equal((await http(`${setup.app}/expired`, { headers: { cookie: `_pomerium=${expired}` } })).status, 302)
  assert.equal((await http(`${setup.app}/expired`, { headers: { authorization: `Pomerium ${expired}`, accept: 'application/json' } })).status, 401)
  assert.equal((await http(`${api}/forged-id-token`, { headers: { authorization: `Bearer ${forged}`, accept: 'application/json' } })).status, 401)

  // The OAuth callback with junk, and with the real (spent) code and state of the sign-in.
  const junkCode = randomBytes(24).toString('base64url')
  const junkState = randomBytes(48).toString('base64url')
  addSecret('junk code', junkCode)
  addSecret('junk state', junkState)
  const junk = await http(`${setup.authn}/oauth2/callback?code=${junkCode}&state=${junkState}`, { jar })
  assert.ok(junk.status >= 400, `junk callback: ${junk.status}`)
  const callback = first.visited.map((v) => new URL(v.slice(v.indexOf(' ') + 1))).find((u) => u.pathname === '/oauth2/callback')
  assert.ok(callback, first.visited.join('\n'))
  assert.ok(callback.searchParams.get('code') && callback.searchParams.get('state'))
  const replay = await http(callback.href, { jar })
  assert.ok(replay.status >= 400, `replayed callback: ${replay.status}`)
  // A signed hand-off URL of the sign-in, replayed (single use).
  const handoff = first.visited.map((v) => new URL(v.slice(v.indexOf(' ') + 1))).find((u) => u.searchParams.has('pomerium_session_encrypted'))
  assert.ok(handoff, first.visited.join('\n'))
  assert.notEqual((await http(handoff.href)).status, 200)

  // Token refresh: once the provider has issued new tokens (the 3 s ones are refreshed as they
  // near expiry), requests still pass.
  const responsesBefore = tokenResponses
  await waitFor('a token refresh at the provider', () => tokenResponses > responsesBefore, { timeoutMs: 15_000 })
  assert.equal((await http(`${setup.app}/after-refresh`, { jar })).status, 200)
  assert.equal((await http(`${setup.app}/.pomerium/user`, { jar })).status, 200)
  assert.equal((await http(`${admin}/after-refresh`, { jar })).status, 200)
  assert.ok(tokenResponses > responsesBefore, 'sessions were refreshed at the provider')
  noteUpstreamRequests()

  // Bob signs in and out on the authenticate domain (confirmation page with its CSRF token).
  const bobJar = new RecordingJar()
  jars.push(bobJar)
  await signIn(setup, `${users}/`, 'bob@example.com', 'bob-password', bobJar)
  assert.equal((await http(`${users}/allowed`, { jar: bobJar })).status, 200)
  const confirm = await http(`${setup.authn}/.pomerium/sign_out`, { jar: bobJar })
  assert.equal(confirm.status, 200)
  const csrf = /name="csrf" value="([^"]+)"/.exec(confirm.body)?.[1]
  assert.ok(csrf)
  addSecret('sign-out CSRF token', csrf)
  const bobOut = await http(`${setup.authn}/.pomerium/sign_out`, { jar: bobJar, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${encodeURIComponent(csrf)}` })
  assert.equal(bobOut.status, 302)

  // Alice signs out from a route: to the authenticate domain (signed URL), then to the provider.
  const out = await http(`${setup.app}/.pomerium/sign_out`, { jar })
  assert.equal(out.status, 302)
  const atAuthn = await http(new URL(String(out.headers['location']), setup.app).href, { jar })
  assert.equal(atAuthn.status, 302)
  const end = new URL(String(atAuthn.headers['location']))
  assert.equal(end.origin, setup.idp.issuer)
  const hint = end.searchParams.get('id_token_hint')
  assert.ok(hint && idTokens.includes(hint), 'the id_token_hint is an ID token the provider issued')
  mustHave.push(hint, handle)
  assert.equal((await http(`${setup.app}/signed-out`, { headers: { cookie: `_pomerium=${handle}` } })).status, 302)
  assert.equal((await http(`${setup.app}/signed-out`, { headers: { authorization: `Pomerium ${handle}`, accept: 'application/json' } })).status, 401)
  noteUpstreamRequests()
})

test('no secret of the run appears in any log line, and the logs are there to be scanned', async (t) => {
  // Stop first: the process flushes its buffered log lines on the way out.
  await setup.portcullis.stop()
  pollIdpStore()
  noteUpstreamRequests()

  // Configured secrets and what is derived from them.
  const shared = Buffer.from(setup.sharedSecret, 'base64')
  const cookie = Buffer.from(setup.cookieSecret, 'base64')
  for (const [label, raw, key] of [['shared_secret', setup.sharedSecret, shared], ['cookie_secret', setup.cookieSecret, cookie]] as const) {
    addSecret(label, raw)
    addSecret(`${label} (base64url)`, key.toString('base64url'))
    addSecret(`${label} (hex)`, key.toString('hex'))
  }
  addSecret('session token key (hex)', sessionTokenKey(shared).toString('hex'))
  addSecret('session token key (base64)', sessionTokenKey(shared).toString('base64'))
  const signingJwk = deriveSigningPrivateKey(shared).export({ format: 'jwk' })
  addSecret('derived signing key d', signingJwk.d)
  addSecret('derived signing key d (hex)', Buffer.from(signingJwk.d ?? '', 'base64url').toString('hex'))
  const clientSecret = 'portcullis-secret'
  addSecret('idp_client_secret', clientSecret)
  addSecret('idp_client_secret (base64)', Buffer.from(clientSecret).toString('base64'))
  addSecret('client credentials (Basic)', Buffer.from(`portcullis:${clientSecret}`).toString('base64'))
  // Whatever the jars still hold (already recorded when set; this is a cross-check).
  for (const jar of jars) {
    for (const host of [...SIGN_IN_HOSTS.map((n) => `${n}:${setup.port}`), new URL(setup.idp.issuer).host]) {
      for (const [name, value] of Object.entries(jar.forHost(host))) addSecret(`cookie ${name}`, value)
    }
  }

  const kinds = new Set([...secrets.values()].flatMap((l) => [...l]))
  for (const expected of [
    'provider id_token',
    'provider access_token',
    'provider refresh_token',
    'provider AuthorizationCode id',
    'query parameter code',
    'query parameter state',
    'query parameter pomerium_signature',
    'query parameter pomerium_session_encrypted',
    'upstream x-pomerium-jwt-assertion header',
    'cookie _pomerium',
  ]) {
    assert.ok(kinds.has(expected), `collected: ${expected} (have: ${[...kinds].join(', ')})`)
  }

  for (const v of mustHave) assert.ok(secrets.has(v), `collected: ${v.slice(0, 20)}...`)

  // Every piece of every secret, for one pass over each line.
  const pieces = new Map<string, string[]>()
  const whole: string[] = []
  for (const value of secrets.keys()) {
    if (value.length < PIECE) whole.push(value)
    else {
      for (let i = 0; i + PIECE <= value.length; i++) {
        const piece = value.slice(i, i + PIECE)
        const owners = pieces.get(piece) ?? []
        if (!owners.includes(value)) owners.push(value)
        pieces.set(piece, owners)
      }
    }
  }
  /** The longest stretch of `value` found in `line` (at least one piece long, since a piece hit). */
  const longestIn = (value: string, line: string): string => {
    let best = ''
    for (let i = 0; i + PIECE <= value.length; i++) {
      let end = i + PIECE
      if (end - i <= best.length && !line.includes(value.slice(i, i + best.length + 1))) continue
      if (!line.includes(value.slice(i, end))) continue
      while (end < value.length && line.includes(value.slice(i, end + 1))) end++
      if (end - i > best.length) best = value.slice(i, end)
    }
    return best
  }

  const processes = [{ name: 'portcullis', p: setup.portcullis }]
  const leaks: string[] = []
  let lines = 0
  for (const { name, p } of processes) {
    for (const [stream, list] of [['stdout', p.logs], ['stderr', p.stderr]] as const) {
      list.forEach((line, index) => {
        lines++
        const hit = new Set<string>()
        for (let i = 0; i + PIECE <= line.length; i++) for (const v of pieces.get(line.slice(i, i + PIECE)) ?? []) hit.add(v)
        for (const v of whole) if (line.includes(v)) hit.add(v)
        // Whole secrets first; then pieces of others outside them (JWTs share headers and claims).
        let rest = line
        const found: [string, string][] = []
        for (const value of [...hit].sort((x, y) => y.length - x.length)) {
          if (!rest.includes(value)) continue
          found.push([value, value])
          rest = rest.split(value).join('\u0000')
        }
        for (const value of hit) {
          if (value.length < PIECE || found.some(([v]) => v === value)) continue
          const run = longestIn(value, rest)
          if (run.length >= PIECE) found.push([value, run])
        }
        for (const [value, run] of found) {
          const label = [...(secrets.get(value) ?? [])].join(' = ')
          const fields = fieldsWith(parseLogLine(line), run.slice(0, PIECE)).join(', ') || '?'
          const extent = run.length === value.length ? `whole (${value.length} characters)` : `${run.length} of ${value.length} characters`
          leaks.push(`${label}: ${extent}, "${run.slice(0, 32)}...", in ${name} ${stream} line ${index}, field ${fields}: ${line.slice(0, 300)}`)
        }
      })
    }
  }

  // The scan means something: access and authorize lines with every field, debug lines, a refresh.
  const entries = setup.portcullis.logs.map(parseLogLine)
  const access = entries.filter((e) => e['msg'] === 'http-request')
  const decisions = entries.filter((e) => e['msg'] === 'authorize check')
  assert.ok(access.length >= 40, `access log lines: ${access.length}`)
  assert.ok(decisions.length >= 15, `authorize log lines: ${decisions.length}`)
  assert.ok(access.some((e) => typeof e['headers'] === 'object' && typeof e['query'] === 'string' && e['query'] !== ''), 'access lines carry headers and queries')
  assert.ok(decisions.some((e) => typeof e['headers'] === 'object' && typeof e['id-token-claims'] === 'object' && e['email'] === 'alice@example.com'), 'authorize lines carry headers and claims')
  assert.ok(entries.some((e) => e['level'] === 'debug'), 'debug lines are written')
  assert.ok(lines > access.length + decisions.length)
  assert.ok(secrets.size >= 30, `secrets collected: ${secrets.size}`)

  t.diagnostic(`${secrets.size} secrets (${kinds.size} kinds) against ${lines} log lines: ${access.length} access, ${decisions.length} authorize, ${entries.filter((e) => e['level'] === 'debug').length} debug`)
  assert.deepEqual(leaks, [], `secrets in the logs:\n${leaks.join('\n')}`)
})

/** Paths of the fields of a parsed log line whose text contains `piece`. */
function fieldsWith(value: unknown, piece: string, path = ''): string[] {
  if (typeof value === 'string') return value.includes(piece) ? [path || '(line)'] : []
  if (typeof value !== 'object' || value === null) return []
  const out: string[] = []
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) out.push(...fieldsWith(v, piece, path ? `${path}.${k}` : k))
  return out
}
