/**
 * The generic OIDC provider against a real OpenID provider (oidc-provider, test fixture) on
 * 127.0.0.1: discovery, authorization URL, code flow through the login form, state/nonce/replay
 * refusals, refresh with claim changes, permanent and transient refresh failures, revocation,
 * RP-initiated logout, discovery failure and retry.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'

import * as oidc from 'openid-client'

import { loginWithForm, startTestIdp, subFor } from '../../test/fixtures/oidc-provider.js'
import type { CookieJar, TestIdp } from '../../test/fixtures/oidc-provider.js'
import { createOidcProvider, randomCodeVerifier, randomNonce } from './oidc.js'
import type { IdpFetch, OidcProviderOptions } from './oidc.js'
import { IdentityProviderError, mergeClaims } from './provider.js'
import type { IdentityProvider, IdentityProviderErrorCode, TokenSet } from './provider.js'

const REDIRECT = 'http://127.0.0.1:9/oauth2/callback' // never requested: loginWithForm stops before it
const POST_LOGOUT = 'http://127.0.0.1:9/.pomerium/signed_out'
const CLIENT_ID = 'portcullis'
const CLIENT_SECRET = 'portcullis-secret'

function makeProvider(idp: TestIdp, extra: Partial<OidcProviderOptions> = {}): IdentityProvider {
  return createOidcProvider({
    id: 'test-idp',
    issuerUrl: idp.issuer,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    allowInsecureRequests: true, // the fixture is plain HTTP on loopback
    timeoutSeconds: 10,
    ...extra,
  })
}

interface Flow {
  state: string
  nonce: string
  verifier: string
  callbackUrl: URL
  /** The browser's cookies at the provider (its IdP session). */
  jar: CookieJar
}

/** Starts a sign-in with the provider's URL and submits the fixture's login form. */
async function startFlow(provider: IdentityProvider, email: string): Promise<Flow> {
  const state = oidc.randomState()
  const nonce = randomNonce()
  const verifier = randomCodeVerifier()
  const url = await provider.authorizationUrl({ redirectUri: REDIRECT, state, nonce, codeVerifier: verifier })
  const result = await loginWithForm(url.href, email, 'pw')
  assert.equal(result.error, undefined, result.location)
  assert.ok(result.location.startsWith(`${REDIRECT}?`), result.location)
  return { state, nonce, verifier, callbackUrl: result.url, jar: result.jar }
}

function redeemFlow(provider: IdentityProvider, flow: Flow): Promise<TokenSet> {
  return provider.redeem({
    callbackUrl: flow.callbackUrl,
    redirectUri: REDIRECT,
    expectedState: flow.state,
    expectedNonce: flow.nonce,
    codeVerifier: flow.verifier,
  })
}

async function signIn(provider: IdentityProvider, email: string): Promise<TokenSet> {
  return redeemFlow(provider, await startFlow(provider, email))
}

function idpError(code: IdentityProviderErrorCode, check?: (err: IdentityProviderError) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof IdentityProviderError, String(err))
    assert.equal(err.code, code, err.message)
    check?.(err)
    return true
  }
}

/** A fetch that records URLs, can simulate the network being down, and can edit discovery. */
function testFetch(rewriteDiscovery?: (doc: Record<string, unknown>) => void): {
  fetch: IdpFetch
  urls: string[]
  down: { value: boolean }
} {
  const urls: string[] = []
  const down = { value: false }
  const wrapped: IdpFetch = async (url, init) => {
    urls.push(url)
    if (down.value) throw new TypeError('fetch failed (simulated network outage)')
    const response = await fetch(url, init as RequestInit)
    if (rewriteDiscovery && url.endsWith('/.well-known/openid-configuration')) {
      const doc = (await response.json()) as Record<string, unknown>
      rewriteDiscovery(doc)
      return Response.json(doc)
    }
    return response
  }
  return { fetch: wrapped, urls, down }
}

async function closedPort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

