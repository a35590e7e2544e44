import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { assertRejectsWithCode, createManualClock, recordStoreConformance } from './conformance.test-helpers.js'
import { DataBrokerError } from './errors.js'
import { MemoryRecordStore } from './memory.js'
import type { DataRecord } from './types.js'

recordStoreConformance('memory', (clock) => Promise.resolve(new MemoryRecordStore({ clock })))

const CASE = { timeout: 15_000 }

/** The next record of a sync, or `undefined` when it ended. */
async function nextRecord(it: AsyncIterator<DataRecord>): Promise<DataRecord | undefined> {
  const r = await it.next()
  return r.done === true ? undefined : r.value
}

/** Collects what a sync reports until it has been quiet for `quietMs`. */
async function drain(store: MemoryRecordStore, after: number, quietMs = 30): Promise<DataRecord[]> {
  const out: DataRecord[] = []
  const it = store.sync(after)[Symbol.asyncIterator]()
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const quiet = new Promise<'quiet'>((r) => {
        timer = setTimeout(() => r('quiet'), quietMs)
      })
      const next = await Promise.race([it.next(), quiet])
      clearTimeout(timer)
      if (next === 'quiet' || next.done === true) return out
      out.push(next.value)
    }
  } finally {
    await it.return?.() // also settles a next() still waiting for changes
  }
}

describe('MemoryRecordStore specifics', () => {
  it('each instance has its own random server version', CASE, async () => {
    const a = new MemoryRecordStore()
    const b = new MemoryRecordStore()
    try {
      const [ia, ib] = [await a.serverInfo(), await b.serverInfo()]
      assert.notEqual(ia.serverVersion, ib.serverVersion)
      assert.equal(ia.latestRecordVersion, 0)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('hands out frozen data', CASE, async () => {
    const s = new MemoryRecordStore()
    try {
      const [r] = await s.put([{ type: 't', id: 'x', data: { list: [{ a: 1 }] } }])
      assert.ok(Object.isFrozen(r?.data))
      const got = (await s.get('t', 'x'))?.data as { list: { a: number }[] }
      assert.ok(Object.isFrozen(got.list[0]))
      assert.throws(() => {
        ;(got.list[0] as { a: number }).a = 2
      }, TypeError)
    } finally {
      await s.close()
    }
  })

  it('prunes the oldest tombstones beyond the bound; syncing from before fails', CASE, async () => {
    const s = new MemoryRecordStore({ clock: createManualClock(), maxTombstones: 2 })
    try {
      await s.put(['a', 'b', 'c'].map((id) => ({ type: 't', id, data: id })))
      const start = (await s.serverInfo()).latestRecordVersion
      const ta = await s.delete('t', 'a')
      await s.delete('t', 'b')
      assert.ok(ta)
      assert.deepEqual(
        (await drain(s, start)).map((r) => r.id),
        ['a', 'b'],
        'within the bound nothing is lost',
      )
      await s.delete('t', 'c')
      const it = s.sync(start)[Symbol.asyncIterator]()
      await assertRejectsWithCode(it.next(), 'ERR_DATABROKER_SYNC_TOO_OLD')
      assert.deepEqual(
        (await drain(s, ta.version)).map((r) => r.id),
        ['b', 'c'],
        'a caller that saw the pruned tombstone can still resume',
      )
      await s.put([{ type: 't', id: 'a', data: 'again' }])
      assert.equal((await s.get('t', 'a'))?.data, 'again')
    } finally {
      await s.close()
    }
  })

  it('a sync that falls behind pruning fails instead of missing deletes', CASE, async () => {
    const s = new MemoryRecordStore({ maxTombstones: 1 })
    try {
      await s.put(['a', 'b', 'c'].map((id) => ({ type: 't', id, data: id })))
      const it = s.sync(0)[Symbol.asyncIterator]()
      assert.equal((await nextRecord(it))?.id, 'a')
      // While the consumer holds the first record, two deletes happen; only one tombstone fits.
      // The sync already took its snapshot of a, b, c, so it delivers b and c, then notices.
      await s.delete('t', 'a')
      await s.delete('t', 'b')
      assert.equal((await nextRecord(it))?.id, 'b')
      assert.equal((await nextRecord(it))?.id, 'c')
      await assertRejectsWithCode(it.next(), 'ERR_DATABROKER_SYNC_TOO_OLD')
    } finally {
      await s.close()
    }
  })

  it('a timer sweeps expired records so that waiting syncs hear of them', CASE, async () => {
    const clock = createManualClock()
    const s = new MemoryRecordStore({ clock, sweepIntervalMs: 5 })
    try {
      await s.setOptions('t', { ttlMs: 1_000 })
      const [r] = await s.put([{ type: 't', id: 'x', data: 1 }])
      assert.ok(r)
      const it = s.sync(r.version, { signal: AbortSignal.timeout(5_000) })[Symbol.asyncIterator]()
      const next = it.next()
      clock.advance(1_000)
      const got = await next
      assert.equal(got.done, false)
      assert.equal(got.value?.id, 'x')
      assert.ok(got.value?.deletedAt)
      await it.return?.()
    } finally {
      await s.close()
    }
  })

  it('sync stays exact across change-log compaction', CASE, async () => {
    const s = new MemoryRecordStore({ maxTombstones: 100_000 })
    try {
      // A reference model: the latest state of each record, by version.
      const latest = new Map<string, DataRecord>()
      const ids = ['a', 'b', 'c', 'd', 'e']
      for (let i = 0; i < 6_000; i++) {
        const id = ids[i % ids.length] as string
        if (i % 7 === 3) {
          const t = await s.delete('t', id)
          if (t) latest.set(id, t)
        } else {
          const [p] = await s.put([{ type: 't', id, data: i }])
          if (p) latest.set(id, p)
        }
      }
      // Current tombstones, then enough overwrites elsewhere to force another compaction.
      for (const id of ['a', 'b']) {
        const t = await s.delete('t', id)
        if (t) latest.set(id, t)
      }
      for (let i = 0; i < 3_000; i++) {
        const [p] = await s.put([{ type: 't', id: 'z', data: i }])
        if (p) latest.set('z', p)
      }
      const top = (await s.serverInfo()).latestRecordVersion
      for (const after of [0, 100, top - 3_010, top - 20, top - 3, top]) {
        const expected = [...latest.values()]
          .filter((r) => r.version > after)
          .sort((x, y) => x.version - y.version)
          .map((r) => `${r.id}@${r.version}`)
        const got = (await drain(s, after)).map((r) => `${r.id}@${r.version}`)
        assert.deepEqual(got, expected, `sync after ${after}`)
      }
    } finally {
      await s.close()
    }
  })

  it('rejects invalid constructor options', CASE, () => {
    assert.throws(() => new MemoryRecordStore({ maxTombstones: -1 }), DataBrokerError)
    assert.throws(() => new MemoryRecordStore({ sweepIntervalMs: 0 }), DataBrokerError)
  })
})
