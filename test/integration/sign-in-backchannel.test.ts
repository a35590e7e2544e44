/**
 * OpenID Connect Back-Channel Logout (a Portcullis addition): the provider's signed logout token,
 * posted to `/.pomerium/backchannel_logout`, ends the matching sessions at once; forged, replayed
 * and incomplete tokens are refused (hostile-input case: sessions / cookies / csrf). The real provider signs the tokens; a
 * loopback receiver catches them (Node cannot resolve `*.localhost`), and the test delivers them.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { generateKeyPairSync, createSign } from 'node:crypto'
import { request } from 'undici'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let receiver: Server
const tokens: string[] = []

before(async () => {
  receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const t = new URLSearchParams(body).get('logout_token')
      if (t) tokens.push(t)
      res.writeHead(200).end()
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  setup = await startSignInSetup({ backchannelLogoutUri: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/bcl` })
})
after(async () => {
  await setup.close()
  await new Promise<void>((r) => receiver.close(() => r()))
})

async function post(token: string): Promise<number> {
  const res = await request(`${setup.authn}/.pomerium/backchannel_logout`, {
    dispatcher: setup.dispatcher,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }).toString(),
  })
  await res.body.dump()
  return res.statusCode
}

async function status(url: string, cookie: string): Promise<number> {
  const res = await request(url, { dispatcher: setup.dispatcher, headers: { cookie } })
  await res.body.dump()
  return res.statusCode
}

test('a logout token from the provider ends the session on every domain; a replay is refused', async () => {
  const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
  await signIn(setup, `${setup.other}/`, 'alice@example.com', 'x', jar)
  const bob = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
  const cookie = (j: typeof jar, base: string): string => `_pomerium=${j.forHost(new URL(base).host)['_pomerium']}`
  assert.equal(await status(`${setup.app}/`, cookie(jar, setup.app)), 200)

  await setup.idp.backchannelLogout('alice@example.com')
  const token = tokens.at(-1)
  assert.ok(token, 'the provider sent a logout token')
  assert.equal(await post(token), 200)
  assert.equal(await status(`${setup.app}/`, cookie(jar, setup.app)), 302)
  assert.equal(await status(`${setup.other}/`, cookie(jar, setup.other)), 302)
  assert.equal(await status(`${setup.app}/`, cookie(bob.jar, setup.app)), 200, 'other users keep their sessions')
  assert.equal(await post(token), 400, 'replay refused')
})

test('forged and malformed logout tokens are refused', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const now = Math.floor(Date.now() / 1000)
  const sign = (header: object, payload: object): string => {
    const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`
    return `${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`
  }
  const claims = { iss: setup.idp.issuer, aud: 'portcullis', iat: now, jti: 'j1', sub: 'x', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }
  const unsigned = (p: object): string => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(p)).toString('base64url')}.`
  for (const t of [sign({ alg: 'RS256', kid: 'attacker' }, claims), unsigned(claims), 'garbage', '']) {
    assert.equal(await post(t), 400, t.slice(0, 20))
  }
  const res = await request(`${setup.authn}/.pomerium/backchannel_logout`, { dispatcher: setup.dispatcher, method: 'GET' })
  await res.body.dump()
  assert.equal(res.statusCode, 405)
})