void describe('OIDC identity provider against the test IdP', { timeout: 60_000 }, () => {
  let idp: TestIdp

  before(async () => {
    idp = await startTestIdp({
      clients: [
        {
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          redirectUris: [REDIRECT],
          postLogoutRedirectUris: [POST_LOGOUT],
        },
      ],
      users: {
        'alice@example.com': { password: 'pw', name: 'Alice', groups: ['admins', 'staff'], claims: { department: 'eng' } },
        'bob@example.com': { groups: ['staff'] },
      },
    })
  })

  after(async () => {
    await idp.close()
    assert.deepEqual(idp.serverErrors, [])
  })

  void it('discovers lazily, once, and sees S256 PKCE support', async () => {
    const { fetch, urls } = testFetch()
    const provider = makeProvider(idp, { fetch })
    assert.equal(provider.id, 'test-idp')
    assert.equal(urls.length, 0, 'no request before first use')
    assert.equal(await provider.needsPkce(), true)
    await provider.needsPkce()
    await provider.authorizationUrl({ redirectUri: REDIRECT, state: 's', nonce: 'n', codeVerifier: randomCodeVerifier() })
    assert.deepEqual(urls, [`${idp.issuer}/.well-known/openid-configuration`])
  })

  void it('builds an authorization URL with each protocol parameter exactly once, S256 challenge', async () => {
    const provider = makeProvider(idp, {
      requestParams: {
        scope: 'openid admin',
        state: 'attacker-state',
        redirect_uri: 'https://evil.example/cb',
        nonce: 'fixed',
        code_challenge_method: 'plain',
        prompt: 'login',
      },
    })
    const verifier = randomCodeVerifier()
    const url = await provider.authorizationUrl({
      redirectUri: REDIRECT,
      state: 'state-1',
      nonce: 'nonce-1',
      codeVerifier: verifier,
      extraParams: { scope: 'openid admin', state: 'x', redirect_uri: 'https://evil.example/cb', login_hint: 'alice@example.com' },
    })
    assert.ok(url.href.startsWith(`${idp.issuer}/`))
    const expected: Record<string, string> = {
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT,
      scope: 'openid profile email offline_access',
      state: 'state-1',
      nonce: 'nonce-1',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      prompt: 'login',
      login_hint: 'alice@example.com',
    }
    for (const [name, value] of Object.entries(expected)) {
      assert.deepEqual(url.searchParams.getAll(name), [value], name)
    }
    assert.deepEqual([...new Set(url.searchParams.keys())].sort(), Object.keys(expected).sort())

    await assert.rejects(provider.authorizationUrl({ redirectUri: REDIRECT, state: 's', nonce: 'n' }), TypeError)
  })

  void it('runs the code flow: validated tokens, merged claims, expiry', async () => {
    const before = Date.now()
    const tokens = await signIn(makeProvider(idp), 'alice@example.com')
    assert.ok(tokens.accessToken)
    assert.ok(tokens.refreshToken, 'offline_access yields a refresh token')
    assert.ok(tokens.idToken)
    assert.ok(tokens.expiresAt > before && tokens.expiresAt < before + 24 * 3600_000, String(tokens.expiresAt))
    assert.ok(tokens.idTokenExpiresAt !== undefined && tokens.idTokenExpiresAt > before)
    assert.equal(tokens.claims.sub, subFor('alice@example.com'))
    assert.equal(tokens.claims.email, 'alice@example.com')
    assert.equal(tokens.claims.name, 'Alice')
    assert.deepEqual(tokens.claims.groups, ['admins', 'staff'])
    assert.equal(tokens.claims.department, 'eng')
    assert.equal(tokens.claims.iss, idp.issuer)
    assert.equal(tokens.claims.aud, CLIENT_ID)
  })

  void it('refuses a state mismatch before spending the code, then still redeems with the right state', async () => {
    const provider = makeProvider(idp)
    const flow = await startFlow(provider, 'bob@example.com')
    await assert.rejects(redeemFlow(provider, { ...flow, state: oidc.randomState() }), idpError('ERR_IDP_STATE_MISMATCH'))
    const noState = new URL(flow.callbackUrl)
    noState.searchParams.delete('state')
    await assert.rejects(redeemFlow(provider, { ...flow, callbackUrl: noState }), idpError('ERR_IDP_STATE_MISMATCH'))
    const tokens = await redeemFlow(provider, flow)
    assert.equal(tokens.claims.email, 'bob@example.com')
  })

  void it('refuses a nonce mismatch', async () => {
    const provider = makeProvider(idp)
    const flow = await startFlow(provider, 'bob@example.com')
    await assert.rejects(redeemFlow(provider, { ...flow, nonce: randomNonce() }), idpError('ERR_IDP_NONCE_MISMATCH'))
  })

  void it('refuses a replayed code', async () => {
    const provider = makeProvider(idp)
    const flow = await startFlow(provider, 'bob@example.com')
    await redeemFlow(provider, flow)
    await assert.rejects(
      redeemFlow(provider, flow),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.equal(err.oauthError, 'invalid_grant')),
    )
  })

  void it('refuses a wrong PKCE verifier', async () => {
    const provider = makeProvider(idp)
    const flow = await startFlow(provider, 'bob@example.com')
    await assert.rejects(
      redeemFlow(provider, { ...flow, verifier: randomCodeVerifier() }),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.equal(err.oauthError, 'invalid_grant')),
    )
  })

  void it('reports error=access_denied callbacks as ERR_IDP_ACCESS_DENIED', async () => {
    const provider = makeProvider(idp)
    const meta = (await (await fetch(idp.discoveryUrl)).json()) as Record<string, unknown>
    const callbackUrl = new URL(REDIRECT)
    callbackUrl.searchParams.set('error', 'access_denied')
    callbackUrl.searchParams.set('error_description', 'user said no')
    callbackUrl.searchParams.set('state', 'st')
    if (meta.authorization_response_iss_parameter_supported === true) callbackUrl.searchParams.set('iss', idp.issuer)
    await assert.rejects(
      provider.redeem({ callbackUrl, redirectUri: REDIRECT, expectedState: 'st', expectedNonce: 'n' }),
      idpError('ERR_IDP_ACCESS_DENIED', (err) => assert.equal(err.oauthErrorDescription, 'user said no')),
    )
  })

  void it('refreshes: new tokens and claims re-read after a group change at the provider', async () => {
    idp.setUser('dan@example.com', { groups: ['admins', 'staff'] })
    const provider = makeProvider(idp)
    const tokens = await signIn(provider, 'dan@example.com')
    assert.ok(tokens.refreshToken)
    idp.removeGroup('dan@example.com', 'admins')
    const refreshed = await provider.refresh(tokens.refreshToken, { previousClaims: tokens.claims })
    assert.notEqual(refreshed.accessToken, tokens.accessToken)
    assert.ok(refreshed.refreshToken)
    assert.notEqual(refreshed.refreshToken, tokens.refreshToken, 'the fixture rotates refresh tokens')
    assert.equal(refreshed.claims.sub, tokens.claims.sub)
    assert.deepEqual(refreshed.claims.groups, ['staff'])
    const info = await provider.userInfo(refreshed.accessToken, tokens.claims.sub)
    assert.deepEqual(info.groups, ['staff'])
    await assert.rejects(provider.userInfo(refreshed.accessToken, 'someone-else'), idpError('ERR_IDP_USERINFO_FAILED'))
    // Without an expected subject from previous claims, refresh still works (subject from the new ID token).
    assert.ok(refreshed.refreshToken)
    const again = await provider.refresh(refreshed.refreshToken)
    assert.equal(again.claims.sub, tokens.claims.sub)
  })

  void it("a removed user's refresh fails permanently; a network outage fails transiently", async () => {
    idp.setUser('carol@example.com', { groups: ['temps'] })
    const { fetch, down } = testFetch()
    const provider = makeProvider(idp, { fetch })
    const tokens = await signIn(provider, 'carol@example.com')
    assert.ok(tokens.refreshToken)
    down.value = true
    await assert.rejects(
      provider.refresh(tokens.refreshToken),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => assert.equal(err.permanent, false)),
    )
    down.value = false
    idp.removeUser('carol@example.com')
    await assert.rejects(
      provider.refresh(tokens.refreshToken),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => {
        assert.equal(err.permanent, true)
        assert.equal(err.oauthError, 'invalid_grant')
      }),
    )
  })

  void it('revokes a refresh token at the provider', async () => {
    const provider = makeProvider(idp)
    const tokens = await signIn(provider, 'bob@example.com')
    assert.ok(tokens.refreshToken)
    await provider.revoke(tokens.refreshToken, 'refresh_token')
    await assert.rejects(
      provider.refresh(tokens.refreshToken),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => assert.equal(err.permanent, true)),
    )
    await assert.rejects(provider.userInfo(tokens.accessToken, tokens.claims.sub), idpError('ERR_IDP_USERINFO_FAILED'))
  })

  void it('builds the end-session URL, which the provider honours', async () => {
    const provider = makeProvider(idp)
    const flow = await startFlow(provider, 'alice@example.com')
    const tokens = await redeemFlow(provider, flow)
    assert.ok(tokens.idToken)
    const url = await provider.endSessionUrl({ idTokenHint: tokens.idToken, postLogoutRedirectUri: POST_LOGOUT })
    assert.ok(url)
    assert.ok(url.href.startsWith(`${idp.issuer}/`))
    assert.deepEqual(url.searchParams.getAll('id_token_hint'), [tokens.idToken])
    assert.deepEqual(url.searchParams.getAll('post_logout_redirect_uri'), [POST_LOGOUT])
    assert.deepEqual(url.searchParams.getAll('client_id'), [CLIENT_ID])
    const result = await loginWithForm(url.href, '', '', {
      jar: flow.jar,
      stopAt: (u) => u.href.startsWith(POST_LOGOUT),
    })
    assert.ok(result.location.startsWith(POST_LOGOUT), result.location)
  })

  void it('without PKCE, revocation or end_session in discovery: no challenge, no-op revoke, no logout URL', async () => {
    const { fetch, urls } = testFetch((doc) => {
      delete doc.code_challenge_methods_supported
      delete doc.revocation_endpoint
      delete doc.end_session_endpoint
    })
    const provider = makeProvider(idp, {
      fetch,
      // Never sent, even when the module itself sets none of them.
      requestParams: { code_challenge_method: 'plain', code_challenge: 'c', request_uri: 'urn:evil' },
    })
    assert.equal(await provider.needsPkce(), false)
    const url = await provider.authorizationUrl({
      redirectUri: REDIRECT,
      state: 's',
      nonce: 'n',
      codeVerifier: randomCodeVerifier(),
    })
    assert.equal(url.searchParams.has('code_challenge'), false)
    assert.equal(url.searchParams.has('code_challenge_method'), false)
    assert.equal(url.searchParams.has('request_uri'), false)
    assert.deepEqual(url.searchParams.getAll('response_type'), ['code'])
    const requests = urls.length
    await provider.revoke('some-token')
    assert.equal(urls.length, requests, 'no request without a revocation endpoint')
    assert.equal(await provider.endSessionUrl({ idTokenHint: 'x', postLogoutRedirectUri: POST_LOGOUT }), undefined)
  })

  void it('gives ERR_IDP_DISCOVERY_FAILED when the issuer is down, and retries discovery later', async () => {
    const port = await closedPort()
    const down = createOidcProvider({
      id: 'down',
      issuerUrl: `http://127.0.0.1:${port}`,
      clientId: CLIENT_ID,
      allowInsecureRequests: true,
      timeoutSeconds: 5,
    })
    await assert.rejects(down.needsPkce(), idpError('ERR_IDP_DISCOVERY_FAILED'))
    await assert.rejects(
      down.authorizationUrl({ redirectUri: REDIRECT, state: 's', nonce: 'n' }),
      idpError('ERR_IDP_DISCOVERY_FAILED'),
    )
    await assert.rejects(
      down.refresh('rt'),
      idpError('ERR_IDP_REFRESH_FAILED', (err) => assert.equal(err.permanent, false)),
    )

    const flaky = testFetch()
    flaky.down.value = true
    const provider = makeProvider(idp, { fetch: flaky.fetch })
    await assert.rejects(provider.needsPkce(), idpError('ERR_IDP_DISCOVERY_FAILED'))
    flaky.down.value = false
    assert.equal(await provider.needsPkce(), true)
    assert.equal(await provider.needsPkce(), true)
    assert.equal(flaky.urls.length, 2, 'one failed discovery, one good one, then cached')
  })

  void it('refuses HTTP issuers unless allowInsecureRequests is set', async () => {
    const provider = makeProvider(idp, { allowInsecureRequests: false })
    await assert.rejects(provider.needsPkce(), idpError('ERR_IDP_DISCOVERY_FAILED'))
  })
})

