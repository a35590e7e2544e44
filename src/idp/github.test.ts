/**
 * The GitHub provider, built by the factory, end to end against the local GitHub stand-in
 * (test/fixtures/github-api.ts) on 127.0.0.1, addressed as a GitHub Enterprise server would be:
 * authorization URL, the user approving, code exchange, claims from /user, /user/emails and
 * /user/teams (paginated), refusals (state, bad code, replay, PKCE, redirect URI, denial), refresh
 * by re-reading the user, permanent and transient refresh failures, and revocation.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import * as oidc from 'openid-client'

import { startFakeGitHub } from '../../test/fixtures/github-api.js'
import type { FakeGitHub, FakeGitHubTeam } from '../../test/fixtures/github-api.js'
import { providerIdFor } from '../config/providers.js'
import type { ProviderSettings } from '../config/providers.js'
import { createIdentityProvider } from './factory.js'
import { gitHubEndpoints } from './github.js'
import { randomCodeVerifier } from './oidc.js'
import type { IdpFetch } from './oidc.js'
import { IdentityProviderError } from './provider.js'
import type { IdentityProvider, IdentityProviderErrorCode, TokenSet } from './provider.js'

const REDIRECT = 'http://127.0.0.1:9/oauth2/callback' // never requested: approve() stops at it
const CLIENT_ID = 'Ov23liPortcullisTest'
const CLIENT_SECRET = 'gh-secret-0123456789abcdef'

function teams(org: string, count: number): FakeGitHubTeam[] {
  return Array.from({ length: count }, (_, i) => ({ org, slug: `team-${String(i).padStart(3, '0')}` }))
}

function idpError(code: IdentityProviderErrorCode, check?: (err: IdentityProviderError) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof IdentityProviderError, String(err))
    assert.equal(err.code, code, err.message)
    check?.(err)
    return true
  }
}

interface Flow {
  state: string
  verifier: string
  authorizationUrl: URL
  callbackUrl: URL
}

void describe('GitHub identity provider against the fake GitHub', { timeout: 60_000 }, () => {
  let gh: FakeGitHub

  function settings(extra: Partial<ProviderSettings> = {}): ProviderSettings {
    const base = { provider: 'github' as const, url: gh.url, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }
    return { id: providerIdFor(base), ...base, ...extra }
  }

  function makeProvider(extra: Partial<ProviderSettings> = {}, fetch?: IdpFetch): IdentityProvider {
    return createIdentityProvider(settings(extra), fetch ? { fetch } : {})
  }

  async function startFlow(provider: IdentityProvider, login: string, options: { deny?: boolean } = {}): Promise<Flow> {
    const state = oidc.randomState()
    const verifier = randomCodeVerifier()
    const authorizationUrl = await provider.authorizationUrl({ redirectUri: REDIRECT, state, nonce: 'unused', codeVerifier: verifier })
    const callbackUrl = await gh.approve(authorizationUrl, login, options)
    return { state, verifier, authorizationUrl, callbackUrl }
  }

  function redeem(provider: IdentityProvider, flow: Flow): Promise<TokenSet> {
    return provider.redeem({
      callbackUrl: flow.callbackUrl,
      redirectUri: REDIRECT,
      expectedState: flow.state,
      expectedNonce: 'unused',
      codeVerifier: flow.verifier,
    })
  }

  before(async () => {
    gh = await startFakeGitHub({
      apps: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, callbackUrl: REDIRECT }],
      users: {
        octocat: {
          id: 583231,
          name: 'The Octocat',
          emails: [
            { email: 'octocat@old.example.com', primary: false, verified: true },
            { email: 'octocat@github.example.com', primary: true, verified: true },
          ],
          // 150 teams: two pages of 100.
          teams: [...teams('acme', 149), { org: 'octo-org', slug: 'admins' }],
        },
        hubot: { id: 1001, name: null, emails: [{ email: 'hubot@example.com', primary: true, verified: false }] },
        mona: { id: 2002, teams: [{ org: 'acme', slug: 'staff' }] },
        rita: { id: 3003, teams: [{ org: 'acme', slug: 'staff' }] },
      },
    })
  })

  after(async () => {
    await gh.close()
  })

  void it('computes github.com, GitHub Enterprise Server and ghe.com endpoints', () => {
    assert.deepEqual(gitHubEndpoints(undefined), {
      authorization: 'https://github.com/login/oauth/authorize',
      token: 'https://github.com/login/oauth/access_token',
      api: 'https://api.github.com',
    })
    assert.deepEqual(gitHubEndpoints('https://github.com/'), gitHubEndpoints(undefined))
    assert.deepEqual(gitHubEndpoints('https://ghe.example.com'), {
      authorization: 'https://ghe.example.com/login/oauth/authorize',
      token: 'https://ghe.example.com/login/oauth/access_token',
      api: 'https://ghe.example.com/api/v3',
    })
    assert.equal(gitHubEndpoints('https://octo.ghe.com').api, 'https://api.octo.ghe.com')
  })

  void it('describes itself as an OAuth 2 provider refreshed with its access token', async () => {
    const provider = makeProvider()
    assert.equal(provider.providerName, 'github')
    assert.equal(provider.protocol, 'oauth2')
    assert.equal(provider.callbackMethod, 'GET')
    assert.equal(provider.formPostCallback, false)
    assert.equal(provider.refreshWith, 'access_token')
    assert.equal(await provider.needsPkce(), true)
    assert.equal(await provider.endSessionUrl({ postLogoutRedirectUri: 'https://x.example/' }), undefined)
  })

  void it('builds the authorization URL: each parameter once, S256 challenge, default scopes, no nonce', async () => {
    assert.throws(() => makeProvider({ requestParams: { scope: 'repo' } }), /idp_request_params: "scope" is set by Portcullis/)
    const p = makeProvider({ requestParams: { allow_signup: 'false' } })
    const verifier = randomCodeVerifier()
    const url = await p.authorizationUrl({
      redirectUri: REDIRECT,
      state: 'state-1',
      nonce: 'n',
      codeVerifier: verifier,
      extraParams: { login: 'octocat', scope: 'repo', client_id: 'other' },
    })
    assert.equal(`${url.origin}${url.pathname}`, `${gh.url}/login/oauth/authorize`)
    const expected: Record<string, string> = {
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT,
      scope: 'user:email read:org',
      state: 'state-1',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      allow_signup: 'false',
      login: 'octocat',
    }
    for (const [name, value] of Object.entries(expected)) assert.deepEqual(url.searchParams.getAll(name), [value], name)
    assert.deepEqual([...new Set(url.searchParams.keys())].sort(), Object.keys(expected).sort())
    await assert.rejects(p.authorizationUrl({ redirectUri: REDIRECT, state: 's', nonce: 'n' }), TypeError)
  })

  void it('signs in: code exchange, then user, verified primary email and teams across two pages', async () => {
    const provider = makeProvider()
    const before = Date.now()
    const requestsBefore = gh.requests.length
    const flow = await startFlow(provider, 'octocat')
    assert.ok(flow.callbackUrl.href.startsWith(`${REDIRECT}?`), flow.callbackUrl.href)
    assert.equal(flow.callbackUrl.searchParams.get('state'), flow.state)
    const tokens = await redeem(provider, flow)

    assert.match(tokens.accessToken, /^gho_[A-Za-z0-9]{36}$/)
    assert.equal(tokens.refreshToken, undefined)
    assert.equal(tokens.idToken, undefined)
    assert.ok(tokens.expiresAt >= before + 3_600_000 - 1000 && tokens.expiresAt <= Date.now() + 3_600_000, 'checked again within the hour')
    const { claims } = tokens
    assert.equal(claims.sub, '583231')
    assert.equal(provider.userIdOf(claims), '583231')
    assert.equal(claims.preferred_username, 'octocat')
    assert.equal(claims.user, 'octocat')
    assert.equal(claims.name, 'The Octocat')
    assert.equal(claims.email, 'octocat@github.example.com')
    assert.equal(claims.email_verified, true)
    assert.equal(claims.picture, `${gh.url}/avatars/u/583231?v=4`)
    const groups = claims.groups as string[]
    assert.equal(groups.length, 150)
    assert.ok(groups.includes('acme/team-000') && groups.includes('acme/team-148') && groups.includes('octo-org/admins'))

    const seen = gh.requests.slice(requestsBefore)
    const token = seen.find((r) => r.path === '/login/oauth/access_token')
    assert.ok(token)
    assert.equal(token.method, 'POST')
    assert.equal(token.headers.accept, 'application/json')
    assert.equal(token.headers['content-type'], 'application/x-www-form-urlencoded')
    const api = seen.filter((r) => r.path.startsWith('/api/v3/'))
    assert.deepEqual(api.map((r) => r.path).sort(), [
      '/api/v3/user',
      '/api/v3/user/emails?per_page=100',
      '/api/v3/user/teams?per_page=100',
      '/api/v3/user/teams?per_page=100&page=2',
    ])
    for (const r of api) {
      assert.equal(r.headers.accept, 'application/vnd.github+json')
      assert.equal(r.headers.authorization, `Bearer ${tokens.accessToken}`)
      assert.equal(r.headers['x-github-api-version'], '2022-11-28')
      assert.ok(r.headers['user-agent'])
    }
  })

  void it('skips the consent page once the app is authorized', async () => {
    const provider = makeProvider()
    await redeem(provider, await startFlow(provider, 'mona'))
    const again = await redeem(provider, await startFlow(provider, 'mona'))
    assert.equal(again.claims.sub, '2002')
    assert.deepEqual(again.claims.groups, ['acme/staff'])
  })

  void it('an unverified primary email is not exposed: email_verified false, no email, no name when unset', async () => {
    const provider = makeProvider()
    const tokens = await redeem(provider, await startFlow(provider, 'hubot'))
    assert.equal(tokens.claims.email_verified, false)
    assert.equal(tokens.claims.email, undefined)
    assert.equal(tokens.claims.name, undefined)
    assert.deepEqual(tokens.claims.groups, [])
  })

  void it('refuses a bad code with GitHub\'s HTTP-200 error, and a replayed code', async () => {
    const provider = makeProvider()
    const flow = await startFlow(provider, 'mona')
    const bad = new URL(flow.callbackUrl)
    bad.searchParams.set('code', '0123456789abcdef0123')
    await assert.rejects(
      redeem(provider, { ...flow, callbackUrl: bad }),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => {
        assert.equal(err.oauthError, 'bad_verification_code')
        assert.equal(err.oauthErrorDescription, 'The code passed is incorrect or expired.')
      }),
    )
    await redeem(provider, flow)
    await assert.rejects(
      redeem(provider, flow),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.equal(err.oauthError, 'bad_verification_code')),
    )
  })

  void it('checks state before spending the code, and refuses a wrong PKCE verifier', async () => {
    const provider = makeProvider()
    const flow = await startFlow(provider, 'mona')
    await assert.rejects(redeem(provider, { ...flow, state: oidc.randomState() }), idpError('ERR_IDP_STATE_MISMATCH'))
    const twice = new URL(flow.callbackUrl)
    twice.searchParams.append('state', flow.state)
    await assert.rejects(redeem(provider, { ...flow, callbackUrl: twice }), idpError('ERR_IDP_STATE_MISMATCH'))
    await assert.rejects(
      redeem(provider, { ...flow, verifier: randomCodeVerifier() }),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.equal(err.oauthError, 'bad_verification_code')),
    )
  })

  void it('reports a cancelled consent as ERR_IDP_ACCESS_DENIED and a wrong client secret as a failed exchange', async () => {
    const provider = makeProvider()
    const denied = await startFlow(provider, 'rita', { deny: true })
    assert.equal(denied.callbackUrl.searchParams.get('error'), 'access_denied')
    await assert.rejects(redeem(provider, denied), idpError('ERR_IDP_ACCESS_DENIED'))

    const wrongSecret = makeProvider({ clientSecret: 'not-the-secret' })
    const flow = await startFlow(wrongSecret, 'rita')
    await assert.rejects(
      redeem(wrongSecret, flow),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.equal(err.oauthError, 'incorrect_client_credentials')),
    )
  })

  void it('reports a redirect URI GitHub does not accept', async () => {
    const provider = makeProvider()
    const state = oidc.randomState()
    const verifier = randomCodeVerifier()
    const url = await provider.authorizationUrl({ redirectUri: 'http://127.0.0.1:9/elsewhere', state, nonce: 'n', codeVerifier: verifier })
    const callbackUrl = await gh.approve(url, 'mona')
    assert.equal(callbackUrl.searchParams.get('error'), 'redirect_uri_mismatch')
    await assert.rejects(
      provider.redeem({ callbackUrl, redirectUri: REDIRECT, expectedState: state, expectedNonce: 'n', codeVerifier: verifier }),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.equal(err.oauthError, 'redirect_uri_mismatch')),
    )
  })

  void it('refreshes by re-reading the user: team changes show; revoked token fails permanently, outage transiently', async () => {
    gh.setUser('dana', { id: 4004, teams: [{ org: 'acme', slug: 'admins' }, { org: 'acme', slug: 'staff' }] })
    const provider = makeProvider()
    const tokens = await redeem(provider, await startFlow(provider, 'dana'))
    assert.deepEqual(tokens.claims.groups, ['acme/admins', 'acme/staff'])

    gh.setTeams('dana', [{ org: 'acme', slug: 'staff' }])
    const refreshed = await provider.refresh(tokens.accessToken, { previousClaims: tokens.claims })
    assert.equal(refreshed.accessToken, tokens.accessToken)
    assert.equal(refreshed.claims.sub, '4004')
    assert.deepEqual(refreshed.claims.groups, ['acme/staff'])
    assert.deepEqual((await provider.userInfo(tokens.accessToken, '4004')).groups, ['acme/staff'])
    await assert.rejects(provider.userInfo(tokens.accessToken, '1'), idpError('ERR_IDP_USERINFO_FAILED'))
    await assert.rejects(
      provider.refresh(tokens.accessToken, { previousClaims: { sub: '1' } }),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => assert.equal(err.permanent, true)),
    )

    gh.setOutage(true)
    await assert.rejects(
      provider.refresh(tokens.accessToken, { previousClaims: tokens.claims }),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => assert.equal(err.permanent, false)),
    )
    gh.setOutage(false)

    gh.revokeAuthorization('dana', CLIENT_ID)
    await assert.rejects(
      provider.refresh(tokens.accessToken, { previousClaims: tokens.claims }),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => {
        assert.equal(err.permanent, true)
        assert.match(err.message, /401 Bad credentials/)
      }),
    )
  })

  void it('revokes the access token at the API (basic auth); an unknown token is already revoked', async () => {
    const provider = makeProvider()
    const tokens = await redeem(provider, await startFlow(provider, 'mona'))
    assert.ok(gh.tokens().some((t) => t.token === tokens.accessToken))
    const count = gh.requests.length
    await provider.revoke(tokens.accessToken, 'refresh_token')
    assert.equal(gh.requests.length, count, 'GitHub has no refresh tokens: nothing to send')
    await provider.revoke(tokens.accessToken, 'access_token')
    assert.ok(!gh.tokens().some((t) => t.token === tokens.accessToken))
    const last = gh.requests.at(-1)
    assert.equal(last?.method, 'DELETE')
    assert.equal(last?.path, `/api/v3/applications/${CLIENT_ID}/token`)
    assert.equal(last?.headers.authorization, `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`)
    await provider.revoke(tokens.accessToken)
    await assert.rejects(
      provider.refresh(tokens.accessToken),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => assert.equal(err.permanent, true)),
    )
    const wrongSecret = makeProvider({ clientSecret: 'nope' })
    await assert.rejects(wrongSecret.revoke('gho_whatever'), idpError('ERR_IDP_REVOKE_FAILED'))
  })

  void it('without an org scope, signs in with no groups and does not ask for teams', async () => {
    // A user who never granted the app an org scope (GitHub keeps earlier grants in new tokens).
    gh.setUser('sam', { id: 5005, teams: [{ org: 'acme', slug: 'staff' }] })
    const provider = makeProvider({ scopes: ['user:email'] })
    const flow = await startFlow(provider, 'sam')
    assert.equal(flow.authorizationUrl.searchParams.get('scope'), 'user:email')
    const count = gh.requests.length
    const tokens = await redeem(provider, flow)
    assert.deepEqual(tokens.claims.groups, [])
    assert.ok(!gh.requests.slice(count).some((r) => r.path.startsWith('/api/v3/user/teams')))
  })

  void it('never follows a pagination link off the API (the token would go with it)', async () => {
    const rewriting: IdpFetch = async (url, init) => {
      const response = await fetch(url, init as RequestInit)
      if (!url.includes('/user/teams')) return response
      const headers = new Headers(response.headers)
      headers.set('link', '<https://evil.example/api/v3/user/teams?page=2>; rel="next"')
      return new Response(await response.text(), { status: response.status, headers })
    }
    const provider = makeProvider({}, rewriting)
    const flow = await startFlow(provider, 'mona')
    await assert.rejects(redeem(provider, flow), (err: unknown) => {
      assert.ok(err instanceof IdentityProviderError)
      assert.equal(err.code, 'ERR_IDP_EXCHANGE_FAILED')
      assert.match(err.message, /pagination link leaves the API/)
      return true
    })
  })
})

void describe('the GitHub stand-in answers as GitHub does', { timeout: 30_000 }, () => {
  let gh: FakeGitHub

  before(async () => {
    gh = await startFakeGitHub({
      apps: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, callbackUrl: REDIRECT }],
      users: { octocat: { id: 1, teams: teams('acme', 5) } },
    })
  })

  after(async () => {
    await gh.close()
  })

  async function code(): Promise<string> {
    const url = new URL('/login/oauth/authorize', gh.url)
    url.searchParams.set('client_id', CLIENT_ID)
    url.searchParams.set('scope', 'read:org,user:email')
    url.searchParams.set('state', 's')
    const callback = await gh.approve(url, 'octocat')
    assert.equal(callback.searchParams.get('state'), 's')
    return callback.searchParams.get('code') ?? ''
  }

  const tokenUrl = (): string => `${gh.url}/login/oauth/access_token`

  void it('token endpoint: JSON or form requests; JSON, XML or form answers after Accept; errors with HTTP 200', async () => {
    // A JSON request with client credentials in the body, JSON answer.
    const json = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, code: await code() }),
    })
    assert.equal(json.status, 200)
    const body = (await json.json()) as Record<string, string>
    assert.match(body.access_token ?? '', /^gho_/)
    assert.equal(body.token_type, 'bearer')
    assert.equal(body.scope, 'read:org,user:email', 'comma separated, as GitHub writes scopes')

    // A form request with basic auth and no Accept: a form-encoded answer.
    const form = await fetch(tokenUrl(), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({ code: await code() }).toString(),
    })
    assert.match(form.headers.get('content-type') ?? '', /^application\/x-www-form-urlencoded/)
    assert.match(new URLSearchParams(await form.text()).get('access_token') ?? '', /^gho_/)

    const xml = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/xml' },
      body: new URLSearchParams({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, code: 'nope' }).toString(),
    })
    assert.equal(xml.status, 200)
    assert.match(await xml.text(), /<error>bad_verification_code<\/error>/)

    const wrong = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ client_id: CLIENT_ID, client_secret: 'wrong', code: await code() }).toString(),
    })
    assert.equal(wrong.status, 200)
    assert.equal(((await wrong.json()) as { error?: string }).error, 'incorrect_client_credentials')
  })

  void it('API: User-Agent required, versions checked, 401 bodies, token scheme, scopes header, Link pagination', async () => {
    const response = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, code: await code() }).toString(),
    })
    const token = ((await response.json()) as { access_token: string }).access_token
    const get = (path: string, headers: Record<string, string>) => fetch(`${gh.apiUrl}${path}`, { headers })

    // undici's fetch always sends a User-Agent; node:http lets a request go without one.
    const { request } = await import('node:http')
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${gh.apiUrl}/user`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.removeHeader('user-agent')
      req.on('error', reject)
      req.end()
    })
    assert.equal(status, 403)

    const badVersion = await get('/user', { authorization: `Bearer ${token}`, 'x-github-api-version': '2099-01-01' })
    assert.equal(badVersion.status, 400)
    assert.match(((await badVersion.json()) as { message: string }).message, /API version 2099-01-01 is not supported/)

    const anonymous = await get('/user', {})
    assert.equal(anonymous.status, 401)
    assert.equal(((await anonymous.json()) as { message: string }).message, 'Requires authentication')
    const bad = await get('/user', { authorization: 'Bearer gho_invalid' })
    assert.equal(bad.status, 401)
    assert.deepEqual(await bad.json(), { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' })

    const user = await get('/user', { authorization: `token ${token}`, 'x-github-api-version': '2022-11-28' })
    assert.equal(user.status, 200)
    assert.equal(user.headers.get('x-oauth-scopes'), 'read:org, user:email')
    assert.equal(((await user.json()) as { login: string }).login, 'octocat')

    const page1 = await get('/user/teams?per_page=2', { authorization: `Bearer ${token}` })
    assert.equal(((await page1.json()) as unknown[]).length, 2)
    assert.equal(
      page1.headers.get('link'),
      `<${gh.apiUrl}/user/teams?per_page=2&page=2>; rel="next", <${gh.apiUrl}/user/teams?per_page=2&page=3>; rel="last"`,
    )
    const page3 = await get('/user/teams?per_page=2&page=3', { authorization: `Bearer ${token}` })
    assert.equal(((await page3.json()) as unknown[]).length, 1)
    assert.equal(
      page3.headers.get('link'),
      `<${gh.apiUrl}/user/teams?per_page=2&page=2>; rel="prev", <${gh.apiUrl}/user/teams?per_page=2&page=1>; rel="first"`,
    )
  })
})
