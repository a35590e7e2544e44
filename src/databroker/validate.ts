/**
 * Argument checks and data handling shared by every backend, so that they all reject the same
 * inputs with the same codes and store data the same way.
 */
import { DataBrokerError } from './errors.js'
import type { FieldValue, QueryOptions, RecordFilter, RecordInput, TypeOptions } from './types.js'

function invalid(message: string, cause?: unknown): DataBrokerError {
  return new DataBrokerError(
    'ERR_DATABROKER_INVALID_ARGUMENT',
    message,
    cause === undefined ? undefined : { cause },
  )
}

/** Checks that a type, id or lease name is a non-empty string. */
export function checkKey(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '') throw invalid(`${what} must be a non-empty string`)
}

/**
 * Serialises `data` to JSON text, rejecting values that have no JSON form (`undefined`, functions,
 * symbols, BigInt, cycles).
 */
function toJson(data: unknown, where: string): string {
  let json: string | undefined
  try {
    json = JSON.stringify(data) // undefined for undefined, functions and symbols
  } catch (err) {
    throw invalid(`${where}: data is not JSON-serialisable`, err)
  }
  if (json === undefined) throw invalid(`${where}: data is not JSON-serialisable`)
  return json
}

/** Validates a put batch as a whole, returning each entry's JSON text. */
export function checkBatch(records: readonly RecordInput[]): string[] {
  const list: unknown = records // not narrowed: Array.isArray would turn it into any[]
  if (!Array.isArray(list)) throw invalid('records must be an array')
  return records.map((r, i) => {
    checkKey(`records[${i}].type`, r.type)
    checkKey(`records[${i}].id`, r.id)
    return toJson(r.data, `records[${i}]`)
  })
}

function isNonNegativeInteger(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

/** Validates query options, returning the effective offset and limit. */
export function checkQuery(options: QueryOptions): { offset: number; limit: number } {
  checkKey('type', options.type)
  const { offset = 0, limit = Number.POSITIVE_INFINITY, filter } = options
  if (!isNonNegativeInteger(offset)) throw invalid('offset must be a non-negative integer')
  if (limit !== Number.POSITIVE_INFINITY && !isNonNegativeInteger(limit)) {
    throw invalid('limit must be a non-negative integer')
  }
  if (filter !== undefined && typeof filter !== 'function') {
    if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) {
      throw invalid('filter must be a function or an object of field values')
    }
    for (const [k, v] of Object.entries(filter)) {
      if (v !== null && !['string', 'number', 'boolean'].includes(typeof v)) {
        throw invalid(`filter.${k} must be a string, number, boolean or null`)
      }
    }
  }
  return { offset, limit }
}

/** Builds the predicate for a query filter (`undefined` matches everything). */
export function filterPredicate(filter: RecordFilter | undefined): (data: unknown) => boolean {
  if (filter === undefined) return () => true
  if (typeof filter === 'function') return filter
  const entries: [string, FieldValue][] = Object.entries(filter)
  return (data) => {
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return false
    return entries.every(
      ([k, v]) => Object.hasOwn(data, k) && (data as Record<string, unknown>)[k] === v,
    )
  }
}

/** Validates per-type options. */
export function checkTypeOptions(type: string, options: TypeOptions): void {
  checkKey('type', type)
  const { ttlMs, capacity } = options
  if (ttlMs !== undefined && !(typeof ttlMs === 'number' && Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw invalid('ttlMs must be a positive number')
  }
  if (capacity !== undefined && !(isNonNegativeInteger(capacity) && capacity > 0)) {
    throw invalid('capacity must be a positive integer')
  }
}

/** Validates a lease duration. */
export function checkDuration(durationMs: number): void {
  if (!(typeof durationMs === 'number' && Number.isFinite(durationMs) && durationMs > 0)) {
    throw invalid('durationMs must be a positive number')
  }
}

/** Validates a sync starting version. */
export function checkVersion(version: number): void {
  if (!isNonNegativeInteger(version)) throw invalid('afterVersion must be a non-negative integer')
}
