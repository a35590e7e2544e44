/**
 * The `file` record store: one SQLite database file through better-sqlite3, for a single process
 * that wants its databroker to survive restarts. Pomerium's `file` backend is pebble in a
 * directory (`file:///path`); ours keeps the same URL form and stores `databroker.sqlite` in that
 * directory, unless the path names a file (see `resolveSqliteFile`).
 *
 * - One process, one store. The database runs in WAL mode with `locking_mode=EXCLUSIVE`: the
 *   store takes SQLite's exclusive lock when it opens and holds it until `close`, so a second
 *   store on the same file, in this process or another, fails to open with a `SqliteOpenError`
 *   (`reason: 'locked'`) instead of silently diverging. `sync` waiters are woken in process after
 *   each committed write, which is only sound because nobody else can write the file.
 * - better-sqlite3 is synchronous: every method runs its statements at once and returns a settled
 *   promise. Operations stay small: reads use indexes, `sync` reads changes in pages, and a query
 *   with a predicate filter reads its type in pages so the predicate never runs inside a statement.
 * - Everything persists: records and tombstones, the version counter, the server version (a random
 *   UUID chosen when the file is created), per-type options and leases. Tombstones beyond
 *   `maxTombstones` are pruned oldest first; a `sync` starting before a pruned one fails with
 *   `ERR_DATABROKER_SYNC_TOO_OLD`, across restarts too.
 * - Ids and types sort by SQLite's binary collation: UTF-8 bytes, which is Unicode code point
 *   order. It differs from the memory backend's UTF-16 order only between characters U+E000 to
 *   U+FFFF and characters beyond U+FFFF.
 * - Keys (types, ids, lease names) must be well-formed Unicode: SQLite stores text as UTF-8, where
 *   a lone surrogate has no encoding, so such keys are rejected as invalid arguments.
 */
import { randomUUID } from 'node:crypto'
import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type BetterSqlite3 from 'better-sqlite3'
import type { Logger } from '../shared/log.js'
import { ChangeWaiters, pagedChanges } from './change-waiters.js'
import { DataBrokerError } from './errors.js'
import { DEFAULT_MAX_TOMBSTONES } from './memory.js'
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
  filterPredicate,
} from './validate.js'

/** The database file name used when the configured path is a directory. */
export const SQLITE_FILE_NAME = 'databroker.sqlite'

/** The schema version this code writes (`PRAGMA user_version`). */
export const SQLITE_SCHEMA_VERSION = 1

/** `PRAGMA application_id` of a Portcullis databroker file: "PCDB". */
const APPLICATION_ID = 0x50434442

/** Options of `createSqliteRecordStore`. */
export interface SqliteRecordStoreOptions {
  /**
   * The database file, or a directory to keep `databroker.sqlite` in (see `resolveSqliteFile`).
   * Relative paths are resolved against the working directory once, at open. For a `file:` URL
   * use `sqlitePathFromUrl`.
   */
  readonly path: string
  /** The time source for timestamps, TTLs and leases (default: the system clock). */
  readonly clock?: Clock
  /** Receives open, migration and background-sweep messages. */
  readonly logger?: Logger
  /**
   * How many tombstones to keep for `sync` (default 10,000, as in memory). Beyond that the
   * oldest are pruned, and a `sync` that starts before a pruned one fails with
   * `ERR_DATABROKER_SYNC_TOO_OLD`.
   */
  readonly maxTombstones?: number
  /**
   * How often, in milliseconds, to look for records past their TTL while some type has one
   * (default 1,000). Reads expire records too; this bounds how late a waiting `sync` hears of it.
   */
  readonly sweepIntervalMs?: number
  /**
   * SQLite's busy timeout in milliseconds (default 5,000): how long opening waits for another
   * holder of the file to let go (for example a previous process still shutting down) before it
   * fails with `reason: 'locked'`.
   */
  readonly busyTimeoutMs?: number
}

/** Why a database file could not be opened. */
export type SqliteOpenFailure =
  /** Another store (in this process or another) holds the file. */
  | 'locked'
  /** The file or its directory cannot be created, read or written, or the driver is missing. */
  | 'unreadable'
  /** The file is not an SQLite database, or is damaged. */
  | 'corrupt'
  /** An SQLite database, but not one this version of Portcullis can use. */
  | 'incompatible'

/** The database file could not be opened; the message names the file. */
export class SqliteOpenError extends Error {
  /** The database file (absolute). */
  readonly path: string
  readonly reason: SqliteOpenFailure

