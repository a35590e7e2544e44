/**
 * Provider bearer tokens (`idp_identity_token`, `idp_access_token`): genuine ID and access tokens
 * minted by a real OpenID provider (oidc-provider, test fixture) on 127.0.0.1, then forgeries of
 * every kind security-tests 38/39/48 name, each its own test. Claim-level forgeries need a signer
 * the verifier trusts, so a second, tiny loopback issuer serves discovery, a JWKS of keys the test
 * holds, and UserInfo; it also drives key rotation and the JWKS rate limit.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { constants, createHmac, createPublicKey, generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'

import * as oidc from 'openid-client'

import { loginWithForm, startTestIdp, subFor } from '../../test/fixtures/oidc-provider.js'
import type { TestIdp } from '../../test/fixtures/oidc-provider.js'
import type { IdpFetch } from './oidc.js'
import {
  createProviderKeySource,
  createProviderTokenVerifier,
  isJwtAccessToken,
  OPAQUE_ACCESS_TOKEN_TTL_MS,
  ProviderTokenError,
  TokenCache,
} from './provider-tokens.js'
import type { ProviderTokenErrorCode, ProviderTokenVerifierOptions, VerifiedProviderToken } from './provider-tokens.js'

const REDIRECT = 'http://127.0.0.1:9/oauth2/callback' // never requested: loginWithForm stops before it
const CLIENT_ID = 'portcullis'
const CLIENT_SECRET = 'portcullis-secret'
const EMAIL = 'alice@example.com'
const API = 'https://api.example.com'

// ---------------------------------------------------------------------------------------------
// Helpers

function rejectsWith(code: ProviderTokenErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ProviderTokenError, String(err))
    assert.equal(err.code, code, err.message)
    assert.equal(err.transient, code === 'ERR_PROVIDER_UNAVAILABLE')
    return true
  }
}

/** A fetch that records every URL it is asked for. */
function countingFetch(): { fetch: IdpFetch; urls: string[] } {
  const urls: string[] = []
  return {
    urls,
    fetch: (url, init) => {
      urls.push(url)
      return fetch(url, init as RequestInit)
    },
  }
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

interface TestKey {
  kid: string
  alg: string
  privateKey: KeyObject
  publicKey: KeyObject
  /** The public JWK as published (with kid, alg, use). */
  jwk: Record<string, unknown>
}

function makeKey(alg = 'RS256', kid: string = randomUUID()): TestKey {
  const pair =
    alg.startsWith('RS') || alg.startsWith('PS')
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519')
  const jwk = { ...(pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid, alg, use: 'sig' }
  return { kid, alg, privateKey: pair.privateKey, publicKey: pair.publicKey, jwk }
}

/** A compact JWS over exactly these header and payload objects, signed with node:crypto. */
function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject, alg = String(header.alg)): string {
  const input = Buffer.from(`${b64(header)}.${b64(payload)}`)
  let signature: Buffer
  if (alg.startsWith('RS')) signature = cryptoSign(`sha${alg.slice(2)}`, input, key)
  else if (alg.startsWith('PS')) {
    signature = cryptoSign(`sha${alg.slice(2)}`, input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
  } else if (alg === 'ES256') signature = cryptoSign('sha256', input, { key, dsaEncoding: 'ieee-p1363' })
  else signature = cryptoSign(null, input, key)
  return `${input.toString()}.${signature.toString('base64url')}`
}

/** An HMAC-SHA256 JWS whose secret is `secret` (the key-confusion forgery). */
function hmacJws(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index] ?? '', 'base64url').toString()) as Record<string, unknown>
}

function replacePayload(token: string, payload: Record<string, unknown>): string {
  const [header = '', , signature = ''] = token.split('.')
  return `${header}.${b64(payload)}.${signature}`
}

// ---------------------------------------------------------------------------------------------
// A loopback issuer whose keys the test holds

interface UserInfoAnswer {
  status: number
  body?: string
  type?: string
}

interface KeyIssuer {
  issuer: string
  discovery: Record<string, unknown>
  jwks: { keys: Record<string, unknown>[] }
  hits: { discovery: number; jwks: number; userinfo: number; other: number }
  /** Decides UserInfo answers; default: 401. */
  userinfo: (authorization: string | undefined) => UserInfoAnswer
  /** When true the JWKS endpoint answers 503. */
  jwksDown: boolean
  close(): Promise<void>
}

async function startKeyIssuer(): Promise<KeyIssuer> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    }
    if (path === '/.well-known/openid-configuration') {
      state.hits.discovery++
      return json(200, state.discovery)
    }
    if (path === '/jwks') {
      state.hits.jwks++
      return state.jwksDown ? json(503, {}) : json(200, state.jwks)
    }
    if (path === '/userinfo') {
      state.hits.userinfo++
      const answer = state.userinfo(req.headers.authorization)
      res.writeHead(answer.status, { 'content-type': answer.type ?? 'application/json' }).end(answer.body ?? '')
      return
    }
    state.hits.other++
    res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const state: KeyIssuer = {
    issuer,
    discovery: {
      issuer,
      jwks_uri: `${issuer}/jwks`,
      userinfo_endpoint: `${issuer}/userinfo`,
      id_token_signing_alg_values_supported: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256', 'none'],
    },
    jwks: { keys: [] },
    hits: { discovery: 0, jwks: 0, userinfo: 0, other: 0 },
    userinfo: () => ({ status: 401, body: '{"error":"invalid_token"}' }),
    jwksDown: false,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return state
}

// ---------------------------------------------------------------------------------------------
// Against the real provider

