/**
 * Where the SQLite backend keeps its file. Pomerium's `file:///path` names a directory, so a path
 * is a directory holding `databroker.sqlite` unless it names a file; what the store creates is
 * private to its owner.
 */
import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from '../../shared/log.js'
import { DataBrokerError } from '../errors.js'
import { invalid, messageOf, SqliteOpenError } from './errors.js'

/** The database file name used when the configured path is a directory. */
export const SQLITE_FILE_NAME = 'databroker.sqlite'

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
export function prepareDatabaseFile(file: string, logger: Logger | undefined): void {
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
