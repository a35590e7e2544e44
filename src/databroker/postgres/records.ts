/**
 * Record reads and writes in PostgreSQL. Every write runs in one transaction that first locks the
 * single `server` row holding the version counter, so writers (across instances) take versions in
 * commit order; the same transaction prunes tombstones beyond the bound, stores the counter and
 * sends `NOTIFY` with the new latest version. Expired records become tombstones lazily, when an
 * operation touches their type (and from the store's sweep).
 */
import type { Pool, PoolClient, QueryResultRow } from 'pg'
import type { Logger } from '../../shared/log.js'
import type {
  Clock,
  DataRecord,
  FieldValue,
  QueryOptions,
  QueryResult,
  RecordInput,
  ServerInfo,
  SyncLatestResult,
  TypeOptions,
} from '../types.js'
import { checkBatch, checkQuery, checkTypeOptions } from '../validate.js'
import { checkPgKey, isConnectionError, unstorable } from './errors.js'
import type { Tables } from './schema.js'

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

/** What `PostgresRecords` works with. */
interface PostgresRecordsSettings {
  readonly pool: Pool
  readonly tables: Tables
  readonly clock: Clock
  readonly logger: Logger | undefined
  readonly maxTombstones: number
  /** The NOTIFY channel that write transactions announce their latest version on. */
  readonly channel: string
  /** Whether the store is closed (a broken read is then not retried). */
  readonly isClosed: () => boolean
  /** Called after a write transaction that assigned versions commits, with the latest one. */
  readonly onCommit: (version: number) => void
}

/** The records and type options in one schema. */
export class PostgresRecords {
  readonly #pool: Pool
  readonly #t: Tables
  readonly #settings: PostgresRecordsSettings

  constructor(settings: PostgresRecordsSettings) {
    this.#pool = settings.pool
    this.#t = settings.tables
    this.#settings = settings
  }

  async get(type: string, id: string): Promise<DataRecord | undefined> {
    checkPgKey('type', type)
    checkPgKey('id', id)
    const sql = `SELECT ${this.#ttlDueSql('$1', '$3')} AS expire, r.*
      FROM (SELECT 1) AS one
      LEFT JOIN ${this.#t.records} AS r ON r.type = $1 AND r.id = $2 AND r.deleted_at IS NULL`
    type Row = MaybeRecordRow & { expire: boolean }
    const read = async (): Promise<Row[]> => {
      const now = new Date(this.#settings.clock.now())
      return (await this.#read<Row>(sql, [type, id, now])).rows
    }
    let rows = await read()
    if (rows[0]?.expire === true) {
      await this.expireDue(type)
      rows = await read()
    }
    const row = found(rows)[0]
    return row === undefined ? undefined : toRecord(row)
  }

  async put(records: readonly RecordInput[]): Promise<DataRecord[]> {
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
  }

  async delete(type: string, id: string): Promise<DataRecord | undefined> {
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
  }

  async query(options: QueryOptions): Promise<QueryResult> {
    const { offset, limit } = checkQuery(options)
    const { type, filter } = options
    checkPgKey('type', type)
    await this.expireDue(type)
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
  }

  async listTypes(): Promise<string[]> {
    await this.expireDue(undefined)
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
  }

  async serverInfo(): Promise<ServerInfo> {
    const { rows } = await this.#read<{ server_version: string; latest_version: string }>(
      `SELECT server_version, latest_version FROM ${this.#t.server}`,
      [],
    )
    const row = rows[0]
    if (row === undefined) throw new Error('the server row is missing')
    return { serverVersion: row.server_version, latestRecordVersion: Number(row.latest_version) }
  }

  async syncLatest(type?: string): Promise<SyncLatestResult> {
    if (type !== undefined) checkPgKey('type', type)
    await this.expireDue(undefined)
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
  }

  async setOptions(type: string, options: TypeOptions): Promise<void> {
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
  }

  /**
   * Up to `limit` changes after `cursor` (optionally of one type), with the counter and pruning
   * mark of the same snapshot.
   */
  async changesAfter(
    cursor: number,
    type: string | undefined,
    limit: number,
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
      type === undefined ? [cursor, limit] : [cursor, limit, type],
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
   * Expires records past their TTL, of one type or of all. Checks without the lock first, so
   * that reads only write when something is due.
   */
  async expireDue(type: string | undefined): Promise<void> {
    const now = new Date(this.#settings.clock.now())
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

  /** A read-only statement on the pool, retried once if its connection broke. */
  async #read<R extends QueryResultRow>(sql: string, params: unknown[]): Promise<{ rows: R[] }> {
    try {
      return await this.#pool.query<R>(sql, params)
    } catch (err) {
      if (this.#settings.isClosed() || !isConnectionError(err)) throw err
      this.#settings.logger?.debug({ err }, 'databroker postgres: retrying a read on a new connection')
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
    const { maxTombstones, channel } = this.#settings
    let committed: number | undefined
    const result = await this.#transaction(async (client) => {
      const { rows } = await client.query<{ latest_version: string; tombstones: string }>(
        `SELECT latest_version, tombstones FROM ${this.#t.server} FOR UPDATE`,
      )
      const row = rows[0]
      if (row === undefined) throw new Error('the server row is missing')
      const start = Number(row.latest_version)
      const tx: WriteTx = { client, now: this.#settings.clock.now(), version: start, tombstoneDelta: 0 }
      const out = await fn(tx)
      if (tx.version === start) return out
      let tombstones = Number(row.tombstones) + tx.tombstoneDelta
      let prunedThrough = 0
      if (tombstones > maxTombstones) {
        const pruned = await client.query<{ n: string; max: string | null }>(
          `WITH p AS (
             SELECT type, id FROM ${this.#t.records} WHERE deleted_at IS NOT NULL
             ORDER BY version LIMIT $1
           ), d AS (
             DELETE FROM ${this.#t.records} AS r USING p
             WHERE r.type = p.type AND r.id = p.id RETURNING r.version
           )
           SELECT count(*) AS n, max(version) AS max FROM d`,
          [tombstones - maxTombstones],
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
        [tx.version, tombstones, prunedThrough, channel],
      )
      committed = tx.version
      return out
    })
    if (committed !== undefined) this.#settings.onCommit(committed)
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
}
