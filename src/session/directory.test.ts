/** The directory copy's index: matching a session to a directory user, nesting, cycles, deactivation. */
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { MemoryRecordStore } from '../databroker/index.js'
import { createLogger } from '../shared/log.js'
import { buildIndex, DirectoryCopy, DIRECTORY_GROUP_TYPE, DIRECTORY_USER_TYPE } from './directory.js'
import { verifiedSessionEmail } from './policy-session.js'
import type { DirectoryGroupRecord, DirectoryUserRecord } from './directory.js'

function users(...list: DirectoryUserRecord[]): Map<string, DirectoryUserRecord> {
  return new Map(list.map((u) => [u.id, u]))
}
function groups(...list: DirectoryGroupRecord[]): Map<string, DirectoryGroupRecord> {
  return new Map(list.map((g) => [g.id, g]))
}

test('nested groups are resolved transitively, a membership cycle terminates, ids and names both listed once', () => {
  const index = buildIndex(
    users({ id: 'u1', source: 'sync', active: true }, { id: 'u2', source: 'sync', active: true }),
    groups(
      { id: 'a', source: 'sync', name: 'Alpha', memberIds: [], nestedGroupIds: ['b'] },
      { id: 'b', source: 'sync', name: 'Beta', memberIds: ['u2'], nestedGroupIds: ['c'] },
      { id: 'c', source: 'sync', name: 'Gamma', memberIds: ['u1'], nestedGroupIds: ['a'] },
      { id: 'd', source: 'sync', name: 'd', memberIds: ['u1'] },
    ),
  )
  assert.deepEqual(index.entries.get('u1')?.groups, ['a', 'Alpha', 'b', 'Beta', 'c', 'Gamma', 'd'])
  assert.deepEqual(index.entries.get('u2')?.groups, ['a', 'Alpha', 'b', 'Beta', 'c', 'Gamma'])
})

test('a user is found by id, then externalId, then an email or userName the directory vouches for (lower-cased)', () => {
  const index = buildIndex(
    users(
      { id: 'scim-1', source: 'scim', active: true, emailVerified: true, externalId: '00u-okta', userName: 'Ada@Acme.example' },
      { id: 'scim-2', source: 'scim', active: true, emailVerified: true, email: 'Bob@Acme.example' },
      { id: 'kc-3', source: 'sync', active: true, emailVerified: false, email: 'ceo@acme.example' },
    ),
    groups(),
  )
  assert.equal(index.usersByExternalId.get('00u-okta')?.id, 'scim-1')
  assert.equal(index.usersByEmail.get('ada@acme.example')?.id, 'scim-1')
  assert.equal(index.usersByEmail.get('bob@acme.example')?.id, 'scim-2')
  // An unverified directory email never matches a session by email.
  assert.equal(index.usersByEmail.get('ceo@acme.example'), undefined)
})

test('matching by email needs email_verified: true from the provider (Entra ID, which does not say, matches by id only)', () => {
  const base = { id: 's', userId: 'u', idpId: 'i', issuedAt: 0, expiresAt: 1, accessToken: undefined, refreshToken: undefined, idToken: undefined, tokenExpiresAt: undefined }
  assert.equal(verifiedSessionEmail({ ...base, claims: { email: 'a@x.example', email_verified: true } }), 'a@x.example')
  assert.equal(verifiedSessionEmail({ ...base, claims: { email: 'a@x.example' } }), undefined)
  assert.equal(verifiedSessionEmail({ ...base, claims: { email: 'a@x.example', email_verified: false } }), undefined)
})

test('members are typed: a user whose id is also a group id never makes that group a nested member', () => {
  const index = buildIndex(
    // User 42 is inactive, so the sync left it out of the users; it is still listed in "admins".
    users({ id: '7', source: 'sync', active: true }),
    groups(
      // Role 42 and user 42 share an id (OneLogin numbers both).
      { id: '42', source: 'sync', name: 'support', memberIds: ['7'] },
      { id: '1', source: 'sync', name: 'admins', memberIds: ['42'] },
    ),
  )
  assert.deepEqual(index.entries.get('7')?.groups, ['42', 'support'], 'support members do not become admins')
})

test('a burst of changes rebuilds the index once, after the burst, and lookups meanwhile read the previous one', async () => {
  const store = new MemoryRecordStore()
  const copy = new DirectoryCopy(store, createLogger('disabled'), { manages: () => true })
  copy.start()
  await copy.whenReady()
  await store.put([{ type: DIRECTORY_USER_TYPE, id: 'u', data: { id: 'u', source: 'sync', active: true } }])
  const until = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
    assert.ok(check())
  }
  await until(() => copy.snapshot().users.length === 1)
  copy.lookup('u', undefined)
  const before = copy.generation
  await store.put(Array.from({ length: 50 }, (_, i) => ({ type: DIRECTORY_GROUP_TYPE, id: `g${i}`, data: { id: `g${i}`, source: 'sync', name: `g${i}`, memberIds: ['u'] } })))
  await until(() => copy.snapshot().groups.length === 50)
  assert.equal(copy.generation, before, 'not rebuilt per record')
  assert.deepEqual(copy.lookup('u', undefined).groups, [], 'the previous index until the rebuild')
  // Each group's name is its id: one entry each.
  await until(() => copy.lookup('u', undefined).groups.length === 50)
  assert.equal(copy.generation, before + 1, 'one rebuild for the burst')
  await copy.stop()
  await store.close()
})
