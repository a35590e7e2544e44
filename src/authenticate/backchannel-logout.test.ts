/**
 * Back-channel logout: a real logout POSTed by oidc-provider (test fixture) to a loopback
 * receiver, parsed and verified; then forged logout tokens, each its own test, signed by a tiny
 * loopback issuer whose keys the test holds (hostile-input case: sessions / cookies / csrf; tokens / jwt).
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { createHmac, createPublicKey, generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'

import * as oidc from 'openid-client'

import { loginWithForm, startTestIdp, subFor } from '../../test/fixtures/oidc-provider.js'
import type { TestIdp } from '../../test/fixtures/oidc-provider.js'
import {
  BACKCHANNEL_LOGOUT_EVENT,
  createLogoutTokenVerifier,
  MAX_LOGOUT_TOKEN_LENGTH,
  parseBackchannelRequest,
  ProviderTokenError,
} from './backchannel-logout.js'
import type { LogoutTokenResult, LogoutTokenVerifierOptions } from './backchannel-logout.js'
import type { ProviderTokenErrorCode } from '../idp/provider-tokens/index.js'
import { createProviderTokenVerifier } from '../idp/provider-tokens/index.js'

const REDIRECT = 'http://127.0.0.1:9/oauth2/callback' // never requested: loginWithForm stops before it
const CLIENT_ID = 'portcullis'
const CLIENT_SECRET = 'portcullis-secret'
const EMAIL = 'bob@example.com'
const FORM = 'application/x-www-form-urlencoded'

function rejectsWith(code: ProviderTokenErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ProviderTokenError, String(err))
    assert.equal(err.code, code, err.message)
    return true
  }
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

interface TestKey {
  kid: string
  privateKey: KeyObject
  jwk: Record<string, unknown>
}

function makeKey(kid: string = randomUUID()): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { kid, privateKey, jwk: { ...(publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid, alg: 'RS256', use: 'sig' } }
}

/** An RS256 compact JWS over exactly these header and payload objects. */
function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${cryptoSign('sha256', Buffer.from(input), key).toString('base64url')}`
}

function form(fields: Record<string, string> | [string, string][]): Buffer {
  return Buffer.from(new URLSearchParams(fields).toString())
}

// ---------------------------------------------------------------------------------------------
// A real back-channel logout

interface Delivery {
  contentType: string | undefined
  body: Buffer
  result?: LogoutTokenResult
  error?: unknown
}

void describe('back-channel logout from the test IdP (oidc-provider)', { timeout: 60_000 }, () => {
  let idp: TestIdp
  let receiver: Server
  let receiverUrl: string
  const deliveries: Delivery[] = []
  let verifier: ReturnType<typeof createLogoutTokenVerifier>

  before(async () => {
    // The receiver does what our endpoint will: parse, verify, answer 200 or 400.
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const delivery: Delivery = { contentType: req.headers['content-type'], body: Buffer.concat(chunks) }
        deliveries.push(delivery)
        const token = req.method === 'POST' ? parseBackchannelRequest(delivery.contentType, delivery.body) : undefined
        if (token === undefined) {
          res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
          return
        }
        verifier.verify(token).then(
          (result) => {
            delivery.result = result
            res.writeHead(200, { 'cache-control': 'no-store' }).end()
          },
          (err: unknown) => {
            delivery.error = err
            res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
          },
        )
      })
    })
    receiver.listen(0, '127.0.0.1')
    await once(receiver, 'listening')
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/.pomerium/backchannel-logout`
    idp = await startTestIdp({
      clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [REDIRECT], backchannelLogoutUri: receiverUrl }],
      users: { [EMAIL]: { name: 'Bob' } },
    })
    verifier = createLogoutTokenVerifier({ issuerUrl: idp.issuer, clientId: CLIENT_ID })
  })

  after(async () => {
    await idp.close()
    receiver.closeAllConnections()
    await new Promise<void>((resolve) => receiver.close(() => resolve()))
    assert.deepEqual(idp.serverErrors, [])
  })

  void it('verifies the logout token the provider sends, then refuses its replay', async () => {
    const config = await oidc.discovery(new URL(idp.issuer), CLIENT_ID, undefined, oidc.ClientSecretBasic(CLIENT_SECRET), {
      execute: [oidc.allowInsecureRequests],
      timeout: 10,
    })
    const verifierCode = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifierCode),
      code_challenge_method: 'S256',
      state,
    })
    const login = await loginWithForm(url.href, EMAIL, 'pw')
    const tokens = await oidc.authorizationCodeGrant(config, new URL(login.location), {
      pkceCodeVerifier: verifierCode,
      expectedState: state,
    })
    const sid = tokens.claims()?.sid
    assert.ok(typeof sid === 'string')

    const sent = await idp.backchannelLogout(EMAIL, { sid, endSession: true }) // throws unless we answered 200
    assert.deepEqual(sent, [{ clientId: CLIENT_ID, sid }])
    assert.equal(deliveries.length, 1)
    const delivery = deliveries[0]
    assert.ok(delivery)
    assert.equal(delivery.error, undefined, String(delivery.error))
    assert.ok(delivery.result)
    assert.equal(delivery.result.subject, subFor(EMAIL))
    assert.equal(delivery.result.sid, sid)
    assert.equal(typeof delivery.result.jti, 'string')
    assert.ok(delivery.contentType?.startsWith(FORM))

    const token = parseBackchannelRequest(delivery.contentType, delivery.body)
    assert.ok(token)
    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { typ?: unknown }
    assert.equal(header.typ, 'logout+jwt')
    await assert.rejects(verifier.verify(token), rejectsWith('ERR_TOKEN_REPLAYED'))
    // A logout token is not an ID token either.
    const idVerifier = createProviderTokenVerifier({ issuerUrl: idp.issuer, clientId: CLIENT_ID })
    await assert.rejects(idVerifier.verifyIdentityToken(token), rejectsWith('ERR_TOKEN_HEADER'))
  })
})

