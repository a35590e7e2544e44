/**
 * Provider tokens signed by keys the test holds (a tiny loopback issuer: discovery, JWKS,
 * UserInfo): claim-level forgeries, algorithms, key rotation and the JWKS rate limit, opaque and
 * JWT access tokens (hostile-input case: tokens / jwt; protocol / availability).
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import { createProviderKeySource, createProviderTokenVerifier, TokenCache } from './index.js'
import type { ProviderTokenVerifierOptions, VerifiedProviderToken } from './index.js'
import { API, b64, CLIENT_ID, hmacJws, makeKey, rejectsWith, signJws, startKeyIssuer } from './test-helpers.js'
import type { KeyIssuer, TestKey, UserInfoAnswer } from './test-helpers.js'

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
    for (const url of ['http://idp.example.com', 'http://10.0.0.1:8080', 'http://127.0.0.1.evil.com', 'ftp://127.0.0.1', 'not a url', 'https://u:p@idp.example.com', 'http://localhost.:1']) {
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

