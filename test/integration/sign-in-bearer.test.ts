/**
 * Provider tokens as credentials (`bearer_token_format`, Pomerium docs: Non-interactive credentials; hostile-input case: tokens / jwt,
 * 48): genuine ID and access tokens of the route's provider are accepted; forged, foreign and
 * expired ones get 401, never a sign-in redirect.
 */
import assert from 'node:assert/strict'
import { generateKeyPairSync, createSign } from 'node:crypto'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import { createOidcProvider, randomCodeVerifier, randomNonce } from '../../src/idp/oidc.js'
import type { TokenSet } from '../../src/idp/provider.js'
import { loginWithForm } from '../fixtures/oidc-provider.js'
import { startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let api: string
let admin: string
let tokens: TokenSet

before(async () => {
  setup = await startSignInSetup({
    extraClients: [{ clientId: 'cli', clientSecret: 'cli-secret' }],
    routes: (upstream) => [
      { from: 'https://api.localhost', to: upstream, allow_any_authenticated_user: true, bearer_token_format: 'idp_identity_token', idp_access_token_allowed_audiences: ['cli'] },
      { from: 'https://admin.localhost', to: upstream, allow_any_authenticated_user: true, bearer_token_format: 'idp_access_token' },
    ],
  })
  api = `https://api.localhost:${setup.port}`
  admin = `https://admin.localhost:${setup.port}`
  // A command-line client signs in with its own client id, as a script at the provider would.
  const cli = createOidcProvider({ id: 'cli', issuerUrl: setup.idp.issuer, clientId: 'cli', clientSecret: 'cli-secret', allowInsecureRequests: true })
  const redirectUri = `${setup.authn}/oauth2/callback`
  const verifier = randomCodeVerifier()
  const nonce = randomNonce()
  const url = await cli.authorizationUrl({ redirectUri, state: 'st', nonce, codeVerifier: verifier })
  const r = await loginWithForm(url.href, 'alice@example.com', 'alice-password')
  tokens = await cli.redeem({ callbackUrl: r.url, redirectUri, expectedState: 'st', expectedNonce: nonce, codeVerifier: verifier })
})
after(async () => {
  await setup.close()
})

async function status(url: string, authorization?: string, accept = 'text/html'): Promise<number> {
  const res = await request(url, { dispatcher: setup.dispatcher, headers: { accept, ...(authorization ? { authorization } : {}) } })
  await res.body.dump()
  return res.statusCode
}

test('a genuine ID token of an allowed audience is accepted, repeatedly', async () => {
  assert.ok(tokens.idToken)
  assert.equal(await status(`${api}/x`, `Bearer ${tokens.idToken}`), 200)
  assert.equal(await status(`${api}/y`, `Bearer ${tokens.idToken}`), 200)
  // Not a credential on a route without bearer_token_format: a browser there is sent to sign in.
  assert.equal(await status(`${setup.app}/x`, `Bearer ${tokens.idToken}`), 302)
})

test('a genuine access token is accepted through UserInfo; a made-up one is not', async () => {
  assert.equal(await status(`${admin}/x`, `Bearer ${tokens.accessToken}`), 200)
  assert.equal(await status(`${admin}/x`, 'Bearer not-a-real-token'), 401)
  assert.equal(await status(`${api}/x`, `Bearer ${tokens.accessToken}`), 401, 'an access token is not an ID token')
})

test('forged ID tokens get 401, never a redirect', async () => {
  const [h, p] = (tokens.idToken as string).split('.') as [string, string, string]
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>
  const signed = (hd: object, pl: object): string => {
    const input = `${enc(hd)}.${enc(pl)}`
    return `${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`
  }
  const forged = [
    `${enc({ alg: 'none' })}.${p}.`,
    signed(header, payload),
    signed({ ...header, kid: 'unknown' }, payload),
    signed(header, { ...payload, exp: Math.floor(Date.now() / 1000) - 3600 }),
    `${h}.${enc({ ...payload, sub: 'someone-else' })}.${(tokens.idToken as string).split('.')[2]}`,
  ]
  for (const t of forged) assert.equal(await status(`${api}/x`, `Bearer ${t}`), 401, t.slice(0, 30))
})
