/**
 * The databroker record store contract. Every backend (memory today; SQLite and PostgreSQL later)
 * implements `RecordStore` and runs the shared suite in `conformance.test-helpers.ts` unchanged, so the
 * semantics written here are the ones that suite checks.
 *
 * The model follows Pomerium's databroker: records are addressed by `(type, id)`, every change
 * (put, delete, expiry, eviction) gets a new record version from one counter for the whole store,
 * and deletions are kept as tombstones so that `sync` can tell caches what went away.
 */

/** A source of wall-clock time in milliseconds since the epoch. Tests inject a manual one. */
export interface Clock {
  now(): number
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() }

/** One stored record, as returned by every read and write. */
export interface DataRecord {
  /** The record type, for example `type.googleapis.com/session.Session`. */
  readonly type: string
  /** The record id, unique within its type. */
  readonly id: string
  /**
   * The record version: the value of a store-wide counter when this state of the record was
   * written. Every change anywhere in the store takes the next, strictly greater, value.
   */
  readonly version: number
  /**
   * The JSON value that was put, after a JSON round trip (a `Date` comes back as its ISO string,
   * `undefined` properties are dropped). Treat it as read-only: backends may share or freeze it.
   * A tombstone keeps the data of the record's last live state.
   */
  readonly data: unknown
  /** When this state was written (for a tombstone, when it was deleted). */
  readonly modifiedAt: Date
  /** When the record was deleted, expired or evicted; `undefined` for a live record. */
  readonly deletedAt: Date | undefined
}

/** What a caller supplies to `put`: the store assigns the version and the timestamps. */
export interface RecordInput {
  readonly type: string
  readonly id: string
  /** Any JSON-serialisable value. */
  readonly data: unknown
}

/** A value that a field-equality filter compares with `===`. */
export type FieldValue = string | number | boolean | null

/**
 * Selects records in `query`: either a predicate over `data`, or an object whose every property
 * must equal (`===`) the same top-level property of `data` (records whose data is not a plain
 * JSON object never match an object filter). A backend may push an object filter down to its
 * storage engine; a predicate always runs in process.
 */
export type RecordFilter =
  | ((data: unknown) => boolean)
  | Readonly<Record<string, FieldValue>>

/** The arguments of `query`. */
export interface QueryOptions {
  readonly type: string
  readonly filter?: RecordFilter
  /** How many matching records to skip, a non-negative integer (default 0). */
  readonly offset?: number
  /** The most records to return, a non-negative integer (default: no limit). */
  readonly limit?: number
}

/** The answer of `query`. */
export interface QueryResult {
  /** The page of matching live records, ordered by id (ordinal string order). */
  readonly records: DataRecord[]
  /** How many live records match the type and filter, ignoring `offset` and `limit`. */
  readonly totalCount: number
}

/** The answer of `serverInfo`. */
export interface ServerInfo {
  /**
   * Identifies the store's history. Record versions are only comparable between answers that
   * carry the same server version; a cache holding another one must start over with `syncLatest`.
   * The memory backend picks a random one per instance.
   */
  readonly serverVersion: string
  /** The highest record version assigned so far (0 for a store that never changed). */
  readonly latestRecordVersion: number
}

/** The answer of `syncLatest`: a consistent snapshot plus the version to `sync` from. */
export interface SyncLatestResult extends ServerInfo {
  /** Every live record (of the requested type), ordered by type and then id. */
  readonly records: DataRecord[]
}

/** The arguments of `sync` besides the starting version. */
export interface SyncOptions {
  /** Only report records of this type. */
  readonly type?: string
  /** Ends the iteration (normally, without an error) when aborted. */
  readonly signal?: AbortSignal
}

/** Per-type storage options; `setOptions` replaces all of them for the type. */
export interface TypeOptions {
  /**
   * Records whose last put is at least this many milliseconds old are expired: they become
   * tombstones (with a new version) and stop being returned. A positive number.
   */
  readonly ttlMs?: number
  /**
   * Keep only the newest (most recently put) this many live records of the type; older ones are
   * evicted as tombstones. A positive integer.
   */
  readonly capacity?: number
}

/**
 * A versioned record store with change streaming and named leases. Every method rejects with a
 * `DataBrokerError`: code `ERR_DATABROKER_CLOSED` once `close` has been called, and
 * `ERR_DATABROKER_INVALID_ARGUMENT` for arguments outside the documented ranges.
 */
export interface RecordStore {
  /**
   * Returns the live record `(type, id)`, or `undefined` when there is none or it has been
   * deleted, expired or evicted.
   */
  get(type: string, id: string): Promise<DataRecord | undefined>

  /**
   * Stores a batch of records, giving each the next record version in batch order, and returns
   * what was stored, one entry per input in the same order. A put over a tombstone revives the
   * record. The batch is validated as a whole first: non-empty `type` and `id`, JSON-serialisable
   * `data`; if any entry is invalid nothing is stored.
   */
  put(records: readonly RecordInput[]): Promise<DataRecord[]>

  /**
   * Deletes the live record `(type, id)` by turning it into a tombstone with a new version and
   * `deletedAt` set, and returns that tombstone. Returns `undefined` (and changes nothing) when
   * there is no live record.
   */
  delete(type: string, id: string): Promise<DataRecord | undefined>

  /** Lists the live records of one type that match the filter, one page at a time. */
  query(options: QueryOptions): Promise<QueryResult>

  /** Returns, in ordinal order, every type that has at least one live record. */
  listTypes(): Promise<string[]>

  /** Returns the server version and the latest record version. */
  serverInfo(): Promise<ServerInfo>

  /**
   * Streams every change with a version greater than `afterVersion`: live records and tombstones,
   * in version order, each record in its latest state (intermediate states may be skipped). Once
   * caught up it waits for further changes until `options.signal` aborts or the caller stops
   * (`break`, `return()`); either ends the iteration normally and promptly, settling a `next()`
   * that is waiting. Arguments are checked on the first `next()`. The iterator throws
   * `ERR_DATABROKER_CLOSED` when the store closes, and `ERR_DATABROKER_SYNC_TOO_OLD` when
   * tombstones the caller has not seen were already pruned (start over with `syncLatest`).
   */
  sync(afterVersion: number, options?: SyncOptions): AsyncIterable<DataRecord>

  /** Returns every live record (of `type`, when given) and the versions to sync on from. */
  syncLatest(type?: string): Promise<SyncLatestResult>

  /** Replaces the options of one type. Applies to records already stored, too. */
  setOptions(type: string, options: TypeOptions): Promise<void>

  /**
   * Acquires the named lease for `durationMs` and returns a new lease id, or `undefined` when
   * another holder's lease has not expired yet. A lease expires when the clock reaches its
   * acquisition (or last renewal) time plus its duration.
   */
  acquireLease(name: string, durationMs: number): Promise<string | undefined>

  /**
   * Extends the named lease to now plus `durationMs` if `id` still holds it and it has not
   * expired; returns whether it did.
   */
  renewLease(name: string, id: string, durationMs: number): Promise<boolean>

  /** Releases the named lease if `id` holds it; otherwise does nothing. */
  releaseLease(name: string, id: string): Promise<void>

  /**
   * Releases the store's resources and ends every running `sync`. Further calls reject with
   * `ERR_DATABROKER_CLOSED`; calling `close` again resolves and does nothing.
   */
  close(): Promise<void>
}
