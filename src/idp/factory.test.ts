/**
 * The identity-provider factory: settings validation, provider ids, the loopback-only plain-HTTP
 * rule, and every named provider's differences (authorization parameters, scopes, logout URLs,
 * user id claim, form_post callback, Azure's multi-tenant issuer, Apple's client authentication,
 * Cognito's revocation endpoint). Hosted providers are served in-process by a fetch that plays
 * their discovery, token, JWKS and UserInfo endpoints (with real signed ID tokens); the generic
 * provider runs against the real OpenID provider of test/fixtures/oidc-provider.ts.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import { SignJWT, exportJWK, generateKeyPair } from 'jose'
import type { CryptoKey as JoseKey } from 'jose'
import * as oidc from 'openid-client'

import { loginWithForm, startTestIdp, subFor } from '../../test/fixtures/oidc-provider.js'
import type { TestIdp } from '../../test/fixtures/oidc-provider.js'
import { effectiveProviderSettings, PROVIDER_NAMES, providerIdFor, validateProviderSettings } from '../config/providers.js'
import type { ProviderKind, ProviderSettings } from '../config/providers.js'
import { createIdentityProvider } from './factory.js'
import { randomCodeVerifier, randomNonce } from './oidc.js'
import type { IdpFetch } from './oidc.js'
import { IdentityProviderError } from './provider.js'
import type { IdentityProvider, IdentityProviderErrorCode } from './provider.js'
import { guardedFetch } from './transport.js'
import { isLoopbackHost } from '../shared/loopback.js'

const REDIRECT = 'https://authn.example.com/oauth2/callback'
const POST_LOGOUT = 'https://authn.example.com/.pomerium/signed_out?x=1'
const CLIENT_ID = 'portcullis-client'
const CLIENT_SECRET = 'portcullis-secret'

function idpError(code: IdentityProviderErrorCode, check?: (err: IdentityProviderError) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof IdentityProviderError, String(err))
    assert.equal(err.code, code, err.message)
    check?.(err)
    return true
  }
}

// ---------------------------------------------------------------------------------------------
// Hosted providers, played in-process.

interface SeenRequest {
  url: string
  method: string
  headers: Record<string, string>
  body: string
}

type Handler = (request: SeenRequest) => Response | Promise<Response>

/** A fetch serving fixed routes (URL without query → handler); anything else is a network error. */
class FakeInternet {
  readonly routes = new Map<string, Handler>()
  readonly seen: SeenRequest[] = []

  readonly fetch: IdpFetch = async (url, init) => {
    // openid-client sends URLSearchParams bodies; GitHub-style callers send strings.
    const body = init.body instanceof URLSearchParams || typeof init.body === 'string' ? init.body.toString() : ''
    const request: SeenRequest = { url, method: init.method, headers: { ...init.headers }, body }
    this.seen.push(request)
    const u = new URL(url)
    const handler = this.routes.get(`${u.origin}${u.pathname}`)
    if (!handler) throw new TypeError(`fetch failed: no route for ${url}`)
    return handler(request)
  }

  /** Discovery at `<discoveryBase>/.well-known/openid-configuration` answering `doc`. */
  discovery(discoveryBase: string, doc: Record<string, unknown>): void {
    const base = discoveryBase.replace(/\/$/, '')
    this.routes.set(`${base}/.well-known/openid-configuration`, () => Response.json(doc))
  }

  requestsTo(prefix: string): SeenRequest[] {
    return this.seen.filter((r) => r.url.startsWith(prefix))
  }
}

const KEY_ID = 'test-key'
let privateKey: JoseKey
let jwks: { keys: Record<string, unknown>[] }

before(async () => {
  const pair = await generateKeyPair('RS256')
  privateKey = pair.privateKey
  jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: KEY_ID, alg: 'RS256', use: 'sig' }] }
})

function signIdToken(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: KEY_ID })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey)
}

interface OpEndpoints {
  authorization: string
  token: string
  jwks: string
  userinfo?: string
  endSession?: string
  revocation?: string
}

function opDocument(issuer: string, e: OpEndpoints, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    issuer,
    authorization_endpoint: e.authorization,
    token_endpoint: e.token,
    jwks_uri: e.jwks,
    ...(e.userinfo ? { userinfo_endpoint: e.userinfo } : {}),
    ...(e.endSession ? { end_session_endpoint: e.endSession } : {}),
    ...(e.revocation ? { revocation_endpoint: e.revocation } : {}),
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    ...extra,
  }
}

