import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Claims, IdentityProvider, RefreshContext, TokenSet } from '../idp/provider.js'
import { IdentityProviderError } from '../idp/provider.js'
import { SESSION_TYPE, SessionStore, sessionTokenKey } from './session-store.js'
import type { NewSession, Session } from './session-store.js'
import { createLogger } from '../shared/log.js'
import { DataBrokerError } from '../databroker/errors.js'
import { startIdentityManager } from './identity-manager.js'
import type { IdentityManager, IdentityManagerOptions } from './identity-manager.js'
import { MemoryRecordStore } from '../databroker/memory.js'
import type { RecordStore } from '../databroker/types.js'

const logger = createLogger('disabled')
const HOUR = 3_600_000

class ManualClock {
  t = 1_700_000_000_000
  now(): number {
    return this.t
  }
}

type RefreshBehaviour = (token: string, context: RefreshContext | undefined) => Promise<TokenSet> | TokenSet

/** A fake provider: counts calls; `onRefresh`/`onUserInfo` decide the answers. */
class FakeProvider implements IdentityProvider {
  readonly id = 'idp'
  readonly providerName = 'oidc'
  readonly protocol = 'oidc' as const
  readonly callbackMethod = 'GET' as const
  readonly formPostCallback = false
  readonly refreshWith: 'refresh_token' | 'access_token'
  refreshes: string[] = []
  userInfos: string[] = []
  groups: Record<string, string[]> = {}
  tokenLifetimeMs = HOUR
  #n = 0
  onRefresh: RefreshBehaviour | undefined
  onUserInfo: ((token: string, sub: string) => Promise<Claims> | Claims) | undefined

  constructor(readonly clock: ManualClock, refreshWith: 'refresh_token' | 'access_token' = 'refresh_token') {
    this.refreshWith = refreshWith
  }

  userIdOf(claims: Claims): string {
    return claims.sub
  }
  needsPkce(): Promise<boolean> {
    return Promise.resolve(false)
  }
  authorizationUrl(): Promise<URL> {
    return Promise.reject(new Error('not used'))
  }
  redeem(): Promise<TokenSet> {
    return Promise.reject(new Error('not used'))
  }
  async refresh(token: string, context?: RefreshContext): Promise<TokenSet> {
    this.refreshes.push(token)
    if (this.onRefresh) return await this.onRefresh(token, context)
    const n = ++this.#n
    const sub = context?.previousClaims?.sub ?? 'unknown'
    return {
      accessToken: `at-${n}`,
      refreshToken: `rt-${n}`,
      idToken: `id-${n}`,
      expiresAt: this.clock.now() + this.tokenLifetimeMs,
      idTokenExpiresAt: this.clock.now() + this.tokenLifetimeMs / 2,
      claims: { sub, email: `${sub}@example.com`, groups: this.groups[sub] ?? [] },
    }
  }
  async userInfo(accessToken: string, expectedSubject: string): Promise<Claims> {
    this.userInfos.push(accessToken)
    if (this.onUserInfo) return await this.onUserInfo(accessToken, expectedSubject)
    return { sub: expectedSubject, groups: this.groups[expectedSubject] ?? [] }
  }
  revoke(): Promise<void> {
    return Promise.resolve()
  }
  endSessionUrl(): Promise<URL | undefined> {
    return Promise.resolve(undefined)
  }
}

interface Setup {
  clock: ManualClock
  db: MemoryRecordStore
  sessions: SessionStore
  provider: FakeProvider
  managers: IdentityManager[]
  start(overrides?: Partial<IdentityManagerOptions>): IdentityManager
  create(input: Partial<NewSession>): Promise<Session>
  /** Advances the clock in steps (so leases are renewed on time), ticking every manager after each. */
  advance(ms: number, step?: number): Promise<void>
  close(): Promise<void>
}

