/**
 * The conformance suite every `RecordStore` backend runs unchanged: a backend's test file calls
 * `recordStoreConformance(name, makeStore)` and gets one `describe` block of `node:test` cases.
 *
 * Each case gets a fresh store built around a manual clock that starts at a fixed instant and
 * only moves when the case advances it, so TTL and lease cases are exact and instant. Only the
 * `sync` cases wait on real time, and every wait is bounded by `AbortSignal.timeout`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isDataBrokerError } from './errors.js'
import type { DataBrokerErrorCode } from './errors.js'
import type { Clock, DataRecord, RecordStore, SyncOptions } from './types.js'

/** A clock that only moves when told to. */
export interface ManualClock extends Clock {
  /** Moves the clock forward by `ms` milliseconds. */
  advance(ms: number): void
}

/** The instant every manual clock starts at: 2025-01-01T00:00:00Z. */
const MANUAL_CLOCK_START = Date.UTC(2025, 0, 1)

/** Creates a manual clock starting at `start`. */
export function createManualClock(start = MANUAL_CLOCK_START): ManualClock {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}

/** Builds a fresh, empty store that uses `clock` for all its time-dependent behaviour. */
type MakeStore = (clock: Clock) => Promise<RecordStore>

/** Runs after each case, once the store has been closed (for example, to drop a database). */
type CleanupStore = (store: RecordStore) => Promise<void>

/** Each case's own time limit, so that a hung backend fails instead of stalling the run. */
const CASE = { timeout: 15_000 }
/** Bounds every real-time wait on a sync stream. */
const SYNC_WAIT_MS = 5_000
/** How long a sync must stay quiet to count as waiting. */
const QUIET_MS = 50

/** Asserts that `promise` rejects with a `DataBrokerError` carrying `code`. */
export async function assertRejectsWithCode(
  promise: Promise<unknown>,
  code: DataBrokerErrorCode,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isDataBrokerError(err, code), `expected ${code}, got ${String(err)}`)
    return true
  })
}

/** Resolves with the settled result of `p`, or `'pending'` if it has not settled after `ms`. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms)
  })
  try {
    return await Promise.race([p, pending])
  } finally {
    clearTimeout(timer) // a won race must not leave a timer holding the process open
  }
}

/** Starts a sync and returns its iterator. */
function openSync(
  store: RecordStore,
  after: number,
  options: SyncOptions,
): AsyncIterator<DataRecord> {
  return store.sync(after, options)[Symbol.asyncIterator]()
}

/** The record a pending `next()` settles with, failing if the sync ended instead. */
async function valueOf(next: Promise<IteratorResult<DataRecord>>): Promise<DataRecord> {
  const r = await next
  if (r.done === true) assert.fail('sync ended')
  return r.value
}

/** Pulls exactly `n` records from an iterator, failing if it ends first. */
async function take(it: AsyncIterator<DataRecord>, n: number): Promise<DataRecord[]> {
  const out: DataRecord[] = []
  while (out.length < n) {
    const r = await it.next()
    assert.equal(r.done, false, `sync ended after ${out.length} of ${n} records`)
    out.push(r.value)
  }
  return out
}

const brief = (r: DataRecord): string => `${r.type}/${r.id}${r.deletedAt ? ' (deleted)' : ''}`

