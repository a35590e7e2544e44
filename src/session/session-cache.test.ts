import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import { MemoryRecordStore } from '../databroker/index.js'
import type { DataRecord, RecordStore, SyncOptions } from '../databroker/index.js'
import { createLogger } from '../shared/log.js'
import { SessionCache } from './session-cache.js'
import { SESSION_TYPE } from './session-store.js'

/** An outage shorter than the 300 ms grace: the copy must bridge it. */
const SHORT_OUTAGE_MS = 150
/** A stretch four times the 100 ms staleness limit: a reachable store must keep the copy in use through it. */
const HEALTHY_STRETCH_MS = 400

/** A memory store whose change stream is stuck (delivers nothing) and whose reachability is switchable. */
function stuckStore(): { store: RecordStore; backing: MemoryRecordStore; setReachable(up: boolean): void } {
  const backing = new MemoryRecordStore()
  let reachable = true
  const store = new Proxy(backing, {
    get(target, prop, receiver) {
      if (prop === 'sync') {
        return (_after: number, options?: SyncOptions): AsyncIterable<DataRecord> => ({
          [Symbol.asyncIterator]: () => ({
            // Like a stream that keeps reconnecting: nothing arrives, it ends only when aborted.
            next: async (): Promise<IteratorResult<DataRecord>> => {
              const signal = options?.signal
              if (signal && !signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
              return { done: true, value: undefined }
            },
          }),
        })
      }
      if (prop === 'serverInfo' || prop === 'syncLatest' || prop === 'get') {
        const fn = Reflect.get(target, prop, receiver) as (...a: unknown[]) => Promise<unknown>
        return (...args: unknown[]) => (reachable ? fn.apply(target, args) : Promise.reject(new Error('connection refused')))
      }
      return Reflect.get(target, prop, receiver) as unknown
    },
  })
  return { store, backing, setReachable: (up) => (reachable = up) }
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

test('a copy that cannot reach its store stops answering after the grace, and starts over from a fresh snapshot', async () => {
  const stuck = stuckStore()
  const { store, backing } = stuck
  await backing.put([{ type: SESSION_TYPE, id: 's1', data: { id: 's1' } }])
  const cache = new SessionCache(store, createLogger('disabled'), { probeIntervalMs: 50, staleAfterMs: 300 })
  cache.start()
  try {
    await until(() => cache.ready, 2000, 'the first snapshot')
    assert.deepEqual(cache.get('s1'), { id: 's1' })
    // Signed out elsewhere; the stuck stream never tells this copy.
    await backing.delete(SESSION_TYPE, 's1')
    stuck.setReachable(false)
    // The outage's length is the behaviour under test, not a wait for something.
    await sleep(SHORT_OUTAGE_MS)
    assert.deepEqual(cache.get('s1'), { id: 's1' }, 'a short outage is bridged by the copy')
    await until(() => !cache.ready, 2000, 'the copy to be dropped')
    assert.equal(cache.get('s1'), undefined, 'no stale answer once the store has been unreachable for the grace')
    stuck.setReachable(true)
    await until(() => cache.ready, 3000, 'a fresh snapshot')
    assert.equal(cache.get('s1'), undefined, 'the fresh snapshot no longer has the signed-out session')
  } finally {
    await cache.stop()
  }
})

test('a reachable store keeps the copy in use', async () => {
  const { store, backing } = stuckStore()
  await backing.put([{ type: SESSION_TYPE, id: 's2', data: { id: 's2' } }])
  const cache = new SessionCache(store, createLogger('disabled'), { probeIntervalMs: 30, staleAfterMs: 100 })
  cache.start()
  try {
    await until(() => cache.ready, 2000, 'the first snapshot')
    // Proving that nothing happens: a copy wrongly taken for stale would be dropped within this stretch.
    await sleep(HEALTHY_STRETCH_MS)
    assert.equal(cache.ready, true)
    assert.deepEqual(cache.get('s2'), { id: 's2' })
  } finally {
    await cache.stop()
  }
})