void describe('OIDC identity provider: claims only in UserInfo', { timeout: 60_000 }, () => {
  void it('merges UserInfo claims into the ID token claims', async () => {
    const idp = await startTestIdp({
      conformIdTokenClaims: true,
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT] }],
      users: { 'erin@example.com': { groups: ['ops'] } },
    })
    try {
      const tokens = await signIn(makeProvider(idp), 'erin@example.com')
      assert.equal(tokens.claims.sub, subFor('erin@example.com'))
      assert.equal(tokens.claims.email, 'erin@example.com')
      assert.deepEqual(tokens.claims.groups, ['ops'])
      assert.equal(tokens.claims.iss, idp.issuer)
    } finally {
      await idp.close()
    }
  })
})

void describe('mergeClaims', () => {
  void it('lets UserInfo win except for sub, which must match', () => {
    const merged = mergeClaims({ sub: 'u1', email: 'old@x', iss: 'i' }, { sub: 'u1', email: 'new@x', groups: ['g'] })
    assert.deepEqual(merged, { sub: 'u1', email: 'new@x', iss: 'i', groups: ['g'] })
    assert.deepEqual(mergeClaims({ sub: 'u1', a: 1 }, undefined), { sub: 'u1', a: 1 })
    assert.throws(() => mergeClaims({ sub: 'u1' }, { sub: 'u2', email: 'e' }), /subject/)
  })
})
