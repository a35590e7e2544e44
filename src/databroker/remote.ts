/**
 * A `RecordStore` that talks to one or more databroker servers (`./server.ts`) over the internal
 * API: what split-mode services and data-plane workers use instead of a local store.
 *
 * - Calls rotate over the URLs (`databroker_service_urls`). A URL whose connection fails is
 *   marked down for a few seconds and the call moves on to the next one. A call that certainly
 *   never reached the server (no connection) is always retried elsewhere; one that may have been
 *   applied is retried elsewhere only when repeating it is harmless (everything except `delete`
 *   and `acquireLease`, whose second attempt would answer differently); otherwise it fails with
 *   `ERR_DATABROKER_UNAVAILABLE`.
 * - `sync` reconnects by itself, to any URL, resuming after the last version it delivered, so a
 *   consumer sees neither the failover nor a duplicate. If the server version changes across a
 *   reconnection (another store's history) it fails with `ERR_DATABROKER_SYNC_TOO_OLD`, the
 *   signal to start over with `syncLatest`.
 * - Predicate filters run here, in process, over the type's records (a function cannot travel);
 *   field-equality filters run on the server.
 * - Arguments are checked here with the same checks as every backend, before anything is sent
 *   (JSON would otherwise turn `NaN` into `null`), and errors keep their `DataBrokerError` codes.
 */
import { DataBrokerError, DATABROKER_ERROR_CODES } from './errors.js'
import type { DataBrokerErrorCode } from './errors.js'
import { decodeRecord, DATABROKER_API_PREFIX } from './server.js'
import type { WireRecord } from './server.js'
import type {
  DataRecord,
  QueryOptions,
  QueryResult,
  RecordInput,
  RecordStore,
  ServerInfo,
  SyncLatestResult,
  SyncOptions,
  TypeOptions,
} from './types.js'
import {
  checkBatch,
  checkDuration,
  checkKey,
  checkQuery,
  checkTypeOptions,
  checkVersion,
  filterPredicate,
} from './validate.js'
import type { Logger } from '../shared/log.js'
import { apiErrorFromWire, InternalApiError, InternalTransportError, ServicePool } from '../internal/index.js'
import type { InternalClientTls, PoolTarget, Retry, StreamCall } from '../internal/index.js'

interface RemoteRecordStoreOptions {
  /** Databroker URLs (`http://` for cleartext HTTP/2, `https://` for TLS); at least one. */
  readonly urls: readonly string[]
  /** The raw 32-byte shared secret; the credential key is derived from it. */
  readonly sharedSecret: Buffer
  /** Extra trusted CAs and the expected server name for `https://` URLs. */
  readonly tls?: InternalClientTls | undefined
  readonly logger: Logger
  /** Time limit of one call on one URL (`grpc_client_timeout`, default 10 s). */
  readonly timeoutMs?: number | undefined
  /** How long a URL whose connection failed is skipped (default 5 s). */
  readonly downMs?: number | undefined
  /** A sync stream silent for this long (no record, no heartbeat) is reconnected (default 35 s). */
  readonly syncIdleTimeoutMs?: number | undefined
}

const DEFAULT_TIMEOUT_MS = 10_000
const DEFAULT_SYNC_IDLE_MS = 35_000
/** A sync stops reading from the network while this many records wait for the consumer. */
const SYNC_HIGH_WATER = 1024
const SYNC_LOW_WATER = 256
const MAX_SYNC_BACKOFF_MS = 2_000

function closedError(): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_CLOSED', 'the record store is closed')
}

function unavailable(message: string, cause?: unknown): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_UNAVAILABLE', message, cause === undefined ? undefined : { cause })
}

function isCode(code: string): code is DataBrokerErrorCode {
  return (DATABROKER_ERROR_CODES as readonly string[]).includes(code)
}