/** Token endpoint answering an ID token made from the request by `claims`, plus JWKS. */
function serveTokens(net: FakeInternet, e: OpEndpoints, claims: (request: SeenRequest) => Record<string, unknown>): void {
  net.routes.set(e.jwks, () => Response.json(jwks))
  net.routes.set(e.token, async (request) =>
    Response.json({
      access_token: `at-${Math.random().toString(36).slice(2)}`,
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: 'rt-1',
      id_token: await signIdToken(claims(request)),
    }),
  )
}

function settingsFor(provider: ProviderKind, extra: Partial<ProviderSettings> = {}): ProviderSettings {
  const base = { provider, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...extra }
  return { id: providerIdFor(base), ...base }
}

async function authUrl(provider: IdentityProvider): Promise<URL> {
  return provider.authorizationUrl({ redirectUri: REDIRECT, state: 'st', nonce: 'nn', codeVerifier: randomCodeVerifier() })
}

function params(url: URL): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of new Set(url.searchParams.keys())) {
    const values = url.searchParams.getAll(name)
    assert.equal(values.length, 1, `${name} appears once`)
    out[name] = values[0] ?? ''
  }
  return out
}

// Known shapes of the hosted providers' discovery documents (endpoints as they publish them).
const GOOGLE: OpEndpoints = {
  authorization: 'https://accounts.google.com/o/oauth2/v2/auth',
  token: 'https://oauth2.googleapis.com/token',
  jwks: 'https://www.googleapis.com/oauth2/v3/certs',
  userinfo: 'https://openidconnect.googleapis.com/v1/userinfo',
  revocation: 'https://oauth2.googleapis.com/revoke',
}
const AZURE_COMMON: OpEndpoints = {
  authorization: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
  token: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
  jwks: 'https://login.microsoftonline.com/common/discovery/v2.0/keys',
  userinfo: 'https://graph.microsoft.com/oidc/userinfo',
  endSession: 'https://login.microsoftonline.com/common/oauth2/v2.0/logout',
}
const APPLE: OpEndpoints = {
  authorization: 'https://appleid.apple.com/auth/authorize',
  token: 'https://appleid.apple.com/auth/token',
  jwks: 'https://appleid.apple.com/auth/keys',
  revocation: 'https://appleid.apple.com/auth/revoke',
}
const COGNITO_ISSUER = 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc123'
const COGNITO: OpEndpoints = {
  authorization: 'https://acme.auth.us-east-1.amazoncognito.com/oauth2/authorize',
  token: 'https://acme.auth.us-east-1.amazoncognito.com/oauth2/token',
  jwks: `${COGNITO_ISSUER}/.well-known/jwks.json`,
  userinfo: 'https://acme.auth.us-east-1.amazoncognito.com/oauth2/userInfo',
}
const AUTH0: OpEndpoints = {
  authorization: 'https://acme.us.auth0.com/authorize',
  token: 'https://acme.us.auth0.com/oauth/token',
  jwks: 'https://acme.us.auth0.com/.well-known/jwks.json',
  userinfo: 'https://acme.us.auth0.com/userinfo',
  endSession: 'https://acme.us.auth0.com/oidc/logout',
  revocation: 'https://acme.us.auth0.com/oauth/revoke',
}

