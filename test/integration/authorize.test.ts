/**
 * Route policies through the running proxy with real sessions from the real OpenID provider
 * (Pomerium docs: Pomerium Policy Language, Access-control): allow and deny rules, legacy fields, claims, groups, methods and paths,
 * the 403 page and its JSON form, robots.txt, show_error_details, the authorize log, and a group
 * removed at the provider taking effect within the token lifetime (hostile-input case: identity / claims / policy inputs).
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { JSONWebKeySet } from 'jose'
import { request } from 'undici'
import type { EchoRecord } from '../fixtures/upstreams.js'
import type { CookieJar } from '../fixtures/oidc-provider.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let admin: string
let api: string
let users: string
let alice: CookieJar
let bob: CookieJar

before(async () => {
  setup = await startSignInSetup({
    idp: { tokenLifetimes: { accessToken: 3, idToken: 3 } },
    settings: { jwt_claims_headers: { 'X-Email': 'email', 'X-Groups': 'groups' } },
    routes: (upstream) => [
      { from: 'https://admin.localhost', to: upstream, name: 'Admin console', pass_identity_headers: true, policy: { allow: { and: [{ 'claim/groups': 'admins' }] } } },
      {
        from: 'https://api.localhost',
        to: upstream,
        show_error_details: true,
        policy: [
          { allow: { and: [{ authenticated_user: true }, { http_method: { in: ['GET', 'HEAD'] } }, { source_ip: ['127.0.0.0/8', '::1'] }] } },
          { deny: { or: [{ http_path: { starts_with: '/secret' } }] } },
        ],
      },
      {
        from: 'https://users.localhost',
        to: upstream,
        allowed_users: ['bob@example.com'],
        set_request_headers: { 'X-Jwt': '${pomerium.jwt}', 'X-Agent': 'via ${pomerium.request.headers["User-Agent"]}', 'X-Plain': 'plain' },
      },
      // No allow rule at all: what a mistyped allow key leaves behind.
      { from: 'https://gcp.localhost', to: upstream, name: 'No allow rule' },
    ],
  })
  admin = `https://admin.localhost:${setup.port}`
  api = `https://api.localhost:${setup.port}`
  users = `https://users.localhost:${setup.port}`
  alice = (await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')).jar
  bob = (await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')).jar
  for (const base of [admin, api, users]) {
    await signIn(setup, `${base}/`, 'alice@example.com', 'x', alice).catch(() => undefined)
    await signIn(setup, `${base}/`, 'bob@example.com', 'x', bob).catch(() => undefined)
  }
})
after(async () => {
  await setup.close()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

async function http(url: string, jar?: CookieJar, opts: { method?: string; accept?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const u = new URL(url)
  const cookie = jar?.header(u)
  const res = await request(u, {
    dispatcher: setup.dispatcher,
    method: (opts.method ?? 'GET') as 'GET',
    headers: { accept: opts.accept ?? 'text/html', ...opts.headers, ...(cookie ? { cookie } : {}) },
  })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

describe('route policies', () => {
  test('a claim rule admits members and refuses others with a page that says why', async () => {
    assert.equal((await http(`${admin}/`, alice)).status, 200)
    const denied = await http(`${admin}/`, bob)
    assert.equal(denied.status, 403)
    assert.match(denied.body, /Admin console/)
    assert.match(denied.body, /bob@example\.com/)
    assert.match(denied.body, /Why:/)
    assert.match(denied.body, /does not report an attribute this route requires \(the claim groups including &#34;admins&#34;\)/)
    assert.match(denied.body, /Request ID/)
    assert.match(denied.body, /href="\/\.pomerium\/sign_out"/)
    assert.equal(denied.headers['x-request-id'] !== undefined, true)
    const json = await http(`${admin}/`, bob, { accept: 'application/json' })
    assert.equal(json.status, 403)
    const body = JSON.parse(json.body) as { error: string; reasons: string[]; request_id: string }
    assert.deepEqual(body.reasons, ['claim-unauthorized'])
    assert.ok(body.request_id)
  })

  test('a route without an allow rule says on its 403 page that it admits nobody', async () => {
    for (const jar of [undefined, alice]) {
      const page = await http(`https://gcp.localhost:${setup.port}/`, jar)
      assert.equal(page.status, 403)
      assert.match(page.body, /this route has no allow rule, so it admits nobody/)
    }
  })

  test('the upstream gets a signed assertion that verifies against the JWKS, and our claim headers replace forged ones', async () => {
    const res = await http(`${admin}/whoami`, alice, { headers: { 'x-email': 'forged@evil.com', 'x-pomerium-jwt-assertion': 'forged', 'x-pomerium-claim-email': 'x' } })
    assert.equal(res.status, 200)
    const echoed = JSON.parse(res.body) as EchoRecord
    const h = echoed.headers as Record<string, string | string[]>
    assert.equal(h['x-email'], 'alice@example.com')
    assert.equal(h['x-groups'], 'admins,staff')
    assert.equal(h['x-pomerium-jwt-assertion-for'], 'forged', 'an incoming assertion is chained, not trusted')
    const jwks = JSON.parse((await http(`${admin}/.well-known/pomerium/jwks.json`)).body) as JSONWebKeySet
    const token = h['x-pomerium-jwt-assertion'] as string
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: 'admin.localhost', audience: 'admin.localhost' })
    assert.equal(protectedHeader.alg, 'ES256')
    assert.equal(payload['email'], 'alice@example.com')
    assert.deepEqual(payload['groups'], ['admins', 'staff'])
    assert.equal(payload['name'], 'Alice Example')
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 300)
    assert.ok(payload['sid'] && payload.sub && payload.jti)
    // Routes without pass_identity_headers get no assertion and no claim headers.
    const plain = JSON.parse((await http(`${setup.app}/`, alice, { headers: { 'x-email': 'forged@evil.com' } })).body) as EchoRecord
    assert.equal((plain.headers as Record<string, unknown>)['x-pomerium-jwt-assertion'], undefined)
    assert.equal((plain.headers as Record<string, unknown>)['x-email'], undefined)
  })

  test('without a session a rule that needs one sends the browser to sign in', async () => {
    const a = await http(`${admin}/`)
    assert.equal(a.status, 302)
    assert.match(String(a.headers['location']), /\/\.pomerium\/sign_in\?/)
    assert.equal((await http(`${admin}/`, undefined, { accept: 'application/json' })).status, 401)
  })

  test('methods, source addresses and deny rules (deny wins)', async () => {
    assert.equal((await http(`${api}/items`, alice)).status, 200)
    assert.equal((await http(`${api}/items`, alice, { method: 'POST' })).status, 403)
    const secret = await http(`${api}/secret/x`, alice)
    assert.equal(secret.status, 403)
    // show_error_details: the evaluation is on the page.
    assert.match(secret.body, /a deny rule of this route matches this request: http_path starts_with &#34;\/secret&#34;/)
    assert.match(secret.body, /Details/)
    assert.match(secret.body, /http_path/)
  })

  test('legacy allowed_users matches the email', async () => {
    assert.equal((await http(`${users}/`, bob)).status, 200)
    assert.equal((await http(`${users}/`, alice)).status, 403)
  })

  test('set_request_headers templates are rendered per request; the JWKS is on the authenticate host too', async () => {
    const r = await http(`${users}/t`, bob, { headers: { 'user-agent': 'probe/1' } })
    assert.equal(r.status, 200)
    const h = (JSON.parse(r.body) as EchoRecord).headers as Record<string, string>
    assert.equal(h['x-plain'], 'plain')
    assert.equal(h['x-agent'], 'via probe/1')
    const jwks = JSON.parse((await http(`${setup.authn}/.well-known/pomerium/jwks.json`)).body) as JSONWebKeySet
    const { payload } = await jwtVerify(h['x-jwt'] as string, createLocalJWKSet(jwks), { issuer: 'users.localhost', audience: 'users.localhost' })
    assert.equal(payload['email'], 'bob@example.com')
    assert.ok(!Object.values(h).some((v) => String(v).includes('${pomerium')), 'no template text reaches the upstream')
  })

  test('robots.txt on a protected route is answered by Portcullis', async () => {
    const r = await http(`${admin}/robots.txt`)
    assert.equal(r.status, 200)
    assert.equal(r.body, 'User-agent: *\nDisallow: /\n')
    assert.equal(setup.upstream.requests.filter((q) => q.url === '/robots.txt').length, 0)
  })

  test('each decision is logged with its reasons', async () => {
    await http(`${admin}/logged`, bob)
    const entry = await setup.portcullis.waitForLog((e) => e['msg'] === 'authorize check' && e['path'] === '/logged')
    assert.equal(entry['allow'], false)
    assert.deepEqual(entry['allow-why-false'], ['claim-unauthorized'])
    assert.equal(entry['email'], 'bob@example.com')
    assert.ok(!JSON.stringify(entry).includes('_pomerium'), 'no cookies in the log')
  })

  test('a group removed at the provider stops granting access within the token lifetime', async () => {
    assert.equal((await http(`${admin}/`, alice)).status, 200)
    setup.idp.removeGroup('alice@example.com', 'admins')
    // The tokens live 3 s and the next refresh reads the groups again: poll for the 403 rather
    // than sleep past the expiry, about the bound the test always had (3.3 s, then ten tries).
    let status = 0
    for (const deadline = Date.now() + 10_000; status !== 403 && Date.now() < deadline; ) {
      status = (await http(`${admin}/`, alice)).status
      if (status !== 403) await sleep(200)
    }
    assert.equal(status, 403)
    setup.idp.addGroup('alice@example.com', 'admins')
  })
})