/** Turns an error answer into the `DataBrokerError` the caller sees. */
function fromApiError(err: InternalApiError): DataBrokerError {
  if (err.status === 401) {
    return unavailable('the databroker refused our internal credential (is shared_secret the same on every service?)', err)
  }
  // A server's own store being closed means the databroker is unavailable, not this store closed.
  if (isCode(err.code) && err.code !== 'ERR_DATABROKER_CLOSED') return new DataBrokerError(err.code, err.message)
  return unavailable(`databroker error ${err.code}: ${err.message}`, err)
}

/** A `RecordStore` over the databroker's internal API. */
export class RemoteRecordStore implements RecordStore {
  private readonly pool: ServicePool
  private readonly timeoutMs: number
  readonly syncIdleTimeoutMs: number
  private closed = false
  private readonly syncs = new Set<RemoteSync>()

  constructor(options: RemoteRecordStoreOptions) {
    if (options.urls.length === 0) throw new Error('a remote record store needs at least one databroker URL')
    this.pool = new ServicePool({ service: 'databroker', urls: options.urls, sharedSecret: options.sharedSecret, tls: options.tls, logger: options.logger, downMs: options.downMs })
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.syncIdleTimeoutMs = options.syncIdleTimeoutMs ?? DEFAULT_SYNC_IDLE_MS
  }

  /** Whether `close` has been called. */
  get isClosed(): boolean {
    return this.closed
  }

  /** The URLs in the order the next call tries them: rotating, those marked down last. */
  order(): PoolTarget[] {
    return this.pool.order()
  }

  markDown(target: PoolTarget, err: unknown): void {
    this.pool.markDown(target, err)
  }

  markUp(target: PoolTarget): void {
    this.pool.markUp(target)
  }

  private checkOpen(): void {
    if (this.closed) throw closedError()
  }

  private async call(method: string, body: unknown, retry: Retry): Promise<Record<string, unknown>> {
    try {
      const res = await this.pool.call(`${DATABROKER_API_PREFIX}${method}`, body, this.timeoutMs, retry, () => this.closed)
      if (this.closed) throw closedError()
      return (typeof res === 'object' && res !== null ? res : {}) as Record<string, unknown>
    } catch (err) {
      if (this.closed) throw closedError()
      if (err instanceof InternalApiError) throw fromApiError(err)
      if (!(err instanceof InternalTransportError)) throw err
      if (err.message.startsWith('no databroker reachable')) throw unavailable(err.message, err)
      throw unavailable(`databroker ${method} failed and may or may not have been applied: ${err.message}`, err)
    }
  }

  async get(type: string, id: string): Promise<DataRecord | undefined> {
    this.checkOpen()
    checkKey('type', type)
    checkKey('id', id)
    const res = await this.call('get', { type, id }, 'always')
    return res['record'] ? decodeRecord(res['record'] as WireRecord) : undefined
  }

  async put(records: readonly RecordInput[]): Promise<DataRecord[]> {
    this.checkOpen()
    checkBatch(records)
    if (records.length === 0) return []
    // Repeating a put leaves the same state (with newer versions): safe to retry elsewhere.
    const res = await this.call(
      'put',
      { records: records.map((r) => ({ type: r.type, id: r.id, data: r.data })) },
      'always',
    )
    return (res['records'] as WireRecord[]).map(decodeRecord)
  }

  async delete(type: string, id: string): Promise<DataRecord | undefined> {
    this.checkOpen()
    checkKey('type', type)
    checkKey('id', id)
    const res = await this.call('delete', { type, id }, 'beforeSend')
    return res['record'] ? decodeRecord(res['record'] as WireRecord) : undefined
  }