function hostedInternet(): FakeInternet {
  const net = new FakeInternet()
  net.discovery('https://accounts.google.com', opDocument('https://accounts.google.com', GOOGLE, { code_challenge_methods_supported: ['plain', 'S256'] }))
  net.discovery('https://login.microsoftonline.com/common/v2.0', opDocument('https://login.microsoftonline.com/{tenantid}/v2.0', AZURE_COMMON))
  net.discovery(
    'https://appleid.apple.com',
    opDocument('https://appleid.apple.com', APPLE, {
      response_modes_supported: ['query', 'fragment', 'form_post'],
      token_endpoint_auth_methods_supported: ['client_secret_post'],
    }),
  )
  for (const base of ['https://openid-connect.onelogin.com/oidc', 'https://acme.onelogin.com/oidc/2']) {
    net.discovery(base, opDocument(base, { authorization: `${base}/auth`, token: `${base}/token`, jwks: `${base}/certs` }))
  }
  net.discovery(COGNITO_ISSUER, opDocument(COGNITO_ISSUER, COGNITO))
  net.discovery('https://acme.us.auth0.com/', opDocument('https://acme.us.auth0.com/', AUTH0))
  net.discovery(
    'https://acme.okta.com',
    opDocument('https://acme.okta.com', {
      authorization: 'https://acme.okta.com/oauth2/v1/authorize',
      token: 'https://acme.okta.com/oauth2/v1/token',
      jwks: 'https://acme.okta.com/oauth2/v1/keys',
      endSession: 'https://acme.okta.com/oauth2/v1/logout',
    }, { code_challenge_methods_supported: ['S256'] }),
  )
  const ping = 'https://auth.pingone.com/0a7af83d-4ed9-4d46-9c7a-7b2d1e5f8a41/as'
  net.discovery(ping, opDocument(ping, { authorization: `${ping}/authorize`, token: `${ping}/token`, jwks: `${ping}/jwks`, endSession: `${ping}/signoff` }))
  net.discovery('https://gitlab.com', opDocument('https://gitlab.com', {
    authorization: 'https://gitlab.com/oauth/authorize',
    token: 'https://gitlab.com/oauth/token',
    jwks: 'https://gitlab.com/oauth/discovery/keys',
    userinfo: 'https://gitlab.com/oauth/userinfo',
  }, { code_challenge_methods_supported: ['plain', 'S256'] }))
  return net
}

// ---------------------------------------------------------------------------------------------

