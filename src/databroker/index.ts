/**
 * The databroker: a versioned record store with change streaming (sync), per-type TTL and
 * capacity, and named leases. `RecordStore` is the contract; `MemoryRecordStore` the default
 * backend. Backends' tests run `recordStoreConformance` from `./conformance.test-helpers.js`, which is not
 * re-exported here because it registers `node:test` cases.
 */
export { DataBrokerError, DATABROKER_ERROR_CODES, isDataBrokerError } from './errors.js'
export type { DataBrokerErrorCode } from './errors.js'
export { DEFAULT_MAX_TOMBSTONES, MemoryRecordStore } from './memory.js'
export type { MemoryRecordStoreOptions } from './memory.js'
export { createPostgresRecordStore, PostgresRecordStore } from './postgres/index.js'
export type { PostgresRecordStoreOptions } from './postgres/index.js'
export {
  createSqliteRecordStore,
  resolveSqliteFile,
  SQLITE_FILE_NAME,
  SqliteOpenError,
  SqliteRecordStore,
  sqlitePathFromUrl,
} from './sqlite/index.js'
export type { SqliteOpenFailure, SqliteRecordStoreOptions } from './sqlite/index.js'
export { systemClock } from './types.js'
export type {
  Clock,
  DataRecord,
  FieldValue,
  QueryOptions,
  QueryResult,
  RecordFilter,
  RecordInput,
  RecordStore,
  ServerInfo,
  SyncLatestResult,
  SyncOptions,
  TypeOptions,
} from './types.js'
