/**
 * The PostgreSQL record store: persistent, and shared by any number of Portcullis instances
 * pointing at the same database and schema (Pomerium's `postgres` databroker backend).
 *
 * - Every write runs in one transaction that first locks the single `server` row. That row holds
 *   the version counter, so writers (across instances) take versions in commit order, and a sync
 *   reader that has seen version N can never later find an uncommitted N-1 appear.
 * - The same transaction sends `NOTIFY` with the new latest version. Each store keeps one
 *   dedicated connection that `LISTEN`s and wakes the local `sync` iterators, which then read the
 *   changes after the last version they saw. The listener reconnects with backoff; on reconnection
 *   every waiting sync re-reads, so nothing written meanwhile is lost.
 * - Time comes from the injected `Clock` only (never the database's `now()`): TTL expiry, lease
 *   expiry and `modifiedAt` all use it. Expired records become tombstones lazily, when an
 *   operation touches their type, and from a periodic sweep so that waiting syncs hear of them.
 * - Tombstones beyond `maxTombstones` are pruned oldest first; the highest pruned version is kept
 *   so that a `sync` from before it fails with `ERR_DATABROKER_SYNC_TOO_OLD`.
 * - Database failures reject with `ERR_DATABROKER_UNAVAILABLE` (fail closed), values PostgreSQL
 *   cannot store (a NUL character, an unpaired surrogate) with `ERR_DATABROKER_INVALID_ARGUMENT`.
 */
import { createHash, randomUUID } from 'node:crypto'
import { Client, DatabaseError, Pool } from 'pg'
import type { Notification, PoolClient, QueryResultRow } from 'pg'
import type { Logger } from '../shared/log.js'
import { ChangeWaiters, pagedChanges } from './change-waiters.js'
import { DataBrokerError } from './errors.js'
import { DEFAULT_MAX_TOMBSTONES } from './memory.js'
import { migrate, quoteIdent } from './postgres/schema.js'
import type {
  Clock,
  DataRecord,
  FieldValue,
  QueryOptions,
  QueryResult,
  RecordInput,
  RecordStore,
  ServerInfo,
  SyncLatestResult,
  SyncOptions,
  TypeOptions,
} from './types.js'
import { systemClock } from './types.js'
import {
  checkBatch,
  checkDuration,
  checkKey,
  checkQuery,
  checkTypeOptions,
  checkVersion,
} from './validate.js'

/** Options of `createPostgresRecordStore`. */
export interface PostgresRecordStoreOptions {
  /** A libpq-style URL, for example `postgres://user:pass@host:5432/db?sslmode=require`. */
  readonly connectionString: string
  /** The time source for timestamps, TTLs and leases (default: the system clock). */
  readonly clock?: Clock
  readonly logger?: Logger
  readonly pool?: {
    /** Pooled connections for queries (default 10); the listener has its own connection. */
    readonly max?: number
    /** How long to wait for a new connection before failing (default 10,000 ms). */
    readonly connectionTimeoutMs?: number
  }
  /** The schema holding the tables, created when missing (default `portcullis`). */
  readonly schema?: string
  /**
   * How many tombstones to keep for `sync` (default 10,000), across all instances sharing the
   * schema. Beyond that the oldest are dropped, and a `sync` that starts before a dropped
   * tombstone fails with `ERR_DATABROKER_SYNC_TOO_OLD`.
   */
  readonly maxTombstones?: number
  /**
   * How often, in milliseconds, to turn records past their TTL into tombstones (default 1,000).
   * Reads expire records too, so this only bounds how late a waiting `sync` hears of an expiry.
   */
  readonly sweepIntervalMs?: number
  /** Backoff of the listener's reconnection attempts (defaults 100 ms, doubling up to 10 s). */
  readonly reconnect?: { readonly initialDelayMs?: number; readonly maxDelayMs?: number }
}

/** The default schema. */
export const DEFAULT_POSTGRES_SCHEMA = 'portcullis'

/** Changes a sync reads per query. */
const SYNC_BATCH = 500

const COLUMNS = 'type, id, version, data, modified_at, deleted_at'

interface RecordRow {
  type: string
  id: string
  version: string
  data: unknown
  modified_at: Date
  deleted_at: Date | null
}

/** A row of an outer join that may have found no record. */
type MaybeRecordRow = { [K in keyof RecordRow]: RecordRow[K] | null }

/** The rows of an outer join that did find a record. */
function found(rows: readonly MaybeRecordRow[]): RecordRow[] {
  return rows.filter((r): r is RecordRow => r.id !== null)
}