  constructor(
    path: string,
    reason: SqliteOpenFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'SqliteOpenError'
    this.path = path
    this.reason = reason
  }
}

function invalid(message: string): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', message)
}

/**
 * The path in a `file:` URL: `file:///abs/path` (percent-decoded, a trailing `/` kept, so that
 * `resolveSqliteFile` treats it as a directory) or `file:relative/path` (relative to the working
 * directory). Hosts other than `localhost`, queries and fragments are rejected.
 */
export function sqlitePathFromUrl(url: string): string {
  if (!/^file:/i.test(url)) throw invalid(`not a file: URL: ${url}`)
  const rest = url.slice('file:'.length)
  if (rest.includes('?') || rest.includes('#')) {
    throw invalid(`file: URL must not have a query or fragment: ${url}`)
  }
  if (rest.startsWith('/')) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch (err) {
      throw new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', `invalid file: URL: ${url}`, {
        cause: err,
      })
    }
    if (parsed.hostname !== '') {
      throw invalid(`file: URL must name a local path (file:///abs/path), got host in ${url}`)
    }
    return fileURLToPath(parsed)
  }
  if (rest === '') throw invalid('file: URL has no path')
  try {
    return decodeURIComponent(rest)
  } catch (err) {
    throw new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', `invalid file: URL: ${url}`, {
      cause: err,
    })
  }
}

/** Names that make a path the database file itself rather than a directory to keep it in. */
const FILE_EXTENSION = /\.(sqlite3?|db)$/i

/**
 * The database file for a configured path. Pomerium's `file:///path` names a directory, so a path
 * is a directory holding `databroker.sqlite` (created if missing) unless it names an existing
 * file, or a missing one ending in `.sqlite`, `.sqlite3` or `.db`. A path ending in `/` or
 * naming an existing directory is always a directory. The result is absolute.
 */
export function resolveSqliteFile(path: string): string {
  if (typeof path !== 'string' || path === '') throw invalid('path must be a non-empty string')
  const absolute = resolve(path)
  let kind: 'file' | 'directory' | 'missing' = 'missing'
  try {
    kind = statSync(absolute).isDirectory() ? 'directory' : 'file'
  } catch {
    // Missing, or unreachable: opening reports the latter, naming the file.
  }
  const namesFile = kind === 'file' || (kind === 'missing' && FILE_EXTENSION.test(absolute))
  if (namesFile && !path.endsWith('/')) {
    return absolute
  }
  if (kind !== 'directory') {
    try {
      createPrivateDirectory(absolute)
    } catch (err) {
      throw new SqliteOpenError(
        absolute,
        'unreadable',
        `cannot create databroker directory ${absolute}: ${messageOf(err)}`,
        { cause: err },
      )
    }
  }
  return join(absolute, SQLITE_FILE_NAME)
}

/**
 * The store holds sessions and identity-provider tokens: what it creates is for its owner only,
 * whatever the umask (SQLite's default would be 0644 files in a 0755 directory).
 */
const PRIVATE_DIRECTORY_MODE = 0o700
const PRIVATE_FILE_MODE = 0o600

/** `mkdir -p` with 0700 on every directory it creates (and only those: existing ones are the operator's). */
function createPrivateDirectory(absolute: string): void {
  const first = mkdirSync(absolute, { recursive: true, mode: PRIVATE_DIRECTORY_MODE })
  if (first === undefined) return
  // The mode given to mkdir passes through the umask; chmod makes it exact.
  for (let dir = absolute; ; dir = dirname(dir)) {
    chmodSync(dir, PRIVATE_DIRECTORY_MODE)
    if (dir === first || dir === dirname(dir)) break
  }
}

/**
 * Creates a missing database file empty with mode 0600 before SQLite opens it: SQLite then
 * gives its `-wal` and `-shm` files the database file's mode. An existing file keeps its mode
 * (the operator's choice), with a warning when other users may read it.
 */
function prepareDatabaseFile(file: string, logger: Logger | undefined): void {
  let fd: number
  try {
    fd = openSync(file, 'wx', PRIVATE_FILE_MODE)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return // the driver reports it, naming the file
    let mode: number
    try {
      mode = statSync(file).mode & 0o777
    } catch {
      return
    }
    if ((mode & 0o077) !== 0) {
      logger?.warn({ file, mode: `0${mode.toString(8)}` }, `databroker file ${file} can be read by other users (mode 0${mode.toString(8)}): it holds sessions and tokens; chmod 600 it`)
    }
    return
  }
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE)
  } finally {
    closeSync(fd)
  }
}