// ---------------------------------------------------------------------------------------------
// Forged logout tokens

void describe('back-channel logout tokens: forgeries and rules', { timeout: 60_000 }, () => {
  let server: Server
  let issuer: string
  let key: TestKey
  const start = Date.now()
  const jwks: { keys: Record<string, unknown>[] } = { keys: [] }

  function claims(extra: Record<string, unknown> = {}, at = start): Record<string, unknown> {
    return {
      iss: issuer,
      aud: CLIENT_ID,
      iat: Math.floor(at / 1000),
      jti: randomUUID(),
      sub: 'user-1',
      sid: 'session-1',
      events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
      ...extra,
    }
  }

  function logoutToken(extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}, signer = key): string {
    return signJws({ alg: 'RS256', typ: 'logout+jwt', kid: signer.kid, ...header }, claims(extra), signer.privateKey)
  }

  function verifier(extra: Partial<LogoutTokenVerifierOptions> = {}) {
    return createLogoutTokenVerifier({ issuerUrl: issuer, clientId: CLIENT_ID, now: () => start, ...extra })
  }

  before(async () => {
    server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname
      const body =
        path === '/.well-known/openid-configuration'
          ? { issuer, jwks_uri: `${issuer}/jwks`, id_token_signing_alg_values_supported: ['RS256', 'HS256', 'none'] }
          : path === '/jwks'
            ? jwks
            : undefined
      if (body === undefined) res.writeHead(404).end()
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    key = makeKey()
    jwks.keys = [key.jwk]
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  void it('accepts a well-formed logout token (sub and sid, sub only, sid only, typ JWT or none)', async () => {
    const v = verifier()
    const both = await v.verify(logoutToken({ jti: 'j-both' }))
    assert.deepEqual(both, { subject: 'user-1', sid: 'session-1', jti: 'j-both' })
    assert.deepEqual(await v.verify(logoutToken({ jti: 'j-sub', sid: undefined })), { subject: 'user-1', jti: 'j-sub' })
    assert.deepEqual(await v.verify(logoutToken({ jti: 'j-sid', sub: undefined })), { sid: 'session-1', jti: 'j-sid' })
    assert.equal((await v.verify(logoutToken({}, { typ: 'JWT' }))).subject, 'user-1')
    assert.equal((await v.verify(logoutToken({}, { typ: undefined }))).subject, 'user-1')
    const now = Math.floor(start / 1000)
    assert.equal((await v.verify(logoutToken({ exp: now + 120 }))).subject, 'user-1')
  })

  void it('refuses a logout token without jti', async () => {
    await assert.rejects(verifier().verify(logoutToken({ jti: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(verifier().verify(logoutToken({ jti: '' })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(verifier().verify(logoutToken({ jti: 42 })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses a logout token without iat', async () => {
    await assert.rejects(verifier().verify(logoutToken({ iat: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses a logout token issued too long ago, or in the future', async () => {
    const now = Math.floor(start / 1000)
    await assert.rejects(verifier().verify(logoutToken({ iat: now - 361 })), rejectsWith('ERR_TOKEN_EXPIRED'))
    assert.equal((await verifier().verify(logoutToken({ iat: now - 359 }))).subject, 'user-1')
    await assert.rejects(verifier().verify(logoutToken({ iat: now + 61 })), rejectsWith('ERR_TOKEN_NOT_YET_VALID'))
    await assert.rejects(
      verifier({ replayWindowSeconds: 30 }).verify(logoutToken({ iat: now - 91 })),
      rejectsWith('ERR_TOKEN_EXPIRED'),
    )
  })

  void it('refuses a replayed logout token (same jti), also delivered concurrently', async () => {
    const v = verifier()
    const token = logoutToken()
    await v.verify(token)
    await assert.rejects(v.verify(token), rejectsWith('ERR_TOKEN_REPLAYED'))
    // Another token (re-signed, other sid) with the same jti is a replay too.
    const jti = randomUUID()
    await v.verify(logoutToken({ jti }))
    await assert.rejects(v.verify(logoutToken({ jti, sid: 'session-2' })), rejectsWith('ERR_TOKEN_REPLAYED'))
    const twice = logoutToken()
    const outcomes = await Promise.allSettled([v.verify(twice), v.verify(twice), v.verify(twice)])
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1)
    for (const o of outcomes) if (o.status === 'rejected') rejectsWith('ERR_TOKEN_REPLAYED')(o.reason)
  })

  void it('a replay after the window is refused as too old; remembered jtis are bounded', async () => {
    let clock = start
    const v = verifier({ now: () => clock, maxReplayEntries: 3 })
    const token = logoutToken()
    await v.verify(token)
    clock += 361_000
    await assert.rejects(v.verify(token), rejectsWith('ERR_TOKEN_EXPIRED'))
    clock = start
    for (let i = 0; i < 10; i++) await v.verify(logoutToken())
    assert.equal(v.rememberedTokens, 3)
    clock += 480_000 // window + 2 × skew: everything forgotten
    assert.equal(v.rememberedTokens, 0)
  })

  void it('refuses a logout token with a nonce', async () => {
    await assert.rejects(verifier().verify(logoutToken({ nonce: 'n-0S6_WzA2Mj' })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(verifier().verify(logoutToken({ nonce: null })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses a logout token without the back-channel logout event', async () => {
    const v = verifier()
    await assert.rejects(v.verify(logoutToken({ events: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ events: {} })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ events: [BACKCHANNEL_LOGOUT_EVENT] })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ events: BACKCHANNEL_LOGOUT_EVENT })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ events: { [BACKCHANNEL_LOGOUT_EVENT]: true } })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ events: { [BACKCHANNEL_LOGOUT_EVENT]: null } })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(
      v.verify(logoutToken({ events: { 'http://schemas.openid.net/event/other': {} } })),
      rejectsWith('ERR_TOKEN_CLAIMS'),
    )
  })

  void it('refuses a logout token with neither sub nor sid (or non-string ones)', async () => {
    const v = verifier()
    await assert.rejects(v.verify(logoutToken({ sub: undefined, sid: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ sub: 7, sid: undefined })), rejectsWith('ERR_TOKEN_CLAIMS'))
    await assert.rejects(v.verify(logoutToken({ sub: undefined, sid: '' })), rejectsWith('ERR_TOKEN_CLAIMS'))
  })

  void it('refuses a wrong typ (at+jwt, an ID-token-like one)', async () => {
    await assert.rejects(verifier().verify(logoutToken({}, { typ: 'at+jwt' })), rejectsWith('ERR_TOKEN_HEADER'))
    await assert.rejects(verifier().verify(logoutToken({}, { typ: 'secevent+jwt' })), rejectsWith('ERR_TOKEN_HEADER'))
  })

  void it('refuses a wrong iss and a wrong aud', async () => {
    await assert.rejects(verifier().verify(logoutToken({ iss: 'https://evil.example.com' })), rejectsWith('ERR_TOKEN_ISSUER'))
    await assert.rejects(verifier().verify(logoutToken({ aud: 'other-client' })), rejectsWith('ERR_TOKEN_AUDIENCE'))
  })

  void it('refuses an expired logout token (exp present)', async () => {
    const now = Math.floor(start / 1000)
    await assert.rejects(verifier().verify(logoutToken({ exp: now - 61 })), rejectsWith('ERR_TOKEN_EXPIRED'))
  })

  void it('refuses alg none, missing alg, and HS256 signed with the provider public key', async () => {
    const v = verifier()
    const payload = claims()
    await assert.rejects(v.verify(`${b64({ alg: 'none', typ: 'logout+jwt' })}.${b64(payload)}.`), rejectsWith('ERR_TOKEN_ALGORITHM'))
    const noAlg = { typ: 'logout+jwt', kid: key.kid }
    await assert.rejects(v.verify(signJws(noAlg, payload, key.privateKey)), rejectsWith('ERR_TOKEN_ALGORITHM'))
    const pem = createPublicKey({ key: key.jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
    for (const secret of [pem, JSON.stringify(key.jwk)]) {
      const input = `${b64({ alg: 'HS256', typ: 'logout+jwt', kid: key.kid })}.${b64(payload)}`
      const forged = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
      await assert.rejects(v.verify(forged), rejectsWith('ERR_TOKEN_ALGORITHM'))
    }
  })

  void it('refuses embedded keys and key URLs (jwk, jku, x5u), kid with ../, an unknown kid, another key with the same kid', async () => {
    const v = verifier()
    const attacker = makeKey('attacker')
    for (const header of [
      { jwk: attacker.jwk },
      { jku: `${issuer}/jwks` },
      { x5u: `${issuer}/cert.pem` },
      { kid: '../../jwks' },
      { crit: ['exp'] },
    ]) {
      await assert.rejects(v.verify(logoutToken({}, header, attacker)), rejectsWith('ERR_TOKEN_HEADER'))
    }
    await assert.rejects(v.verify(logoutToken({}, {}, attacker)), rejectsWith('ERR_TOKEN_UNKNOWN_KEY'))
    await assert.rejects(v.verify(logoutToken({}, {}, makeKey(key.kid))), rejectsWith('ERR_TOKEN_SIGNATURE'))
  })

  void it('a refused token does not burn its jti', async () => {
    const v = verifier()
    const jti = randomUUID()
    await assert.rejects(v.verify(logoutToken({ jti, aud: 'other-client' })), rejectsWith('ERR_TOKEN_AUDIENCE'))
    assert.equal((await v.verify(logoutToken({ jti }))).jti, jti)
  })

  void it('refuses oversized and malformed tokens', async () => {
    const v = verifier()
    await assert.rejects(v.verify('x'.repeat(MAX_LOGOUT_TOKEN_LENGTH + 1)), rejectsWith('ERR_TOKEN_MALFORMED'))
    await assert.rejects(v.verify('not-a-jwt'), rejectsWith('ERR_TOKEN_MALFORMED'))
    await assert.rejects(v.verify(''), rejectsWith('ERR_TOKEN_MALFORMED'))
  })
})

// ---------------------------------------------------------------------------------------------
// The request body

void describe('parseBackchannelRequest', () => {
  const token = `${b64({ alg: 'RS256' })}.${b64({ a: 1 })}.c2ln`

  void it('returns the single logout_token of a form body', () => {
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: token })), token)
    assert.equal(parseBackchannelRequest('Application/X-WWW-Form-Urlencoded; charset=UTF-8', form({ logout_token: token })), token)
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: token, other: 'x' })), token)
  })

  void it('refuses other content types and charsets', () => {
    assert.equal(parseBackchannelRequest(undefined, form({ logout_token: token })), undefined)
    assert.equal(parseBackchannelRequest('application/json', Buffer.from(JSON.stringify({ logout_token: token }))), undefined)
    assert.equal(parseBackchannelRequest('text/plain', form({ logout_token: token })), undefined)
    assert.equal(parseBackchannelRequest(`${FORM}; charset=iso-8859-1`, form({ logout_token: token })), undefined)
  })

  void it('refuses zero or several logout_token fields, and empty ones', () => {
    assert.equal(parseBackchannelRequest(FORM, form({ token })), undefined)
    assert.equal(parseBackchannelRequest(FORM, Buffer.alloc(0)), undefined)
    assert.equal(parseBackchannelRequest(FORM, form([['logout_token', token], ['logout_token', token]])), undefined)
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: '' })), undefined)
  })

  void it('refuses oversized bodies and tokens, invalid UTF-8 and non-JWT characters', () => {
    const big = `${b64({ alg: 'RS256' })}.${'a'.repeat(MAX_LOGOUT_TOKEN_LENGTH)}.c2ln`
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: big })), undefined)
    assert.equal(parseBackchannelRequest(FORM, Buffer.concat([form({ logout_token: token }), Buffer.alloc(20_000, 0x61)])), undefined)
    assert.equal(parseBackchannelRequest(FORM, Buffer.from([0x6c, 0x3d, 0xff, 0xfe])), undefined)
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: `${token} ` })), undefined)
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: 'a.b' })), undefined)
    assert.equal(parseBackchannelRequest(FORM, form({ logout_token: 'a.b.c.d.e' })), undefined)
  })
})
