import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { assertRejectsWithCode, recordStoreConformance } from './conformance.test-helpers.js'
import { MemoryRecordStore } from './memory.js'
import { createRemoteRecordStore } from './remote.js'
import type { RemoteRecordStore } from './remote.js'
import { startDatabrokerServer } from './server.js'
import type { DatabrokerServer } from './server.js'
import type { DataRecord, RecordStore } from './types.js'
import { createLogger } from '../shared/log.js'

const logger = createLogger('disabled')
const CASE = { timeout: 20_000 }
/** An idle stretch four times the sync idle timeout (100 ms): only heartbeats keep the sync open through it. */
const IDLE_SYNC_MS = 400

/** What each conformance store runs on: a server wrapping a memory store with the suite's clock. */
const backing = new Map<RecordStore, { server: DatabrokerServer; local: MemoryRecordStore }>()

recordStoreConformance(
  'remote (internal API over h2c, memory behind)',
  async (clock) => {
    const sharedSecret = randomBytes(32)
    const local = new MemoryRecordStore({ clock })
    const server = await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret, logger })
    const store = createRemoteRecordStore({ urls: [server.url], sharedSecret, logger })
    backing.set(store, { server, local })
    return store
  },
  async (store) => {
    const b = backing.get(store)
    backing.delete(store)
    await b?.server.close()
    await b?.local.close()
  },
)

async function take(it: AsyncIterator<DataRecord>, n: number): Promise<DataRecord[]> {
  const out: DataRecord[] = []
  while (out.length < n) {
    const r = await it.next()
    assert.equal(r.done, false, `sync ended after ${out.length} of ${n}`)
    out.push(r.value)
  }
  return out
}

/** A memory store served by `count` databroker servers, and one remote client over all of them. */
async function servedStore(count: number): Promise<{ local: MemoryRecordStore; servers: DatabrokerServer[]; remote: RemoteRecordStore; sharedSecret: Buffer; close(): Promise<void> }> {
  const sharedSecret = randomBytes(32)
  const local = new MemoryRecordStore()
  const servers: DatabrokerServer[] = []
  for (let i = 0; i < count; i++) servers.push(await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret, logger }))
  const remote = createRemoteRecordStore({ urls: servers.map((s) => s.url), sharedSecret, logger })
  return {
    local,
    servers,
    remote,
    sharedSecret,
    async close() {
      await remote.close()
      for (const server of servers) await server.close()
      await local.close()
    },
  }
}