void describe('provider tokens from the test IdP (oidc-provider)', { timeout: 60_000 }, () => {
  let idp: TestIdp
  let config: oidc.Configuration
  let idToken: string
  let accessToken: string
  let idClaims: Record<string, unknown>
  let providerJwk: Record<string, unknown>
  /** Counts requests to hosts that must never be contacted (jku, x5u targets). */
  let bait: KeyIssuer

  async function signIn(): Promise<{ idToken: string; accessToken: string }> {
    const verifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid email profile',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    })
    const result = await loginWithForm(url.href, EMAIL, 'pw')
    const tokens = await oidc.authorizationCodeGrant(config, new URL(result.location), {
      pkceCodeVerifier: verifier,
      expectedState: state,
    })
    assert.ok(tokens.id_token)
    return { idToken: tokens.id_token, accessToken: tokens.access_token }
  }

  function verifier(extra: Partial<ProviderTokenVerifierOptions> = {}) {
    const counter = countingFetch()
    const v = createProviderTokenVerifier({ issuerUrl: idp.issuer, clientId: CLIENT_ID, fetch: counter.fetch, ...extra })
    return { v, urls: counter.urls }
  }

  before(async () => {
    idp = await startTestIdp({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT] }],
      users: { [EMAIL]: { name: 'Alice', groups: ['staff'] } },
    })
    config = await oidc.discovery(new URL(idp.issuer), CLIENT_ID, undefined, oidc.ClientSecretBasic(CLIENT_SECRET), {
      execute: [oidc.allowInsecureRequests],
      timeout: 10,
    })
    ;({ idToken, accessToken } = await signIn())
    idClaims = decodePart(idToken, 1)
    const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: Record<string, unknown>[] }
    const first = jwks.keys[0]
    assert.ok(first)
    providerJwk = first
    bait = await startKeyIssuer()
  })

  after(async () => {
    await idp.close()
    await bait.close()
    assert.deepEqual(idp.serverErrors, [])
    assert.equal(bait.hits.other + bait.hits.jwks + bait.hits.discovery, 0, 'a header URL was fetched')
  })

  void it('verifies a genuine ID token: subject, claims, expiry; one discovery and one JWKS read', async () => {
    const { v, urls } = verifier()
    const result = await v.verifyIdentityToken(idToken)
    assert.equal(result.subject, subFor(EMAIL))
    assert.equal(result.claims.sub, subFor(EMAIL))
    assert.equal(result.claims.email, EMAIL)
    assert.deepEqual(result.claims.groups, ['staff'])
    assert.equal(result.expiresAt, (idClaims.exp as number) * 1000)
    assert.deepEqual(urls, [`${idp.issuer}/.well-known/openid-configuration`, `${idp.issuer}/jwks`])
    assert.deepEqual(v.keys.stats, { discoveryFetches: 1, jwksFetches: 1 })
  })

  void it('verifies a genuine opaque access token through UserInfo, valid for five minutes, not cached', async () => {
    const clock = Date.now()
    const { v, urls } = verifier({ now: () => clock })
    assert.equal(isJwtAccessToken(accessToken), false)
    const result = await v.verifyAccessToken(accessToken)
    assert.equal(result.subject, subFor(EMAIL))
    assert.equal(result.claims.email, EMAIL)
    assert.equal(result.expiresAt, clock + OPAQUE_ACCESS_TOKEN_TTL_MS)
    await v.verifyAccessToken(accessToken)
    assert.equal(urls.filter((u) => u.endsWith('/me')).length, 2, `UserInfo asked each time: ${urls.join(' ')}`)
  })

  void it('refuses an opaque access token the provider revoked', async () => {
    const { accessToken: doomed } = await signIn()
    const { v } = verifier()
    await v.verifyAccessToken(doomed)
    await oidc.tokenRevocation(config, doomed, { token_type_hint: 'access_token' })
    await assert.rejects(v.verifyAccessToken(doomed), rejectsWith('ERR_TOKEN_REJECTED'))
  })

  void it('does not take the ID token (typ JWT) for an access token without a matching audience', async () => {
    const { v } = verifier()
    await assert.rejects(v.verifyAccessToken(idToken), rejectsWith('ERR_TOKEN_AUDIENCE_NOT_CONFIGURED'))
    await assert.rejects(v.verifyAccessToken(idToken, [API]), rejectsWith('ERR_TOKEN_AUDIENCE'))
  })

  void it('refuses an ID token issued to another client (wrong aud)', async () => {
    await assert.rejects(verifier({ clientId: 'other-client' }).v.verifyIdentityToken(idToken), rejectsWith('ERR_TOKEN_AUDIENCE'))
    const { v } = verifier()
    await assert.rejects(v.verifyIdentityToken(idToken, ['other-client']), rejectsWith('ERR_TOKEN_AUDIENCE'))
    const ok = await v.verifyIdentityToken(idToken, ['other-client', CLIENT_ID])
    assert.equal(ok.subject, subFor(EMAIL))
  })

  void it('refuses an expired ID token, allowing 60 s of clock skew', async () => {
    const exp = (idClaims.exp as number) * 1000
    const within = verifier({ now: () => exp + 59_000, cache: false }).v
    assert.equal((await within.verifyIdentityToken(idToken)).subject, subFor(EMAIL))
    const past = verifier({ now: () => exp + 60_000, cache: false }).v
    await assert.rejects(past.verifyIdentityToken(idToken), rejectsWith('ERR_TOKEN_EXPIRED'))
  })

  void it('refuses an ID token whose iat is in the future', async () => {
    const iat = (idClaims.iat as number) * 1000
    const { v } = verifier({ now: () => iat - 61_000 })
    await assert.rejects(v.verifyIdentityToken(idToken), rejectsWith('ERR_TOKEN_NOT_YET_VALID'))
  })

  void it('refuses alg none (empty signature), without asking the provider anything', async () => {
    const { v, urls } = verifier()
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(idClaims)}.`
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_ALGORITHM'))
    await assert.rejects(v.verifyAccessToken(token, [CLIENT_ID]), rejectsWith('ERR_TOKEN_ALGORITHM'))
    assert.deepEqual(urls, [])
  })

  void it('refuses alg none spelled otherwise or carrying the genuine signature', async () => {
    const { v, urls } = verifier()
    const signature = idToken.split('.')[2] ?? ''
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const token = `${b64({ alg, kid: providerJwk.kid })}.${b64(idClaims)}.${signature}`
      await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_ALGORITHM'))
    }
    assert.deepEqual(urls, [])
  })

  void it('refuses a token with no alg header (or a non-string one)', async () => {
    const { v, urls } = verifier()
    const signature = idToken.split('.')[2] ?? ''
    const header = decodePart(idToken, 0)
    delete header.alg
    await assert.rejects(v.verifyIdentityToken(`${b64(header)}.${b64(idClaims)}.${signature}`), rejectsWith('ERR_TOKEN_ALGORITHM'))
    for (const alg of [null, 256, ['RS256'], '']) {
      const token = `${b64({ ...header, alg })}.${b64(idClaims)}.${signature}`
      await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_ALGORITHM'))
    }
    assert.deepEqual(urls, [])
  })

  void it('refuses HS256 signed with the provider public key as a PEM (key confusion)', async () => {
    const pem = createPublicKey({ key: providerJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
    const { v, urls } = verifier()
    for (const secret of [pem, String(pem).trim(), createPublicKey({ key: providerJwk as never, format: 'jwk' }).export({ type: 'pkcs1', format: 'pem' })]) {
      const token = hmacJws({ alg: 'HS256', typ: 'JWT', kid: providerJwk.kid }, idClaims, secret)
      await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_ALGORITHM'))
    }
    assert.deepEqual(urls, [])
  })

  void it('refuses HS256 signed with the provider public key as JWK JSON (key confusion)', async () => {
    const { v, urls } = verifier()
    const { kty, n, e } = providerJwk
    for (const secret of [JSON.stringify(providerJwk), JSON.stringify({ kty, n, e }), JSON.stringify({ keys: [providerJwk] })]) {
      for (const alg of ['HS256', 'HS384', 'HS512', 'hs256']) {
        const token = hmacJws({ alg, typ: 'JWT', kid: providerJwk.kid }, idClaims, secret)
        await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_ALGORITHM'))
      }
    }
    // Keeping alg RS256 but MAC-ing with the public key is just a bad signature.
    const pem = createPublicKey({ key: providerJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
    const token = hmacJws({ alg: 'RS256', typ: 'JWT', kid: providerJwk.kid }, idClaims, pem)
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_SIGNATURE'))
    assert.equal(urls.length, 2, 'only discovery and JWKS')
  })

  void it('refuses an unknown kid, refetching the JWKS at most once per 30 s', async () => {
    let clock = Date.now()
    const { v } = verifier({ now: () => clock })
    const attacker = makeKey('RS256', 'attacker-key')
    const token = signJws({ alg: 'RS256', typ: 'JWT', kid: attacker.kid }, idClaims, attacker.privateKey)
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
    assert.equal(v.keys.stats.jwksFetches, 1, 'the first read happened just now: no refetch yet')
    clock += 31_000
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
    assert.equal(v.keys.stats.jwksFetches, 2, 'one refetch after the cooldown')
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
    assert.equal(v.keys.stats.jwksFetches, 2)
  })

  void it('refuses a kid with ../ (and other path or control characters) before any request', async () => {
    const { v, urls } = verifier()
    const attacker = makeKey('RS256')
    for (const kid of ['../../../../dev/null', `${String(providerJwk.kid)}/../x`, '..', 'a\\b', 'a\u0000b', 'k\nid', '', 'x'.repeat(257)]) {
      const token = signJws({ alg: 'RS256', typ: 'JWT', kid }, idClaims, attacker.privateKey)
      await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_HEADER'))
    }
    const numeric = signJws({ alg: 'RS256', kid: 7 }, idClaims, attacker.privateKey)
    await assert.rejects(v.verifyIdentityToken(numeric), rejectsWith('ERR_TOKEN_HEADER'))
    assert.deepEqual(urls, [])
  })

  void it('refuses an embedded jwk header (attacker key inside the token)', async () => {
    const { v, urls } = verifier()
    const attacker = makeKey('RS256')
    const withKid = signJws({ alg: 'RS256', typ: 'JWT', kid: providerJwk.kid, jwk: attacker.jwk }, idClaims, attacker.privateKey)
    const withoutKid = signJws({ alg: 'RS256', jwk: attacker.jwk }, idClaims, attacker.privateKey)
    await assert.rejects(v.verifyIdentityToken(withKid), rejectsWith('ERR_TOKEN_HEADER'))
    await assert.rejects(v.verifyIdentityToken(withoutKid), rejectsWith('ERR_TOKEN_HEADER'))
    assert.deepEqual(urls, [])
  })

  void it('refuses a jku header, and never fetches the URL it names', async () => {
    const { v, urls } = verifier()
    const attacker = makeKey('RS256', 'jku-key')
    bait.jwks.keys = [attacker.jwk]
    const token = signJws({ alg: 'RS256', kid: attacker.kid, jku: `${bait.issuer}/jwks` }, idClaims, attacker.privateKey)
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_HEADER'))
    assert.deepEqual(urls, [])
  })

  void it('refuses x5u and x5c headers', async () => {
    const { v, urls } = verifier()
    const attacker = makeKey('RS256')
    const der = attacker.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
    for (const extra of [{ x5u: `${bait.issuer}/cert.pem` }, { x5c: [der] }]) {
      const token = signJws({ alg: 'RS256', kid: providerJwk.kid, ...extra }, idClaims, attacker.privateKey)
      await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_HEADER'))
    }
    assert.deepEqual(urls, [])
  })

  void it('refuses crit (and b64) headers', async () => {
    const { v } = verifier()
    const attacker = makeKey('RS256')
    for (const extra of [{ crit: ['exp'], exp: 1 }, { crit: ['b64'], b64: false }, { b64: true }]) {
      const token = signJws({ alg: 'RS256', kid: providerJwk.kid, ...extra }, idClaims, attacker.privateKey)
      await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_HEADER'))
    }
  })

  void it('refuses a token signed by a different key that claims the provider kid', async () => {
    const { v } = verifier()
    const impostor = makeKey('RS256', String(providerJwk.kid))
    const token = signJws({ alg: 'RS256', typ: 'JWT', kid: impostor.kid }, idClaims, impostor.privateKey)
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_SIGNATURE'))
  })

  void it('refuses a genuine token whose payload was edited', async () => {
    const { v } = verifier()
    const edited = replacePayload(idToken, { ...idClaims, email: 'admin@example.com', groups: ['admins'] })
    await assert.rejects(v.verifyIdentityToken(edited), rejectsWith('ERR_TOKEN_SIGNATURE'))
  })

  void it('cache: a verified token T1 lends nothing to a different token T2, nor to another audience', async () => {
    const { v, urls } = verifier()
    const first = await v.verifyIdentityToken(idToken)
    const reads = urls.length
    // T2: T1's header and signature over another payload; T3: T1 with one signature byte changed.
    const t2 = replacePayload(idToken, { ...idClaims, sub: 'someone-else', email: 'mallory@example.com' })
    const sig = idToken.split('.')[2] ?? ''
    const flipped = `${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`
    const t3 = `${idToken.split('.').slice(0, 2).join('.')}.${flipped}`
    await assert.rejects(v.verifyIdentityToken(t2), rejectsWith('ERR_TOKEN_SIGNATURE'))
    await assert.rejects(v.verifyIdentityToken(t3), rejectsWith('ERR_TOKEN_SIGNATURE'))
    // T1 again comes from the cache (no request), equal and unshared.
    const again = await v.verifyIdentityToken(idToken)
    assert.deepEqual(again, first)
    again.claims.email = 'changed@example.com'
    assert.equal((await v.verifyIdentityToken(idToken)).claims.email, EMAIL)
    assert.equal(urls.length, reads)
    // The cache is keyed by how the token was checked, too.
    await assert.rejects(v.verifyIdentityToken(idToken, ['other-client']), rejectsWith('ERR_TOKEN_AUDIENCE'))
    await assert.rejects(v.verifyAccessToken(idToken, [API]), rejectsWith('ERR_TOKEN_AUDIENCE'))
  })
})

// ---------------------------------------------------------------------------------------------
// Claims, algorithms, keys and access tokens, with an issuer whose keys the test holds

void describe('provider tokens: claims, keys and access tokens', { timeout: 60_000 }, () => {
  let issuer: KeyIssuer
  let key: TestKey
  const start = Date.now()

  /** Standard ID token claims for `issuer`, at `at` (ms); `undefined` values drop a claim. */
  function claims(extra: Record<string, unknown> = {}, at = start): Record<string, unknown> {
    const now = Math.floor(at / 1000)
    return { iss: issuer.issuer, aud: CLIENT_ID, sub: 'user-1', email: 'user1@example.com', iat: now, exp: now + 600, ...extra }
  }

  function idToken(extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}, signer = key): string {
    return signJws({ alg: signer.alg, typ: 'JWT', kid: signer.kid, ...header }, claims(extra), signer.privateKey)
  }

  function verifier(extra: Partial<ProviderTokenVerifierOptions> = {}) {
    return createProviderTokenVerifier({ issuerUrl: issuer.issuer, clientId: CLIENT_ID, now: () => start, cache: false, ...extra })
  }

  before(async () => {
    issuer = await startKeyIssuer()
    key = makeKey('RS256')
    issuer.jwks.keys = [key.jwk]
  })

  after(async () => {
    await issuer.close()
  })

  void it('verifies RS256, PS256, ES256 and EdDSA tokens from the provider keys', async () => {
    const keys = ['PS256', 'ES256', 'EdDSA'].map((alg) => makeKey(alg))
    issuer.jwks.keys = [key.jwk, ...keys.map((k) => k.jwk)]
    const v = verifier()
    for (const signer of [key, ...keys]) {
      assert.equal((await v.verifyIdentityToken(idToken({}, {}, signer))).subject, 'user-1', signer.alg)
    }
    issuer.jwks.keys = [key.jwk]
  })

  void it('accepts only algorithms the provider advertises for ID tokens', async () => {
    const es = makeKey('ES256')
    issuer.jwks.keys = [key.jwk, es.jwk]
    const saved = issuer.discovery.id_token_signing_alg_values_supported
    issuer.discovery.id_token_signing_alg_values_supported = ['RS256']
    try {
      const v = verifier()
      await assert.rejects(v.verifyIdentityToken(idToken({}, {}, es)), rejectsWith('ERR_TOKEN_ALGORITHM'))
      assert.equal((await v.verifyIdentityToken(idToken())).subject, 'user-1')
    } finally {
      issuer.discovery.id_token_signing_alg_values_supported = saved
      issuer.jwks.keys = [key.jwk]
    }
  })

  void it('refuses a wrong iss (another issuer, a trailing slash, none)', async () => {
    const v = verifier()
    await assert.rejects(v.verifyIdentityToken(idToken({ iss: 'https://evil.example.com' })), rejectsWith('ERR_TOKEN_ISSUER'))
    await assert.rejects(v.verifyIdentityToken(idToken({ iss: `${issuer.issuer}/` })), rejectsWith('ERR_TOKEN_ISSUER'))
    await assert.rejects(v.verifyIdentityToken(idToken({ iss: issuer.issuer.toUpperCase() })), rejectsWith('ERR_TOKEN_ISSUER'))
    await assert.rejects(v.verifyIdentityToken(idToken({ iss: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses a wrong aud, a missing aud, and a multi-audience token for another azp', async () => {
    const v = verifier()
    await assert.rejects(v.verifyIdentityToken(idToken({ aud: 'other-client' })), rejectsWith('ERR_TOKEN_AUDIENCE'))
    await assert.rejects(v.verifyIdentityToken(idToken({ aud: ['a', 'b'] })), rejectsWith('ERR_TOKEN_AUDIENCE'))
    await assert.rejects(v.verifyIdentityToken(idToken({ aud: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verifyIdentityToken(idToken({ aud: [CLIENT_ID, 7] })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(
      v.verifyIdentityToken(idToken({ aud: [CLIENT_ID, 'other'], azp: 'other' })),
      rejectsWith('ERR_TOKEN_AUDIENCE'),
    )
    assert.equal((await v.verifyIdentityToken(idToken({ aud: [CLIENT_ID, 'other'], azp: CLIENT_ID }))).subject, 'user-1')
    assert.equal((await v.verifyIdentityToken(idToken({ aud: ['x', CLIENT_ID] }))).subject, 'user-1')
  })

  void it('refuses a token without exp', async () => {
    await assert.rejects(verifier().verifyIdentityToken(idToken({ exp: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(verifier().verifyIdentityToken(idToken({ exp: '9999999999' })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses an expired token', async () => {
    const now = Math.floor(start / 1000)
    await assert.rejects(verifier().verifyIdentityToken(idToken({ iat: now - 3600, exp: now - 61 })), rejectsWith('ERR_TOKEN_EXPIRED'))
  })

  void it('refuses a token whose nbf is in the future (beyond the skew)', async () => {
    const now = Math.floor(start / 1000)
    await assert.rejects(verifier().verifyIdentityToken(idToken({ nbf: now + 120 })), rejectsWith('ERR_TOKEN_NOT_YET_VALID'))
    assert.equal((await verifier().verifyIdentityToken(idToken({ nbf: now + 30 }))).subject, 'user-1')
  })

  void it('refuses a token without iat, or iat in the future', async () => {
    const now = Math.floor(start / 1000)
    await assert.rejects(verifier().verifyIdentityToken(idToken({ iat: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(verifier().verifyIdentityToken(idToken({ iat: now + 120 })), rejectsWith('ERR_TOKEN_NOT_YET_VALID'))
  })

  void it('refuses a token without a subject', async () => {
    await assert.rejects(verifier().verifyIdentityToken(idToken({ sub: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(verifier().verifyIdentityToken(idToken({ sub: '' })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses other token types as ID tokens (at+jwt, logout+jwt, nested cty, a logout token)', async () => {
    const v = verifier()
    await assert.rejects(v.verifyIdentityToken(idToken({}, { typ: 'at+jwt' })), rejectsWith('ERR_TOKEN_HEADER'))
    await assert.rejects(v.verifyIdentityToken(idToken({}, { typ: 'logout+jwt' })), rejectsWith('ERR_TOKEN_HEADER'))
    await assert.rejects(v.verifyIdentityToken(idToken({}, { cty: 'JWT' })), rejectsWith('ERR_TOKEN_HEADER'))
    const events = { 'http://schemas.openid.net/event/backchannel-logout': {} }
    await assert.rejects(v.verifyIdentityToken(idToken({ events })), rejectsWith('ERR_TOKEN_CLAIMS'))
    assert.equal((await v.verifyIdentityToken(idToken({}, { typ: 'application/JWT' }))).subject, 'user-1')
    assert.equal((await v.verifyIdentityToken(idToken({}, { typ: undefined }))).subject, 'user-1')
  })

  void it('never uses a JWKS entry that carries a private key', async () => {
    const leaked = makeKey('RS256', 'leaked')
    issuer.jwks.keys = [key.jwk, { ...(leaked.privateKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'leaked' }]
    try {
      const v = verifier()
      await assert.rejects(v.verifyIdentityToken(idToken({}, {}, leaked)), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
    } finally {
      issuer.jwks.keys = [key.jwk]
    }
  })

  void it('refuses a token signed by a key of another issuer with the same kid', async () => {
    const impostor = makeKey('RS256', key.kid)
    await assert.rejects(verifier().verifyIdentityToken(idToken({}, {}, impostor)), rejectsWith('ERR_TOKEN_SIGNATURE'))
  })

  void it('key rotation: a token signed with a newly published key verifies after one JWKS refetch', async () => {
    let clock = start
    const fetches = (): number => issuer.hits.jwks
    const before = fetches()
    const v = verifier({ now: () => clock })
    assert.equal((await v.verifyIdentityToken(idToken())).subject, 'user-1')
    assert.equal(fetches(), before + 1)

    const next = makeKey('RS256', 'rotated-key')
    issuer.jwks.keys = [key.jwk, next.jwk]
    clock += 31_000
    const fresh = signJws({ alg: 'RS256', typ: 'JWT', kid: next.kid }, claims({}, clock), next.privateKey)
    assert.equal((await v.verifyIdentityToken(fresh)).subject, 'user-1')
    assert.equal(fetches(), before + 2, 'exactly one refetch')
    assert.equal((await v.verifyIdentityToken(fresh)).subject, 'user-1')
    assert.equal(fetches(), before + 2)
    issuer.jwks.keys = [key.jwk]
  })

  void it('key rotation: a new key published within the cooldown waits for it to pass', async () => {
    let clock = start
    const v = verifier({ now: () => clock })
    await v.verifyIdentityToken(idToken())
    const next = makeKey('RS256', 'early-key')
    issuer.jwks.keys = [key.jwk, next.jwk]
    clock += 5_000
    const token = signJws({ alg: 'RS256', typ: 'JWT', kid: next.kid }, claims({}, clock), next.privateKey)
    await assert.rejects(v.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
    clock += 30_000
    assert.equal((await v.verifyIdentityToken(token)).subject, 'user-1')
    issuer.jwks.keys = [key.jwk]
  })

  void it('a flood of unknown-kid tokens causes at most one JWKS fetch per 30 s', async () => {
    let clock = start
    const v = verifier({ now: () => clock })
    await v.verifyIdentityToken(idToken())
    const base = issuer.hits.jwks
    const attacker = makeKey('RS256')
    const flood = (n: number): Promise<unknown>[] =>
      Array.from({ length: n }, (_, i) =>
        assert.rejects(
          v.verifyIdentityToken(signJws({ alg: 'RS256', kid: `unknown-${clock}-${i}` }, claims({}, clock), attacker.privateKey)),
          rejectsWith('ERR_TOKEN_UNKNOWN_KEY'),
        ),
      )
    await Promise.all(flood(100)) // within the cooldown of the first read
    assert.equal(issuer.hits.jwks, base)
    clock += 30_000
    await Promise.all(flood(100)) // concurrent: they share one request
    assert.equal(issuer.hits.jwks, base + 1)
    clock += 29_000
    await Promise.all(flood(100))
    assert.equal(issuer.hits.jwks, base + 1)
    clock += 1_000
    await Promise.all(flood(100))
    assert.equal(issuer.hits.jwks, base + 2)
    // Genuine tokens keep verifying throughout.
    assert.equal((await v.verifyIdentityToken(idToken({}, {}, key))).subject, 'user-1')
  })

  void it('a kid with "/" verifies when the JWKS has it exactly (Cognito-style) and never triggers a refetch', async () => {
    let clock = start
    const slashed = makeKey('RS256', 'q0/aB+cd9=')
    issuer.jwks.keys = [key.jwk, slashed.jwk]
    try {
      const v = verifier({ now: () => clock })
      assert.equal((await v.verifyIdentityToken(idToken({}, {}, slashed))).subject, 'user-1')
      const base = issuer.hits.jwks
      clock += 60_000
      const stranger = makeKey('RS256', 'zz/unknown')
      await assert.rejects(v.verifyIdentityToken(idToken({}, {}, stranger)), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
      assert.equal(issuer.hits.jwks, base)
    } finally {
      issuer.jwks.keys = [key.jwk]
    }
  })

  void it('a key the provider withdrew stops verifying once the cached JWKS is an hour old', async () => {
    let clock = start
    const old = makeKey('RS256', 'old-key')
    issuer.jwks.keys = [key.jwk, old.jwk]
    const v = verifier({ now: () => clock })
    const token = (): string => signJws({ alg: 'RS256', kid: old.kid }, claims({}, clock), old.privateKey)
    assert.equal((await v.verifyIdentityToken(token())).subject, 'user-1')
    issuer.jwks.keys = [key.jwk]
    clock += 30 * 60_000
    assert.equal((await v.verifyIdentityToken(token())).subject, 'user-1', 'still cached')
    clock += 30 * 60_000
    await assert.rejects(v.verifyIdentityToken(token()), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
  })

  void it('JWKS unreachable: transient error, no hammering, recovery', async () => {
    let clock = start
    const v = verifier({ now: () => clock })
    issuer.jwksDown = true
    try {
      const base = issuer.hits.jwks
      await assert.rejects(v.verifyIdentityToken(idToken()), rejectsWith('ERR_PROVIDER_UNAVAILABLE'))
      await assert.rejects(v.verifyIdentityToken(idToken()), rejectsWith('ERR_PROVIDER_UNAVAILABLE'))
      assert.equal(issuer.hits.jwks, base + 1)
      issuer.jwksDown = false
      clock += 5_000
      assert.equal((await v.verifyIdentityToken(idToken({}, {}, key))).subject, 'user-1')
    } finally {
      issuer.jwksDown = false
    }
  })

  void it('a stale JWKS is kept when the refresh fails', async () => {
    let clock = start
    const v = verifier({ now: () => clock })
    await v.verifyIdentityToken(idToken())
    const base = issuer.hits.jwks
    issuer.jwksDown = true
    try {
      clock += 3_600_000
      const later = signJws({ alg: 'RS256', kid: key.kid }, claims({}, clock), key.privateKey)
      assert.equal((await v.verifyIdentityToken(later)).subject, 'user-1')
      assert.equal(issuer.hits.jwks, base + 1, 'the refresh was tried once')
    } finally {
      issuer.jwksDown = false
    }
  })

  void it('refuses a discovery document naming another issuer, or a plain-HTTP jwks_uri off loopback', async () => {
    const saved = { ...issuer.discovery }
    try {
      issuer.discovery.issuer = 'https://evil.example.com'
      await assert.rejects(verifier().verifyIdentityToken(idToken()), rejectsWith('ERR_PROVIDER_UNAVAILABLE'))
      issuer.discovery = { ...saved, jwks_uri: 'http://keys.example.com/jwks' }
      await assert.rejects(verifier().verifyIdentityToken(idToken()), rejectsWith('ERR_PROVIDER_UNAVAILABLE'))
    } finally {
      issuer.discovery = saved
    }
  })

  void it('allows plain-HTTP issuers only on loopback hosts', () => {
    for (const url of ['http://idp.example.com', 'http://10.0.0.1:8080', 'http://127.0.0.1.evil.com', 'ftp://127.0.0.1', 'not a url', 'https://u:p@idp.example.com']) {
      assert.throws(() => createProviderKeySource({ issuerUrl: url }), TypeError, url)
    }
    for (const url of ['https://idp.example.com', 'https://idp.example.com/realms/x', 'http://127.0.0.1:1', 'http://localhost:1', 'http://[::1]:1']) {
      assert.equal(createProviderKeySource({ issuerUrl: url }).issuer, url)
    }
  })

  // Access tokens

  function accessToken(extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
    return signJws({ alg: key.alg, typ: 'at+jwt', kid: key.kid, ...header }, claims({ aud: API, client_id: 'cli', ...extra }), key.privateKey)
  }

  void it('verifies a JWT access token (at+jwt or JWT) against the allowed audiences', async () => {
    const v = verifier()
    const result = await v.verifyAccessToken(accessToken(), [API])
    assert.equal(result.subject, 'user-1')
    assert.equal(result.claims.client_id, 'cli')
    assert.equal(result.expiresAt, (Math.floor(start / 1000) + 600) * 1000)
    assert.equal((await v.verifyAccessToken(accessToken({}, { typ: 'JWT' }), ['x', API])).subject, 'user-1')
    assert.equal(issuer.hits.userinfo, 0)
  })

  void it('refuses a JWT access token when no allowed audiences are configured', async () => {
    await assert.rejects(verifier().verifyAccessToken(accessToken()), rejectsWith('ERR_TOKEN_AUDIENCE_NOT_CONFIGURED'))
    await assert.rejects(verifier().verifyAccessToken(accessToken(), []), rejectsWith('ERR_TOKEN_AUDIENCE_NOT_CONFIGURED'))
  })

  void it('refuses a JWT access token for another audience, expired, or forged — never falling back to UserInfo', async () => {
    const v = verifier()
    const now = Math.floor(start / 1000)
    const userinfoBefore = issuer.hits.userinfo
    await assert.rejects(v.verifyAccessToken(accessToken({ aud: 'https://other.example.com' }), [API]), rejectsWith('ERR_TOKEN_AUDIENCE'))
    await assert.rejects(v.verifyAccessToken(accessToken({ aud: CLIENT_ID }), [API]), rejectsWith('ERR_TOKEN_AUDIENCE'))
    await assert.rejects(v.verifyAccessToken(accessToken({ exp: now - 120 }), [API]), rejectsWith('ERR_TOKEN_EXPIRED'))
    await assert.rejects(v.verifyAccessToken(accessToken({ exp: undefined }), [API]), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verifyAccessToken(accessToken({ iss: 'https://evil.example.com' }), [API]), rejectsWith('ERR_TOKEN_ISSUER'))
    const none = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims({ aud: API }))}.`
    await assert.rejects(v.verifyAccessToken(none, [API]), rejectsWith('ERR_TOKEN_ALGORITHM'))
    const hs = hmacJws({ alg: 'HS256', typ: 'at+jwt', kid: key.kid }, claims({ aud: API }), JSON.stringify(key.jwk))
    await assert.rejects(v.verifyAccessToken(hs, [API]), rejectsWith('ERR_TOKEN_ALGORITHM'))
    const jku = accessToken({}, { jku: `${issuer.issuer}/evil` })
    await assert.rejects(v.verifyAccessToken(jku, [API]), rejectsWith('ERR_TOKEN_HEADER'))
    assert.equal(issuer.hits.userinfo, userinfoBefore)
  })

  void it('opaque access tokens: UserInfo 200 with sub is valid, anything else is refused', async () => {
    const clock = start
    const v = verifier({ now: () => clock })
    const answers: Record<string, UserInfoAnswer> = {
      'Bearer good-token': { status: 200, body: JSON.stringify({ sub: 'user-9', email: 'u9@example.com' }) },
      'Bearer no-sub': { status: 200, body: JSON.stringify({ email: 'x@example.com' }) },
      'Bearer broken': { status: 500, body: 'oops' },
      'Bearer signed': { status: 200, body: 'a.b.c', type: 'application/jwt' },
      'Bearer forbidden': { status: 403, body: '{}' },
    }
    issuer.userinfo = (auth) => answers[auth ?? ''] ?? { status: 401, body: '{"error":"invalid_token"}' }
    const good = await v.verifyAccessToken('good-token')
    assert.deepEqual(good, {
      subject: 'user-9',
      claims: { sub: 'user-9', email: 'u9@example.com' },
      expiresAt: clock + 5 * 60_000,
    } satisfies VerifiedProviderToken)
    await assert.rejects(v.verifyAccessToken('bad-token'), rejectsWith('ERR_TOKEN_REJECTED'))
    await assert.rejects(v.verifyAccessToken('forbidden'), rejectsWith('ERR_TOKEN_REJECTED'))
    await assert.rejects(v.verifyAccessToken('no-sub'), rejectsWith('ERR_TOKEN_REJECTED'))
    await assert.rejects(v.verifyAccessToken('broken'), rejectsWith('ERR_PROVIDER_UNAVAILABLE'))
    await assert.rejects(v.verifyAccessToken('signed'), rejectsWith('ERR_TOKEN_UNVERIFIABLE'))
  })

  void it('opaque access tokens: characters a bearer token cannot have are refused without a request', async () => {
    const v = verifier()
    const base = issuer.hits.userinfo
    for (const token of ['a b', 'a\r\nX-Evil: 1', 'tok"en', 'tök', '=abc', 'x'.repeat(70_000)]) {
      await assert.rejects(v.verifyAccessToken(token), rejectsWith('ERR_TOKEN_MALFORMED'))
    }
    await assert.rejects(v.verifyAccessToken(''), rejectsWith('ERR_TOKEN_MALFORMED'))
    assert.equal(issuer.hits.userinfo, base)
  })

  void it('opaque access tokens cannot be checked with a provider without UserInfo', async () => {
    const saved = { ...issuer.discovery }
    delete issuer.discovery.userinfo_endpoint
    try {
      await assert.rejects(verifier().verifyAccessToken('good-token'), rejectsWith('ERR_TOKEN_UNVERIFIABLE'))
    } finally {
      issuer.discovery = saved
    }
  })

  void it('cache: a cache shared between verifiers never hands one verifier\'s result to another', async () => {
    const cache = new TokenCache<VerifiedProviderToken>({ now: () => start })
    const a = verifier({ cache })
    const b = verifier({ cache, clientId: 'client-b' })
    const token = idToken()
    assert.equal((await a.verifyIdentityToken(token)).subject, 'user-1')
    assert.equal(cache.size, 1)
    await assert.rejects(b.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_AUDIENCE'))
    const other = await startKeyIssuer()
    try {
      other.jwks.keys = [key.jwk]
      const c = createProviderTokenVerifier({ issuerUrl: other.issuer, clientId: CLIENT_ID, now: () => start, cache })
      await assert.rejects(c.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_ISSUER'))
    } finally {
      await other.close()
    }
  })

  void it('a verifier may share its key source (one rate limit per provider)', async () => {
    const v1 = verifier()
    const v2 = createProviderTokenVerifier({ issuerUrl: issuer.issuer, clientId: 'another', keys: v1.keys, now: () => start })
    await v1.verifyIdentityToken(idToken())
    await v2.verifyIdentityToken(idToken({ aud: 'another' }))
    assert.equal(v1.keys.stats.jwksFetches, 1)
    assert.throws(
      () => createProviderTokenVerifier({ issuerUrl: 'https://other.example.com', clientId: 'x', keys: v1.keys }),
      TypeError,
    )
  })
})

