/**
 * The PostgreSQL backend against a real server: the shared conformance suite, then what only a
 * shared, persistent store can show (several instances, restarts, a lost listener).
 *
 * The server is `PORTCULLIS_TEST_POSTGRES_URL`, by default postgres://postgres@127.0.0.1:5432/test.
 * Every store gets its own fresh schema (named after this run), dropped when the case ends and,
 * as a backstop, when the file ends. Without a server the file is skipped loudly, except under CI,
 * where that is a failure.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { Client, Pool } from 'pg'
import {
  assertRejectsWithCode,
  createManualClock,
  recordStoreConformance,
} from './conformance.test-helpers.js'
import { isDataBrokerError } from './errors.js'
import { createPostgresRecordStore } from './postgres/index.js'
import type { PostgresRecordStore, PostgresRecordStoreOptions } from './postgres/index.js'
import type { DataRecord, RecordStore } from './types.js'

const PG_URL = process.env.PORTCULLIS_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const CASE = { timeout: 20_000 }
/** Every schema of this run starts with this, so that the final sweep finds them all. */
const RUN = `pc_test_${process.pid}_${randomBytes(3).toString('hex')}`
let schemas = 0

/** Why the server cannot be used, or `undefined` when it answers. */
async function unreachable(): Promise<string | undefined> {
  const client = new Client({ connectionString: PG_URL, connectionTimeoutMillis: 2_000 })
  client.on('error', () => undefined)
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  } finally {
    await client.end().catch(() => undefined)
  }
}

const problem = await unreachable()

let adminPool: Pool | undefined
function admin(): Pool {
  adminPool ??= new Pool({ connectionString: PG_URL, max: 2 })
  return adminPool
}

function newSchema(): string {
  return `${RUN}_${++schemas}`
}

async function dropSchema(schema: string): Promise<void> {
  await admin().query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}

function open(
  schema: string,
  extra: Partial<PostgresRecordStoreOptions> = {},
): Promise<PostgresRecordStore> {
  return createPostgresRecordStore({ connectionString: PG_URL, schema, pool: { max: 4 }, ...extra })
}

/** The next record of a sync within `ms`, failing otherwise. */
async function nextWithin(it: AsyncIterator<DataRecord>, ms: number): Promise<DataRecord> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms)
  })
  try {
    const r = await Promise.race([it.next(), timeout])
    if (r === 'timeout') assert.fail(`no change within ${ms} ms`)
    if (r.done === true) assert.fail('sync ended')
    return r.value
  } finally {
    clearTimeout(timer)
  }
}