describe('RemoteRecordStore specifics', () => {
  it('a snapshot larger than any single answer may be (64 MiB) arrives whole, and the connection stays usable', { timeout: 60_000 }, async () => {
    const served = await servedStore(1)
    const { local, remote } = served
    try {
      const big = 'x'.repeat(1024 * 1024)
      for (let i = 0; i < 70; i += 10) {
        await local.put(Array.from({ length: 10 }, (_, j) => ({ type: 'big', id: `r${i + j}`, data: { i: i + j, big } })))
      }
      const snapshot = await remote.syncLatest('big')
      assert.equal(snapshot.records.length, 70)
      assert.deepEqual(new Set(snapshot.records.map((r) => (r.data as { i: number }).i)).size, 70)
      assert.equal(snapshot.latestRecordVersion, (await local.serverInfo()).latestRecordVersion)
      assert.equal(((await remote.get('big', 'r7'))?.data as { i: number }).i, 7)
    } finally {
      await served.close()
    }
  })

  it('fails over between two servers: calls continue and sync resumes without loss', CASE, async () => {
    const served = await servedStore(2)
    const { remote } = served
    const [a] = served.servers as [DatabrokerServer]
    try {
      const it = remote.sync(0, { signal: AbortSignal.timeout(15_000) })[Symbol.asyncIterator]()
      const written: string[] = []
      for (let i = 0; i < 20; i++) {
        await remote.put([{ type: 't', id: `r${i}`, data: i }])
        written.push(`r${i}`)
      }
      const first = await take(it, 10)
      // Kill one server mid-run (the sync may be on either); calls and the sync go on.
      await a.close()
      for (let i = 20; i < 40; i++) {
        await remote.put([{ type: 't', id: `r${i}`, data: i }])
        written.push(`r${i}`)
      }
      assert.equal((await remote.get('t', 'r39'))?.data, 39)
      assert.equal((await remote.query({ type: 't' })).totalCount, 40)
      const rest = await take(it, 30)
      const got = [...first, ...rest]
      assert.deepEqual(got.map((r) => r.id), written, 'every record once, in order')
      const versions = got.map((r) => r.version)
      assert.deepEqual(versions, [...versions].sort((x, y) => x - y))
      await it.return?.()
    } finally {
      await served.close()
    }
  })

  it('a sync survives the server it is on going away', CASE, async () => {
    // a is first in the URL list, so that the sync certainly starts on a.
    const served = await servedStore(2)
    const { remote, local, sharedSecret } = served
    const [a, b] = served.servers as [DatabrokerServer, DatabrokerServer]
    try {
      const its = [0, 1].map(() => remote.sync(0, { signal: AbortSignal.timeout(15_000) })[Symbol.asyncIterator]())
      await local.put([{ type: 't', id: 'x', data: 1 }])
      for (const it of its) assert.equal((await take(it, 1))[0]?.id, 'x')
      const pending = its.map((it) => it.next())
      await a.close()
      await b.close()
      const c = await startDatabrokerServer({ store: local, address: b.url.replace('http://', ''), sharedSecret, logger })
      try {
        await local.put([{ type: 't', id: 'y', data: 2 }])
        for (const p of pending) {
          const r = await p
          assert.equal(r.done, false)
          assert.equal(r.value?.id, 'y')
        }
      } finally {
        for (const it of its) await it.return?.()
        await c.close()
      }
    } finally {
      await served.close()
    }
  })

  it('with every server down, calls fail with ERR_DATABROKER_UNAVAILABLE', CASE, async () => {
    const sharedSecret = randomBytes(32)
    const local = new MemoryRecordStore()
    const a = await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret, logger })
    await a.close()
    const remote: RemoteRecordStore = createRemoteRecordStore({ urls: [a.url, a.url], sharedSecret, logger })
    try {
      await assertRejectsWithCode(remote.get('t', 'x'), 'ERR_DATABROKER_UNAVAILABLE')
      await assertRejectsWithCode(remote.delete('t', 'x'), 'ERR_DATABROKER_UNAVAILABLE')
    } finally {
      await remote.close()
      await local.close()
    }
  })

  it('a wrong shared secret is refused and surfaces as ERR_DATABROKER_UNAVAILABLE', CASE, async () => {
    const local = new MemoryRecordStore()
    const a = await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret: randomBytes(32), logger })
    const remote = createRemoteRecordStore({ urls: [a.url], sharedSecret: randomBytes(32), logger })
    try {
      await assertRejectsWithCode(remote.put([{ type: 't', id: 'x', data: 1 }]), 'ERR_DATABROKER_UNAVAILABLE')
      assert.equal(await local.get('t', 'x'), undefined)
    } finally {
      await remote.close()
      await a.close()
      await local.close()
    }
  })

  it('heartbeats keep an idle sync open', CASE, async () => {
    const sharedSecret = randomBytes(32)
    const local = new MemoryRecordStore()
    const a = await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret, logger, heartbeatMs: 20 })
    const remote = createRemoteRecordStore({ urls: [a.url], sharedSecret, logger, syncIdleTimeoutMs: 100 })
    try {
      const it = remote.sync(0, { signal: AbortSignal.timeout(10_000) })[Symbol.asyncIterator]()
      const next = it.next()
      // The idle stretch is the behaviour under test, not a wait for something.
      await new Promise((r) => setTimeout(r, IDLE_SYNC_MS))
      const [put] = await local.put([{ type: 't', id: 'x', data: 1 }])
      const got = await next
      assert.equal(got.done, false)
      assert.equal(got.value.version, put?.version)
      await it.return?.()
    } finally {
      await remote.close()
      await a.close()
      await local.close()
    }
  })
})