/**
 * Opens (creating or migrating as needed) the `file` record store. Synchronous, as the driver
 * is: failures throw a `SqliteOpenError` naming the file (or a `DataBrokerError` for options
 * outside their ranges).
 */
export function createSqliteRecordStore(options: SqliteRecordStoreOptions): SqliteRecordStore {
  return SqliteRecordStore.open(options)
}

// --- schema ----------------------------------------------------------------------------------

type Db = BetterSqlite3.Database

/**
 * Migration `i` takes the schema from version `i` to `i + 1`. Each runs in the opening
 * transaction; `user_version` records the result. Never edit a released migration: append one.
 */
const MIGRATIONS: readonly ((db: Db) => void)[] = [
  (db) => {
    db.exec(`
      -- One row: the store's identity and counters.
      CREATE TABLE state (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        server_version TEXT NOT NULL,
        latest_version INTEGER NOT NULL,
        pruned_through INTEGER NOT NULL
      );
      -- The current state of every record: live (deleted_at NULL) or a tombstone. Times are
      -- epoch milliseconds from the store's clock; data is JSON text.
      CREATE TABLE records (
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL UNIQUE,
        data TEXT NOT NULL,
        modified_at INTEGER NOT NULL,
        deleted_at INTEGER,
        PRIMARY KEY (type, id)
      ) WITHOUT ROWID;
      -- A type's changes in version order: sync of one type, and capacity eviction.
      CREATE INDEX records_by_type_version ON records (type, version);
      -- A type's live records by age: TTL expiry, and listing the types with live records.
      CREATE INDEX records_live_by_modified ON records (type, modified_at)
        WHERE deleted_at IS NULL;
      -- Tombstone pruning, oldest first.
      CREATE INDEX records_tombstones ON records (version) WHERE deleted_at IS NOT NULL;
      CREATE TABLE type_options (
        type TEXT PRIMARY KEY,
        ttl_ms REAL,
        capacity INTEGER
      ) WITHOUT ROWID;
      CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        expires_at REAL NOT NULL
      ) WITHOUT ROWID;
    `)
    db.prepare(
      `INSERT INTO state (singleton, server_version, latest_version, pruned_through)
       VALUES (1, ?, 0, 0)`,
    ).run(randomUUID())
  },
]

