/**
 * Provider bearer tokens (`idp_identity_token`, `idp_access_token`): genuine ID and access tokens
 * minted by a real OpenID provider (oidc-provider, test fixture) on 127.0.0.1, then forgeries of
 * every kind hostile-input case: tokens / jwt; protocol / availability name, each its own test. Claim-level forgeries need a signer
 * the verifier trusts, so a second, tiny loopback issuer serves discovery, a JWKS of keys the test
 * holds, and UserInfo; it also drives key rotation and the JWKS rate limit.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { createPublicKey } from 'node:crypto'
import { after, before, describe, it } from 'node:test'

import * as oidc from 'openid-client'

import { loginWithForm, startTestIdp, subFor } from '../../../test/fixtures/oidc-provider.js'
import type { TestIdp } from '../../../test/fixtures/oidc-provider.js'
import { createProviderTokenVerifier, isJwtAccessToken, OPAQUE_ACCESS_TOKEN_TTL_MS } from './index.js'
import type { ProviderTokenVerifierOptions } from './index.js'
import { API, b64, CLIENT_ID, CLIENT_SECRET, countingFetch, decodePart, EMAIL, hmacJws, makeKey, REDIRECT, rejectsWith, replacePayload, signJws, startKeyIssuer } from './test-helpers.js'
import type { KeyIssuer } from './test-helpers.js'

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