  async query(options: QueryOptions): Promise<QueryResult> {
    this.checkOpen()
    const { offset, limit } = checkQuery(options)
    const { type, filter } = options
    if (typeof filter === 'function') {
      const res = await this.call('query', { type }, 'always')
      const matching = (res['records'] as WireRecord[]).map(decodeRecord).filter((r) => filterPredicate(filter)(r.data))
      return {
        records: matching.slice(offset, limit === Number.POSITIVE_INFINITY ? undefined : offset + limit),
        totalCount: matching.length,
      }
    }
    const res = await this.call(
      'query',
      {
        type,
        ...(filter === undefined ? {} : { filter }),
        offset,
        ...(limit === Number.POSITIVE_INFINITY ? {} : { limit }),
      },
      'always',
    )
    return { records: (res['records'] as WireRecord[]).map(decodeRecord), totalCount: res['totalCount'] as number }
  }

  async listTypes(): Promise<string[]> {
    this.checkOpen()
    return (await this.call('listTypes', {}, 'always'))['types'] as string[]
  }

  async serverInfo(): Promise<ServerInfo> {
    this.checkOpen()
    const res = await this.call('serverInfo', {}, 'always')
    return { serverVersion: res['serverVersion'] as string, latestRecordVersion: res['latestRecordVersion'] as number }
  }

  sync(afterVersion: number, options: SyncOptions = {}): AsyncIterable<DataRecord> {
    return new RemoteSync(this, afterVersion, options)
  }

  async syncLatest(type?: string): Promise<SyncLatestResult> {
    this.checkOpen()
    if (type !== undefined) checkKey('type', type)
    // Streamed (one line per record): a snapshot of any size, failing over like a call.
    let last: unknown
    for (const target of this.order()) {
      if (this.closed) throw closedError()
      try {
        const result = await this.syncLatestFrom(target, type)
        if (target.downUntil !== 0) this.markUp(target)
        return result
      } catch (err) {
        if (this.closed) throw closedError()
        if (err instanceof DataBrokerError) throw err
        if (!(err instanceof InternalTransportError)) throw err
        this.markDown(target, err)
        last = err
      }
    }
    throw unavailable(`no databroker reachable: ${last instanceof Error ? last.message : String(last)}`, last)
  }

  private syncLatestFrom(target: PoolTarget, type: string | undefined): Promise<SyncLatestResult> {
    return new Promise<SyncLatestResult>((resolve, reject) => {
      const records: DataRecord[] = []
      let hello: { serverVersion: string; latestRecordVersion: number } | undefined
      let done = false
      const finish = (fn: () => void): void => {
        if (done) return
        done = true
        fn()
      }
      const call = target.conn.stream(
        `${DATABROKER_API_PREFIX}syncLatestStream`,
        type === undefined ? {} : { type },
        {
          onLine: (line: unknown) => {
            const l = (typeof line === 'object' && line !== null ? line : {}) as Record<string, unknown>
            if (l['record']) records.push(decodeRecord(l['record'] as WireRecord))
            else if (l['hello']) hello = l['hello'] as { serverVersion: string; latestRecordVersion: number }
            else if (l['end'] === true) {
              const h = hello
              finish(() => (h ? resolve({ ...h, records }) : reject(new InternalTransportError(`${target.conn.url.origin}: snapshot without a header`, false))))
              call.cancel()
            } else if (l['error']) {
              const e = l['error'] as { code?: unknown; message?: unknown }
              finish(() => reject(fromApiError(apiErrorFromWire(503, typeof e.code === 'string' ? e.code : 'ERR_DATABROKER_UNAVAILABLE', typeof e.message === 'string' ? e.message : 'snapshot failed'))))
              call.cancel()
            }
          },
          onEnd: (err?: Error) =>
            finish(() =>
              reject(err instanceof InternalApiError ? fromApiError(err) : (err ?? new InternalTransportError(`${target.conn.url.origin}: snapshot ended early`, false))),
            ),
        },
        this.syncIdleTimeoutMs,
      )
    })
  }

