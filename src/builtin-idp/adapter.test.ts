import assert from 'node:assert/strict'
import { test } from 'node:test'

import { createMemoryStore } from './adapter.js'

test('hostile: a flood of interactions cannot push out grants, refresh tokens or sessions', async () => {
  const store = createMemoryStore({ limits: { Interaction: 5, Grant: 3, RefreshToken: 3, Session: 3, default: 3 } })
  try {
    const grants = store.factory('Grant')
    const refreshTokens = store.factory('RefreshToken')
    const sessions = store.factory('Session')
    const interactions = store.factory('Interaction')
    await grants.upsert('grant-1', { accountId: 'ada', clientId: 'portcullis' }, 14 * 86_400)
    await refreshTokens.upsert('rt-1', { grantId: 'grant-1', accountId: 'ada' }, 14 * 86_400)
    await sessions.upsert('session-1', { accountId: 'ada', uid: 'u-1' }, 86_400)

    // Every anonymous authorization request stores one interaction.
    for (let i = 0; i < 1000; i++) await interactions.upsert(`interaction-${i}`, { kind: 'Interaction' }, 600)

    assert.equal(store.count('Interaction'), 5, 'interactions are capped at their own limit')
    assert.ok(await interactions.find('interaction-999'), 'the newest interaction is kept')
    assert.equal(await interactions.find('interaction-0'), undefined, 'the oldest interactions went')
    assert.deepEqual(await grants.find('grant-1'), { accountId: 'ada', clientId: 'portcullis' })
    assert.deepEqual(await refreshTokens.find('rt-1'), { grantId: 'grant-1', accountId: 'ada' })
    assert.deepEqual(await sessions.findByUid('u-1'), { accountId: 'ada', uid: 'u-1' })
  } finally {
    store.close()
  }
})

test('a full table drops its own least recently written entry', async () => {
  const store = createMemoryStore({ limits: { Grant: 3 } })
  try {
    const grants = store.factory('Grant')
    for (const id of ['a', 'b', 'c']) await grants.upsert(id, { id }, 60)
    await grants.upsert('a', { id: 'a', updated: true }, 60) // rewritten: now the most recent
    await grants.upsert('d', { id: 'd' }, 60)
    assert.equal(store.count('Grant'), 3)
    assert.equal(await grants.find('b'), undefined, 'b was written least recently')
    assert.deepEqual(await grants.find('a'), { id: 'a', updated: true })
    assert.ok(await grants.find('c'))
    assert.ok(await grants.find('d'))
  } finally {
    store.close()
  }
})

test('expiry, consume, destroy and revokeByGrantId stay within one kind', async () => {
  const clock = { t: 1_000_000 }
  const store = createMemoryStore({ now: () => clock.t })
  try {
    const accessTokens = store.factory('AccessToken')
    const refreshTokens = store.factory('RefreshToken')
    await accessTokens.upsert('at-1', { grantId: 'g1' }, 60)
    await accessTokens.upsert('at-2', { grantId: 'g2' }, 60)
    await refreshTokens.upsert('rt-1', { grantId: 'g1' }, 3600)
    await accessTokens.revokeByGrantId('g1')
    assert.equal(await accessTokens.find('at-1'), undefined)
    assert.ok(await accessTokens.find('at-2'))
    assert.ok(await refreshTokens.find('rt-1'), 'revoking one kind leaves the others to their own call')

    await refreshTokens.consume('rt-1')
    assert.equal((await refreshTokens.find('rt-1'))?.consumed, 1000)
    clock.t += 61_000
    assert.equal(await accessTokens.find('at-2'), undefined, 'expired')
    assert.equal(store.count('AccessToken'), 0)
    await refreshTokens.destroy('rt-1')
    assert.equal(store.count('RefreshToken'), 0)
  } finally {
    store.close()
  }
})

test('a limit that is not a positive whole number is refused', () => {
  assert.throws(() => createMemoryStore({ limits: { Grant: 0 } }), /store limit of Grant must be a positive whole number/)
  assert.throws(() => createMemoryStore({ limits: { default: 1.5 } }), /store limit of default must be a positive whole number/)
})