/**
 * Lets the manager's store subscription deliver what a step just wrote (the clock is manual, so
 * this short real pause only yields to I/O and timers already due; it does not stand in for time).
 */
const settle = (): Promise<void> => sleep(15)

function setup(options: { store?: (db: MemoryRecordStore) => RecordStore; refreshWith?: 'refresh_token' | 'access_token' } = {}): Setup {
  const clock = new ManualClock()
  const db = new MemoryRecordStore({ clock })
  const store = options.store ? options.store(db) : db
  const sessions = new SessionStore(store, { lifetimeMs: 14 * 24 * HOUR, clock, tokenKey: sessionTokenKey(randomBytes(32)) })
  const provider = new FakeProvider(clock, options.refreshWith)
  const managers: IdentityManager[] = []
  const s: Setup = {
    clock,
    db,
    sessions,
    provider,
    managers,
    start(overrides = {}) {
      const m = startIdentityManager({ store, sessions, providerFor: (id) => (id === 'idp' ? provider : undefined), logger, clock, tickMs: HOUR, ...overrides })
      managers.push(m)
      return m
    },
    async create(input) {
      const { session } = await sessions.create({
        userId: 'alice',
        idpId: 'idp',
        accessToken: 'at-0',
        refreshToken: 'rt-0',
        idToken: 'id-0',
        tokenExpiresAt: clock.now() + HOUR,
        tokenObtainedAt: clock.now(),
        claims: { sub: 'alice', groups: ['admins', 'staff'] },
        ...input,
      })
      return session
    },
    async advance(ms, step = 5_000) {
      for (let left = ms; left > 0; left -= step) {
        clock.t += Math.min(step, left)
        for (const m of managers) await m.tick()
      }
    },
    async close() {
      for (const m of managers) await m.stop()
      await db.close()
    },
  }
  return s
}

async function leaderTicked(_s: Setup, m: IdentityManager): Promise<void> {
  await m.tick()
  await settle()
  await m.tick()
}

test('schedules a refresh one minute before the earlier token expiry, never within the cool-off, and stores the new tokens', async () => {
  const s = setup()
  const m = s.start()
  await leaderTicked(s, m)
  assert.equal(m.isLeader(), true)
  const session = await s.create({ tokenExpiresAt: s.clock.now() + HOUR })
  await settle()
  assert.equal(m.metrics().sessions, 1)
  await s.advance(HOUR - 65_000)
  assert.deepEqual(s.provider.refreshes, [], 'not yet: more than a minute left')
  await s.advance(5_000)
  assert.deepEqual(s.provider.refreshes, ['rt-0'])
  const refreshed = await s.sessions.get(session.id)
  assert.equal(refreshed?.accessToken, 'at-1')
  assert.equal(refreshed?.refreshToken, 'rt-1')
  // The ID token (half an hour) expires before the access token (one hour): it drives the next refresh.
  assert.equal(refreshed?.tokenExpiresAt, s.clock.now() + HOUR / 2)
  assert.equal(refreshed?.tokenObtainedAt, s.clock.now())
  assert.deepEqual((await s.sessions.getUser('alice'))?.claims, { sub: 'alice', email: 'alice@example.com', groups: [] })
  // Sealed at rest.
  const raw = (await s.db.get(SESSION_TYPE, session.id))?.data as Record<string, unknown>
  assert.match(String(raw['accessToken']), /^sealed:v1:/)
  assert.equal(m.metrics().sessionRefreshSuccess, 1)
  assert.equal(m.metrics().lastRefreshAt, s.clock.now())
  await settle()
  await s.advance(HOUR / 2 - 65_000)
  assert.equal(s.provider.refreshes.length, 1)
  await s.advance(5_000)
  assert.deepEqual(s.provider.refreshes, ['rt-0', 'rt-1'])
  await s.close()
})

