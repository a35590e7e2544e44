/**
 * The SQLite backend's errors: why a file could not be opened, the mapping of driver errors to
 * those reasons, and the keys SQLite cannot store faithfully.
 */
import { DataBrokerError } from '../errors.js'
import { checkKey } from '../validate.js'
import { CodedError } from '../../shared/errors.js'

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
export class SqliteOpenError extends CodedError {
  readonly code = 'ERR_STORAGE_OPEN'
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

export function invalid(message: string): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', message)
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : ''
}

/** What opening `file` failed with, as a `SqliteOpenError` (ours and argument errors pass through). */
export function openError(file: string, err: unknown): Error {
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

/** SQLite's errors get the file's name; others (a predicate's own) pass through. */
export function operationError(file: string, err: unknown): Error {
  if (sqliteCode(err).startsWith('SQLITE_')) {
    return new Error(`databroker file ${file}: ${messageOf(err)}`, { cause: err })
  }
  return err instanceof Error ? err : new Error(String(err))
}

export function closedError(): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
}

/** Rejects keys SQLite cannot store faithfully (a lone surrogate has no UTF-8 form). */
export function checkStorableKey(what: string, value: unknown): asserts value is string {
  checkKey(what, value)
  if (/[\uD800-\uDFFF]/u.test(value)) {
    throw invalid(`${what} must be well-formed Unicode (it contains a lone surrogate)`)
  }
}
