/**
 * Record reads and writes in the SQLite file: the prepared statements, object filters turned into
 * SQL, and `SqliteRecords`, which keeps the version counter, tombstone count and type options in
 * memory (mirrors of their rows, restored when a write rolls back) and applies TTL, capacity and
 * tombstone pruning inside each write transaction. Sound only because one store holds the file.
 */
import type BetterSqlite3 from 'better-sqlite3'
import type { Logger } from '../../shared/log.js'
import { ChangeWaiters } from '../change-waiters.js'
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
import { checkBatch, checkQuery, checkTypeOptions, filterPredicate } from '../validate.js'
import { checkStorableKey } from './errors.js'
import type { Db } from './schema.js'

export interface Row {
  type: string
  id: string
  version: number
  data: string
  modified_at: number
  deleted_at: number | null
}

interface StateRow {
  server_version: string
  latest_version: number
  pruned_through: number
}

interface OptionsRow {
  type: string
  ttl_ms: number | null
  capacity: number | null
}

const COLUMNS = 'type, id, version, data, modified_at, deleted_at'

export function toRecord(row: Row): DataRecord {
  return {
    type: row.type,
    id: row.id,
    version: row.version,
    data: JSON.parse(row.data) as unknown,
    modifiedAt: new Date(row.modified_at),
    deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
  }
}

/** Object-filter keys that can go into a JSON path as they are. */
const PLAIN_KEY = /^[A-Za-z0-9_$-]+$/

/**
 * Translates an object filter into SQL conditions on `data`, or `undefined` when it must run in
 * process (a string value with a lone surrogate cannot be bound faithfully).
 */
function filterSql(
  filter: Readonly<Record<string, FieldValue>>,
): { sql: string; params: (string | number)[] } | undefined {
  const conditions = [`json_type(data) = 'object'`]
  const params: (string | number)[] = []
  for (const [key, value] of Object.entries(filter)) {
    if (typeof value === 'string' && /[\uD800-\uDFFF]/u.test(value)) return undefined
    let typeTest: string
    let atom: string | number | undefined
    if (value === null) typeTest = `= 'null'`
    else if (value === true) typeTest = `= 'true'`
    else if (value === false) typeTest = `= 'false'`
    else if (typeof value === 'string') {
      typeTest = `= 'text'`
      atom = value
    } else if (typeof value === 'number') {
      // JSON text holds no NaN or infinity, and `x === NaN` never holds: nothing matches.
      if (!Number.isFinite(value)) return { sql: '0', params: [] }
      typeTest = `IN ('integer', 'real')`
      atom = value
    } else {
      return undefined // unreachable after checkQuery
    }
    if (PLAIN_KEY.test(key)) {
      // A quoted label, so that digits and dashes are names rather than path syntax.
      const path = `$."${key}"`
      conditions.push(`json_type(data, ?) ${typeTest}`)
      params.push(path)
      if (atom !== undefined) {
        conditions.push('json_extract(data, ?) = ?')
        params.push(path, atom)
      }
    } else {
      // Any other key (dots, quotes, control characters, the empty key) matched exactly by name.
      conditions.push(
        `EXISTS (SELECT 1 FROM json_each(data) AS f WHERE f.key = ? AND f.type ${typeTest}` +
          (atom === undefined ? ')' : ' AND f.atom = ?)'),
      )
      params.push(key)
      if (atom !== undefined) params.push(atom)
    }
  }
  return { sql: conditions.join(' AND '), params }
}

/** How many records `sync` and a predicate query read per statement. */
export const PAGE = 500

/** Bound on cached filter statements (one per distinct set of filter keys and value types). */
const MAX_CACHED_STATEMENTS = 64

