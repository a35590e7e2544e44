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
 *
 * Modules: `path.ts` (where the file lives), `schema.ts` (opening and migrations), `records.ts`
 * (record reads and writes, TTL, capacity, pruning), `sync.ts` (the change feed), `leases.ts`,
 * `errors.ts`, and `store.ts` wiring them into `SqliteRecordStore`.
 */
export { SqliteOpenError } from './errors.js'
export type { SqliteOpenFailure } from './errors.js'
export { resolveSqliteFile, SQLITE_FILE_NAME, sqlitePathFromUrl } from './path.js'
export { createSqliteRecordStore, SqliteRecordStore } from './store.js'
export type { SqliteRecordStoreOptions } from './store.js'
