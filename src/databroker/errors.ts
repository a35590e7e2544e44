/**
 * Errors raised by record stores. They carry a stable `code` so callers branch on it rather than
 * on messages; every backend uses the same codes (the conformance suite checks them).
 */

import { CodedError } from '../shared/errors.js'

/** The codes a record store error can carry. */
export const DATABROKER_ERROR_CODES = [
  /** The store has been closed. */
  'ERR_DATABROKER_CLOSED',
  /** An argument is outside its documented range (empty type or id, non-JSON data, …). */
  'ERR_DATABROKER_INVALID_ARGUMENT',
  /** `sync` cannot resume from the given version because tombstones after it were pruned. */
  'ERR_DATABROKER_SYNC_TOO_OLD',
  /**
   * The storage behind the store (a database server) cannot be reached or failed the operation,
   * which may or may not have taken effect. Transient: callers fail closed (refuse the request,
   * answer 5xx, never treat it as "no such record") and retry later.
   */
  'ERR_DATABROKER_UNAVAILABLE',
] as const

/** One of `DATABROKER_ERROR_CODES`. */
export type DataBrokerErrorCode = (typeof DATABROKER_ERROR_CODES)[number]

/** An error from a record store. */
export class DataBrokerError extends CodedError {
  readonly code: DataBrokerErrorCode

  constructor(code: DataBrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DataBrokerError'
    this.code = code
  }
}

/** Whether `err` is a `DataBrokerError`, optionally with the given code. */
export function isDataBrokerError(
  err: unknown,
  code?: DataBrokerErrorCode,
): err is DataBrokerError {
  return err instanceof DataBrokerError && (code === undefined || err.code === code)
}