interface Row {
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

function toRecord(row: Row): DataRecord {
  return {
    type: row.type,
    id: row.id,
    version: row.version,
    data: JSON.parse(row.data) as unknown,
    modifiedAt: new Date(row.modified_at),
    deletedAt: row.deleted_at === null ? undefined : new Date(row.deleted_at),
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : ''
}

/** Rejects keys SQLite cannot store faithfully (a lone surrogate has no UTF-8 form). */
function checkStorableKey(what: string, value: unknown): asserts value is string {
  checkKey(what, value)
  if (/[\uD800-\uDFFF]/u.test(value)) {
    throw invalid(`${what} must be well-formed Unicode (it contains a lone surrogate)`)
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
const PAGE = 500

/** Bound on cached filter statements (one per distinct set of filter keys and value types). */
const MAX_CACHED_STATEMENTS = 64

/** Loads better-sqlite3 on first use, so that importing the databroker never needs the addon. */
function loadDriver(file: string): typeof BetterSqlite3 {
  try {
    return createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3
  } catch (err) {
    throw new SqliteOpenError(
      file,
      'unreadable',
      `cannot open databroker file ${file}: ` +
        `the better-sqlite3 driver failed to load: ${messageOf(err)}`,
      { cause: err },
    )
  }
}

function openError(file: string, err: unknown): Error {
  if (err instanceof SqliteOpenError || err instanceof DataBrokerError) return err
  const code = sqliteCode(err)
  const detail = messageOf(err)
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
    return new SqliteOpenError(
      file,
      'locked',
      `databroker file ${file} is in use by another process or store (${detail}); the file ` +
        'backend allows one process at a time: use the postgres backend to share a databroker',
      { cause: err },
    )
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new SqliteOpenError(
      file,
      'corrupt',
      `databroker file ${file} is damaged or is not an SQLite database (${detail})`,
      { cause: err },
    )
  }
  return new SqliteOpenError(
    file,
    'unreadable',
    `cannot open databroker file ${file}: ${detail}`,
    { cause: err },
  )
}

/** Brings the schema up to date inside the opening (exclusive) transaction. */
function migrate(db: Db, file: string, logger: Logger | undefined): void {
  const version = db.pragma('user_version', { simple: true }) as number
  const appId = db.pragma('application_id', { simple: true }) as number
  const incompatible = (why: string): SqliteOpenError =>
    new SqliteOpenError(file, 'incompatible', `databroker file ${file} ${why}`)
  if (version === 0) {
    const objects = db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get() as number
    if (objects > 0 || (appId !== 0 && appId !== APPLICATION_ID)) {
      throw incompatible('is an SQLite database of another application (no Portcullis schema)')
    }
  } else if (appId !== APPLICATION_ID) {
    throw incompatible(`is an SQLite database of another application (application_id ${appId})`)
  }
  if (version > MIGRATIONS.length) {
    throw incompatible(
      `has schema version ${version}, written by a newer Portcullis; this one knows up to ` +
        `${MIGRATIONS.length}`,
    )
  }
  if (version === MIGRATIONS.length) return
  for (let v = version; v < MIGRATIONS.length; v++) (MIGRATIONS[v] as (db: Db) => void)(db)
  db.pragma(`application_id = ${APPLICATION_ID}`)
  db.pragma(`user_version = ${MIGRATIONS.length}`)
  logger?.info(
    { path: file, from: version, to: MIGRATIONS.length },
    'databroker file schema migrated',
  )
}

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
    lease: db.prepare<[string], { id: string; expires_at: number }>(
      'SELECT id, expires_at FROM leases WHERE name = ?',
    ),
    setLease: db.prepare<[string, string, number]>(
      `INSERT INTO leases (name, id, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET id = excluded.id, expires_at = excluded.expires_at`,
    ),
    renewLease: db.prepare<[number, string, string, number]>(
      'UPDATE leases SET expires_at = ? WHERE name = ? AND id = ? AND expires_at > ?',
    ),
    releaseLease: db.prepare<[string, string]>('DELETE FROM leases WHERE name = ? AND id = ?'),
  }
}

type Statements = ReturnType<typeof prepareStatements>

interface Counters {
  version: number
  tombstones: number
  prunedThrough: number
}

// --- the store -------------------------------------------------------------------------------

/** A `RecordStore` in an SQLite file. Open it with `createSqliteRecordStore`. */
export class SqliteRecordStore implements RecordStore {
  /** The database file (absolute). */
  readonly path: string
  readonly #db: Db
  readonly #stmt: Statements
  readonly #transaction: (op: () => unknown) => unknown
  readonly #clock: Clock
  readonly #logger: Logger | undefined
  readonly #maxTombstones: number
  readonly #sweepIntervalMs: number
  readonly #serverVersion: string
  /** Mirrors of the `state` row and the tombstone count, restored when a write rolls back. */
  #counters: Counters
  /** Mirror of `type_options`. */
  readonly #options = new Map<string, TypeOptions>()
  readonly #filterStatements = new Map<string, BetterSqlite3.Statement<unknown[], unknown>>()
  readonly #waiters = new ChangeWaiters()
  #notifiedVersion: number
  #sweepTimer: NodeJS.Timeout | undefined
  #closed = false

  /** Opens the store synchronously; `createSqliteRecordStore` is the public entry point. */
  static open(options: SqliteRecordStoreOptions): SqliteRecordStore {
    const { clock = systemClock, logger, maxTombstones = DEFAULT_MAX_TOMBSTONES } = options
    const { sweepIntervalMs = 1_000, busyTimeoutMs = 5_000 } = options
    if (!Number.isSafeInteger(maxTombstones) || maxTombstones < 0) {
      throw invalid('maxTombstones must be a non-negative integer')
    }
    if (!Number.isFinite(sweepIntervalMs) || sweepIntervalMs <= 0) {
      throw invalid('sweepIntervalMs must be a positive number')
    }
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw invalid('busyTimeoutMs must be a non-negative integer')
    }
    const file = resolveSqliteFile(options.path)
    const Database = loadDriver(file)
    prepareDatabaseFile(file, logger)
    let db: Db
    try {
      db = new Database(file, { timeout: busyTimeoutMs })
    } catch (err) {
      throw openError(file, err)
    }
    try {
      // Exclusive locking first: the journal-mode switch is the first read, and from then on
      // this connection keeps its lock (and the WAL index in its own memory) until it closes.
      db.pragma('locking_mode = EXCLUSIVE')
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string
      if (mode !== 'wal') {
        throw new SqliteOpenError(
          file,
          'unreadable',
          `databroker file ${file} cannot use write-ahead logging (journal mode ${mode})`,
        )
      }
      db.pragma('synchronous = NORMAL')
      // Takes the exclusive lock that the locking mode then holds until close.
      db.transaction(() => migrate(db, file, logger)).exclusive()
      return new SqliteRecordStore(db, file, prepareStatements(db), {
        clock,
        logger,
        maxTombstones,
        sweepIntervalMs,
      })
    } catch (err) {
      db.close()
      throw openError(file, err)
    }
  }