/** The listener connections of the stores on `schema`. */
async function listenerPids(schema: string): Promise<number[]> {
  const { rows } = await admin().query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name = $1`,
    [`portcullis-listener ${schema}`.slice(0, 63)],
  )
  return rows.map((r) => r.pid)
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const brief = (r: DataRecord): string => `${r.type}/${r.id}${r.deletedAt ? ' (deleted)' : ''}`

if (problem !== undefined) {
  const message = `PostgreSQL at ${PG_URL} is unreachable (${problem})`
  if (process.env.CI) {
    it('PostgreSQL is reachable (required under CI)', () => {
      assert.fail(message)
    })
  } else {
    const skip = `${message}: postgres backend tests SKIPPED`
    console.warn(`\n${'!'.repeat(100)}\n!!! ${skip}\n${'!'.repeat(100)}\n`)
    describe('RecordStore conformance: postgres', { skip }, () => undefined)
    describe('PostgresRecordStore specifics', { skip }, () => undefined)
  }
} else {
  after(async () => {
    // A backstop for cases that failed before their cleanup ran.
    const { rows } = await admin().query<{ nspname: string }>(
      `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`,
      [RUN],
    )
    for (const { nspname } of rows) await dropSchema(nspname)
    await adminPool?.end()
  })

  const schemaOf = new WeakMap<RecordStore, string>()
  recordStoreConformance(
    'postgres',
    async (clock) => {
      const schema = newSchema()
      const store = await open(schema, { clock })
      schemaOf.set(store, schema)
      return store
    },
    async (store) => {
      const schema = schemaOf.get(store)
      if (schema !== undefined) await dropSchema(schema)
    },
  )

  describe('PostgresRecordStore specifics', () => {
    it('a sync aborted (or returned) while it queries ends at once, without waiting for a change', CASE, async () => {
      const schema = newSchema()
      const store = await open(schema)
      try {
        for (let i = 0; i < 30; i++) {
          const ac = new AbortController()
          const it = store.sync(0, { type: `t${i}`, signal: ac.signal })[Symbol.asyncIterator]()
          const pending = it.next()
          // Abort while the first query is in flight (0-2 ms in), the window the stream used to miss.
          await new Promise((r) => setTimeout(r, i % 3))
          ac.abort()
          const result = await Promise.race([pending, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 2000))])
          assert.notEqual(result, 'hung', `round ${i}: next() still pending 2 s after the abort`)
          assert.equal((result as IteratorResult<DataRecord>).done, true)
        }
      } finally {
        await store.close()
        await dropSchema(schema)
      }
    })

    it('two instances on one database see each other’s writes via sync', CASE, async () => {
      const schema = newSchema()
      const [a, b] = await Promise.all([open(schema), open(schema)])
      const signal = AbortSignal.timeout(10_000)
      const fromA = a.sync(0, { signal })[Symbol.asyncIterator]()
      const fromB = b.sync(0, { signal })[Symbol.asyncIterator]()
      try {
        const pendingA = fromA.next()
        const [put] = await b.put([{ type: 't', id: 'from-b', data: { n: 1 } }])
        const r = await Promise.race([
          pendingA,
          new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 1_000).unref()),
        ])
        assert.notEqual(r, 'late', 'a saw b’s put within a second')
        assert.deepEqual(r, { done: false, value: put })
        assert.deepEqual(await nextWithin(fromB, 1_000), put)

        const tomb = await a.delete('t', 'from-b')
        assert.deepEqual(await nextWithin(fromB, 1_000), tomb)
        assert.deepEqual(await nextWithin(fromA, 1_000), tomb)
        assert.deepEqual(await a.serverInfo(), await b.serverInfo())
      } finally {
        await fromA.return?.()
        await fromB.return?.()
        await a.close()
        await b.close()
        await dropSchema(schema)
      }
    })

    it('keeps the server version, records and versions across close and reopen', CASE, async () => {
      const schema = newSchema()
      try {
        const first = await open(schema)
        const before = await first.serverInfo()
        await first.put([{ type: 't', id: 'x', data: 'kept' }])
        await first.delete('t', 'x')
        await first.put([{ type: 't', id: 'y', data: 'kept' }])
        const written = await first.serverInfo()
        await first.close()

        const second = await open(schema)
        try {
          const info = await second.serverInfo()
          assert.equal(info.serverVersion, before.serverVersion)
          assert.match(info.serverVersion, /^[0-9a-f-]{36}$/)
          assert.equal(info.latestRecordVersion, written.latestRecordVersion)
          assert.equal((await second.get('t', 'y'))?.data, 'kept')
          const [next] = await second.put([{ type: 't', id: 'z', data: 1 }])
          assert.equal(next?.version, written.latestRecordVersion + 1)
        } finally {
          await second.close()
        }
        const other = newSchema()
        const elsewhere = await open(other)
        try {
          const info = await elsewhere.serverInfo()
          assert.notEqual(info.serverVersion, before.serverVersion, 'another schema, another id')
        } finally {
          await elsewhere.close()
          await dropSchema(other)
        }
      } finally {
        await dropSchema(schema)
      }
    })

    it('instances starting at once migrate the schema exactly once', CASE, async () => {
      const schema = newSchema()
      const stores = await Promise.all([open(schema), open(schema), open(schema), open(schema)])
      try {
        const { rows } = await admin().query<{ version: number }>(
          `SELECT version FROM "${schema}".portcullis_migrations ORDER BY version`,
        )
        assert.ok(rows.length >= 1)
        assert.deepEqual(
          rows.map((r) => r.version),
          [...new Set(rows.map((r) => r.version))],
        )
        const infos = await Promise.all(stores.map((s) => s.serverInfo()))
        assert.equal(new Set(infos.map((i) => i.serverVersion)).size, 1, 'one server version')
        const servers = await admin().query(`SELECT * FROM "${schema}".server`)
        assert.equal(servers.rowCount, 1)
      } finally {
        for (const s of stores) await s.close()
        await dropSchema(schema)
      }
    })

    it('the listener reconnects after its connection is killed; sync loses nothing', CASE, async () => {
      const schema = newSchema()
      const a = await open(schema, { reconnect: { initialDelayMs: 300, maxDelayMs: 1_000 } })
      const b = await open(schema)
      const it = a.sync(0, { signal: AbortSignal.timeout(15_000) })[Symbol.asyncIterator]()
      try {
        const [first] = await b.put([{ type: 't', id: '1', data: 1 }])
        assert.deepEqual(await nextWithin(it, 2_000), first)
        assert.equal((await listenerPids(schema)).length, 2, 'one listener per store')
        // a opened first, so the older of the two listeners is a's.
        const { rows } = await admin().query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY backend_start`,
          [`portcullis-listener ${schema}`.slice(0, 63)],
        )
        const victim = rows[0]?.pid
        assert.ok(victim !== undefined)
        await admin().query('SELECT pg_terminate_backend($1)', [victim])
        // Written by the other instance while a's listener is down: only a re-read finds it.
        const pending = it.next()
        const [during] = await b.put([{ type: 't', id: '2', data: 2 }])
        const got = await Promise.race([
          pending,
          new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 5_000).unref()),
        ])
        assert.notEqual(got, 'late', 'the change made during the outage arrived')
        assert.deepEqual(got, { done: false, value: during })
        await waitFor('a new listener', 5_000, async () => {
          const pids = await listenerPids(schema)
          return pids.length === 2 && !pids.includes(victim)
        })
        const [afterwards] = await b.put([{ type: 't', id: '3', data: 3 }])
        assert.deepEqual(await nextWithin(it, 1_000), afterwards)
      } finally {
        await it.return?.()
        await a.close()
        await b.close()
        await dropSchema(schema)
      }
    })

    it('concurrent writers on two instances get distinct versions in commit order', CASE, async () => {
      const schema = newSchema()
      const [a, b] = await Promise.all([open(schema), open(schema)])
      try {
        const writes: Promise<DataRecord[]>[] = []
        for (let i = 0; i < 40; i++) {
          const s = i % 2 === 0 ? a : b
          writes.push(s.put([{ type: 't', id: `k${i % 7}`, data: i }, { type: 'u', id: `${i}`, data: i }]))
        }
        const puts = (await Promise.all(writes)).flat()
        const deletes = await Promise.all([a.delete('t', 'k1'), b.delete('t', 'k2')])
        assert.ok(deletes.every((d) => d !== undefined))
        const all = [...puts, ...deletes]
        const versions = all.flatMap((r) => (r === undefined ? [] : [r.version]))
        assert.equal(new Set(versions).size, versions.length, 'no version given twice')
        const top = (await a.serverInfo()).latestRecordVersion
        assert.equal(top, Math.max(...versions))
        // The latest state of every record, as a sync from 0 reports it.
        const it = b.sync(0, { signal: AbortSignal.timeout(5_000) })[Symbol.asyncIterator]()
        const seen: DataRecord[] = []
        try {
          const expected = (await b.syncLatest()).records.length + 2 // k1 and k2 were deleted
          while (seen.length < expected) seen.push(await nextWithin(it, 2_000))
        } finally {
          await it.return?.()
        }
        const order = seen.map((r) => r.version)
        assert.deepEqual(order, [...order].sort((x, y) => x - y))
        assert.equal(order.at(-1), top)
      } finally {
        await a.close()
        await b.close()
        await dropSchema(schema)
      }
    })

    it('a lease is exclusive across instances, with expiry on the injected clock', CASE, async () => {
      const schema = newSchema()
      const clock = createManualClock()
      const stores = await Promise.all([1, 2, 3].map(() => open(schema, { clock })))
      try {
        const ids = await Promise.all(
          stores.flatMap((s) => [s.acquireLease('leader', 1_000), s.acquireLease('leader', 1_000)]),
        )
        const winners = ids.filter((id) => id !== undefined)
        assert.equal(winners.length, 1, 'exactly one acquirer wins')
        const [s1, s2] = stores as [PostgresRecordStore, PostgresRecordStore]
        clock.advance(999)
        assert.equal(await s2.acquireLease('leader', 1_000), undefined)
        clock.advance(1)
        const next = await s2.acquireLease('leader', 1_000)
        assert.ok(next)
        assert.equal(await s1.renewLease('leader', winners[0] as string, 1_000), false)
        assert.equal(await s1.renewLease('leader', next, 5_000), true, 'any instance may renew')
      } finally {
        for (const s of stores) await s.close()
        await dropSchema(schema)
      }
    })

    it('prunes the oldest tombstones beyond the bound; syncing from before fails', CASE, async () => {
      const schema = newSchema()
      const s = await open(schema, { maxTombstones: 2 })
      try {
        await s.put(['a', 'b', 'c'].map((id) => ({ type: 't', id, data: id })))
        const start = (await s.serverInfo()).latestRecordVersion
        const ta = await s.delete('t', 'a')
        await s.delete('t', 'b')
        assert.ok(ta)
        const drain = async (after: number): Promise<string[]> => {
          const it = s.sync(after, { signal: AbortSignal.timeout(5_000) })[Symbol.asyncIterator]()
          const out: string[] = []
          try {
            const top = (await s.serverInfo()).latestRecordVersion
            for (;;) {
              const r = await nextWithin(it, 2_000)
              out.push(brief(r))
              if (r.version === top) return out
            }
          } finally {
            await it.return?.()
          }
        }
        assert.deepEqual(await drain(start), ['t/a (deleted)', 't/b (deleted)'])
        await s.delete('t', 'c')
        const it = s.sync(start)[Symbol.asyncIterator]()
        await assertRejectsWithCode(it.next(), 'ERR_DATABROKER_SYNC_TOO_OLD')
        assert.deepEqual(await drain(ta.version), ['t/b (deleted)', 't/c (deleted)'])
        const { rows } = await admin().query(
          `SELECT id FROM "${schema}".records WHERE deleted_at IS NOT NULL ORDER BY id`,
        )
        assert.deepEqual(
          rows.map((r: { id: string }) => r.id),
          ['b', 'c'],
        )
        await s.put([{ type: 't', id: 'a', data: 'again' }])
        assert.equal((await s.get('t', 'a'))?.data, 'again')
        await s.put([{ type: 't', id: 'b', data: 'again' }]) // revives a tombstone
        const server = await admin().query<{ tombstones: string }>(
          `SELECT tombstones FROM "${schema}".server`,
        )
        assert.equal(server.rows[0]?.tombstones, '1')
      } finally {
        await s.close()
        await dropSchema(schema)
      }
    })

    it('a sweep tells waiting syncs about expired records', CASE, async () => {
      const schema = newSchema()
      const clock = createManualClock()
      const s = await open(schema, { clock, sweepIntervalMs: 20 })
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
        assert.equal(got.value?.deletedAt?.getTime(), clock.now())
        await it.return?.()
      } finally {
        await s.close()
        await dropSchema(schema)
      }
    })

    it('pushes object filters down with JSON typing', CASE, async () => {
      const schema = newSchema()
      const s = await open(schema)
      try {
        await s.put([
          { type: 't', id: 'int', data: { n: 1, flag: true, s: 'x' } },
          { type: 't', id: 'float', data: { n: 1.5, flag: 'true', s: 'x' } },
          { type: 't', id: 'string', data: { n: '1', flag: false } },
          { type: 't', id: 'nested', data: { n: { v: 1 }, list: [1] } },
          { type: 't', id: 'null', data: { n: null } },
          { type: 't', id: 'quote', data: { s: 'it\'s "quoted" \\ ünï' } },
        ])
        const ids = async (filter: Record<string, string | number | boolean | null>) =>
          (await s.query({ type: 't', filter })).records.map((r) => r.id)
        assert.deepEqual(await ids({ n: 1 }), ['int'])
        assert.deepEqual(await ids({ n: 1.5 }), ['float'])
        assert.deepEqual(await ids({ n: '1' }), ['string'])
        assert.deepEqual(await ids({ flag: true }), ['int'])
        assert.deepEqual(await ids({ flag: 'true' }), ['float'])
        assert.deepEqual(await ids({ n: null }), ['null'])
        assert.deepEqual(await ids({ list: 1 }), [], 'no array membership')
        assert.deepEqual(await ids({ n: Number.NaN }), [])
        assert.deepEqual(await ids({ s: 'it\'s "quoted" \\ ünï' }), ['quote'])
        assert.deepEqual(await ids({ s: 'x', n: 1 }), ['int'])
        assert.deepEqual(await ids({ s: 'a\u0000', '\ud800': 1 }), [], 'unstorable, so no match')
        await s.put([{ type: 't', id: 'empty key', data: { '': 0 } }])
        assert.deepEqual(await ids({ '': 0 }), ['empty key'])
      } finally {
        await s.close()
        await dropSchema(schema)
      }
    })

    it('rejects values PostgreSQL cannot store as invalid arguments, storing nothing', CASE, async () => {
      const schema = newSchema()
      const s = await open(schema)
      try {
        const code = 'ERR_DATABROKER_INVALID_ARGUMENT'
        await assertRejectsWithCode(
          s.put([{ type: 't', id: 'ok', data: 1 }, { type: 't', id: 'nul', data: 'a\u0000b' }]),
          code,
        )
        await assertRejectsWithCode(s.put([{ type: 't', id: 'a\u0000', data: 1 }]), code)
        await assertRejectsWithCode(s.put([{ type: 't', id: '\ud800', data: 1 }]), code)
        await assertRejectsWithCode(s.get('t', 'x'.repeat(10_000).concat('\u0000')), code)
        // Too long for the primary key's index (PostgreSQL error class 54).
        const huge = randomBytes(8_000).toString('base64')
        await assertRejectsWithCode(s.put([{ type: 't', id: huge, data: 1 }]), code)
        assert.equal(await s.get('t', 'ok'), undefined)
        assert.equal((await s.serverInfo()).latestRecordVersion, 0)
      } finally {
        await s.close()
        await dropSchema(schema)
      }
    })

    it('an unreachable server is ERR_DATABROKER_UNAVAILABLE', CASE, async () => {
      const started = Date.now()
      await assert.rejects(
        createPostgresRecordStore({
          connectionString: 'postgres://postgres@127.0.0.1:1/test',
          schema: newSchema(),
          pool: { connectionTimeoutMs: 2_000 },
        }),
        (err: unknown) => {
          assert.ok(isDataBrokerError(err, 'ERR_DATABROKER_UNAVAILABLE'), String(err))
          return true
        },
      )
      assert.ok(Date.now() - started < 5_000)
    })

    it('operations whose connection dies fail with ERR_DATABROKER_UNAVAILABLE or succeed', CASE, async () => {
      const schema = newSchema()
      // A URL's application_name overrides the store's, which tells this store's connections apart.
      const url = new URL(PG_URL)
      url.searchParams.set('application_name', schema)
      const s = await createPostgresRecordStore({ connectionString: url.href, schema })
      try {
        await s.put([{ type: 't', id: 'x', data: 1 }])
        // Kill every connection of this store; reads retry on a new connection.
        const killed = await admin().query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
          [schema],
        )
        assert.ok((killed.rowCount ?? 0) >= 2)
        assert.equal((await s.get('t', 'x'))?.data, 1)
        const results = await Promise.allSettled([
          s.put([{ type: 't', id: 'y', data: 1 }]),
          s.query({ type: 't' }),
        ])
        for (const r of results) {
          if (r.status === 'rejected') {
            assert.ok(isDataBrokerError(r.reason, 'ERR_DATABROKER_UNAVAILABLE'), String(r.reason))
          }
        }
      } finally {
        await s.close()
        await dropSchema(schema)
      }
    })

    it('rejects invalid options', CASE, async () => {
      const code = 'ERR_DATABROKER_INVALID_ARGUMENT'
      await assertRejectsWithCode(createPostgresRecordStore({ connectionString: '' }), code)
      await assertRejectsWithCode(open(''), code)
      await assertRejectsWithCode(open('x'.repeat(64)), code)
      await assertRejectsWithCode(open(newSchema(), { maxTombstones: -1 }), code)
      await assertRejectsWithCode(open(newSchema(), { sweepIntervalMs: 0 }), code)
      await assertRejectsWithCode(open(newSchema(), { pool: { max: 0 } }), code)
    })
  })
}