// ---------------------------------------------------------------------------------------------
// TokenCache

void describe('TokenCache', () => {
  const value = (subject: string): VerifiedProviderToken => ({ subject, claims: { sub: subject }, expiresAt: 0 })

  void it('keys on the whole token and the context', () => {
    const cache = new TokenCache<VerifiedProviderToken>({ now: () => 0 })
    cache.set('header.payload.sig1', value('t1'), 1000)
    assert.equal(cache.get('header.payload.sig1')?.subject, 't1')
    assert.equal(cache.get('header.payload.sig2'), undefined)
    assert.equal(cache.get('header.payload.sig'), undefined)
    assert.equal(cache.get('header.payload.sig1 '), undefined)
    assert.equal(cache.get('header.payload.sig1', 'id\n["other"]'), undefined)
    assert.notEqual(TokenCache.keyOf('ab', 'c'), TokenCache.keyOf('b', 'ca'))
    assert.notEqual(TokenCache.keyOf('t', ''), TokenCache.keyOf('t', 'x'))
    assert.match(TokenCache.keyOf('t'), /^[A-Za-z0-9_-]{43}$/)
  })

  void it('expires entries and never stores an expired one', () => {
    let clock = 0
    const cache = new TokenCache<VerifiedProviderToken>({ now: () => clock })
    cache.set('t1', value('t1'), 100)
    cache.set('t2', value('t2'), 0)
    assert.equal(cache.size, 1)
    clock = 99
    assert.equal(cache.get('t1')?.subject, 't1')
    clock = 100
    assert.equal(cache.get('t1'), undefined)
    assert.equal(cache.size, 0)
  })

  void it('is bounded, dropping the least recently used entry', () => {
    const cache = new TokenCache<VerifiedProviderToken>({ maxEntries: 3, now: () => 0 })
    for (const t of ['a', 'b', 'c']) cache.set(t, value(t), 1000)
    assert.equal(cache.get('a')?.subject, 'a') // a is now the most recent
    cache.set('d', value('d'), 1000)
    assert.equal(cache.size, 3)
    assert.equal(cache.get('b'), undefined)
    assert.deepEqual(['a', 'c', 'd'].map((t) => cache.get(t)?.subject), ['a', 'c', 'd'])
    for (let i = 0; i < 100; i++) cache.set(`x${i}`, value('x'), 1000)
    assert.equal(cache.size, 3)
    cache.delete('x99')
    assert.equal(cache.size, 2)
    cache.clear()
    assert.equal(cache.size, 0)
    assert.throws(() => new TokenCache({ maxEntries: 0 }), TypeError)
  })
})