  private constructor(
    db: Db,
    file: string,
    stmt: Statements,
    settings: {
      clock: Clock
      logger: Logger | undefined
      maxTombstones: number
      sweepIntervalMs: number
    },
  ) {
    this.path = file
    this.#db = db
    this.#stmt = stmt
    this.#clock = settings.clock
    this.#logger = settings.logger
    this.#maxTombstones = settings.maxTombstones
    this.#sweepIntervalMs = settings.sweepIntervalMs
    this.#transaction = db.transaction((op: () => unknown) => op())
    const state = stmt.state.get()
    if (state === undefined) {
      throw new SqliteOpenError(file, 'corrupt', `databroker file ${file} has no state row`)
    }
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
    this.#scheduleSweep()
    this.#logger?.info(
      {
        path: file,
        serverVersion: this.#serverVersion,
        latestRecordVersion: this.#counters.version,
      },
      'databroker file opened',
    )
  }

  get(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(() => {
      checkStorableKey('type', type)
      checkStorableKey('id', id)
      this.#maintain([type])
      const row = this.#stmt.get.get(type, id)
      return row === undefined ? undefined : toRecord(row)
    })
  }

  put(records: readonly RecordInput[]): Promise<DataRecord[]> {
    return this.#run(() => {
      const json = checkBatch(records)
      records.forEach((r, i) => {
        checkStorableKey(`records[${i}].type`, r.type)
        checkStorableKey(`records[${i}].id`, r.id)
      })
      const touched = [...new Set(records.map((r) => r.type))]
      return this.#write(() => {
        // Expire first, so that a put over an expired record revives a tombstone.
        for (const type of touched) this.#expire(type)
        const now = this.#clock.now()
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
    })
  }

  delete(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(() => {
      checkStorableKey('type', type)
      checkStorableKey('id', id)
      return this.#write(() => {
        this.#expire(type)
        const row = this.#tombstone(type, id, this.#clock.now())
        return row === undefined ? undefined : toRecord(row)
      })
    })
  }

  query(options: QueryOptions): Promise<QueryResult> {
    return this.#run(() => {
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
    })
  }

  listTypes(): Promise<string[]> {
    return this.#run(() => {
      this.#maintain([...this.#options.keys()])
      return this.#stmt.listTypes.all()
    })
  }

  serverInfo(): Promise<ServerInfo> {
    return this.#run(() => this.#info())
  }

  sync(afterVersion: number, options: SyncOptions = {}): AsyncIterable<DataRecord> {
    return { [Symbol.asyncIterator]: () => this.#openSync(afterVersion, options) }
  }

  syncLatest(type?: string): Promise<SyncLatestResult> {
    return this.#run(() => {
      if (type !== undefined) checkStorableKey('type', type)
      this.#maintain([...this.#options.keys()])
      const rows =
        type === undefined ? this.#stmt.latestAll.all() : this.#stmt.latestOfType.all(type)
      return { ...this.#info(), records: rows.map(toRecord) }
    })
  }

  setOptions(type: string, options: TypeOptions): Promise<void> {
    return this.#run(() => {
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
      this.#scheduleSweep()
    })
  }

  acquireLease(name: string, durationMs: number): Promise<string | undefined> {
    return this.#run(() => {
      checkStorableKey('name', name)
      checkDuration(durationMs)
      const now = this.#clock.now()
      const held = this.#stmt.lease.get(name)
      if (held !== undefined && now < held.expires_at) return undefined
      const id = randomUUID()
      this.#stmt.setLease.run(name, id, now + durationMs)
      return id
    })
  }

  renewLease(name: string, id: string, durationMs: number): Promise<boolean> {
    return this.#run(() => {
      checkStorableKey('name', name)
      checkDuration(durationMs)
      if (typeof id !== 'string') return false
      const now = this.#clock.now()
      return this.#stmt.renewLease.run(now + durationMs, name, id, now).changes === 1
    })
  }

  releaseLease(name: string, id: string): Promise<void> {
    return this.#run(() => {
      checkStorableKey('name', name)
      if (typeof id === 'string') this.#stmt.releaseLease.run(name, id)
    })
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.#closed = true
    clearInterval(this.#sweepTimer)
    this.#sweepTimer = undefined
    this.#filterStatements.clear()
    this.#waiters.wakeAll()
    try {
      this.#db.close() // checkpoints the WAL into the file and releases the lock
    } catch (err) {
      return Promise.reject(this.#wrap(err))
    }
    return Promise.resolve()
  }

  // --- internals -------------------------------------------------------------------------------

  /** Runs a synchronous operation as a promise, so that every failure is a rejection. */
  #run<T>(op: () => T): Promise<T> {
    try {
      this.#checkOpen()
      return Promise.resolve(op())
    } catch (err) {
      return Promise.reject(this.#wrap(err))
    }
  }

  /** SQLite's errors get the file's name; others (a predicate's own) pass through. */
  #wrap(err: unknown): Error {
    if (sqliteCode(err).startsWith('SQLITE_')) {
      return new Error(`databroker file ${this.path}: ${messageOf(err)}`, { cause: err })
    }
    return err instanceof Error ? err : new Error(String(err))
  }

  #checkOpen(): void {
    if (this.#closed) throw new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
  }

  #info(): ServerInfo {
    return { serverVersion: this.#serverVersion, latestRecordVersion: this.#counters.version }
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
      this.#waiters.wakeAll()
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
    const now = this.#clock.now()
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
    const excess = this.#counters.tombstones - this.#maxTombstones
    if (excess <= 0) return
    const through = this.#stmt.pruneThrough.get(excess - 1)
    if (through === undefined) return
    const { changes } = this.#stmt.prune.run(through)
    this.#counters.tombstones -= changes
    this.#counters.prunedThrough = Math.max(this.#counters.prunedThrough, through)
    this.#logger?.debug(
      { path: this.path, pruned: changes, through },
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

  /**
   * One sync stream, written by hand like the memory store's so that `return()` settles a
   * `next()` that is waiting. Each refill reads at most `PAGE` changes after the cursor.
   */
  #openSync(afterVersion: number, options: SyncOptions): AsyncIterator<DataRecord> {
    const { type, signal } = options
    let started = false
    let cursor = afterVersion
    return pagedChanges<DataRecord>({
      signal,
      waiters: this.#waiters,
      toRecord: (r) => r,
      nextPage: () => {
        try {
          this.#checkOpen()
          if (!started) {
            started = true
            checkVersion(afterVersion)
            if (type !== undefined) checkStorableKey('type', type)
          }
          this.#maintain([...this.#options.keys()])
          const { prunedThrough, version } = this.#counters
          if (cursor < prunedThrough) {
            throw new DataBrokerError(
              'ERR_DATABROKER_SYNC_TOO_OLD',
              `cannot sync after version ${cursor}: ` + `tombstones up to version ${prunedThrough} were pruned`,
            )
          }
          const rows = type === undefined ? this.#stmt.changes.all(cursor, PAGE) : this.#stmt.changesOfType.all(cursor, type, PAGE)
          // A short page saw every change up to now; a full one resumes after its last row.
          cursor = rows.length === PAGE ? (rows.at(-1) as Row).version : Math.max(cursor, version)
          return rows.map(toRecord)
        } catch (err) {
          throw this.#wrap(err)
        }
      },
    })
  }

  /** Runs a timer while some type has a TTL, so that expiries reach waiting `sync` callers. */
  #scheduleSweep(): void {
    const needed = [...this.#options.values()].some((o) => o.ttlMs !== undefined)
    if (needed && this.#sweepTimer === undefined) {
      this.#sweepTimer = setInterval(() => {
        if (this.#closed) return
        try {
          this.#maintain([...this.#options.keys()])
        } catch (err) {
          this.#logger?.error({ err: this.#wrap(err), path: this.path }, 'databroker sweep failed')
        }
      }, this.#sweepIntervalMs)
      this.#sweepTimer.unref()
    } else if (!needed && this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer)
      this.#sweepTimer = undefined
    }
  }
}