void describe('provider settings: validation, ids, effective values', () => {
  void it('accepts the minimal settings of every provider', () => {
    const urls: Partial<Record<ProviderKind, string>> = {
      oidc: 'https://idp.example.com',
      okta: 'https://acme.okta.com',
      ping: 'https://auth.pingone.com/env/as',
      auth0: 'https://acme.us.auth0.com',
      cognito: COGNITO_ISSUER,
      builtin: 'http://127.0.0.1:5556',
    }
    for (const provider of [...PROVIDER_NAMES, 'builtin'] as const) {
      const url = urls[provider]
      assert.deepEqual(validateProviderSettings(settingsFor(provider, url ? { url } : {})), [], provider)
    }
  })

  void it('reports every problem, naming the config keys', () => {
    for (const provider of ['oidc', 'okta', 'ping', 'auth0', 'cognito', 'builtin'] as const) {
      assert.deepEqual(validateProviderSettings(settingsFor(provider)), [`idp_provider_url is required for idp_provider ${provider}`])
    }
    assert.deepEqual(validateProviderSettings(settingsFor('google', { clientId: '' })), ['idp_client_id is required for idp_provider google'])
    assert.deepEqual(validateProviderSettings({ provider: 'hosted', clientId: 'x' }), [
      'idp_provider: "hosted" is not supported (one of oidc, google, azure, okta, onelogin, ping, auth0, cognito, gitlab, apple, github, builtin)',
    ])
    assert.deepEqual(validateProviderSettings(settingsFor('github', { clientSecret: undefined })), ['idp_client_secret is required for idp_provider github'])
    assert.deepEqual(validateProviderSettings(settingsFor('apple', { clientSecret: '' })), ['idp_client_secret is required for idp_provider apple'])
    assert.deepEqual(validateProviderSettings(settingsFor('oidc', { url: 'https://idp.example.com', clientSecret: undefined })), [], 'public client')
    assert.deepEqual(validateProviderSettings(settingsFor('oidc', { url: 'not a url' })), ['idp_provider_url: "not a url" is not a URL'])
    assert.deepEqual(validateProviderSettings(settingsFor('oidc', { url: 'ftp://idp.example.com' })), [
      'idp_provider_url: "ftp://idp.example.com" must be an https URL',
    ])
    assert.deepEqual(validateProviderSettings(settingsFor('oidc', { url: 'https://idp.example.com/?x=1' })), [
      'idp_provider_url: "https://idp.example.com/?x=1" must not have a query or fragment',
    ])
    assert.deepEqual(validateProviderSettings(settingsFor('github', { url: 'https://ghe.example.com/github' })), [
      "idp_provider_url: for github, the GitHub Enterprise server's root URL (https://ghe.example.com), without a path",
    ])
    assert.deepEqual(validateProviderSettings(settingsFor('azure', { url: 'https://login.microsoftonline.us/organizations/v2.0' })), [
      'idp_provider_url: the multi-tenant "organizations" endpoint is supported only at https://login.microsoftonline.com; use your tenant\'s URL',
    ])
    assert.deepEqual(
      validateProviderSettings(settingsFor('google', { requestParams: { scope: 'openid', redirect_uri: 'x', hd: 'example.com' }, scopes: ['openid email'] })),
      [
        'idp_scopes: "openid email" is not a single scope',
        'idp_request_params: "scope" is set by Portcullis and cannot be configured (use idp_scopes)',
        'idp_request_params: "redirect_uri" is set by Portcullis and cannot be configured',
      ],
    )
    assert.throws(() => createIdentityProvider(settingsFor('okta')), (err: unknown) => {
      assert.ok(err instanceof TypeError)
      assert.match(err.message, /idp_provider_url is required for idp_provider okta/)
      return true
    })
    assert.throws(() => createIdentityProvider({ ...settingsFor('google'), id: '' }), TypeError)
  })

  void it('accepts a plain-HTTP provider URL on any host, as Pomerium does (config loading warns off loopback)', () => {
    for (const url of ['http://idp.example.com', 'http://10.0.0.1:8080', 'http://keycloak:8080/realms/pomerium']) {
      assert.deepEqual(validateProviderSettings(settingsFor('oidc', { url })), [], url)
    }
    for (const url of ['ftp://idp.example.com', 'http://u:p@idp.example.com', 'http://idp.example.com/?q=1']) {
      assert.equal(validateProviderSettings(settingsFor('oidc', { url })).length, 1, url)
    }
    for (const url of ['http://127.0.0.1:8080', 'http://127.1.2.3', 'http://localhost:5556', 'http://[::1]:5556', 'http://LOCALHOST:5556']) {
      assert.deepEqual(validateProviderSettings(settingsFor('oidc', { url })), [], url)
    }
    assert.equal(isLoopbackHost(new URL('http://2130706433/').hostname), true, '127.0.0.1 as an integer')
    assert.equal(isLoopbackHost(new URL('http://127.0.0.1.example.com/').hostname), false)
  })

  void it('refuses plain HTTP to localhost. (trailing dot) unless it is the configured origin: resolvers may ask DNS for it', async () => {
    let sent = 0
    const inner: IdpFetch = () => {
      sent++
      return Promise.resolve(new Response('{}'))
    }
    const post = { method: 'POST', headers: {}, body: undefined, redirect: 'manual' } as const
    await assert.rejects(guardedFetch(inner)('http://localhost./token', post), /refusing a plain-HTTP request to localhost\./)
    await assert.rejects(guardedFetch(inner, 'http://127.0.0.1:9')('http://localhost.:9/token', post), TypeError)
    assert.equal(sent, 0)
    await guardedFetch(inner)('http://localhost:9/token', post)
    await guardedFetch(inner, 'http://localhost.:9')('http://localhost.:9/token', post)
    assert.equal(sent, 2)
  })

  void it('derives a stable id from provider, URL and client id, never from the secret', () => {
    const a = providerIdFor({ provider: 'oidc', url: 'https://idp.example.com', clientId: 'c' })
    assert.match(a, /^[A-Za-z0-9_-]{22}$/)
    assert.equal(providerIdFor({ provider: 'oidc', url: 'https://idp.example.com', clientId: 'c' }), a)
    const withSecret = { provider: 'oidc', url: 'https://idp.example.com', clientId: 'c', clientSecret: 'hunter2' }
    assert.equal(providerIdFor(withSecret), a, 'rotating the secret keeps sessions')
    assert.notEqual(providerIdFor({ provider: 'okta', url: 'https://idp.example.com', clientId: 'c' }), a)
    assert.notEqual(providerIdFor({ provider: 'oidc', url: 'https://idp2.example.com', clientId: 'c' }), a)
    assert.notEqual(providerIdFor({ provider: 'oidc', url: 'https://idp.example.com', clientId: 'd' }), a)
    assert.notEqual(providerIdFor({ provider: 'google', clientId: 'c' }), providerIdFor({ provider: 'gitlab', clientId: 'c' }))
  })

  void it('applies defaults: URLs, trailing slashes, OneLogin scopes, request parameters replaced (merged for Apple)', () => {
    const eff = (provider: ProviderKind, extra: Partial<ProviderSettings> = {}) => effectiveProviderSettings(settingsFor(provider, extra))
    assert.equal(eff('google').url, 'https://accounts.google.com')
    assert.equal(eff('google', { url: 'https://accounts.google.com/' }).url, 'https://accounts.google.com')
    assert.equal(eff('auth0', { url: 'https://acme.us.auth0.com' }).url, 'https://acme.us.auth0.com/')
    assert.equal(eff('auth0', { url: 'https://acme.us.auth0.com/' }).url, 'https://acme.us.auth0.com/')
    assert.equal(eff('cognito', { url: `${COGNITO_ISSUER}/` }).url, COGNITO_ISSUER)
    assert.equal(eff('azure').url, 'https://login.microsoftonline.com/common/v2.0')
    assert.equal(eff('github').url, 'https://github.com')
    assert.deepEqual(eff('onelogin').scopes, ['openid', 'profile', 'email', 'groups', 'offline_access'])
    assert.deepEqual(eff('onelogin', { url: 'https://acme.onelogin.com/oidc/2' }).scopes, ['openid', 'profile', 'email', 'groups'])
    assert.deepEqual(eff('okta', { url: 'https://acme.okta.com', scopes: ['openid', 'groups'] }).scopes, ['openid', 'groups'])
    assert.deepEqual(eff('google', { requestParams: { hd: 'example.com' } }).requestParams, { hd: 'example.com' })
    assert.deepEqual(eff('google', { requestParams: {} }).requestParams, { prompt: 'select_account consent', access_type: 'offline' })
    assert.deepEqual(eff('apple', { requestParams: { locale: 'fr_FR' } }).requestParams, { response_mode: 'form_post', locale: 'fr_FR' })
  })
})

