/**
 * The sync runner: one instance leads (the databroker lease), the others do not read the
 * provider; records of another source (SCIM) are never touched; a sync that changes nothing
 * writes nothing; after a failure the next attempt comes sooner than the interval.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { MemoryRecordStore } from '../databroker/index.js'
import { DIRECTORY_GROUP_TYPE, DIRECTORY_USER_TYPE } from '../session/directory.js'
import { createLogger } from '../shared/log.js'
import type { DirectoryData, DirectoryProvider } from './provider.js'
import { DirectorySync } from './sync.js'

const logger = createLogger('disabled')

function provider(data: () => DirectoryData): DirectoryProvider & { reads: number } {
  const p = {
    name: 'test',
    reads: 0,
    read(): Promise<DirectoryData> {
      p.reads++
      return Promise.resolve(data())
    },
  }
  return p
}

test('one instance leads: the other neither reads the provider nor writes, until the leader stops', async () => {
  const store = new MemoryRecordStore()
  const data = (): DirectoryData => ({ users: [{ id: 'u1' }], groups: [{ id: 'g1', name: 'eng', memberIds: ['u1'] }] })
  const p1 = provider(data)
  const p2 = provider(data)
  const a = new DirectorySync({ store, provider: p1, logger, intervalMs: 60_000, timeoutMs: 5_000 })
  const b = new DirectorySync({ store, provider: p2, logger, intervalMs: 60_000, timeoutMs: 5_000 })
  await a.runOnce()
  await b.runOnce()
  assert.equal(p1.reads, 1)
  assert.equal(p2.reads, 0)
  assert.equal(a.status().leader, true)
  assert.equal(b.status().leader, false)
  await a.stop()
  await b.runOnce()
  assert.equal(p2.reads, 1)
  assert.equal(b.status().leader, true)
  await b.stop()
  await store.close()
})

test('records written by SCIM are left alone; an unchanged read writes nothing; a vanished group is deleted', async () => {
  const store = new MemoryRecordStore()
  await store.put([{ type: DIRECTORY_GROUP_TYPE, id: 'pushed', data: { id: 'pushed', source: 'scim', name: 'pushed', memberIds: [] } }])
  let groups = [{ id: 'g1', name: 'eng', memberIds: ['u1'] }, { id: 'g2', name: 'ops', memberIds: [] }]
  const sync = new DirectorySync({ store, provider: provider(() => ({ users: [{ id: 'u1', email: 'u1@acme.example' }], groups })), logger, intervalMs: 60_000, timeoutMs: 5_000 })
  await sync.runOnce()
  const version = (await store.serverInfo()).latestRecordVersion
  await sync.runOnce()
  assert.equal((await store.serverInfo()).latestRecordVersion, version, 'an unchanged directory writes nothing')
  groups = [{ id: 'g1', name: 'eng', memberIds: ['u1'] }]
  await sync.runOnce()
  assert.equal(await store.get(DIRECTORY_GROUP_TYPE, 'g2'), undefined)
  assert.ok(await store.get(DIRECTORY_GROUP_TYPE, 'pushed'))
  assert.ok(await store.get(DIRECTORY_USER_TYPE, 'u1'))
  await sync.stop()
  await store.close()
})

test('after a failure the next round comes after retryMs, not the interval', async () => {
  const store = new MemoryRecordStore()
  let fail = true
  const p: DirectoryProvider = {
    name: 'flaky',
    read: () => (fail ? Promise.reject(new Error('provider down')) : Promise.resolve({ users: [], groups: [] })),
  }
  const sync = new DirectorySync({ store, provider: p, logger, intervalMs: 3_600_000, timeoutMs: 5_000, retryMs: 20 })
  // The sync's timers are unref'd (they never hold a process open): hold this one open meanwhile.
  const keepAlive = setInterval(() => undefined, 1000)
  const first = sync.nextRound()
  sync.start()
  await first
  assert.equal(sync.status().stale, true)
  assert.equal(sync.status().lastError, 'provider down')
  fail = false
  const second = sync.nextRound()
  await second
  assert.equal(sync.status().stale, false)
  assert.equal(sync.status().successes, 1)
  clearInterval(keepAlive)
  await sync.stop()
  await store.close()
})

test('stopping a sync aborts its round under way and frees the lease, so a new sync leads at once', async () => {
  const store = new MemoryRecordStore()
  let started!: () => void
  const reading = new Promise<void>((r) => (started = r))
  const slow: DirectoryProvider = {
    name: 'slow',
    // Waits on the request signal as a real API call would, until the sync gives up on it.
    read: (http) => {
      started()
      return http.json('http://127.0.0.1:9/never').then(() => ({ users: [], groups: [] }))
    },
  }
  const keepAlive = setInterval(() => undefined, 1000)
  const old = new DirectorySync({ store, provider: slow, logger, intervalMs: 60_000, timeoutMs: 60_000, fetch: (_url, init) => new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(new Error('aborted')))) })
  old.start()
  await reading
  const t = Date.now()
  await old.stop()
  assert.ok(Date.now() - t < 5_000, 'stop did not wait for the read to time out')
  assert.equal(old.status().errors, 0, 'a stop is not a provider failure')
  const next = new DirectorySync({ store, provider: provider(() => ({ users: [], groups: [] })), logger, intervalMs: 60_000, timeoutMs: 5_000 })
  await next.runOnce()
  assert.equal(next.status().leader, true)
  clearInterval(keepAlive)
  await next.stop()
  await store.close()
})
