import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryRecordStore } from '../databroker/index.js'
import { SESSION_TYPE, SessionStore, sessionTokenKey } from './session-store.js'
import type { NewSession } from './session-store.js'
import { countingGets, mapSessionCache } from './test-helpers.js'

function setup(): { sessions: SessionStore; db: MemoryRecordStore; clock: { t: number; now: () => number } } {
  const clock = { t: 1_800_000_000_000, now: () => clock.t }
  const db = new MemoryRecordStore({ clock })
  return { sessions: new SessionStore(db, { lifetimeMs: 14 * 3600_000, clock }), db, clock }
}

const input: NewSession = {
  userId: 'u1',
  idpId: 'idp',
  accessToken: 'at',
  refreshToken: 'rt',
  idToken: 'it',
  tokenExpiresAt: undefined,
  claims: { email: 'a@example.com', groups: ['eng'] },
}

test('every sign-in gets a new, unguessable session id, readable until it expires', async () => {
  const { sessions, clock, db } = setup()
  const a = await sessions.create(input)
  const b = await sessions.create(input)
  assert.notEqual(a.session.id, b.session.id)
  assert.match(a.session.id, /^[A-Za-z0-9_-]{22}$/)
  assert.ok(b.recordVersion > a.recordVersion)
  assert.deepEqual(await sessions.get(a.session.id), a.session)
  clock.t += 14 * 3600_000
  assert.equal(await sessions.get(a.session.id), undefined, 'expired with cookie_expire')
  assert.equal(await db.get(SESSION_TYPE, a.session.id), undefined, 'and removed')
  await db.close()
})

test('deleted sessions, sessions of a signed-out user and malformed records are no session', async () => {
  const { sessions, db } = setup()
  const a = await sessions.create(input)
  const b = await sessions.create(input)
  const other = await sessions.create({ ...input, userId: 'u2' })
  await sessions.delete(a.session.id)
  assert.equal(await sessions.get(a.session.id), undefined)
  assert.equal(await sessions.deleteForUser('u1'), 1)
  assert.equal(await sessions.get(b.session.id), undefined)
  assert.ok(await sessions.get(other.session.id))
  await db.put([{ type: SESSION_TYPE, id: 'broken', data: { id: 'broken', userId: 42 } }])
  assert.equal(await sessions.get('broken'), undefined)
  await db.put([{ type: SESSION_TYPE, id: 'mismatch', data: { ...other.session } }])
  assert.equal(await sessions.get('mismatch'), undefined, 'a record stored under another id is not that session')
  await db.close()
})

test('users are stored beside sessions', async () => {
  const { sessions, db } = setup()
  await sessions.putUser({ id: 'u1', email: 'a@example.com', name: 'A', claims: {} })
  assert.equal((await sessions.getUser('u1'))?.email, 'a@example.com')
  assert.equal(await sessions.getUser('nope'), undefined)
  await db.close()
})

test('tokens are sealed at rest with a key from the shared secret; another key cannot read them', async () => {
  const { randomBytes } = await import('node:crypto')
  const { sessionTokenKey } = await import('./session-store.js')
  const db = new MemoryRecordStore()
  const key = sessionTokenKey(randomBytes(32))
  const sessions = new SessionStore(db, { lifetimeMs: 3600_000, tokenKey: key })
  const { session } = await sessions.create({ ...input, accessToken: 'access-secret', refreshToken: 'refresh-secret', idToken: 'id-secret' })
  const raw = JSON.stringify((await db.get(SESSION_TYPE, session.id))?.data)
  for (const secret of ['access-secret', 'refresh-secret', 'id-secret']) assert.ok(!raw.includes(secret), `${secret} is not stored in clear`)
  const read = await sessions.get(session.id)
  assert.equal(read?.accessToken, 'access-secret')
  assert.equal(read?.refreshToken, 'refresh-secret')
  assert.equal(read?.idToken, 'id-secret')
  await sessions.update({ ...session, accessToken: 'access-2' })
  assert.equal((await sessions.get(session.id))?.accessToken, 'access-2')
  assert.ok(!JSON.stringify((await db.get(SESSION_TYPE, session.id))?.data).includes('access-2'))
  // A store read with another key (a changed shared secret) yields no session, never garbage tokens.
  const other = new SessionStore(db, { lifetimeMs: 3600_000, tokenKey: sessionTokenKey(randomBytes(32)) })
  assert.equal(await other.get(session.id), undefined)
  // A sealed token moved to another session id does not open either (bound to its session).
  const stored = (await db.get(SESSION_TYPE, session.id))?.data as Record<string, unknown>
  await db.put([{ type: SESSION_TYPE, id: 'moved', data: { ...stored, id: 'moved' } }])
  assert.equal(await sessions.get('moved'), undefined)
})

test('the synced copy keeps sessions without their sealed tokens: the request path reads it without I/O; a caller that needs tokens reads the record', async () => {
  const { store, reads: storeReadCount } = countingGets(new MemoryRecordStore())
  const cache = mapSessionCache()
  const copy = cache.held
  const sessions = new SessionStore(store, { lifetimeMs: 60_000, tokenKey: sessionTokenKey(Buffer.alloc(32, 7)), cache })
  const { session } = await sessions.create({ userId: 'u', idpId: 'i', accessToken: 'at-secret', refreshToken: 'rt-secret', idToken: 'id-secret', tokenExpiresAt: undefined, claims: { email: 'u@example.com' } })
  const held = copy.get(session.id) as Record<string, unknown>
  assert.equal(held['accessToken'], undefined)
  assert.equal(held['refreshToken'], undefined)
  assert.equal(held['idToken'], undefined)
  assert.deepEqual(held['elidedTokens'], ['accessToken', 'refreshToken', 'idToken'])
  assert.ok(JSON.stringify(held).length < 400, JSON.stringify(held))
  const reads = storeReadCount()
  const slim = await sessions.getForRequest(session.id)
  assert.equal(storeReadCount(), reads, 'the request path reads the copy only')
  assert.equal(slim?.userId, 'u')
  assert.equal(slim?.accessToken, undefined)
  assert.deepEqual(slim?.claims, { email: 'u@example.com' })
  assert.equal(await sessions.getForRequest(session.id), slim, 'the same object each time (views built once)')
  const whole = await sessions.get(session.id)
  assert.equal(storeReadCount(), reads + 1)
  assert.equal(whole?.accessToken, 'at-secret')
  assert.equal(whole?.refreshToken, 'rt-secret')
  assert.equal(whole?.idToken, 'id-secret')
  // Read again while the record has not changed: kept, no store read.
  assert.equal(await sessions.get(session.id), whole)
  assert.equal(storeReadCount(), reads + 1)
  // A refresh writes the whole session; the copy gets the slim form again.
  await sessions.update({ ...(whole), accessToken: 'at-2' })
  assert.equal((copy.get(session.id) as Record<string, unknown>)['accessToken'], undefined)
  assert.equal((await sessions.get(session.id))?.accessToken, 'at-2')
  await sessions.delete(session.id)
  assert.equal(await sessions.getForRequest(session.id), undefined)
})
