/**
 * The SQLite backend's change feed: a `sync` stream reads the changes after its cursor in pages
 * and parks on the records' waiters when it has seen everything. Writes wake the waiters in
 * process, which is sound because no other process can write the file.
 */
import { pagedChanges } from '../change-waiters.js'
import { DataBrokerError } from '../errors.js'
import type { DataRecord, SyncOptions } from '../types.js'
import { checkVersion } from '../validate.js'
import { checkStorableKey } from './errors.js'
import { PAGE, toRecord } from './records.js'
import type { Row, SqliteRecords } from './records.js'

/** What a stream needs from its store besides the records. */
interface SyncContext {
  readonly records: SqliteRecords
  /** Throws when the store is closed. */
  readonly checkOpen: () => void
  /** Maps what a page read threw to the error the stream rejects with. */
  readonly wrap: (err: unknown) => Error
}

/**
 * One sync stream, written by hand like the memory store's so that `return()` settles a
 * `next()` that is waiting. Each refill reads at most `PAGE` changes after the cursor.
 */
export function openSync(
  context: SyncContext,
  afterVersion: number,
  options: SyncOptions,
): AsyncIterator<DataRecord> {
  const { records, checkOpen, wrap } = context
  const { type, signal } = options
  let started = false
  let cursor = afterVersion
  return pagedChanges<DataRecord>({
    signal,
    waiters: records.waiters,
    toRecord: (r) => r,
    nextPage: () => {
      try {
        checkOpen()
        if (!started) {
          started = true
          checkVersion(afterVersion)
          if (type !== undefined) checkStorableKey('type', type)
        }
        records.maintainAll()
        const { prunedThrough, version } = records.marks()
        if (cursor < prunedThrough) {
          throw new DataBrokerError(
            'ERR_DATABROKER_SYNC_TOO_OLD',
            `cannot sync after version ${cursor}: ` + `tombstones up to version ${prunedThrough} were pruned`,
          )
        }
        const rows = records.changes(cursor, type, PAGE)
        // A short page saw every change up to now; a full one resumes after its last row.
        cursor = rows.length === PAGE ? (rows.at(-1) as Row).version : Math.max(cursor, version)
        return rows.map(toRecord)
      } catch (err) {
        throw wrap(err)
      }
    },
  })
}