void describe('named providers through the factory', { timeout: 30_000 }, () => {
  void it('google: prompt and access_type, openid profile email, S256, no provider logout', async () => {
    const net = hostedInternet()
    const google = createIdentityProvider(settingsFor('google'), { fetch: net.fetch })
    assert.equal(google.providerName, 'google')
    assert.equal(google.protocol, 'oidc')
    assert.equal(google.callbackMethod, 'GET')
    assert.equal(google.refreshWith, 'refresh_token')
    const url = await authUrl(google)
    assert.equal(`${url.origin}${url.pathname}`, GOOGLE.authorization)
    const p = params(url)
    assert.equal(p.prompt, 'select_account consent')
    assert.equal(p.access_type, 'offline')
    assert.equal(p.scope, 'openid profile email')
    assert.equal(p.code_challenge_method, 'S256')
    assert.equal(p.client_id, CLIENT_ID)
    assert.equal(await google.endSessionUrl({ postLogoutRedirectUri: POST_LOGOUT }), undefined)
    assert.equal(google.userIdOf({ sub: '1234567890' }), '1234567890')

    const hd = createIdentityProvider(settingsFor('google', { requestParams: { hd: 'example.com' } }), { fetch: net.fetch })
    const q = params(await authUrl(hd))
    assert.equal(q.hd, 'example.com')
    assert.equal(q.prompt, undefined, 'configured idp_request_params replace the defaults, as in Pomerium')
  })

  void it('azure: select_account prompt, default scopes, user id from oid, logout via end_session_endpoint', async () => {
    const net = hostedInternet()
    const azure = createIdentityProvider(settingsFor('azure'), { fetch: net.fetch })
    const p = params(await authUrl(azure))
    assert.equal(p.prompt, 'select_account')
    assert.equal(p.scope, 'openid profile email offline_access')
    assert.equal(p.code_challenge, undefined, 'no PKCE unless discovery lists S256')
    assert.equal(azure.userIdOf({ sub: 'pairwise', oid: '00000000-0000-0000-66f3-3332eca7ea81' }), '00000000-0000-0000-66f3-3332eca7ea81')
    assert.throws(() => azure.userIdOf({ sub: 'pairwise' }), (err: unknown) => err instanceof IdentityProviderError)
    const logout = await azure.endSessionUrl({ idTokenHint: 'idt', postLogoutRedirectUri: POST_LOGOUT })
    assert.equal(logout?.origin + (logout?.pathname ?? ''), AZURE_COMMON.endSession)
  })

  void it('azure multi-tenant: ID token issuer must be the template filled with the token\'s tid', async () => {
    const net = hostedInternet()
    const tenant = '72f988bf-86f1-41af-91ab-2d7cd011db47'
    let issuerTenant = tenant
    let nonce = ''
    serveTokens(net, AZURE_COMMON, () => ({
      iss: `https://login.microsoftonline.com/${issuerTenant}/v2.0`,
      aud: CLIENT_ID,
      sub: 'pairwise-sub',
      oid: 'f5b5c7a2-1111-4444-8888-0123456789ab',
      tid: tenant,
      nonce,
      email: 'ada@contoso.com',
    }))
    net.routes.set(AZURE_COMMON.userinfo ?? '', () => Response.json({ sub: 'pairwise-sub', name: 'Ada' }))
    const azure = createIdentityProvider(settingsFor('azure'), { fetch: net.fetch })
    const signIn = () => {
      nonce = randomNonce()
      const callbackUrl = new URL(`${REDIRECT}?code=c0de&state=st`)
      return azure.redeem({ callbackUrl, redirectUri: REDIRECT, expectedState: 'st', expectedNonce: nonce })
    }
    const tokens = await signIn()
    assert.equal(tokens.claims.iss, `https://login.microsoftonline.com/${tenant}/v2.0`)
    assert.equal(tokens.claims.name, 'Ada')
    assert.equal(azure.userIdOf(tokens.claims), 'f5b5c7a2-1111-4444-8888-0123456789ab')

    issuerTenant = '11111111-2222-3333-4444-555555555555' // iss of another tenant than tid claims
    await assert.rejects(signIn(), idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.match(err.message, /iss/)))
  })

  void it('apple: form_post callback, name email scopes as %20, client_secret_post as given, no logout', async () => {
    const net = hostedInternet()
    let nonce = ''
    serveTokens(net, APPLE, () => ({
      iss: 'https://appleid.apple.com',
      aud: CLIENT_ID,
      sub: '001234.0a1b2c3d4e5f.0123',
      email: 'x7@privaterelay.appleid.com',
      email_verified: 'true',
      nonce,
    }))
    net.routes.set(APPLE.revocation ?? '', () => new Response(null, { status: 200 }))
    const apple = createIdentityProvider(settingsFor('apple', { clientSecret: 'eyJhbGciOiJFUzI1NiJ9.signed.jwt' }), { fetch: net.fetch })
    assert.equal(apple.callbackMethod, 'POST')
    assert.equal(apple.formPostCallback, true)
    const url = await authUrl(apple)
    assert.equal(`${url.origin}${url.pathname}`, APPLE.authorization)
    assert.ok(url.href.includes('scope=name%20email'), url.href)
    assert.ok(!url.href.includes('+'), url.href)
    const p = params(url)
    assert.equal(p.response_mode, 'form_post')
    assert.equal(p.scope, 'name email')
    assert.equal(await apple.endSessionUrl({ postLogoutRedirectUri: POST_LOGOUT }), undefined)

    // The posted form fields, appended to the callback URL.
    nonce = randomNonce()
    const callbackUrl = new URL(REDIRECT)
    callbackUrl.searchParams.set('code', 'c.apple')
    callbackUrl.searchParams.set('state', 'st')
    callbackUrl.searchParams.set('user', JSON.stringify({ name: { firstName: 'Ada', lastName: 'L' }, email: 'x7@privaterelay.appleid.com' }))
    const tokens = await apple.redeem({ callbackUrl, redirectUri: REDIRECT, expectedState: 'st', expectedNonce: nonce })
    assert.equal(apple.userIdOf(tokens.claims), '001234.0a1b2c3d4e5f.0123')
    assert.equal(tokens.claims.email, 'x7@privaterelay.appleid.com')
    const token = net.requestsTo(APPLE.token)[0]
    assert.ok(token)
    const form = new URLSearchParams(token.body)
    assert.equal(form.get('client_id'), CLIENT_ID)
    assert.equal(form.get('client_secret'), 'eyJhbGciOiJFUzI1NiJ9.signed.jwt', 'the configured secret, used as is')
    assert.equal(Object.keys(token.headers).map((h) => h.toLowerCase()).includes('authorization'), false)

    await apple.revoke(tokens.refreshToken ?? '', 'refresh_token')
    const revoke = new URLSearchParams(net.requestsTo(APPLE.revocation ?? '')[0]?.body ?? '')
    assert.equal(revoke.get('client_secret'), 'eyJhbGciOiJFUzI1NiJ9.signed.jwt')
    assert.equal(revoke.get('token_type_hint'), 'refresh_token')
  })

  void it('onelogin: v1 scopes with groups and offline_access; v2 URL without offline_access', async () => {
    const net = hostedInternet()
    const v1 = createIdentityProvider(settingsFor('onelogin'), { fetch: net.fetch })
    assert.equal(params(await authUrl(v1)).scope, 'openid profile email groups offline_access')
    const v2 = createIdentityProvider(settingsFor('onelogin', { url: 'https://acme.onelogin.com/oidc/2/' }), { fetch: net.fetch })
    const url = await authUrl(v2)
    assert.equal(`${url.origin}${url.pathname}`, 'https://acme.onelogin.com/oidc/2/auth')
    assert.equal(params(url).scope, 'openid profile email groups')
  })

  void it('cognito: openid email profile, logout on the hosted-UI domain, revocation at /oauth2/revoke', async () => {
    const net = hostedInternet()
    net.routes.set('https://acme.auth.us-east-1.amazoncognito.com/oauth2/revoke', () => new Response(null, { status: 200 }))
    const cognito = createIdentityProvider(settingsFor('cognito', { url: COGNITO_ISSUER }), { fetch: net.fetch })
    assert.equal(params(await authUrl(cognito)).scope, 'openid email profile')
    const logout = await cognito.endSessionUrl({ idTokenHint: 'idt', postLogoutRedirectUri: POST_LOGOUT })
    assert.equal(
      logout?.href,
      `https://acme.auth.us-east-1.amazoncognito.com/logout?client_id=${CLIENT_ID}&logout_uri=https%3A%2F%2Fauthn.example.com%2F.pomerium%2Fsigned_out%3Fx%3D1`,
    )
    await cognito.revoke('at-1', 'access_token')
    const revoke = net.requestsTo('https://acme.auth.us-east-1.amazoncognito.com/oauth2/revoke')
    assert.equal(revoke.length, 1)
    assert.equal(new URLSearchParams(revoke[0]?.body).get('token'), 'at-1')
  })

  void it('auth0: trailing slash for discovery, /v2/logout?returnTo=&client_id=', async () => {
    const net = hostedInternet()
    const auth0 = createIdentityProvider(settingsFor('auth0', { url: 'https://acme.us.auth0.com' }), { fetch: net.fetch })
    assert.equal(params(await authUrl(auth0)).scope, 'openid profile email offline_access')
    const logout = await auth0.endSessionUrl({ idTokenHint: 'idt', postLogoutRedirectUri: POST_LOGOUT })
    assert.equal(
      logout?.href,
      `https://acme.us.auth0.com/v2/logout?returnTo=https%3A%2F%2Fauthn.example.com%2F.pomerium%2Fsigned_out%3Fx%3D1&client_id=${CLIENT_ID}`,
    )
  })

  void it('okta, ping, gitlab: generic OIDC defaults; RP-initiated logout where discovery has it', async () => {
    const net = hostedInternet()
    const okta = createIdentityProvider(settingsFor('okta', { url: 'https://acme.okta.com' }), { fetch: net.fetch })
    const p = params(await authUrl(okta))
    assert.equal(p.scope, 'openid profile email offline_access')
    assert.equal(p.code_challenge_method, 'S256')
    const logout = await okta.endSessionUrl({ idTokenHint: 'idt', postLogoutRedirectUri: POST_LOGOUT })
    assert.deepEqual(params(logout ?? new URL('about:blank')), { id_token_hint: 'idt', client_id: CLIENT_ID, post_logout_redirect_uri: POST_LOGOUT })
    assert.equal(logout?.origin + (logout?.pathname ?? ''), 'https://acme.okta.com/oauth2/v1/logout')

    const ping = createIdentityProvider(settingsFor('ping', { url: 'https://auth.pingone.com/0a7af83d-4ed9-4d46-9c7a-7b2d1e5f8a41/as' }), { fetch: net.fetch })
    assert.match((await ping.endSessionUrl({ postLogoutRedirectUri: POST_LOGOUT }))?.href ?? '', /\/as\/signoff\?/)

    const gitlab = createIdentityProvider(settingsFor('gitlab'), { fetch: net.fetch })
    const g = params(await authUrl(gitlab))
    assert.equal(g.scope, 'openid profile email')
    assert.equal(await gitlab.endSessionUrl({ postLogoutRedirectUri: POST_LOGOUT }), undefined)
  })

  void it('a plain-HTTP provider URL allows plain HTTP to that origin only', async () => {
    const net = new FakeInternet()
    const issuer = 'http://keycloak.internal:8080/realms/corp'
    const endpoints: OpEndpoints = {
      authorization: `${issuer}/auth`,
      token: 'http://other.internal:8080/token',
      jwks: `${issuer}/jwks`,
    }
    net.discovery(issuer, opDocument(issuer, endpoints))
    serveTokens(net, endpoints, () => ({ iss: issuer, aud: CLIENT_ID, sub: 'u' }))
    const provider = createIdentityProvider(settingsFor('oidc', { url: issuer }), { fetch: net.fetch })
    assert.equal((await authUrl(provider)).origin, 'http://keycloak.internal:8080', 'discovery over plain HTTP to the configured origin')
    await assert.rejects(
      provider.redeem({ callbackUrl: new URL(`${REDIRECT}?code=c&state=st`), redirectUri: REDIRECT, expectedState: 'st', expectedNonce: 'n' }),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.match(err.message, /refusing a plain-HTTP request to other\.internal:8080/)),
    )
    assert.equal(net.requestsTo('http://other.internal:8080').length, 0, 'never sent')
  })

  void it('a loopback provider may not send tokens to a non-loopback plain-HTTP endpoint', async () => {
    const net = new FakeInternet()
    const issuer = 'http://127.0.0.1:5556'
    const endpoints: OpEndpoints = {
      authorization: `${issuer}/auth`,
      token: 'http://idp.example.com/token',
      jwks: `${issuer}/jwks`,
    }
    net.discovery(issuer, opDocument(issuer, endpoints))
    serveTokens(net, endpoints, () => ({ iss: issuer, aud: CLIENT_ID, sub: 'u' }))
    const provider = createIdentityProvider(settingsFor('builtin', { url: issuer }), { fetch: net.fetch })
    assert.equal(provider.providerName, 'builtin')
    assert.equal(`${(await authUrl(provider)).origin}`, issuer, 'plain HTTP to loopback is fine')
    await assert.rejects(
      provider.redeem({ callbackUrl: new URL(`${REDIRECT}?code=c&state=st`), redirectUri: REDIRECT, expectedState: 'st', expectedNonce: 'n' }),
      idpError('ERR_IDP_EXCHANGE_FAILED', (err) => assert.match(err.message, /refusing a plain-HTTP request to idp\.example\.com/)),
    )
    assert.equal(net.requestsTo('http://idp.example.com').length, 0, 'never sent')
  })
})