test('short-lived tokens are refreshed in their last quarter, and not again before a quarter of their lifetime', async () => {
  const s = setup()
  s.provider.tokenLifetimeMs = 2_000
  const m = s.start()
  await leaderTicked(s, m)
  await s.create({ tokenExpiresAt: s.clock.now() + 3_000 })
  await settle()
  await s.advance(2_000, 250)
  assert.equal(s.provider.refreshes.length, 0)
  await s.advance(250, 250)
  assert.equal(s.provider.refreshes.length, 1, 'refreshed 750 ms before the 3 s token expires')
  await settle()
  // The new ID token lives 1 s: refreshed after 750 ms, not sooner (cool-off = a quarter = 250 ms).
  await s.advance(500, 250)
  assert.equal(s.provider.refreshes.length, 1)
  await s.advance(250, 250)
  assert.equal(s.provider.refreshes.length, 2)
  await s.close()
})

test('a temporary failure is retried later with backoff; a permanent one deletes the session', async () => {
  const s = setup()
  const m = s.start()
  await leaderTicked(s, m)
  const session = await s.create({ tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  let fail: 'temporary' | 'permanent' | undefined = 'temporary'
  const original = s.provider.refresh.bind(s.provider)
  s.provider.onRefresh = (token, ctx) => {
    if (fail) throw new IdentityProviderError('ERR_IDP_REFRESH_FAILED', 'provider said no', { permanent: fail === 'permanent', oauthError: 'invalid_grant' })
    s.provider.onRefresh = undefined
    s.provider.refreshes.pop()
    return original(token, ctx)
  }
  await s.advance(240_000, 1_000)
  assert.equal(s.provider.refreshes.length, 1)
  assert.equal(m.metrics().sessionRefreshError, 1)
  assert.ok(await s.sessions.get(session.id), 'a temporary failure keeps the session')
  await s.advance(9_000, 1_000)
  assert.equal(s.provider.refreshes.length, 1, 'no retry within the first backoff (10 s)')
  await s.advance(1_000, 1_000)
  assert.equal(s.provider.refreshes.length, 2)
  await s.advance(19_000, 1_000)
  assert.equal(s.provider.refreshes.length, 2, 'the second backoff is twice as long')
  fail = undefined
  await s.advance(1_000, 1_000)
  assert.equal((await s.sessions.get(session.id))?.accessToken, 'at-1')
  assert.equal(m.metrics().sessionRefreshSuccess, 1)
  assert.equal(m.metrics().sessionRefreshError, 2)

  // Permanent refusal of another session: deleted.
  fail = 'permanent'
  s.provider.onRefresh = () => {
    throw new IdentityProviderError('ERR_IDP_REFRESH_FAILED', 'revoked', { permanent: true, oauthError: 'invalid_grant' })
  }
  const doomed = await s.create({ userId: 'bob', claims: { sub: 'bob' }, tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  await s.advance(245_000, 5_000)
  assert.equal(await s.sessions.get(doomed.id), undefined)
  assert.equal(m.metrics().sessionDeleted, 1)
  await settle()
  assert.equal(m.metrics().sessions, 1)
  await s.close()
})

test('a permanent refusal does not delete a session that refresh-on-use renewed meanwhile', async () => {
  const s = setup()
  const m = s.start()
  await leaderTicked(s, m)
  const session = await s.create({ tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  s.provider.onRefresh = async () => {
    // A request refreshed first (rotating refresh tokens): ours is spent.
    const current = await s.sessions.get(session.id)
    assert.ok(current)
    await s.sessions.update({ ...current, accessToken: 'at-request', refreshToken: 'rt-request', tokenObtainedAt: s.clock.now() + 1, tokenExpiresAt: s.clock.now() + HOUR })
    throw new IdentityProviderError('ERR_IDP_REFRESH_FAILED', 'spent', { permanent: true, oauthError: 'invalid_grant' })
  }
  await s.advance(245_000, 5_000)
  assert.equal(s.provider.refreshes.length, 1)
  assert.equal((await s.sessions.get(session.id))?.accessToken, 'at-request')
  assert.equal(m.metrics().sessionDeleted, 0)
  await s.close()
})

test('sessions past their end are deleted, bearer sessions included; bearer sessions are never refreshed', async () => {
  const s = setup()
  const m = s.start()
  await leaderTicked(s, m)
  const bearer: Session = {
    id: 'bearer-1',
    userId: 'carol',
    idpId: 'idp',
    issuedAt: s.clock.now(),
    expiresAt: s.clock.now() + 120_000,
    accessToken: 'provider-token',
    refreshToken: 'provider-refresh',
    idToken: undefined,
    tokenExpiresAt: s.clock.now() + 60_000,
    claims: { sub: 'carol' },
    fromBearerToken: true,
  }
  await s.sessions.putBearerSession(bearer)
  const normal = await s.create({ userId: 'dave', claims: { sub: 'dave' }, tokenExpiresAt: undefined, refreshToken: undefined })
  await settle()
  assert.equal(m.metrics().sessions, 2)
  await s.advance(115_000)
  assert.deepEqual(s.provider.refreshes, [], 'the bearer session is not refreshed though its token expired')
  assert.deepEqual(s.provider.userInfos, [])
  assert.ok(await s.db.get(SESSION_TYPE, bearer.id))
  await s.advance(5_000)
  assert.equal(await s.db.get(SESSION_TYPE, bearer.id), undefined)
  assert.equal(m.metrics().sessionDeleted, 1)
  s.clock.t = normal.expiresAt
  await m.stop()
  const m2 = s.start()
  await leaderTicked(s, m2)
  assert.equal(await s.db.get(SESSION_TYPE, normal.id), undefined)
  assert.equal(m2.metrics().sessionDeleted, 1)
  await s.close()
})

test('UserInfo is re-read every interval per user and updates the user and all their sessions', async () => {
  const s = setup()
  const m = s.start({ userInfoIntervalMs: 60_000 })
  await leaderTicked(s, m)
  const a = await s.create({ tokenExpiresAt: s.clock.now() + 10 * HOUR })
  const b = await s.create({ tokenExpiresAt: s.clock.now() + 10 * HOUR })
  await s.create({ userId: 'erin', claims: { sub: 'erin', groups: ['staff'] }, tokenExpiresAt: s.clock.now() + 10 * HOUR })
  s.provider.groups = { alice: ['staff'], erin: ['staff'] }
  await settle()
  await s.advance(55_000)
  assert.deepEqual(s.provider.userInfos, [])
  await s.advance(5_000)
  assert.equal(s.provider.userInfos.length, 2, 'one read per user, not per session')
  for (const id of [a.id, b.id]) assert.deepEqual((await s.sessions.get(id))?.claims['groups'], ['staff'])
  assert.deepEqual((await s.sessions.getUser('alice'))?.claims['groups'], ['staff'])
  assert.equal(m.metrics().userInfoRefreshSuccess, 2)
  assert.deepEqual(s.provider.refreshes, [], 'long-lived tokens are not refreshed')
  await settle()
  s.provider.onUserInfo = () => {
    throw new IdentityProviderError('ERR_IDP_USERINFO_FAILED', 'down')
  }
  await s.advance(55_000)
  assert.equal(s.provider.userInfos.length, 2)
  await s.advance(5_000)
  assert.equal(s.provider.userInfos.length, 4)
  assert.equal(m.metrics().userInfoRefreshError, 2)
  await s.close()
})

test('leadership: of two managers on one store only the lease holder acts; the other takes over when it stops', async () => {
  const s = setup()
  const a = s.start({ leaseMs: 30_000 })
  await leaderTicked(s, a)
  const b = s.start({ leaseMs: 30_000 })
  await leaderTicked(s, b)
  assert.equal(a.isLeader(), true)
  assert.equal(b.isLeader(), false)
  assert.equal(b.metrics().leader, false)
  await s.create({ tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  await s.advance(245_000)
  assert.equal(s.provider.refreshes.length, 1, 'exactly one instance refreshed')
  assert.equal(a.metrics().sessionRefreshSuccess, 1)
  assert.equal(b.metrics().sessionRefreshSuccess, 0)
  await a.stop()
  assert.equal(a.isLeader(), false)
  await leaderTicked(s, b)
  assert.equal(b.isLeader(), true, 'the lease was released: immediate takeover')
  assert.equal(b.metrics().sessions, 1)
  await s.close()
})

test('leadership: a manager that stops renewing loses the lease and stops acting; the other takes over', async () => {
  const s = setup()
  const a = s.start({ leaseMs: 30_000 })
  await leaderTicked(s, a)
  const b = s.start({ leaseMs: 30_000 })
  await leaderTicked(s, b)
  await s.create({ tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  // `a` hangs (no ticks) past its lease; `b` keeps ticking.
  for (let i = 0; i < 7; i++) {
    s.clock.t += 5_000
    await b.tick()
  }
  assert.equal(b.isLeader(), true, 'the lease expired after 30 s')
  await settle()
  await b.tick()
  await a.tick()
  assert.equal(a.isLeader(), false, 'its renewal was refused')
  await s.advance(210_000)
  assert.equal(s.provider.refreshes.length, 1)
  assert.equal(b.metrics().sessionRefreshSuccess, 1)
  assert.equal(a.metrics().sessionRefreshSuccess, 0)
  await s.close()
})

test('a manager whose lease ran out by its own clock acts no more even before the store says so', async () => {
  const s = setup()
  const a = s.start({ leaseMs: 30_000 })
  await leaderTicked(s, a)
  await s.create({ tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  s.clock.t += 250_000
  await a.tick()
  assert.equal(a.isLeader(), false)
  assert.deepEqual(s.provider.refreshes, [])
  await a.tick()
  await settle()
  await a.tick()
  assert.equal(a.isLeader(), true, 'the expired lease was free to take again')
  assert.equal(s.provider.refreshes.length, 1)
  await s.close()
})

test('providers that refresh with the access token are refreshed with it', async () => {
  const s = setup({ refreshWith: 'access_token' })
  const m = s.start()
  await leaderTicked(s, m)
  await s.create({ refreshToken: undefined, tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  await s.advance(245_000)
  assert.deepEqual(s.provider.refreshes, ['at-0'])
  await s.close()
})

test('the session stream restarts from a snapshot on ERR_DATABROKER_SYNC_TOO_OLD', async () => {
  let syncLatestCalls = 0
  let thrown = false
  const s = setup({
    store: (db) =>
      new Proxy(db, {
        get(target, prop) {
          if (prop === 'syncLatest') {
            return (type?: string) => {
              syncLatestCalls++
              return target.syncLatest(type)
            }
          }
          if (prop === 'sync' && !thrown) {
            return (): AsyncIterable<never> => ({
              [Symbol.asyncIterator]: () => ({
                next: () => {
                  thrown = true
                  return Promise.reject(new DataBrokerError('ERR_DATABROKER_SYNC_TOO_OLD', 'pruned'))
                },
              }),
            })
          }
          const v: unknown = Reflect.get(target, prop)
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
        },
      }),
  })
  const m = s.start()
  await leaderTicked(s, m)
  await settle()
  assert.equal(thrown, true)
  assert.equal(syncLatestCalls, 2)
  const session = await s.create({ tokenExpiresAt: s.clock.now() + 5 * 60_000 })
  await settle()
  assert.equal(m.metrics().sessions, 1, 'the restarted stream sees new sessions')
  await s.sessions.delete(session.id)
  await settle()
  assert.equal(m.metrics().sessions, 0, 'and deleted ones')
  await s.close()
})