/** Registers the shared `RecordStore` conformance cases for one backend. */
export function recordStoreConformance(
  name: string,
  makeStore: MakeStore,
  cleanup?: CleanupStore,
): void {
  /** Runs `body` with a fresh store and clock, always closing (and cleaning up) the store. */
  async function withStore(
    body: (store: RecordStore, clock: ManualClock) => Promise<void>,
  ): Promise<void> {
    const clock = createManualClock()
    const store = await makeStore(clock)
    try {
      await body(store, clock)
    } finally {
      await store.close()
      if (cleanup) await cleanup(store)
    }
  }

  describe(`RecordStore conformance: ${name}`, () => {
    describe('versions, put and get', () => {
      it('assigns strictly increasing versions across types, deletes and batches', CASE, () =>
        withStore(async (s) => {
          const before = (await s.serverInfo()).latestRecordVersion
          const [a] = await s.put([{ type: 't1', id: 'a', data: 1 }])
          const batch = await s.put([
            { type: 't2', id: 'a', data: 2 },
            { type: 't1', id: 'b', data: 3 },
          ])
          const del = await s.delete('t1', 'a')
          const [again] = await s.put([{ type: 't1', id: 'a', data: 4 }])
          const versions = [a, ...batch, del, again].map((r) => r?.version)
          assert.ok(versions.every((v) => typeof v === 'number' && Number.isInteger(v)))
          const nums = versions as number[]
          assert.ok((nums[0] as number) > before)
          for (let i = 1; i < nums.length; i++) {
            assert.ok((nums[i] as number) > (nums[i - 1] as number), `versions ${nums.join(',')}`)
          }
          assert.equal((await s.serverInfo()).latestRecordVersion, nums.at(-1))
        }),
      )

      it('put returns the stored records in input order and get returns them', CASE, () =>
        withStore(async (s, clock) => {
          const out = await s.put([
            { type: 'session', id: 's1', data: { user: 'u1' } },
            { type: 'user', id: 's1', data: { name: 'Ann' } },
          ])
          assert.equal(out.length, 2)
          assert.deepEqual(
            out.map((r) => [r.type, r.id, r.data, r.modifiedAt.getTime(), r.deletedAt]),
            [
              ['session', 's1', { user: 'u1' }, clock.now(), undefined],
              ['user', 's1', { name: 'Ann' }, clock.now(), undefined],
            ],
          )
          assert.deepEqual(await s.get('session', 's1'), out[0])
          assert.deepEqual(await s.get('user', 's1'), out[1])
          assert.equal(await s.get('session', 'missing'), undefined)
          assert.equal(await s.get('nothing', 's1'), undefined)
        }),
      )

      it('put over an existing record replaces it with a new version and time', CASE, () =>
        withStore(async (s, clock) => {
          const [first] = await s.put([{ type: 't', id: 'x', data: { n: 1 } }])
          clock.advance(5_000)
          const [second] = await s.put([{ type: 't', id: 'x', data: { n: 2 } }])
          assert.ok(first && second && second.version > first.version)
          assert.equal(second.modifiedAt.getTime(), clock.now())
          const got = await s.get('t', 'x')
          assert.deepEqual(got?.data, { n: 2 })
          assert.equal(got?.version, second.version)
          assert.equal((await s.query({ type: 't' })).totalCount, 1)
        }),
      )

      it('a batch naming one record twice keeps the later entry', CASE, () =>
        withStore(async (s) => {
          const out = await s.put([
            { type: 't', id: 'x', data: 'first' },
            { type: 't', id: 'x', data: 'second' },
          ])
          assert.equal(out.length, 2)
          assert.equal((await s.get('t', 'x'))?.data, 'second')
          assert.equal((await s.get('t', 'x'))?.version, out[1]?.version)
        }),
      )

      it('stores data as JSON, isolated from the caller', CASE, () =>
        withStore(async (s) => {
          const input = {
            nested: { list: [1, 'two', null, true, { deep: 1.5 }] },
            when: new Date(0),
            gone: undefined,
          }
          await s.put([{ type: 't', id: 'x', data: input }])
          input.nested.list.push('added later')
          const got = await s.get('t', 'x')
          assert.deepEqual(got?.data, {
            nested: { list: [1, 'two', null, true, { deep: 1.5 }] },
            when: '1970-01-01T00:00:00.000Z',
          })
          await s.put([{ type: 't', id: 'scalar', data: 'just a string' }])
          assert.equal((await s.get('t', 'scalar'))?.data, 'just a string')
        }),
      )

      it('returned timestamps are copies', CASE, () =>
        withStore(async (s, clock) => {
          const [put] = await s.put([{ type: 't', id: 'x', data: 1 }])
          put?.modifiedAt.setTime(0)
          const got = await s.get('t', 'x')
          got?.modifiedAt.setTime(0)
          assert.equal((await s.get('t', 'x'))?.modifiedAt.getTime(), clock.now())
        }),
      )

      it('rejects an invalid batch as a whole', CASE, () =>
        withStore(async (s) => {
          const cyclic: Record<string, unknown> = {}
          cyclic.self = cyclic
          const bad: { type: string; id: string; data: unknown }[] = [
            { type: '', id: 'x', data: 1 },
            { type: 't', id: '', data: 1 },
            { type: 't', id: 'x', data: undefined },
            { type: 't', id: 'x', data: 10n },
            { type: 't', id: 'x', data: cyclic },
            { type: 't', id: 'x', data: () => 1 },
          ]
          const before = (await s.serverInfo()).latestRecordVersion
          for (const entry of bad) {
            await assertRejectsWithCode(
              s.put([{ type: 't', id: 'ok', data: 1 }, entry]),
              'ERR_DATABROKER_INVALID_ARGUMENT',
            )
          }
          assert.equal(await s.get('t', 'ok'), undefined)
          assert.equal((await s.serverInfo()).latestRecordVersion, before)
          assert.deepEqual(await s.put([]), [])
          assert.equal((await s.serverInfo()).latestRecordVersion, before)
          await assertRejectsWithCode(s.get('', 'x'), 'ERR_DATABROKER_INVALID_ARGUMENT')
          await assertRejectsWithCode(s.get('t', ''), 'ERR_DATABROKER_INVALID_ARGUMENT')
        }),
      )
    })

    describe('delete and tombstones', () => {
      it('delete returns a tombstone with a new version, keeping the last data', CASE, () =>
        withStore(async (s, clock) => {
          const [put] = await s.put([{ type: 't', id: 'x', data: { keep: 'me' } }])
          clock.advance(1_000)
          const tomb = await s.delete('t', 'x')
          assert.ok(put && tomb)
          assert.equal(tomb.type, 't')
          assert.equal(tomb.id, 'x')
          assert.ok(tomb.version > put.version)
          assert.deepEqual(tomb.data, { keep: 'me' })
          assert.equal(tomb.deletedAt?.getTime(), clock.now())
          assert.equal(tomb.modifiedAt.getTime(), clock.now())
          assert.equal(await s.get('t', 'x'), undefined)
          assert.equal((await s.serverInfo()).latestRecordVersion, tomb.version)
        }),
      )

      it('deleting a missing or already deleted record changes nothing', CASE, () =>
        withStore(async (s) => {
          assert.equal(await s.delete('t', 'never'), undefined)
          await s.put([{ type: 't', id: 'x', data: 1 }])
          await s.delete('t', 'x')
          const v = (await s.serverInfo()).latestRecordVersion
          assert.equal(await s.delete('t', 'x'), undefined)
          assert.equal((await s.serverInfo()).latestRecordVersion, v)
        }),
      )

      it('put after delete revives the record', CASE, () =>
        withStore(async (s) => {
          await s.put([{ type: 't', id: 'x', data: 1 }])
          const tomb = await s.delete('t', 'x')
          const [revived] = await s.put([{ type: 't', id: 'x', data: 2 }])
          assert.ok(tomb && revived && revived.version > tomb.version)
          assert.equal(revived.deletedAt, undefined)
          assert.equal((await s.get('t', 'x'))?.data, 2)
          assert.deepEqual(
            (await s.query({ type: 't' })).records.map((r) => r.id),
            ['x'],
          )
        }),
      )
    })

    describe('query', () => {
      async function seed(s: RecordStore): Promise<void> {
        await s.put([
          { type: 'user', id: 'c', data: { team: 'red', admin: false } },
          { type: 'user', id: 'a', data: { team: 'blue', admin: true } },
          { type: 'user', id: 'e', data: { team: 'red', admin: true } },
          { type: 'user', id: 'b', data: { team: 'red', admin: null } },
          { type: 'user', id: 'd', data: { team: 'blue', admin: false } },
          { type: 'user', id: 'gone', data: { team: 'red', admin: true } },
          { type: 'group', id: 'a', data: { team: 'red' } },
          { type: 'user', id: 'list', data: ['team', 'red'] },
          { type: 'user', id: 'text', data: 'red' },
        ])
        await s.delete('user', 'gone')
      }

      it('returns live records of the type ordered by id, with the total count', CASE, () =>
        withStore(async (s) => {
          await seed(s)
          const all = await s.query({ type: 'user' })
          assert.deepEqual(
            all.records.map((r) => r.id),
            ['a', 'b', 'c', 'd', 'e', 'list', 'text'],
          )
          assert.equal(all.totalCount, 7)
          assert.ok(all.records.every((r) => r.type === 'user' && r.deletedAt === undefined))
          assert.deepEqual(await s.query({ type: 'none' }), { records: [], totalCount: 0 })
        }),
      )

      it('filters with a predicate', CASE, () =>
        withStore(async (s) => {
          await seed(s)
          const seen: unknown[] = []
          const res = await s.query({
            type: 'user',
            filter: (data) => {
              seen.push(data)
              return (data as { admin?: unknown }).admin === true
            },
          })
          assert.deepEqual(
            res.records.map((r) => r.id),
            ['a', 'e'],
          )
          assert.equal(res.totalCount, 2)
          assert.ok(seen.length >= 7, 'the predicate sees every live record of the type')
        }),
      )

      it('filters with field equality on every given field', CASE, () =>
        withStore(async (s) => {
          await seed(s)
          const red = await s.query({ type: 'user', filter: { team: 'red' } })
          assert.deepEqual(
            red.records.map((r) => r.id),
            ['b', 'c', 'e'],
          )
          assert.equal(red.totalCount, 3)
          const redAdmins = await s.query({ type: 'user', filter: { team: 'red', admin: true } })
          assert.deepEqual(
            redAdmins.records.map((r) => r.id),
            ['e'],
          )
          const nullAdmin = await s.query({ type: 'user', filter: { admin: null } })
          assert.deepEqual(
            nullAdmin.records.map((r) => r.id),
            ['b'],
          )
          const falsy = await s.query({ type: 'user', filter: { admin: 0 } })
          assert.equal(falsy.totalCount, 0, 'equality is strict: 0 is not false')
          const missing = await s.query({ type: 'user', filter: { colour: 'red' } })
          assert.equal(missing.totalCount, 0)
          const empty = await s.query({ type: 'user', filter: {} })
          assert.equal(empty.totalCount, 5, 'an empty object filter matches all object data')
        }),
      )

      it('pages with offset and limit without changing totalCount', CASE, () =>
        withStore(async (s) => {
          await seed(s)
          const ids = async (offset?: number, limit?: number): Promise<[string[], number]> => {
            const res = await s.query({
              type: 'user',
              filter: { team: 'red' },
              ...(offset === undefined ? {} : { offset }),
              ...(limit === undefined ? {} : { limit }),
            })
            return [res.records.map((r) => r.id), res.totalCount]
          }
          assert.deepEqual(await ids(0, 2), [['b', 'c'], 3])
          assert.deepEqual(await ids(2, 2), [['e'], 3])
          assert.deepEqual(await ids(1), [['c', 'e'], 3])
          assert.deepEqual(await ids(undefined, 1), [['b'], 3])
          assert.deepEqual(await ids(3, 5), [[], 3])
          assert.deepEqual(await ids(0, 0), [[], 3])
        }),
      )

      it('rejects invalid paging and filters', CASE, () =>
        withStore(async (s) => {
          const code = 'ERR_DATABROKER_INVALID_ARGUMENT'
          await assertRejectsWithCode(s.query({ type: 't', offset: -1 }), code)
          await assertRejectsWithCode(s.query({ type: 't', offset: 1.5 }), code)
          await assertRejectsWithCode(s.query({ type: 't', limit: -1 }), code)
          await assertRejectsWithCode(s.query({ type: 't', limit: Number.NaN }), code)
          await assertRejectsWithCode(s.query({ type: '' }), code)
          const nested = { a: { b: 1 } } as unknown as Record<string, string>
          await assertRejectsWithCode(s.query({ type: 't', filter: nested }), code)
        }),
      )
    })

    describe('listTypes and serverInfo', () => {
      it('lists, in order, the types that have live records', CASE, () =>
        withStore(async (s) => {
          assert.deepEqual(await s.listTypes(), [])
          await s.put([
            { type: 'user', id: 'u', data: 1 },
            { type: 'session', id: 's', data: 1 },
            { type: 'device', id: 'd', data: 1 },
            { type: 'session', id: 's2', data: 1 },
          ])
          assert.deepEqual(await s.listTypes(), ['device', 'session', 'user'])
          await s.delete('device', 'd')
          await s.delete('session', 's')
          assert.deepEqual(await s.listTypes(), ['session', 'user'])
        }),
      )

      it('reports a stable server version and the latest record version', CASE, () =>
        withStore(async (s) => {
          const first = await s.serverInfo()
          assert.equal(typeof first.serverVersion, 'string')
          assert.ok(first.serverVersion.length > 0)
          const [r] = await s.put([{ type: 't', id: 'x', data: 1 }])
          const second = await s.serverInfo()
          assert.equal(second.serverVersion, first.serverVersion)
          assert.equal(second.latestRecordVersion, r?.version)
          const tomb = await s.delete('t', 'x')
          assert.equal((await s.serverInfo()).latestRecordVersion, tomb?.version)
        }),
      )
    })

    describe('sync', () => {
      it('streams changes after a version, deletes included, in version order', CASE, () =>
        withStore(async (s) => {
          const [a] = await s.put([{ type: 't', id: 'a', data: 'a1' }])
          await s.put([{ type: 't', id: 'b', data: 'b1' }])
          await s.put([{ type: 'u', id: 'c', data: 'c1' }])
          await s.put([{ type: 't', id: 'b', data: 'b2' }])
          await s.delete('t', 'a')
          await s.put([{ type: 't', id: 'd', data: 'd1' }])
          assert.ok(a)
          const it = openSync(s, a.version, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          try {
            const got = await take(it, 4)
            assert.deepEqual(got.map(brief), ['u/c', 't/b', 't/a (deleted)', 't/d'])
            assert.deepEqual(
              got.map((r) => r.data),
              ['c1', 'b2', 'a1', 'd1'],
            )
            const versions = got.map((r) => r.version)
            assert.deepEqual(
              versions,
              [...versions].sort((x, y) => x - y),
            )
            assert.ok(versions.every((v) => v > a.version))
            assert.equal(await settledWithin(it.next(), QUIET_MS), 'pending')
          } finally {
            await it.return?.()
          }
        }),
      )

      it('waits for new changes once caught up', CASE, () =>
        withStore(async (s) => {
          const [base] = await s.put([{ type: 't', id: 'a', data: 1 }])
          assert.ok(base)
          const it = openSync(s, base.version, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          try {
            const next = it.next()
            assert.equal(await settledWithin(next, QUIET_MS), 'pending', 'nothing to report yet')
            const [put] = await s.put([{ type: 't', id: 'b', data: 2 }])
            const r = await next
            assert.equal(r.done, false)
            assert.deepEqual(r.value, put)
            const next2 = it.next()
            assert.equal(await settledWithin(next2, QUIET_MS), 'pending')
            const tomb = await s.delete('t', 'a')
            assert.deepEqual(await valueOf(next2), tomb)
          } finally {
            await it.return?.()
          }
        }),
      )

      it('from version 0 reports everything, and skips superseded states', CASE, () =>
        withStore(async (s) => {
          for (let i = 0; i < 50; i++) await s.put([{ type: 't', id: 'same', data: i }])
          await s.put([{ type: 't', id: 'other', data: 'x' }])
          const it = openSync(s, 0, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          try {
            const got = await take(it, 2)
            assert.deepEqual(
              got.map((r) => [r.id, r.data]),
              [
                ['same', 49],
                ['other', 'x'],
              ],
            )
            assert.equal(await settledWithin(it.next(), QUIET_MS), 'pending')
          } finally {
            await it.return?.()
          }
        }),
      )

      it('several syncs each receive every change', CASE, () =>
        withStore(async (s) => {
          const signal = AbortSignal.timeout(SYNC_WAIT_MS)
          const its = [0, 1, 2].map(() => s.sync(0, { signal })[Symbol.asyncIterator]())
          try {
            const nexts = its.map((it) => it.next())
            for (const n of nexts) assert.equal(await settledWithin(n, QUIET_MS), 'pending')
            const [put] = await s.put([{ type: 't', id: 'x', data: 1 }])
            for (const n of nexts) assert.deepEqual(await valueOf(n), put)
            const again = its.map((it) => it.next())
            for (const n of again) assert.equal(await settledWithin(n, QUIET_MS), 'pending')
            const tomb = await s.delete('t', 'x')
            for (const n of again) assert.deepEqual(await valueOf(n), tomb)
          } finally {
            for (const it of its) await it.return?.()
          }
        }),
      )

      it('filters by type, before and after catching up', CASE, () =>
        withStore(async (s) => {
          await s.put([
            { type: 'a', id: '1', data: 1 },
            { type: 'b', id: '1', data: 1 },
            { type: 'a', id: '2', data: 1 },
          ])
          const it = openSync(s, 0, { type: 'a', signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          try {
            assert.deepEqual((await take(it, 2)).map(brief), ['a/1', 'a/2'])
            const next = it.next()
            await s.put([{ type: 'b', id: '2', data: 1 }])
            assert.equal(await settledWithin(next, QUIET_MS), 'pending', 'other types are skipped')
            await s.delete('a', '1')
            assert.equal(brief(await valueOf(next)), 'a/1 (deleted)')
          } finally {
            await it.return?.()
          }
        }),
      )

      it('ends normally when the signal aborts', CASE, () =>
        withStore(async (s) => {
          await s.put([{ type: 't', id: 'a', data: 1 }])
          const ac = new AbortController()
          const got: string[] = []
          const done = (async () => {
            for await (const r of s.sync(0, { signal: ac.signal })) got.push(brief(r))
            return 'ended'
          })()
          assert.equal(await settledWithin(done, QUIET_MS), 'pending')
          ac.abort()
          assert.equal(await settledWithin(done, SYNC_WAIT_MS), 'ended')
          assert.deepEqual(got, ['t/a'])

          const pre = s.sync(0, { signal: AbortSignal.abort() })[Symbol.asyncIterator]()
          assert.deepEqual(await pre.next(), { done: true, value: undefined })
        }),
      )

      it('return() ends a sync that is waiting for changes', CASE, () =>
        withStore(async (s) => {
          await s.put([{ type: 't', id: 'a', data: 1 }])
          const it = openSync(s, 0, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          assert.equal(brief(await valueOf(it.next())), 't/a')
          const next = it.next()
          assert.equal(await settledWithin(next, QUIET_MS), 'pending')
          assert.deepEqual(await it.return?.(), { done: true, value: undefined })
          // Well inside the signal's timeout, so that only return() can have ended it.
          assert.deepEqual(await settledWithin(next, 1_000), { done: true, value: undefined })
          assert.deepEqual(await it.next(), { done: true, value: undefined })

          const got: string[] = []
          for await (const r of s.sync(0, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })) {
            got.push(brief(r))
            break
          }
          assert.deepEqual(got, ['t/a'])
        }),
      )

      it('rejects an invalid starting version', CASE, () =>
        withStore(async (s) => {
          for (const v of [-1, 0.5, Number.NaN]) {
            const it = s.sync(v, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
            await assertRejectsWithCode(
              it[Symbol.asyncIterator]().next(),
              'ERR_DATABROKER_INVALID_ARGUMENT',
            )
          }
        }),
      )

      it('syncLatest returns a snapshot that sync continues from', CASE, () =>
        withStore(async (s) => {
          await s.put([
            { type: 'user', id: 'b', data: 'b' },
            { type: 'session', id: 'z', data: 'z' },
            { type: 'user', id: 'a', data: 'a' },
            { type: 'session', id: 'gone', data: 'gone' },
          ])
          await s.delete('session', 'gone')
          const snap = await s.syncLatest()
          const info = await s.serverInfo()
          assert.deepEqual(snap.records.map(brief), ['session/z', 'user/a', 'user/b'])
          assert.equal(snap.latestRecordVersion, info.latestRecordVersion)
          assert.equal(snap.serverVersion, info.serverVersion)
          assert.deepEqual(snap.records[1], await s.get('user', 'a'))

          const users = await s.syncLatest('user')
          assert.deepEqual(users.records.map(brief), ['user/a', 'user/b'])
          assert.equal(users.latestRecordVersion, info.latestRecordVersion)
          assert.deepEqual((await s.syncLatest('none')).records, [])

          const signal = AbortSignal.timeout(SYNC_WAIT_MS)
          const it = openSync(s, snap.latestRecordVersion, { signal })
          try {
            const next = it.next()
            assert.equal(await settledWithin(next, QUIET_MS), 'pending', 'snapshot is complete')
            await s.put([{ type: 'user', id: 'c', data: 'c' }])
            assert.equal(brief(await valueOf(next)), 'user/c')
          } finally {
            await it.return?.()
          }
        }),
      )
    })

    describe('type options', () => {
      it('expires records at their TTL, as tombstones', CASE, () =>
        withStore(async (s, clock) => {
          await s.setOptions('session', { ttlMs: 1_000 })
          const [first] = await s.put([
            { type: 'session', id: 'old', data: 1 },
            { type: 'user', id: 'keep', data: 1 },
          ])
          clock.advance(400)
          await s.put([{ type: 'session', id: 'young', data: 1 }])
          clock.advance(599)
          assert.ok(await s.get('session', 'old'), 'alive 1 ms before its TTL')
          clock.advance(1)
          assert.equal(await s.get('session', 'old'), undefined, 'expired at its TTL')
          assert.ok(await s.get('session', 'young'))
          assert.ok(await s.get('user', 'keep'), 'other types have no TTL')
          assert.deepEqual(
            (await s.query({ type: 'session' })).records.map((r) => r.id),
            ['young'],
          )
          assert.ok(first)
          const it = openSync(s, first.version + 1, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          try {
            const changes = (await take(it, 2)).map(brief)
            assert.deepEqual(changes, ['session/young', 'session/old (deleted)'])
          } finally {
            await it.return?.()
          }
          clock.advance(400)
          assert.equal(await s.get('session', 'young'), undefined)
          assert.deepEqual(await s.listTypes(), ['user'])
        }),
      )

      it('a put restarts the TTL; clearing the options stops expiry', CASE, () =>
        withStore(async (s, clock) => {
          await s.put([{ type: 't', id: 'x', data: 1 }])
          clock.advance(10_000)
          await s.setOptions('t', { ttlMs: 1_000 })
          assert.equal(await s.get('t', 'x'), undefined, 'applies to records already stored')
          await s.put([{ type: 't', id: 'x', data: 2 }])
          clock.advance(900)
          await s.put([{ type: 't', id: 'x', data: 3 }])
          clock.advance(900)
          assert.equal((await s.get('t', 'x'))?.data, 3)
          await s.setOptions('t', {})
          clock.advance(60_000)
          assert.equal((await s.get('t', 'x'))?.data, 3)
        }),
      )

      it('keeps only the newest records up to the capacity', CASE, () =>
        withStore(async (s) => {
          await s.setOptions('t', { capacity: 2 })
          const [a] = await s.put([{ type: 't', id: 'a', data: 1 }])
          await s.put([{ type: 't', id: 'b', data: 1 }])
          await s.put([{ type: 't', id: 'c', data: 1 }])
          await s.put([{ type: 'other', id: 'o1', data: 1 }])
          await s.put([{ type: 'other', id: 'o2', data: 1 }])
          await s.put([{ type: 'other', id: 'o3', data: 1 }])
          const ids = async (type: string): Promise<string[]> =>
            (await s.query({ type })).records.map((r) => r.id)
          assert.deepEqual(await ids('t'), ['b', 'c'])
          assert.deepEqual(await ids('other'), ['o1', 'o2', 'o3'])
          assert.equal(await s.get('t', 'a'), undefined)
          await s.put([{ type: 't', id: 'b', data: 2 }])
          await s.put([{ type: 't', id: 'd', data: 1 }])
          assert.deepEqual(await ids('t'), ['b', 'd'], 'updating b made it newer than c')
          assert.ok(a)
          const signal = AbortSignal.timeout(SYNC_WAIT_MS)
          const it = openSync(s, a.version, { type: 't', signal })
          try {
            const changes = (await take(it, 4)).map(brief)
            assert.deepEqual([...changes].sort(), [
              't/a (deleted)',
              't/b',
              't/c (deleted)',
              't/d',
            ])
          } finally {
            await it.return?.()
          }
        }),
      )

      it('capacity applies to records already stored and to a large batch', CASE, () =>
        withStore(async (s) => {
          await s.put(['a', 'b', 'c', 'd'].map((id) => ({ type: 't', id, data: id })))
          await s.setOptions('t', { capacity: 3 })
          assert.deepEqual(
            (await s.query({ type: 't' })).records.map((r) => r.id),
            ['b', 'c', 'd'],
          )
          await s.setOptions('t', { capacity: 1 })
          assert.deepEqual(
            (await s.query({ type: 't' })).records.map((r) => r.id),
            ['d'],
          )
          await s.put(['x', 'y', 'z'].map((id) => ({ type: 't', id, data: id })))
          assert.deepEqual(
            (await s.query({ type: 't' })).records.map((r) => r.id),
            ['z'],
          )
        }),
      )

      it('rejects invalid options', CASE, () =>
        withStore(async (s) => {
          const code = 'ERR_DATABROKER_INVALID_ARGUMENT'
          await assertRejectsWithCode(s.setOptions('t', { ttlMs: 0 }), code)
          await assertRejectsWithCode(s.setOptions('t', { ttlMs: -5 }), code)
          await assertRejectsWithCode(s.setOptions('t', { ttlMs: Number.NaN }), code)
          await assertRejectsWithCode(s.setOptions('t', { capacity: 0 }), code)
          await assertRejectsWithCode(s.setOptions('t', { capacity: 1.5 }), code)
          await assertRejectsWithCode(s.setOptions('', { capacity: 1 }), code)
        }),
      )
    })

    describe('leases', () => {
      it('a lease is exclusive per name', CASE, () =>
        withStore(async (s) => {
          const id = await s.acquireLease('identity-manager', 10_000)
          assert.equal(typeof id, 'string')
          assert.ok(id)
          assert.equal(await s.acquireLease('identity-manager', 10_000), undefined)
          const other = await s.acquireLease('other', 10_000)
          assert.ok(other)
          assert.notEqual(other, id)
        }),
      )

      it('a lease expires after its duration and goes to a new holder', CASE, () =>
        withStore(async (s, clock) => {
          const first = await s.acquireLease('l', 1_000)
          assert.ok(first)
          clock.advance(999)
          assert.equal(await s.acquireLease('l', 1_000), undefined, 'held 1 ms before expiry')
          clock.advance(1)
          const second = await s.acquireLease('l', 1_000)
          assert.ok(second, 'free at expiry')
          assert.notEqual(second, first)
          assert.equal(await s.renewLease('l', first, 1_000), false, 'the old holder lost it')
          await s.releaseLease('l', first)
          assert.equal(await s.acquireLease('l', 1_000), undefined, 'old id cannot release it')
        }),
      )

      it('renew extends a lease only for its holder and only before expiry', CASE, () =>
        withStore(async (s, clock) => {
          const id = await s.acquireLease('l', 1_000)
          assert.ok(id)
          clock.advance(800)
          assert.equal(await s.renewLease('l', id, 1_000), true)
          clock.advance(800)
          assert.equal(await s.acquireLease('l', 1_000), undefined, 'renewal moved the expiry')
          assert.equal(await s.renewLease('l', 'not-the-id', 1_000), false)
          assert.equal(await s.renewLease('unknown', id, 1_000), false)
          clock.advance(200)
          assert.equal(await s.renewLease('l', id, 1_000), false, 'expired leases cannot renew')
          assert.ok(await s.acquireLease('l', 1_000))
        }),
      )

      it('release frees a lease for its holder only', CASE, () =>
        withStore(async (s) => {
          const id = await s.acquireLease('l', 60_000)
          assert.ok(id)
          await s.releaseLease('l', 'not-the-id')
          assert.equal(await s.acquireLease('l', 60_000), undefined)
          await s.releaseLease('unknown', id)
          await s.releaseLease('l', id)
          const next = await s.acquireLease('l', 60_000)
          assert.ok(next)
          assert.equal(await s.renewLease('l', id, 1_000), false, 'a released id is dead')
        }),
      )

      it('rejects invalid lease arguments', CASE, () =>
        withStore(async (s) => {
          const code = 'ERR_DATABROKER_INVALID_ARGUMENT'
          await assertRejectsWithCode(s.acquireLease('', 1_000), code)
          await assertRejectsWithCode(s.acquireLease('l', 0), code)
          await assertRejectsWithCode(s.acquireLease('l', Number.POSITIVE_INFINITY), code)
          await assertRejectsWithCode(s.renewLease('l', 'id', -1), code)
        }),
      )
    })

    describe('close', () => {
      it('a closed store refuses every call', CASE, () =>
        withStore(async (s) => {
          await s.put([{ type: 't', id: 'x', data: 1 }])
          await s.close()
          await s.close()
          const code = 'ERR_DATABROKER_CLOSED'
          await assertRejectsWithCode(s.get('t', 'x'), code)
          await assertRejectsWithCode(s.put([{ type: 't', id: 'y', data: 1 }]), code)
          await assertRejectsWithCode(s.delete('t', 'x'), code)
          await assertRejectsWithCode(s.query({ type: 't' }), code)
          await assertRejectsWithCode(s.listTypes(), code)
          await assertRejectsWithCode(s.serverInfo(), code)
          await assertRejectsWithCode(s.syncLatest(), code)
          await assertRejectsWithCode(s.setOptions('t', { ttlMs: 1 }), code)
          await assertRejectsWithCode(s.acquireLease('l', 1), code)
          await assertRejectsWithCode(s.renewLease('l', 'id', 1), code)
          await assertRejectsWithCode(s.releaseLease('l', 'id'), code)
          const it = s.sync(0, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          await assertRejectsWithCode(it[Symbol.asyncIterator]().next(), code)
        }),
      )

      it('closing ends a waiting sync with ERR_DATABROKER_CLOSED', CASE, () =>
        withStore(async (s) => {
          await s.put([{ type: 't', id: 'x', data: 1 }])
          const it = openSync(s, 0, { signal: AbortSignal.timeout(SYNC_WAIT_MS) })
          assert.equal(brief(await valueOf(it.next())), 't/x')
          const next = it.next()
          assert.equal(await settledWithin(next, QUIET_MS), 'pending')
          await s.close()
          await assertRejectsWithCode(next, 'ERR_DATABROKER_CLOSED')
        }),
      )
    })
  })
}