function prepareStatements(db: Db) {
  return {
    state: db.prepare<[], StateRow>(
      'SELECT server_version, latest_version, pruned_through FROM state',
    ),
    saveState: db.prepare<[number, number]>(
      'UPDATE state SET latest_version = ?, pruned_through = ?',
    ),
    maxVersion: db.prepare<[], number | null>('SELECT max(version) FROM records').pluck(),
    countTombstones: db
      .prepare<[], number>('SELECT count(*) FROM records WHERE deleted_at IS NOT NULL')
      .pluck(),
    allOptions: db.prepare<[], OptionsRow>('SELECT type, ttl_ms, capacity FROM type_options'),
    setOptions: db.prepare<[string, number | null, number | null]>(
      `INSERT INTO type_options (type, ttl_ms, capacity) VALUES (?, ?, ?)
       ON CONFLICT (type) DO UPDATE SET ttl_ms = excluded.ttl_ms, capacity = excluded.capacity`,
    ),
    deleteOptions: db.prepare<[string]>('DELETE FROM type_options WHERE type = ?'),
    get: db.prepare<[string, string], Row>(
      `SELECT ${COLUMNS} FROM records WHERE type = ? AND id = ? AND deleted_at IS NULL`,
    ),
    deletedAt: db.prepare<[string, string], { deleted_at: number | null }>(
      'SELECT deleted_at FROM records WHERE type = ? AND id = ?',
    ),
    upsert: db.prepare<[string, string, number, string, number]>(
      `INSERT INTO records (type, id, version, data, modified_at, deleted_at)
       VALUES (?, ?, ?, ?, ?, NULL)
       ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, data = excluded.data,
         modified_at = excluded.modified_at, deleted_at = NULL`,
    ),
    tombstone: db.prepare<[number, number, number, string, string], Row>(
      `UPDATE records SET version = ?, modified_at = ?, deleted_at = ?
       WHERE type = ? AND id = ? AND deleted_at IS NULL
       RETURNING ${COLUMNS}`,
    ),
    expired: db
      .prepare<[string, number], string>(
        `SELECT id FROM records WHERE type = ? AND deleted_at IS NULL AND modified_at <= ?
         ORDER BY version`,
      )
      .pluck(),
    overCapacity: db
      .prepare<[string, number], string>(
        `SELECT id FROM records WHERE type = ? AND deleted_at IS NULL
         ORDER BY version DESC LIMIT -1 OFFSET ?`,
      )
      .pluck(),
    pruneThrough: db
      .prepare<[number], number>(
        `SELECT version FROM records WHERE deleted_at IS NOT NULL
         ORDER BY version LIMIT 1 OFFSET ?`,
      )
      .pluck(),
    prune: db.prepare<[number]>(
      'DELETE FROM records WHERE deleted_at IS NOT NULL AND version <= ?',
    ),
    livePage: db.prepare<[string, string, number], Row>(
      `SELECT ${COLUMNS} FROM records WHERE type = ? AND deleted_at IS NULL AND id > ?
       ORDER BY id LIMIT ?`,
    ),
    listTypes: db
      .prepare<[], string>(
        // One index seek per type rather than a scan of every live record.
        `WITH RECURSIVE types (type) AS (
           SELECT min(type) FROM records WHERE deleted_at IS NULL
           UNION ALL
           SELECT (SELECT min(type) FROM records WHERE deleted_at IS NULL AND type > types.type)
           FROM types WHERE types.type IS NOT NULL
         )
         SELECT type FROM types WHERE type IS NOT NULL`,
      )
      .pluck(),
    latestAll: db.prepare<[], Row>(
      `SELECT ${COLUMNS} FROM records WHERE deleted_at IS NULL ORDER BY type, id`,
    ),
    latestOfType: db.prepare<[string], Row>(
      `SELECT ${COLUMNS} FROM records WHERE type = ? AND deleted_at IS NULL ORDER BY id`,
    ),
    changes: db.prepare<[number, number], Row>(
      `SELECT ${COLUMNS} FROM records WHERE version > ? ORDER BY version LIMIT ?`,
    ),
    changesOfType: db.prepare<[number, string, number], Row>(
      `SELECT ${COLUMNS} FROM records WHERE version > ? AND type = ? ORDER BY version LIMIT ?`,
    ),
  }
}

type Statements = ReturnType<typeof prepareStatements>

interface Counters {
  version: number
  tombstones: number
  prunedThrough: number
}

/** What `SqliteRecords` needs besides the open database. */
interface SqliteRecordsSettings {
  /** The database file (absolute), for messages. */
  readonly path: string
  readonly clock: Clock
  readonly logger: Logger | undefined
  readonly maxTombstones: number
}

/** The records, type options and version counter of one open database file. */
export class SqliteRecords {
  /** The `sync` streams waiting for a change; woken after each write that assigned a version. */
  readonly waiters = new ChangeWaiters()
  readonly #db: Db
  readonly #stmt: Statements
  readonly #transaction: (op: () => unknown) => unknown
  readonly #settings: SqliteRecordsSettings
  readonly #serverVersion: string
  /** Mirrors of the `state` row and the tombstone count, restored when a write rolls back. */
  #counters: Counters
  /** Mirror of `type_options`. */
  readonly #options = new Map<string, TypeOptions>()
  readonly #filterStatements = new Map<string, BetterSqlite3.Statement<unknown[], unknown>>()
  #notifiedVersion: number