/** A write transaction in progress: it holds the lock on the version counter. */
interface WriteTx {
  readonly client: PoolClient
  readonly now: number
  /** The latest version assigned so far; the next change takes `version + 1`. */
  version: number
  /** Tombstones created minus tombstones revived. */
  tombstoneDelta: number
}

interface StoredOptions {
  readonly ttlMs: number | undefined
  readonly capacity: number | undefined
}

function toRecord(r: RecordRow): DataRecord {
  return {
    type: r.type,
    id: r.id,
    version: Number(r.version),
    data: r.data,
    modifiedAt: r.modified_at,
    deletedAt: r.deleted_at ?? undefined,
  }
}

function invalid(message: string): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', message)
}

function closedError(): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
}

/** Whether `text` has a NUL or an unpaired UTF-16 surrogate: PostgreSQL cannot store it as is. */
function unstorable(text: string): boolean {
  return text.includes('\u0000') || /\p{Surrogate}/u.test(text)
}

/** `checkKey`, plus what PostgreSQL text cannot hold (node would silently mangle a surrogate). */
function checkPgKey(what: string, value: unknown): asserts value is string {
  checkKey(what, value)
  if (unstorable(value)) {
    throw invalid(`${what} must not contain NUL characters or unpaired surrogates`)
  }
}

/** Whether `err` says the connection, not the statement, failed (so a retry may succeed). */
function isConnectionError(err: unknown): boolean {
  if (err instanceof DatabaseError) {
    const code = err.code ?? ''
    return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03'
  }
  return err instanceof Error
}

/** Maps anything a driver call threw to a `DataBrokerError`. */
function mapError(err: unknown, closed: boolean): DataBrokerError {
  if (err instanceof DataBrokerError) return err
  if (closed) return new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
  const message = err instanceof Error ? err.message : String(err)
  // Class 22 (data exception: bad text or JSON) and 54 (program limit: a key too long to index).
  if (err instanceof DatabaseError && /^(22|54)/.test(err.code ?? '')) {
    return new DataBrokerError(
      'ERR_DATABROKER_INVALID_ARGUMENT',
      `postgres rejected the value: ${message}`,
      { cause: err },
    )
  }
  return new DataBrokerError('ERR_DATABROKER_UNAVAILABLE', `postgres: ${message}`, { cause: err })
}

/**
 * Opens (creating or migrating its schema first) a record store in PostgreSQL. Rejects with
 * `ERR_DATABROKER_UNAVAILABLE` when the database cannot be reached.
 */
export function createPostgresRecordStore(
  options: PostgresRecordStoreOptions,
): Promise<PostgresRecordStore> {
  return PostgresRecordStore.open(options)
}

/** A `RecordStore` in PostgreSQL. Create it with `createPostgresRecordStore`. */
export class PostgresRecordStore implements RecordStore {
  readonly #connectionString: string
  readonly #clock: Clock
  readonly #logger: Logger | undefined
  readonly #schema: string
  readonly #maxTombstones: number
  readonly #sweepIntervalMs: number
  readonly #connectionTimeoutMs: number
  readonly #reconnectInitialMs: number
  readonly #reconnectMaxMs: number
  readonly #pool: Pool
  /** NOTIFY channel, one per schema so that stores in other schemas are not woken. */
  readonly #channel: string
  /** `schema.table` names, quoted. */
  readonly #t: { server: string; records: string; options: string; leases: string }

  #closed = false
  #listener: Client | undefined
  #reconnectTimer: NodeJS.Timeout | undefined
  #reconnectDelayMs: number
  #sweepTimer: NodeJS.Timeout | undefined
  #sweeping = false
  /** Bumped on every wake-up, so that a sync notices one that came while it was querying. */
  #epoch = 0
  /** The highest version announced so far (locally or by NOTIFY). */
  #announced = 0
  readonly #waiters = new ChangeWaiters()

