/**
 * A `RecordStore` that times every operation for `pomerium_storage_operation_duration_ms`
 * (backend, operation, ok/error) and records a `databroker <operation>` client span when tracing
 * is on, and otherwise passes everything through unchanged. `sync` streams are long-lived and
 * neither timed nor traced.
 */
import type { RecordStore } from '../databroker/types.js'
import type { PortcullisMetrics } from './metrics.js'
import type { Tracing } from './tracing.js'

const TIMED = ['get', 'put', 'delete', 'query', 'listTypes', 'serverInfo', 'syncLatest', 'setOptions', 'acquireLease', 'renewLease', 'releaseLease'] as const

export function instrumentStore(store: RecordStore, backend: string, observers: { metrics?: PortcullisMetrics | undefined; tracing?: Tracing | undefined }): RecordStore {
  const { metrics, tracing } = observers
  const timed = new Map<string, (...args: unknown[]) => Promise<unknown>>()
  for (const operation of TIMED) {
    const fn = (store[operation] as (...args: unknown[]) => Promise<unknown>).bind(store)
    const measured = metrics
      ? async (...args: unknown[]): Promise<unknown> => {
          const startedAt = performance.now()
          try {
            const result = await fn(...args)
            metrics.storageOperation(backend, operation, true, performance.now() - startedAt)
            return result
          } catch (err) {
            metrics.storageOperation(backend, operation, false, performance.now() - startedAt)
            throw err
          }
        }
      : fn
    const attributes = { 'db.system': backend, 'db.operation': operation }
    timed.set(operation, tracing ? (...args: unknown[]) => tracing.clientSpan(`databroker ${operation}`, attributes, () => measured(...args)) : measured)
  }
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (typeof prop === 'string') {
        const t = timed.get(prop)
        if (t) return t
      }
      const value = Reflect.get(target, prop, receiver) as unknown
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
}