void describe('generic OIDC and builtin through the factory, against the test IdP', { timeout: 60_000 }, () => {
  let idp: TestIdp

  before(async () => {
    idp = await startTestIdp({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT], postLogoutRedirectUris: [POST_LOGOUT] }],
      users: { 'alice@example.com': { name: 'Alice', groups: ['admins'] } },
    })
  })

  after(async () => {
    await idp.close()
    assert.deepEqual(idp.serverErrors, [])
  })

  for (const kind of ['oidc', 'builtin'] as const) {
    void it(`${kind}: signs in over loopback HTTP, refreshes, and builds the logout URL`, async () => {
      const provider = createIdentityProvider(settingsFor(kind, { url: idp.issuer }))
      assert.equal(provider.providerName, kind)
      const state = oidc.randomState()
      const nonce = randomNonce()
      const verifier = randomCodeVerifier()
      const url = await provider.authorizationUrl({ redirectUri: REDIRECT, state, nonce, codeVerifier: verifier })
      const login = await loginWithForm(url.href, 'alice@example.com', 'pw')
      assert.ok(login.location.startsWith(`${REDIRECT}?`), login.location)
      const tokens = await provider.redeem({ callbackUrl: login.url, redirectUri: REDIRECT, expectedState: state, expectedNonce: nonce, codeVerifier: verifier })
      assert.equal(provider.userIdOf(tokens.claims), subFor('alice@example.com'))
      assert.deepEqual(tokens.claims.groups, ['admins'])
      assert.ok(tokens.refreshToken)
      const refreshed = await provider.refresh(tokens.refreshToken, { previousClaims: tokens.claims })
      assert.equal(refreshed.claims.sub, tokens.claims.sub)
      const logout = await provider.endSessionUrl({ ...(tokens.idToken ? { idTokenHint: tokens.idToken } : {}), postLogoutRedirectUri: POST_LOGOUT })
      assert.ok(logout?.href.startsWith(`${idp.issuer}/`))
    })
  }
})