  private constructor(options: PostgresRecordStoreOptions) {
    const {
      connectionString,
      clock = systemClock,
      logger,
      schema = DEFAULT_POSTGRES_SCHEMA,
      maxTombstones = DEFAULT_MAX_TOMBSTONES,
      sweepIntervalMs = 1_000,
    } = options
    const { max = 10, connectionTimeoutMs = 10_000 } = options.pool ?? {}
    const { initialDelayMs = 100, maxDelayMs = 10_000 } = options.reconnect ?? {}
    if (typeof connectionString !== 'string' || connectionString === '') {
      throw invalid('connectionString must be a non-empty string')
    }
    if (typeof schema !== 'string' || schema === '' || Buffer.byteLength(schema) > 63) {
      throw invalid('schema must be a name of 1 to 63 bytes')
    }
    if (unstorable(schema)) throw invalid('schema must not contain NUL characters')
    if (!Number.isSafeInteger(maxTombstones) || maxTombstones < 0) {
      throw invalid('maxTombstones must be a non-negative integer')
    }
    for (const [name, value] of Object.entries({
      sweepIntervalMs,
      connectionTimeoutMs,
      initialDelayMs,
      maxDelayMs,
    })) {
      if (!Number.isFinite(value) || value <= 0) throw invalid(`${name} must be a positive number`)
    }
    if (!Number.isSafeInteger(max) || max < 1) throw invalid('pool.max must be a positive integer')

    this.#connectionString = connectionString
    this.#clock = clock
    this.#logger = logger
    this.#schema = schema
    this.#maxTombstones = maxTombstones
    this.#sweepIntervalMs = sweepIntervalMs
    this.#connectionTimeoutMs = connectionTimeoutMs
    this.#reconnectInitialMs = initialDelayMs
    this.#reconnectMaxMs = Math.max(initialDelayMs, maxDelayMs)
    this.#reconnectDelayMs = initialDelayMs
    const s = quoteIdent(schema)
    this.#t = {
      server: `${s}.server`,
      records: `${s}.records`,
      options: `${s}.type_options`,
      leases: `${s}.leases`,
    }
    this.#channel = `portcullis_${createHash('sha256').update(schema).digest('hex').slice(0, 24)}`
    this.#pool = new Pool({
      connectionString,
      max,
      connectionTimeoutMillis: connectionTimeoutMs,
      application_name: 'portcullis-databroker',
    })
    // An idle pooled connection that dies (server restart, terminated backend) is dropped by the
    // pool; without a listener the error would crash the process.
    this.#pool.on('error', (err) => {
      this.#logger?.warn({ err, schema }, 'databroker postgres: idle connection failed')
    })
  }

  /** Opens a store: migrates, starts the listener and the sweep. */
  static async open(options: PostgresRecordStoreOptions): Promise<PostgresRecordStore> {
    const store = new PostgresRecordStore(options)
    try {
      await store.#start()
    } catch (err) {
      const mapped = mapError(err, false)
      await store.close()
      throw mapped
    }
    return store
  }

  async #start(): Promise<void> {
    const client = await this.#pool.connect()
    try {
      await migrate(client, this.#schema, this.#logger)
      const info = await client.query<{ latest_version: string }>(
        `SELECT latest_version FROM ${this.#t.server}`,
      )
      this.#announced = Number(info.rows[0]?.latest_version ?? 0)
      client.release()
    } catch (err) {
      client.release(true)
      throw err
    }
    await this.#connectListener()
    this.#sweepTimer = setInterval(() => this.#sweep(), this.#sweepIntervalMs)
    this.#sweepTimer.unref()
  }

  // --- RecordStore -------------------------------------------------------------------------------

  get(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(async () => {
      checkPgKey('type', type)
      checkPgKey('id', id)
      const sql = `SELECT ${this.#ttlDueSql('$1', '$3')} AS expire, r.*
        FROM (SELECT 1) AS one
        LEFT JOIN ${this.#t.records} AS r ON r.type = $1 AND r.id = $2 AND r.deleted_at IS NULL`
      type Row = MaybeRecordRow & { expire: boolean }
      const read = async (): Promise<Row[]> => {
        const now = new Date(this.#clock.now())
        return (await this.#read<Row>(sql, [type, id, now])).rows
      }
      let rows = await read()
      if (rows[0]?.expire === true) {
        await this.#expireDue(type)
        rows = await read()
      }
      const row = found(rows)[0]
      return row === undefined ? undefined : toRecord(row)
    })
  }

  put(records: readonly RecordInput[]): Promise<DataRecord[]> {
    return this.#run(async () => {
      const json = checkBatch(records)
      records.forEach((r, i) => {
        checkPgKey(`records[${i}].type`, r.type)
        checkPgKey(`records[${i}].id`, r.id)
      })
      if (records.length === 0) return []
      const types = [...new Set(records.map((r) => r.type))]
      return this.#write(async (tx) => {
        const options = await this.#loadOptions(tx.client, types)
        // Expire first, so that a put over an expired record revives its tombstone.
        for (const [type, o] of options) await this.#expireLocked(tx, type, o, false)
        const modifiedAt = new Date(tx.now)
        const out: DataRecord[] = records.map((r, i) => ({
          type: r.type,
          id: r.id,
          version: ++tx.version,
          data: JSON.parse(json[i] as string) as unknown,
          modifiedAt: new Date(tx.now),
          deletedAt: undefined,
        }))
        // Only the last entry for each record is written: earlier ones are superseded states,
        // which sync may skip (and one statement cannot upsert the same row twice).
        const last = new Map<string, number>()
        records.forEach((r, i) => last.set(JSON.stringify([r.type, r.id]), i))
        const rows = [...last.values()].sort((a, b) => a - b)
        const { rows: result } = await tx.client.query<{ revived: string }>(
          `WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
               AS i(type, id, version, data)
           ), revived AS (
             SELECT count(*) AS revived FROM ${this.#t.records} AS r
             JOIN input AS i ON r.type = i.type AND r.id = i.id
             WHERE r.deleted_at IS NOT NULL
           ), upsert AS (
             INSERT INTO ${this.#t.records} AS r (${COLUMNS})
             SELECT type, id, version, data::jsonb, $5, NULL FROM input
             ON CONFLICT (type, id) DO UPDATE SET version = excluded.version,
               data = excluded.data, modified_at = excluded.modified_at, deleted_at = NULL
           )
           SELECT revived FROM revived`,
          [
            rows.map((i) => (records[i] as RecordInput).type),
            rows.map((i) => (records[i] as RecordInput).id),
            rows.map((i) => (out[i] as DataRecord).version),
            rows.map((i) => json[i] as string),
            modifiedAt,
          ],
        )
        tx.tombstoneDelta -= Number(result[0]?.revived ?? 0)
        for (const [type, o] of options) await this.#expireLocked(tx, type, o, true)
        return out
      })
    })
  }

  delete(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(async () => {
      checkPgKey('type', type)
      checkPgKey('id', id)
      return this.#write(async (tx) => {
        const options = await this.#loadOptions(tx.client, [type])
        for (const [t, o] of options) await this.#expireLocked(tx, t, o, false)
        const now = new Date(tx.now)
        const { rows } = await tx.client.query<RecordRow>(
          `UPDATE ${this.#t.records} SET version = $3, modified_at = $4, deleted_at = $4
           WHERE type = $1 AND id = $2 AND deleted_at IS NULL
           RETURNING ${COLUMNS}`,
          [type, id, tx.version + 1, now],
        )
        const row = rows[0]
        if (row === undefined) return undefined
        tx.version++
        tx.tombstoneDelta++
        return toRecord(row)
      })
    })
  }

  query(options: QueryOptions): Promise<QueryResult> {
    return this.#run(async () => {
      const { offset, limit } = checkQuery(options)
      const { type, filter } = options
      checkPgKey('type', type)
      await this.#expireDue(type)
      if (typeof filter === 'function') {
        // A predicate runs in process, over every live record of the type.
        const { rows } = await this.#read<RecordRow>(
          `SELECT ${COLUMNS} FROM ${this.#t.records}
           WHERE type = $1 AND deleted_at IS NULL ORDER BY id`,
          [type],
        )
        const matching = rows.filter((r) => filter(r.data))
        return {
          records: matching.slice(offset, offset + limit).map(toRecord),
          totalCount: matching.length,
        }
      }
      const params: unknown[] = [type, offset, limit === Number.POSITIVE_INFINITY ? null : limit]
      let where = 'type = $1 AND deleted_at IS NULL'
      if (filter !== undefined) {
        const entries: [string, FieldValue][] = Object.entries(filter)
        const unmatchable = entries.some(
          ([k, v]) =>
            // No stored data holds these: JSON would turn NaN and Infinity into null (and `===`
            // never matches NaN), and jsonb refuses NUL characters and unpaired surrogates.
            unstorable(k) ||
            (typeof v === 'number' && !Number.isFinite(v)) ||
            (typeof v === 'string' && unstorable(v)),
        )
        if (unmatchable) return { records: [], totalCount: 0 }
        // Containment of an object of scalars is typed equality on each top-level field:
        // 1 matches 1.0 but not "1" or true, and null matches only a present null.
        params.push(JSON.stringify(filter))
        where += ` AND jsonb_typeof(data) = 'object' AND data @> $4::jsonb`
      }
      const { rows } = await this.#read<{ total: string } & MaybeRecordRow>(
        `WITH m AS (SELECT ${COLUMNS} FROM ${this.#t.records} WHERE ${where})
         SELECT c.total, p.* FROM (SELECT count(*) AS total FROM m) AS c
         LEFT JOIN LATERAL (SELECT * FROM m ORDER BY id OFFSET $2 LIMIT $3) AS p ON true`,
        params,
      )
      return {
        records: found(rows).map(toRecord),
        totalCount: Number(rows[0]?.total ?? 0),
      }
    })
  }

  listTypes(): Promise<string[]> {
    return this.#run(async () => {
      await this.#expireDue(undefined)
      // A loose index scan: one index probe per distinct type instead of reading every record.
      const r = this.#t.records
      const { rows } = await this.#read<{ type: string }>(
        `WITH RECURSIVE t AS (
           (SELECT type FROM ${r} WHERE deleted_at IS NULL ORDER BY type LIMIT 1)
           UNION ALL
           SELECT (SELECT type FROM ${r} WHERE deleted_at IS NULL AND type > t.type
                   ORDER BY type LIMIT 1)
           FROM t WHERE t.type IS NOT NULL
         )
         SELECT type FROM t WHERE type IS NOT NULL`,
        [],
      )
      return rows.map((row) => row.type)
    })
  }

  serverInfo(): Promise<ServerInfo> {
    return this.#run(async () => {
      const { rows } = await this.#read<{ server_version: string; latest_version: string }>(
        `SELECT server_version, latest_version FROM ${this.#t.server}`,
        [],
      )
      const row = rows[0]
      if (row === undefined) throw new Error('the server row is missing')
      return { serverVersion: row.server_version, latestRecordVersion: Number(row.latest_version) }
    })
  }

  sync(afterVersion: number, options: SyncOptions = {}): AsyncIterable<DataRecord> {
    return { [Symbol.asyncIterator]: () => this.#openSync(afterVersion, options) }
  }

  syncLatest(type?: string): Promise<SyncLatestResult> {
    return this.#run(async () => {
      if (type !== undefined) checkPgKey('type', type)
      await this.#expireDue(undefined)
      // One statement, so one snapshot: the records and the version to sync on from agree.
      const { rows } = await this.#read<
        { server_version: string; latest_version: string } & MaybeRecordRow
      >(
        `SELECT s.server_version, s.latest_version, r.* FROM ${this.#t.server} AS s
         LEFT JOIN LATERAL (
           SELECT ${COLUMNS} FROM ${this.#t.records}
           WHERE deleted_at IS NULL ${type === undefined ? '' : 'AND type = $1'}
         ) AS r ON true
         ORDER BY r.type, r.id`,
        type === undefined ? [] : [type],
      )
      const first = rows[0]
      if (first === undefined) throw new Error('the server row is missing')
      return {
        serverVersion: first.server_version,
        latestRecordVersion: Number(first.latest_version),
        records: found(rows).map(toRecord),
      }
    })
  }

  setOptions(type: string, options: TypeOptions): Promise<void> {
    return this.#run(async () => {
      checkTypeOptions(type, options)
      checkPgKey('type', type)
      const { ttlMs, capacity } = options
      await this.#write(async (tx) => {
        if (ttlMs === undefined && capacity === undefined) {
          await tx.client.query(`DELETE FROM ${this.#t.options} WHERE type = $1`, [type])
          return
        }
        await tx.client.query(
          `INSERT INTO ${this.#t.options} (type, ttl_ms, capacity) VALUES ($1, $2, $3)
           ON CONFLICT (type) DO UPDATE SET ttl_ms = excluded.ttl_ms, capacity = excluded.capacity`,
          [type, ttlMs ?? null, capacity ?? null],
        )
        await this.#expireLocked(tx, type, { ttlMs, capacity }, true)
      })
    })
  }

  acquireLease(name: string, durationMs: number): Promise<string | undefined> {
    return this.#run(async () => {
      checkPgKey('name', name)
      checkDuration(durationMs)
      const now = this.#clock.now()
      const id = randomUUID()
      // Atomic: either no row, or the existing row has expired and is taken over. A concurrent
      // acquirer waits on the row lock and then sees the new, unexpired holder.
      const { rows } = await this.#pool.query<{ id: string }>(
        `INSERT INTO ${this.#t.leases} AS l (name, id, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET id = excluded.id, expires_at = excluded.expires_at
         WHERE l.expires_at <= $4
         RETURNING id`,
        [name, id, new Date(now + durationMs), new Date(now)],
      )
      return rows[0]?.id === id ? id : undefined
    })
  }

  renewLease(name: string, id: string, durationMs: number): Promise<boolean> {
    return this.#run(async () => {
      checkPgKey('name', name)
      checkDuration(durationMs)
      if (typeof id !== 'string' || unstorable(id)) return false
      const now = this.#clock.now()
      const { rowCount } = await this.#pool.query(
        `UPDATE ${this.#t.leases} SET expires_at = $3
         WHERE name = $1 AND id = $2 AND expires_at > $4`,
        [name, id, new Date(now + durationMs), new Date(now)],
      )
      return rowCount === 1
    })
  }

  releaseLease(name: string, id: string): Promise<void> {
    return this.#run(async () => {
      checkPgKey('name', name)
      if (typeof id !== 'string' || unstorable(id)) return
      await this.#pool.query(`DELETE FROM ${this.#t.leases} WHERE name = $1 AND id = $2`, [
        name,
        id,
      ])
    })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#sweepTimer)
    clearTimeout(this.#reconnectTimer)
    this.#sweepTimer = undefined
    this.#reconnectTimer = undefined
    this.#wakeAll()
    const listener = this.#listener
    this.#listener = undefined
    await Promise.allSettled([listener?.end(), this.#pool.end()])
  }

  // --- operations --------------------------------------------------------------------------------

  /** Runs an operation, rejecting with `ERR_DATABROKER_CLOSED` or a mapped error. */
  async #run<T>(op: () => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError()
    try {
      return await op()
    } catch (err) {
      throw mapError(err, this.#closed)
    }
  }

  /** A read-only statement on the pool, retried once if its connection broke. */
  async #read<R extends QueryResultRow>(sql: string, params: unknown[]): Promise<{ rows: R[] }> {
    try {
      return await this.#pool.query<R>(sql, params)
    } catch (err) {
      if (this.#closed || !isConnectionError(err)) throw err
      this.#logger?.debug({ err }, 'databroker postgres: retrying a read on a new connection')
      return await this.#pool.query<R>(sql, params)
    }
  }

  /** Runs `fn` in a transaction on one pooled connection. */
  async #transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect()
    let broken = false
    try {
      await client.query('BEGIN')
      const result = await fn(client)
      await client.query('COMMIT')
      return result
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true
      })
      throw err
    } finally {
      client.release(broken)
    }
  }

  /**
   * Runs a write transaction: locks the version counter, lets `fn` make changes (taking versions
   * from `tx.version`), prunes tombstones, stores the counter and NOTIFYs, all before COMMIT.
   */
  async #write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    let committed: number | undefined
    const result = await this.#transaction(async (client) => {
      const { rows } = await client.query<{ latest_version: string; tombstones: string }>(
        `SELECT latest_version, tombstones FROM ${this.#t.server} FOR UPDATE`,
      )
      const row = rows[0]
      if (row === undefined) throw new Error('the server row is missing')
      const start = Number(row.latest_version)
      const tx: WriteTx = { client, now: this.#clock.now(), version: start, tombstoneDelta: 0 }
      const out = await fn(tx)
      if (tx.version === start) return out
      let tombstones = Number(row.tombstones) + tx.tombstoneDelta
      let prunedThrough = 0
      if (tombstones > this.#maxTombstones) {
        const pruned = await client.query<{ n: string; max: string | null }>(
          `WITH p AS (
             SELECT type, id FROM ${this.#t.records} WHERE deleted_at IS NOT NULL
             ORDER BY version LIMIT $1
           ), d AS (
             DELETE FROM ${this.#t.records} AS r USING p
             WHERE r.type = p.type AND r.id = p.id RETURNING r.version
           )
           SELECT count(*) AS n, max(version) AS max FROM d`,
          [tombstones - this.#maxTombstones],
        )
        tombstones -= Number(pruned.rows[0]?.n ?? 0)
        prunedThrough = Number(pruned.rows[0]?.max ?? 0)
      }
      await client.query(
        `WITH u AS (
           UPDATE ${this.#t.server} SET latest_version = $1, tombstones = $2,
             pruned_through = GREATEST(pruned_through, $3)
           RETURNING latest_version
         )
         SELECT pg_notify($4, latest_version::text) FROM u`,
        [tx.version, tombstones, prunedThrough, this.#channel],
      )
      committed = tx.version
      return out
    })
    if (committed !== undefined) this.#announce(committed)
    return result
  }

  /** The options of `types` that have any, read inside a write transaction. */
  async #loadOptions(client: PoolClient, types: string[]): Promise<Map<string, StoredOptions>> {
    const { rows } = await client.query<{
      type: string
      ttl_ms: number | null
      capacity: number | null
    }>(`SELECT type, ttl_ms, capacity FROM ${this.#t.options} WHERE type = ANY($1::text[])`, [
      types,
    ])
    return new Map(
      rows.map((r) => [r.type, { ttlMs: r.ttl_ms ?? undefined, capacity: r.capacity ?? undefined }]),
    )
  }

  /**
   * Turns the live records of `type` that are past their TTL (and, with `capacity`, beyond the
   * type's capacity, oldest first) into tombstones, versions in modification order.
   */
  async #expireLocked(
    tx: WriteTx,
    type: string,
    options: StoredOptions,
    capacity: boolean,
  ): Promise<void> {
    const params: unknown[] = [type]
    const param = (value: unknown): string => `$${params.push(value)}`
    const parts: string[] = []
    let cutoff: string | undefined
    if (options.ttlMs !== undefined) {
      cutoff = param(new Date(tx.now - options.ttlMs))
      parts.push(
        `SELECT id, version FROM ${this.#t.records}
         WHERE type = $1 AND deleted_at IS NULL AND modified_at <= ${cutoff}`,
      )
    }
    if (capacity && options.capacity !== undefined) {
      parts.push(
        `(SELECT id, version FROM ${this.#t.records}
          WHERE type = $1 AND deleted_at IS NULL
          ${cutoff === undefined ? '' : `AND modified_at > ${cutoff}`}
          ORDER BY version DESC OFFSET ${param(options.capacity)})`,
      )
    }
    if (parts.length === 0) return
    const base = param(tx.version)
    const now = param(new Date(tx.now))
    const { rowCount } = await tx.client.query(
      `WITH victims AS (
         SELECT id, row_number() OVER (ORDER BY version) AS n FROM (${parts.join(' UNION ALL ')}) AS v
       )
       UPDATE ${this.#t.records} AS r
       SET version = ${base}::bigint + v.n, modified_at = ${now}, deleted_at = ${now}
       FROM victims AS v WHERE r.type = $1 AND r.id = v.id`,
      params,
    )
    tx.version += rowCount ?? 0
    tx.tombstoneDelta += rowCount ?? 0
  }

  /** SQL for "type `typeParam` has a live record past its TTL at `nowParam`". */
  #ttlDueSql(typeParam: string, nowParam: string): string {
    return `EXISTS (
      SELECT 1 FROM ${this.#t.options} AS o WHERE o.type = ${typeParam} AND o.ttl_ms IS NOT NULL
      AND ${this.#pastTtlSql('o', nowParam)})`
  }

  /** SQL for "the type of options row `o` has a live record past its TTL at `nowParam`". */
  #pastTtlSql(o: string, nowParam: string): string {
    return `EXISTS (
      SELECT 1 FROM ${this.#t.records} AS x
      WHERE x.type = ${o}.type AND x.deleted_at IS NULL
      AND x.modified_at <= ${nowParam}::timestamptz - ${o}.ttl_ms * interval '1 millisecond')`
  }

  /**
   * Expires records past their TTL, of one type or of all. Checks without the lock first, so
   * that reads only write when something is due.
   */
  async #expireDue(type: string | undefined): Promise<void> {
    const now = new Date(this.#clock.now())
    const { rows } = await this.#read<{ type: string }>(
      `SELECT o.type FROM ${this.#t.options} AS o
       WHERE o.ttl_ms IS NOT NULL ${type === undefined ? '' : 'AND o.type = $2'}
       AND ${this.#pastTtlSql('o', '$1')}`,
      type === undefined ? [now] : [now, type],
    )
    const due = rows.map((r) => r.type)
    if (due.length === 0) return
    await this.#write(async (tx) => {
      const options = await this.#loadOptions(tx.client, due)
      for (const [t, o] of options) await this.#expireLocked(tx, t, o, false)
    })
  }

  /** The periodic sweep: expiries reach waiting syncs even when nothing reads. */
  #sweep(): void {
    if (this.#closed || this.#sweeping) return
    this.#sweeping = true
    this.#expireDue(undefined)
      .catch((err: unknown) => {
        if (!this.#closed) this.#logger?.warn({ err }, 'databroker postgres: expiry sweep failed')
      })
      .finally(() => {
        this.#sweeping = false
      })
  }

  // --- sync ------------------------------------------------------------------------------------

  /** Changes after `cursor`, with the counter and pruning mark of the same snapshot. */
  async #changesAfter(
    cursor: number,
    type: string | undefined,
  ): Promise<{ records: DataRecord[]; latest: number; prunedThrough: number }> {
    const { rows } = await this.#read<
      { latest_version: string; pruned_through: string } & MaybeRecordRow
    >(
      `SELECT s.latest_version, s.pruned_through, r.* FROM ${this.#t.server} AS s
       LEFT JOIN LATERAL (
         SELECT ${COLUMNS} FROM ${this.#t.records}
         WHERE version > $1 ${type === undefined ? '' : 'AND type = $3'}
         ORDER BY version LIMIT $2
       ) AS r ON true
       ORDER BY r.version`,
      type === undefined ? [cursor, SYNC_BATCH] : [cursor, SYNC_BATCH, type],
    )
    const first = rows[0]
    if (first === undefined) throw new Error('the server row is missing')
    return {
      records: found(rows).map(toRecord),
      latest: Number(first.latest_version),
      prunedThrough: Number(first.pruned_through),
    }
  }

  /**
   * One sync stream, written by hand (like the memory backend's) so that `return()` settles a
   * `next()` that is waiting for changes.
   */
  #openSync(afterVersion: number, options: SyncOptions): AsyncIterator<DataRecord> {
    const { type, signal } = options
    let started = false
    let cursor = afterVersion
    let epoch = this.#epoch
    return pagedChanges<DataRecord>({
      signal,
      waiters: this.#waiters,
      toRecord: (r) => r,
      // Wait only if no wake-up came while querying: it may be for a change the query missed.
      mayWait: () => epoch === this.#epoch,
      nextPage: async () => {
        try {
          if (this.#closed) throw closedError()
          if (!started) {
            started = true
            checkVersion(afterVersion)
            if (type !== undefined) checkPgKey('type', type)
          }
          await this.#expireDue(undefined)
          epoch = this.#epoch
          const changes = await this.#changesAfter(cursor, type)
          if (cursor < changes.prunedThrough) {
            throw new DataBrokerError(
              'ERR_DATABROKER_SYNC_TOO_OLD',
              `cannot sync after version ${cursor}: ` + `tombstones up to version ${changes.prunedThrough} were pruned`,
            )
          }
          const lastSeen = changes.records.at(-1)?.version ?? cursor
          cursor = changes.records.length === SYNC_BATCH ? lastSeen : Math.max(cursor, changes.latest)
          return changes.records
        } catch (err) {
          throw mapError(err, this.#closed)
        }
      },
    })
  }

  #wakeAll(): void {
    this.#epoch++
    this.#waiters.wakeAll()
  }

  /** Wakes waiting syncs for `version`, unless an earlier wake-up already covered it. */
  #announce(version: number): void {
    if (version <= this.#announced) return
    this.#announced = version
    this.#wakeAll()
  }

  // --- listener ----------------------------------------------------------------------------------

  async #connectListener(): Promise<void> {
    const client = new Client({
      connectionString: this.#connectionString,
      connectionTimeoutMillis: this.#connectionTimeoutMs,
      application_name: `portcullis-listener ${this.#schema}`.slice(0, 63),
    })
    client.on('error', (err) => this.#listenerLost(client, err))
    client.on('end', () => this.#listenerLost(client, undefined))
    client.on('notification', (msg: Notification) => {
      if (msg.channel !== this.#channel) return
      const version = Number(msg.payload)
      if (Number.isSafeInteger(version)) this.#announce(version)
      else this.#wakeAll()
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${quoteIdent(this.#channel)}`)
    } catch (err) {
      void client.end().catch(() => undefined)
      throw err
    }
    if (this.#closed) {
      void client.end().catch(() => undefined)
      return
    }
    this.#listener = client
  }

  #listenerLost(client: Client, err: Error | undefined): void {
    if (this.#listener !== client) return
    this.#listener = undefined
    void client.end().catch(() => undefined)
    if (this.#closed) return
    this.#logger?.warn(
      { err, schema: this.#schema },
      'databroker postgres: change listener lost; reconnecting',
    )
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return
    const delay = this.#reconnectDelayMs * (0.5 + Math.random() / 2)
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined
      if (this.#closed) return
      this.#connectListener().then(
        () => {
          this.#reconnectDelayMs = this.#reconnectInitialMs
          if (this.#closed) return
          this.#logger?.info({ schema: this.#schema }, 'databroker postgres: listener reconnected')
          // Changes committed while nobody listened: every waiting sync reads again.
          this.#wakeAll()
        },
        (err: unknown) => {
          this.#reconnectDelayMs = Math.min(this.#reconnectMaxMs, this.#reconnectDelayMs * 2)
          this.#logger?.warn(
            { err, schema: this.#schema },
            'databroker postgres: listener reconnection failed',
          )
          this.#scheduleReconnect()
        },
      )
    }, delay)
    this.#reconnectTimer.unref()
  }
}
