/**
 * The identity manager against the real test IdP with 2 s tokens: a group removed at the provider
 * disappears from the session, and a revoked grant ends it, without any request (Pomerium docs: Refresh).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createOidcProvider, randomCodeVerifier, randomNonce } from '../../src/idp/oidc.js'
import type { IdentityProvider } from '../../src/idp/provider.js'
import { tokenExpiry } from '../../src/session/refresh.js'
import { SessionStore, sessionTokenKey } from '../../src/session/session-store.js'
import type { Session } from '../../src/session/session-store.js'
import { groupsOf } from '../../src/session/users.js'
import { startIdentityManager } from '../../src/session/identity-manager.js'
import type { IdentityManager } from '../../src/session/identity-manager.js'
import { MemoryRecordStore } from '../../src/databroker/index.js'
import { createLogger } from '../../src/shared/log.js'
import { loginWithForm, startTestIdp } from '../fixtures/oidc-provider.js'
import type { TestIdp } from '../fixtures/oidc-provider.js'

const REDIRECT = 'http://127.0.0.1:9/oauth2/callback' // never requested: loginWithForm stops before it

let idp: TestIdp
let provider: IdentityProvider
let db: MemoryRecordStore
let sessions: SessionStore
let manager: IdentityManager

before(async () => {
  idp = await startTestIdp({
    clients: [{ clientId: 'portcullis', clientSecret: 'portcullis-secret', redirectUris: [REDIRECT] }],
    users: {
      'alice@example.com': { password: 'pw', groups: ['admins', 'staff'] },
      'dave@example.com': { password: 'pw', groups: ['staff'] },
    },
    tokenLifetimes: { accessToken: 2, idToken: 2 },
  })
  provider = createOidcProvider({ id: 'idp', issuerUrl: idp.issuer, clientId: 'portcullis', clientSecret: 'portcullis-secret', allowInsecureRequests: true, timeoutSeconds: 10 })
  db = new MemoryRecordStore()
  sessions = new SessionStore(db, { lifetimeMs: 3_600_000, tokenKey: sessionTokenKey(randomBytes(32)) })
  manager = startIdentityManager({ store: db, sessions, providerFor: (id) => (id === 'idp' ? provider : undefined), logger: createLogger('disabled'), tickMs: 100 })
})

after(async () => {
  await manager.stop()
  await db.close()
  await idp.close()
})

async function signIn(email: string): Promise<Session> {
  const state = randomBytes(16).toString('base64url')
  const nonce = randomNonce()
  const codeVerifier = randomCodeVerifier()
  const url = await provider.authorizationUrl({ redirectUri: REDIRECT, state, nonce, codeVerifier })
  const flow = await loginWithForm(url.href, email, 'pw')
  const tokens = await provider.redeem({ callbackUrl: flow.url, redirectUri: REDIRECT, expectedState: state, expectedNonce: nonce, codeVerifier })
  const { session } = await sessions.create({
    userId: provider.userIdOf(tokens.claims),
    idpId: 'idp',
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    idToken: tokens.idToken,
    tokenExpiresAt: tokenExpiry(tokens),
    tokenObtainedAt: Date.now(),
    claims: tokens.claims,
  })
  return session
}

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 6_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await read()
    if (ok(v) || Date.now() > end) return v
    await sleep(50)
  }
}

test('a group removed at the provider disappears from the session without any request', async () => {
  const session = await signIn('alice@example.com')
  assert.deepEqual(groupsOf(session.claims), ['admins', 'staff'])
  assert.equal(manager.isLeader(), true)
  idp.removeGroup('alice@example.com', 'admins')
  const later = await eventually(() => sessions.get(session.id), (s) => s !== undefined && groupsOf(s.claims).length === 1)
  assert.deepEqual(groupsOf(later?.claims ?? {}), ['staff'])
  assert.notEqual(later?.accessToken, session.accessToken)
  assert.deepEqual(groupsOf((await sessions.getUser(session.userId))?.claims ?? {}), ['staff'])
  assert.ok(manager.metrics().sessionRefreshSuccess >= 1)
  // Refreshed again and again as the 2 s tokens expire, with rotating refresh tokens intact.
  const refreshes = manager.metrics().sessionRefreshSuccess
  const refreshedAgain = await eventually(() => Promise.resolve(manager.metrics().sessionRefreshSuccess), (n) => n > refreshes)
  assert.ok(refreshedAgain > refreshes, `${refreshedAgain} refreshes, ${refreshes} before`)
  assert.ok(await sessions.get(session.id))
  assert.deepEqual(idp.serverErrors, [])
})

test('a grant revoked at the provider ends the session without any request', async () => {
  const session = await signIn('dave@example.com')
  const deletedBefore = manager.metrics().sessionDeleted
  await idp.revokeUser('dave@example.com')
  const gone = await eventually(() => sessions.get(session.id), (s) => s === undefined)
  assert.equal(gone, undefined)
  assert.equal(manager.metrics().sessionDeleted, deletedBefore + 1)
})
