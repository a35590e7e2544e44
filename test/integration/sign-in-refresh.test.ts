/**
 * Token refresh past expiry with short provider token lifetimes (2 s): claims re-read at the
 * provider, one refresh per session under concurrent requests, and a refused refresh ending the
 * session (Pomerium docs: Refresh, hostile-input case: identity / claims / policy inputs).
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import type { CookieJar } from '../fixtures/oidc-provider.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { waitFor } from '../fixtures/wait.js'

let setup: SignInSetup

before(async () => {
  setup = await startSignInSetup({ idp: { tokenLifetimes: { accessToken: 2, idToken: 2 } } })
})
after(async () => {
  await setup.close()
})

async function get(url: string, jar: CookieJar, accept = 'text/html'): Promise<{ status: number; body: string }> {
  const u = new URL(url)
  const cookie = jar.header(u)
  const res = await request(u, { dispatcher: setup.dispatcher, headers: { accept, ...(cookie ? { cookie } : {}) } })
  return { status: res.statusCode, body: await res.body.text() }
}

function refreshTokensOf(email: string): number {
  const sub = setup.idp.getUser(email)?.sub
  return setup.idp.artifacts('RefreshToken').filter((a) => a.payload['accountId'] === sub).length
}

test('a group removed at the provider is gone after the token expires, without signing in again', async () => {
  const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
  const before = JSON.parse((await get(`${setup.app}/.pomerium/user`, jar)).body) as { groups: string[] }
  assert.deepEqual(before.groups, ['admins', 'staff'])
  setup.idp.removeGroup('alice@example.com', 'admins')
  // The identity manager refreshes shortly before the 2 s tokens expire; no request is needed.
  let groups: string[] = []
  for (let i = 0; i < 30 && groups.join() !== 'staff'; i++) {
    await sleep(200)
    const after = await get(`${setup.app}/.pomerium/user`, jar)
    assert.equal(after.status, 200)
    groups = (JSON.parse(after.body) as { groups: string[] }).groups
  }
  assert.deepEqual(groups, ['staff'])
  assert.equal((await get(`${setup.app}/`, jar)).status, 200)
})

test('concurrent requests of one session never refresh it twice with the same token', async () => {
  setup.idp.setUser('carol@example.com', { password: 'carol-password', groups: ['staff'] })
  const { jar } = await signIn(setup, `${setup.app}/`, 'carol@example.com', 'carol-password')
  const tokensBefore = refreshTokensOf('carol@example.com')
  // Bursts of 20 concurrent requests until the session has been refreshed, so that bursts run
  // while the 2 s token nears and passes its expiry.
  const statuses = new Set<number>()
  await waitFor(
    'the session to be refreshed',
    async () => {
      const answers = await Promise.all(Array.from({ length: 20 }, () => get(`${setup.app}/`, jar)))
      for (const a of answers) statuses.add(a.status)
      return refreshTokensOf('carol@example.com') > tokensBefore
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  )
  assert.deepEqual(statuses, new Set([200]))
  // The provider rotates refresh tokens and revokes the whole grant (its refresh tokens included)
  // when a spent one is used again: a duplicate refresh (by two requests, or a request and the
  // identity manager) would end the session, and no further refresh would succeed. Two more
  // refreshes go through, and the session still works.
  const tokensAfterFirst = refreshTokensOf('carol@example.com')
  await waitFor('two more refreshes of the session', () => refreshTokensOf('carol@example.com') >= tokensAfterFirst + 2, { timeoutMs: 15_000 })
  assert.equal((await get(`${setup.app}/`, jar)).status, 200)
  assert.deepEqual(setup.idp.serverErrors, [])
})

test('a refresh the provider refuses ends the session', async () => {
  setup.idp.setUser('dave@example.com', { password: 'dave-password' })
  const { jar } = await signIn(setup, `${setup.app}/`, 'dave@example.com', 'dave-password')
  assert.equal((await get(`${setup.app}/`, jar)).status, 200)
  await setup.idp.revokeUser('dave@example.com')
  let status = 200
  for (let i = 0; i < 30 && status !== 302; i++) {
    await sleep(200)
    status = (await get(`${setup.app}/`, jar)).status
  }
  assert.equal(status, 302)
  assert.equal((await get(`${setup.app}/`, jar, 'application/json')).status, 401)
  assert.ok(setup.portcullis.logs.some((l) => l.includes('refused to refresh')))
})