  /** Reads the state row and the type options; throws when the state row is missing. */
  constructor(db: Db, settings: SqliteRecordsSettings, missingState: () => Error) {
    const stmt = prepareStatements(db)
    this.#db = db
    this.#stmt = stmt
    this.#settings = settings
    this.#transaction = db.transaction((op: () => unknown) => op())
    const state = stmt.state.get()
    if (state === undefined) throw missingState()
    this.#serverVersion = state.server_version
    this.#counters = {
      version: Math.max(state.latest_version, stmt.maxVersion.get() ?? 0),
      tombstones: stmt.countTombstones.get() ?? 0,
      prunedThrough: state.pruned_through,
    }
    this.#notifiedVersion = this.#counters.version
    for (const row of stmt.allOptions.all()) {
      const o: { ttlMs?: number; capacity?: number } = {}
      if (row.ttl_ms !== null) o.ttlMs = row.ttl_ms
      if (row.capacity !== null) o.capacity = row.capacity
      this.#options.set(row.type, o)
    }
  }

  get(type: string, id: string): DataRecord | undefined {
    checkStorableKey('type', type)
    checkStorableKey('id', id)
    this.#maintain([type])
    const row = this.#stmt.get.get(type, id)
    return row === undefined ? undefined : toRecord(row)
  }

  put(records: readonly RecordInput[]): DataRecord[] {
    const json = checkBatch(records)
    records.forEach((r, i) => {
      checkStorableKey(`records[${i}].type`, r.type)
      checkStorableKey(`records[${i}].id`, r.id)
    })
    const touched = [...new Set(records.map((r) => r.type))]
    return this.#write(() => {
      // Expire first, so that a put over an expired record revives a tombstone.
      for (const type of touched) this.#expire(type)
      const now = this.#settings.clock.now()
      const stored = records.map((r, i): DataRecord => {
        const text = json[i] as string
        const previous = this.#stmt.deletedAt.get(r.type, r.id)
        if (previous !== undefined && previous.deleted_at !== null) this.#counters.tombstones--
        const version = ++this.#counters.version
        this.#stmt.upsert.run(r.type, r.id, version, text, now)
        return {
          type: r.type,
          id: r.id,
          version,
          data: JSON.parse(text) as unknown,
          modifiedAt: new Date(now),
          deletedAt: undefined,
        }
      })
      for (const type of touched) this.#expire(type)
      return stored
    })
  }

  delete(type: string, id: string): DataRecord | undefined {
    checkStorableKey('type', type)
    checkStorableKey('id', id)
    return this.#write(() => {
      this.#expire(type)
      const row = this.#tombstone(type, id, this.#settings.clock.now())
      return row === undefined ? undefined : toRecord(row)
    })
  }

  query(options: QueryOptions): QueryResult {
    const { offset, limit } = checkQuery(options)
    const { type, filter } = options
    checkStorableKey('type', type)
    this.#maintain([type])
    const pushed =
      filter === undefined
        ? { sql: '1', params: [] }
        : typeof filter === 'function'
          ? undefined
          : filterSql(filter)
    if (pushed !== undefined) {
      const where = `type = ? AND deleted_at IS NULL AND ${pushed.sql}`
      const count = this.#filterStatement(`SELECT count(*) AS n FROM records WHERE ${where}`)
      const page = this.#filterStatement(
        `SELECT ${COLUMNS} FROM records WHERE ${where} ORDER BY id LIMIT ? OFFSET ?`,
      )
      const totalCount = (count.get(type, ...pushed.params) as { n: number }).n
      const pageLimit = Number.isFinite(limit) ? limit : -1
      const rows =
        limit === 0 || offset >= totalCount
          ? []
          : (page.all(type, ...pushed.params, pageLimit, offset) as Row[])
      return { records: rows.map(toRecord), totalCount }
    }
    // A predicate runs in process, over pages read before it is called: it may call the store.
    const match = filterPredicate(filter)
    const records: DataRecord[] = []
    let totalCount = 0
    let after = ''
    for (;;) {
      const rows = this.#stmt.livePage.all(type, after, PAGE)
      for (const row of rows) {
        const record = toRecord(row)
        if (!match(record.data)) continue
        if (totalCount >= offset && records.length < limit) records.push(record)
        totalCount++
      }
      if (rows.length < PAGE) break
      after = (rows.at(-1) as Row).id
    }
    return { records, totalCount }
  }

  listTypes(): string[] {
    this.maintainAll()
    return this.#stmt.listTypes.all()
  }

  info(): ServerInfo {
    return { serverVersion: this.#serverVersion, latestRecordVersion: this.#counters.version }
  }

  syncLatest(type?: string): SyncLatestResult {
    if (type !== undefined) checkStorableKey('type', type)
    this.maintainAll()
    const rows =
      type === undefined ? this.#stmt.latestAll.all() : this.#stmt.latestOfType.all(type)
    return { ...this.info(), records: rows.map(toRecord) }
  }

  setOptions(type: string, options: TypeOptions): void {
    checkTypeOptions(type, options)
    checkStorableKey('type', type)
    const copy: { ttlMs?: number; capacity?: number } = {}
    if (options.ttlMs !== undefined) copy.ttlMs = options.ttlMs
    if (options.capacity !== undefined) copy.capacity = options.capacity
    const previous = this.#options.get(type)
    try {
      this.#write(() => {
        if (copy.ttlMs === undefined && copy.capacity === undefined) {
          this.#options.delete(type)
          this.#stmt.deleteOptions.run(type)
        } else {
          this.#options.set(type, copy)
          this.#stmt.setOptions.run(type, copy.ttlMs ?? null, copy.capacity ?? null)
        }
        this.#expire(type)
      })
    } catch (err) {
      if (previous === undefined) this.#options.delete(type)
      else this.#options.set(type, previous)
      throw err
    }
  }

  /** Whether some type has a TTL (so that expiries need a sweep to reach waiting syncs). */
  hasTtl(): boolean {
    return [...this.#options.values()].some((o) => o.ttlMs !== undefined)
  }

  /** Applies every type's TTL and capacity. */
  maintainAll(): void {
    this.#maintain([...this.#options.keys()])
  }

  /** The latest version assigned and the highest one pruned. */
  marks(): { version: number; prunedThrough: number } {
    const { version, prunedThrough } = this.#counters
    return { version, prunedThrough }
  }

  /** Up to `limit` changes after version `after`, in version order (optionally of one type). */
  changes(after: number, type: string | undefined, limit: number): Row[] {
    return type === undefined
      ? this.#stmt.changes.all(after, limit)
      : this.#stmt.changesOfType.all(after, type, limit)
  }

  /** Forgets the cached filter statements (before the database closes). */
  clearCache(): void {
    this.#filterStatements.clear()
  }

  /**
   * Runs `op` in a transaction, then prunes tombstones and saves the counters in the same
   * transaction. On failure the counters are restored; on success `sync` waiters are woken.
   */
  #write<T>(op: () => T): T {
    const saved = { ...this.#counters }
    let result: T
    try {
      result = this.#transaction(() => {
        const r = op()
        this.#prune()
        const c = this.#counters
        if (c.version !== saved.version || c.prunedThrough !== saved.prunedThrough) {
          this.#stmt.saveState.run(c.version, c.prunedThrough)
        }
        return r
      }) as T
    } catch (err) {
      this.#counters = saved
      throw err
    }
    if (this.#counters.version !== this.#notifiedVersion) {
      // Only on a new version: waking on every write would let waiting syncs wake each other.
      this.#notifiedVersion = this.#counters.version
      this.waiters.wakeAll()
    }
    return result
  }

  /** Applies TTL and capacity to the given types, in a transaction only when one has options. */
  #maintain(types: readonly string[]): void {
    const due = types.filter((t) => this.#options.has(t))
    if (due.length > 0) this.#write(() => due.forEach((t) => this.#expire(t)))
  }

  /** Applies a type's TTL and capacity (inside a write). */
  #expire(type: string): void {
    const options = this.#options.get(type)
    if (options === undefined) return
    const now = this.#settings.clock.now()
    if (options.ttlMs !== undefined) {
      for (const id of this.#stmt.expired.all(type, now - options.ttlMs)) {
        this.#tombstone(type, id, now)
      }
    }
    if (options.capacity !== undefined) {
      // Oldest first, as the memory store evicts.
      for (const id of this.#stmt.overCapacity.all(type, options.capacity).reverse()) {
        this.#tombstone(type, id, now)
      }
    }
  }

  /** Turns the live record into a tombstone with a new version (inside a write). */
  #tombstone(type: string, id: string, now: number): Row | undefined {
    const version = this.#counters.version + 1
    const row = this.#stmt.tombstone.get(version, now, now, type, id)
    if (row !== undefined) {
      this.#counters.version = version
      this.#counters.tombstones++
    }
    return row
  }

  /** Drops the oldest tombstones beyond the bound (inside a write). */
  #prune(): void {
    const excess = this.#counters.tombstones - this.#settings.maxTombstones
    if (excess <= 0) return
    const through = this.#stmt.pruneThrough.get(excess - 1)
    if (through === undefined) return
    const { changes } = this.#stmt.prune.run(through)
    this.#counters.tombstones -= changes
    this.#counters.prunedThrough = Math.max(this.#counters.prunedThrough, through)
    this.#settings.logger?.debug(
      { path: this.#settings.path, pruned: changes, through },
      'databroker tombstones pruned',
    )
  }

  #filterStatement(sql: string): BetterSqlite3.Statement<unknown[], unknown> {
    let stmt = this.#filterStatements.get(sql)
    if (stmt === undefined) {
      if (this.#filterStatements.size >= MAX_CACHED_STATEMENTS) this.#filterStatements.clear()
      stmt = this.#db.prepare<unknown[], unknown>(sql)
      this.#filterStatements.set(sql, stmt)
    }
    return stmt
  }
}
