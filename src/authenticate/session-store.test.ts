import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryRecordStore } from '../databroker/index.js'
import { SESSION_TYPE, SessionStore } from './session-store.js'
import type { NewSession } from './session-store.js'

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
