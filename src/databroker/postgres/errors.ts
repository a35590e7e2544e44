/**
 * The PostgreSQL backend's errors: driver failures mapped to `DataBrokerError`s (unavailable, so
 * callers fail closed, or invalid for values PostgreSQL refuses), and the keys it cannot store.
 */
import { DatabaseError } from 'pg'
import { DataBrokerError } from '../errors.js'
import { checkKey } from '../validate.js'

export function invalid(message: string): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', message)
}

export function closedError(): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
}

/** Whether `text` has a NUL or an unpaired UTF-16 surrogate: PostgreSQL cannot store it as is. */
export function unstorable(text: string): boolean {
  return text.includes('\u0000') || /\p{Surrogate}/u.test(text)
}

/** `checkKey`, plus what PostgreSQL text cannot hold (node would silently mangle a surrogate). */
export function checkPgKey(what: string, value: unknown): asserts value is string {
  checkKey(what, value)
  if (unstorable(value)) {
    throw invalid(`${what} must not contain NUL characters or unpaired surrogates`)
  }
}

/** Whether `err` says the connection, not the statement, failed (so a retry may succeed). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof DatabaseError) {
    const code = err.code ?? ''
    return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03'
  }
  return err instanceof Error
}

/** Maps anything a driver call threw to a `DataBrokerError`. */
export function mapError(err: unknown, closed: boolean): DataBrokerError {
  if (err instanceof DataBrokerError) return err
  if (closed) return new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
  const message = err instanceof Error ? err.message : String(err)
  // Class 22 (data exception: bad text or JSON) and 54 (program limit: a key too long to index).
  if (err instanceof DatabaseError && /^(22|54)/.test(err.code ?? '')) {
    return new DataBrokerError(
      'ERR_DATABROKER_INVALID_ARGUMENT',
      `postgres rejected the value: ${message}`,
      { cause: err },
    )
  }
  return new DataBrokerError('ERR_DATABROKER_UNAVAILABLE', `postgres: ${message}`, { cause: err })
}
