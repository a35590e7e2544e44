/**
 * `SqliteRecordStore`: the `RecordStore` over one SQLite file, wiring the records, the change
 * feed and the leases of the open database. better-sqlite3 is synchronous: every method runs its
 * statements at once and returns a settled promise, so that every failure is a rejection.
 */
import type { Logger } from '../../shared/log.js'
import { DEFAULT_MAX_TOMBSTONES } from '../memory.js'
import type {
  Clock,
  DataRecord,
  QueryOptions,
  QueryResult,
  RecordInput,
  RecordStore,
  ServerInfo,
  SyncLatestResult,
  SyncOptions,
  TypeOptions,
} from '../types.js'
import { systemClock } from '../types.js'
import { closedError, invalid, openError, operationError, SqliteOpenError } from './errors.js'
import { SqliteLeases } from './leases.js'
import { resolveSqliteFile } from './path.js'
import { SqliteRecords } from './records.js'
import { openDatabase } from './schema.js'
import type { Db } from './schema.js'
import { openSync } from './sync.js'

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

/**
 * Opens (creating or migrating as needed) the `file` record store. Synchronous, as the driver
 * is: failures throw a `SqliteOpenError` naming the file (or a `DataBrokerError` for options
 * outside their ranges).
 */
export function createSqliteRecordStore(options: SqliteRecordStoreOptions): SqliteRecordStore {
  return SqliteRecordStore.open(options)
}

/** A `RecordStore` in an SQLite file. Open it with `createSqliteRecordStore`. */
export class SqliteRecordStore implements RecordStore {
  /** The database file (absolute). */
  readonly path: string
  readonly #db: Db
  readonly #records: SqliteRecords
  readonly #leases: SqliteLeases
  readonly #logger: Logger | undefined
  readonly #sweepIntervalMs: number
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
    const db = openDatabase(file, busyTimeoutMs, logger)
    try {
      return new SqliteRecordStore(db, file, { clock, logger, maxTombstones, sweepIntervalMs })
    } catch (err) {
      db.close()
      throw openError(file, err)
    }
  }

  private constructor(
    db: Db,
    file: string,
    settings: {
      clock: Clock
      logger: Logger | undefined
      maxTombstones: number
      sweepIntervalMs: number
    },
  ) {
    this.path = file
    this.#db = db
    this.#logger = settings.logger
    this.#sweepIntervalMs = settings.sweepIntervalMs
    this.#records = new SqliteRecords(
      db,
      { path: file, clock: settings.clock, logger: settings.logger, maxTombstones: settings.maxTombstones },
      () => new SqliteOpenError(file, 'corrupt', `databroker file ${file} has no state row`),
    )
    this.#leases = new SqliteLeases(db, settings.clock)
    this.#scheduleSweep()
    const info = this.#records.info()
    this.#logger?.info(
      {
        path: file,
        serverVersion: info.serverVersion,
        latestRecordVersion: info.latestRecordVersion,
      },
      'databroker file opened',
    )
  }

  get(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(() => this.#records.get(type, id))
  }

  put(records: readonly RecordInput[]): Promise<DataRecord[]> {
    return this.#run(() => this.#records.put(records))
  }

  delete(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(() => this.#records.delete(type, id))
  }

  query(options: QueryOptions): Promise<QueryResult> {
    return this.#run(() => this.#records.query(options))
  }

  listTypes(): Promise<string[]> {
    return this.#run(() => this.#records.listTypes())
  }

  serverInfo(): Promise<ServerInfo> {
    return this.#run(() => this.#records.info())
  }

  sync(afterVersion: number, options: SyncOptions = {}): AsyncIterable<DataRecord> {
    const context = {
      records: this.#records,
      checkOpen: () => this.#checkOpen(),
      wrap: (err: unknown) => operationError(this.path, err),
    }
    return { [Symbol.asyncIterator]: () => openSync(context, afterVersion, options) }
  }

  syncLatest(type?: string): Promise<SyncLatestResult> {
    return this.#run(() => this.#records.syncLatest(type))
  }

  setOptions(type: string, options: TypeOptions): Promise<void> {
    return this.#run(() => {
      this.#records.setOptions(type, options)
      this.#scheduleSweep()
    })
  }

  acquireLease(name: string, durationMs: number): Promise<string | undefined> {
    return this.#run(() => this.#leases.acquire(name, durationMs))
  }

  renewLease(name: string, id: string, durationMs: number): Promise<boolean> {
    return this.#run(() => this.#leases.renew(name, id, durationMs))
  }

  releaseLease(name: string, id: string): Promise<void> {
    return this.#run(() => this.#leases.release(name, id))
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.#closed = true
    clearInterval(this.#sweepTimer)
    this.#sweepTimer = undefined
    this.#records.clearCache()
    this.#records.waiters.wakeAll()
    try {
      this.#db.close() // checkpoints the WAL into the file and releases the lock
    } catch (err) {
      return Promise.reject(operationError(this.path, err))
    }
    return Promise.resolve()
  }

  /** Runs a synchronous operation as a promise, so that every failure is a rejection. */
  #run<T>(op: () => T): Promise<T> {
    try {
      this.#checkOpen()
      return Promise.resolve(op())
    } catch (err) {
      return Promise.reject(operationError(this.path, err))
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError()
  }

  /** Runs a timer while some type has a TTL, so that expiries reach waiting `sync` callers. */
  #scheduleSweep(): void {
    const needed = this.#records.hasTtl()
    if (needed && this.#sweepTimer === undefined) {
      this.#sweepTimer = setInterval(() => {
        if (this.#closed) return
        try {
          this.#records.maintainAll()
        } catch (err) {
          this.#logger?.error({ err: operationError(this.path, err), path: this.path }, 'databroker sweep failed')
        }
      }, this.#sweepIntervalMs)
      this.#sweepTimer.unref()
    } else if (!needed && this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer)
      this.#sweepTimer = undefined
    }
  }
}
