/**
 * The SQLite backend's schema, its migrations, and opening a file: the driver loaded on first use,
 * WAL with an exclusive lock held until close, then the schema brought up to date in the opening
 * transaction. `PRAGMA application_id` marks the file as ours and `PRAGMA user_version` records
 * how many migrations it has had.
 */
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import type BetterSqlite3 from 'better-sqlite3'
import type { Logger } from '../../shared/log.js'
import { messageOf, openError, SqliteOpenError } from './errors.js'
import { prepareDatabaseFile } from './path.js'

export type Db = BetterSqlite3.Database

/** `PRAGMA application_id` of a Portcullis databroker file: "PCDB". */
const APPLICATION_ID = 0x50434442

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

/**
 * Opens `file` (an absolute path), holding its exclusive lock from here until the connection
 * closes, and migrates it. Failures throw a `SqliteOpenError` naming the file.
 */
export function openDatabase(file: string, busyTimeoutMs: number, logger: Logger | undefined): Db {
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
    return db
  } catch (err) {
    db.close()
    throw openError(file, err)
  }
}