  async setOptions(type: string, options: TypeOptions): Promise<void> {
    this.checkOpen()
    checkTypeOptions(type, options)
    const { ttlMs, capacity } = options
    await this.call(
      'setOptions',
      { type, options: { ...(ttlMs === undefined ? {} : { ttlMs }), ...(capacity === undefined ? {} : { capacity }) } },
      'always',
    )
  }

  async acquireLease(name: string, durationMs: number): Promise<string | undefined> {
    this.checkOpen()
    checkKey('name', name)
    checkDuration(durationMs)
    const res = await this.call('acquireLease', { name, durationMs }, 'beforeSend')
    return typeof res['id'] === 'string' ? res['id'] : undefined
  }

  async renewLease(name: string, id: string, durationMs: number): Promise<boolean> {
    this.checkOpen()
    checkKey('name', name)
    checkDuration(durationMs)
    return (await this.call('renewLease', { name, id, durationMs }, 'always'))['renewed'] === true
  }

  async releaseLease(name: string, id: string): Promise<void> {
    this.checkOpen()
    checkKey('name', name)
    await this.call('releaseLease', { name, id }, 'always')
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve()
    this.closed = true
    for (const s of [...this.syncs]) s.fail(closedError())
    this.pool.close()
    return Promise.resolve()
  }

  /** @internal */
  register(s: RemoteSync): void {
    this.syncs.add(s)
  }

  /** @internal */
  unregister(s: RemoteSync): void {
    this.syncs.delete(s)
  }
}

/** One `sync`: a stream that reconnects (to any URL) after the last version it delivered. */
class RemoteSync implements AsyncIterable<DataRecord>, AsyncIterator<DataRecord> {
  private readonly store: RemoteRecordStore
  private readonly type: string | undefined
  private readonly signal: AbortSignal | undefined
  private last: number
  private serverVersion: string | undefined
  private readonly buffer: DataRecord[] = []
  private waiter: { resolve: (r: IteratorResult<DataRecord>) => void; reject: (e: unknown) => void } | undefined
  private failure: Error | undefined
  private started = false
  private finished = false
  private call: StreamCall | undefined
  private paused = false
  private attempt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private readonly onAbort = (): void => this.finish()

  constructor(store: RemoteRecordStore, afterVersion: number, options: SyncOptions) {
    this.store = store
    this.last = afterVersion
    this.type = options.type
    this.signal = options.signal
  }

  [Symbol.asyncIterator](): AsyncIterator<DataRecord> {
    return this
  }

