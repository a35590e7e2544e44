/**
 * `PostgresRecordStore`: the `RecordStore` in PostgreSQL, wiring the connection pool, the
 * records, the change feed and the leases of one schema, and sweeping expired records so that
 * waiting syncs hear of expiries even when nothing reads.
 */
import { Pool } from 'pg'
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
import { closedError, invalid, mapError, unstorable } from './errors.js'
import { PostgresLeases } from './leases.js'
import { PostgresRecords } from './records.js'
import { migrate, tablesOf } from './schema.js'
import type { Tables } from './schema.js'
import { channelOf, PostgresChangeFeed } from './sync.js'

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
const DEFAULT_POSTGRES_SCHEMA = 'portcullis'

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
  readonly #logger: Logger | undefined
  readonly #schema: string
  readonly #sweepIntervalMs: number
  readonly #pool: Pool
  readonly #t: Tables
  readonly #records: PostgresRecords
  readonly #feed: PostgresChangeFeed
  readonly #leases: PostgresLeases

  #closed = false
  #sweepTimer: NodeJS.Timeout | undefined
  #sweeping = false

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

    this.#logger = logger
    this.#schema = schema
    this.#sweepIntervalMs = sweepIntervalMs
    this.#t = tablesOf(schema)
    const channel = channelOf(schema)
    const isClosed = (): boolean => this.#closed
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
    this.#records = new PostgresRecords({
      pool: this.#pool,
      tables: this.#t,
      clock,
      logger,
      maxTombstones,
      channel,
      isClosed,
      onCommit: (version) => this.#feed.announce(version),
    })
    this.#feed = new PostgresChangeFeed({
      connectionString,
      connectionTimeoutMs,
      schema,
      channel,
      logger,
      reconnectInitialMs: initialDelayMs,
      reconnectMaxMs: Math.max(initialDelayMs, maxDelayMs),
      records: this.#records,
      isClosed,
    })
    this.#leases = new PostgresLeases(this.#pool, this.#t.leases, clock)
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
    let latest: number
    try {
      await migrate(client, this.#schema, this.#logger)
      const info = await client.query<{ latest_version: string }>(
        `SELECT latest_version FROM ${this.#t.server}`,
      )
      latest = Number(info.rows[0]?.latest_version ?? 0)
      client.release()
    } catch (err) {
      client.release(true)
      throw err
    }
    await this.#feed.start(latest)
    this.#sweepTimer = setInterval(() => this.#sweep(), this.#sweepIntervalMs)
    this.#sweepTimer.unref()
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
    return this.#run(() => this.#records.serverInfo())
  }

  sync(afterVersion: number, options: SyncOptions = {}): AsyncIterable<DataRecord> {
    return { [Symbol.asyncIterator]: () => this.#feed.open(afterVersion, options) }
  }

  syncLatest(type?: string): Promise<SyncLatestResult> {
    return this.#run(() => this.#records.syncLatest(type))
  }

  setOptions(type: string, options: TypeOptions): Promise<void> {
    return this.#run(() => this.#records.setOptions(type, options))
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

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#sweepTimer)
    this.#sweepTimer = undefined
    const listenerEnded = this.#feed.close()
    await Promise.allSettled([listenerEnded, this.#pool.end()])
  }

  /** Runs an operation, rejecting with `ERR_DATABROKER_CLOSED` or a mapped error. */
  async #run<T>(op: () => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError()
    try {
      return await op()
    } catch (err) {
      throw mapError(err, this.#closed)
    }
  }

  /** The periodic sweep: expiries reach waiting syncs even when nothing reads. */
  #sweep(): void {
    if (this.#closed || this.#sweeping) return
    this.#sweeping = true
    this.#records
      .expireDue(undefined)
      .catch((err: unknown) => {
        if (!this.#closed) this.#logger?.warn({ err }, 'databroker postgres: expiry sweep failed')
      })
      .finally(() => {
        this.#sweeping = false
      })
  }
}