  next(): Promise<IteratorResult<DataRecord>> {
    if (!this.started) {
      this.started = true
      if (this.signal?.aborted === true) this.finished = true
      else if (this.store.isClosed) this.fail(closedError())
      else {
        try {
          checkVersion(this.last)
          if (this.type !== undefined) checkKey('type', this.type)
        } catch (err) {
          this.fail(err)
        }
        if (!this.finished && this.failure === undefined) {
          this.signal?.addEventListener('abort', this.onAbort, { once: true })
          this.store.register(this)
          this.connect()
        }
      }
    }
    const value = this.buffer.shift()
    if (value) {
      if (this.paused && this.buffer.length <= SYNC_LOW_WATER) {
        this.paused = false
        this.call?.resume()
      }
      return Promise.resolve({ done: false, value })
    }
    if (this.failure !== undefined) {
      const f = this.failure
      this.failure = undefined
      this.finished = true
      return Promise.reject(f)
    }
    if (this.finished) return Promise.resolve({ done: true, value: undefined })
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject }
    })
  }

  return(): Promise<IteratorResult<DataRecord>> {
    this.finish()
    return Promise.resolve({ done: true, value: undefined })
  }

  /** Ends normally: a waiting `next()` settles as done. */
  private finish(): void {
    if (this.finished) return
    this.finished = true
    this.buffer.length = 0
    this.failure = undefined
    this.stop()
    const w = this.waiter
    this.waiter = undefined
    w?.resolve({ done: true, value: undefined })
  }

  /** Ends with `err`, delivered after the records already received. */
  fail(reason: unknown): void {
    if (this.finished || this.failure !== undefined) return
    const err = reason instanceof Error ? reason : new Error(String(reason))
    this.stop()
    const w = this.waiter
    if (w) {
      this.waiter = undefined
      this.finished = true
      w.reject(err)
    } else {
      this.failure = err
    }
  }

  private stop(): void {
    this.signal?.removeEventListener('abort', this.onAbort)
    this.store.unregister(this)
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    const c = this.call
    this.call = undefined
    c?.cancel()
  }

  private get live(): boolean {
    return !this.finished && this.failure === undefined
  }

  private deliver(r: DataRecord): void {
    if (r.version <= this.last) return // already delivered before a reconnection
    this.last = r.version
    const w = this.waiter
    if (w) {
      this.waiter = undefined
      w.resolve({ done: false, value: r })
      return
    }
    this.buffer.push(r)
    if (!this.paused && this.buffer.length >= SYNC_HIGH_WATER) {
      this.paused = true
      this.call?.pause()
    }
  }

  private connect(): void {
    if (!this.live) return
    const [target] = this.store.order()
    if (!target) return
    this.paused = false
    const body = { afterVersion: this.last, ...(this.type === undefined ? {} : { type: this.type }) }
    const ref: { call?: StreamCall } = {}
    const handlers = {
      onLine: (line: unknown): void => {
        if (this.call !== ref.call || !this.live) return
        const l = (typeof line === 'object' && line !== null ? line : {}) as Record<string, unknown>
        if (l['record']) {
          this.deliver(decodeRecord(l['record'] as WireRecord))
        } else if (l['hello']) {
          const sv = (l['hello'] as { serverVersion?: unknown }).serverVersion
          if (typeof sv === 'string') {
            if (this.serverVersion !== undefined && sv !== this.serverVersion) {
              this.fail(
                new DataBrokerError(
                  'ERR_DATABROKER_SYNC_TOO_OLD',
                  `the databroker's history changed across a reconnection (server version ${this.serverVersion} → ${sv}): start over with syncLatest`,
                ),
              )
              return
            }
            this.serverVersion = sv
          }
          this.attempt = 0
          this.store.markUp(target)
        } else if (l['error']) {
          const e = l['error'] as { code?: unknown; message?: unknown }
          const apiErr = apiErrorFromWire(
            503,
            typeof e.code === 'string' ? e.code : 'ERR_DATABROKER_UNAVAILABLE',
            typeof e.message === 'string' ? e.message : 'sync failed',
          )
          const err = fromApiError(apiErr)
          this.call = undefined
          ref.call?.cancel()
          if (err.code === 'ERR_DATABROKER_UNAVAILABLE') this.retry()
          else this.fail(err)
        }
      },
      onEnd: (err?: Error): void => {
        if (this.call !== ref.call || !this.live) return
        this.call = undefined
        if (err instanceof InternalApiError) {
          const e = fromApiError(err)
          if (e.code !== 'ERR_DATABROKER_UNAVAILABLE') return this.fail(e)
        } else if (err instanceof InternalTransportError) {
          this.store.markDown(target, err)
        }
        this.retry()
      },
    }
    ref.call = target.conn.stream(`${DATABROKER_API_PREFIX}sync`, body, handlers, this.store.syncIdleTimeoutMs)
    this.call = ref.call
  }

  /** Reconnects: at once the first time (to the next URL), then with a growing delay. */
  private retry(): void {
    if (!this.live) return
    const delay = this.attempt === 0 ? 0 : Math.min(50 * 2 ** this.attempt, MAX_SYNC_BACKOFF_MS)
    this.attempt++
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.connect()
    }, delay)
  }
}

/** Creates a remote record store; see `RemoteRecordStore`. */
export function createRemoteRecordStore(options: RemoteRecordStoreOptions): RemoteRecordStore {
  return new RemoteRecordStore(options)
}
