/**
 * The in-memory record store: the default backend, for a single process. Nothing survives a
 * restart, and each instance picks a random server version so that caches notice.
 *
 * Layout, chosen so that each operation touches only what it needs:
 * - one `TypeState` per type, holding live records and tombstones in two `Map`s keyed by id. The
 *   live map is kept in modification order (an update deletes and re-inserts), so TTL expiry and
 *   capacity eviction only ever look at its front;
 * - a change log: every stored state appended in version order. `sync` binary-searches it for its
 *   starting point. Entries that were superseded are skipped and compacted away in bulk;
 * - a set of tombstones in version order, pruned from the front beyond `maxTombstones`.
 */
import { randomUUID } from 'node:crypto'
import { ChangeWaiters, pagedChanges } from './change-waiters.js'
import { DataBrokerError } from './errors.js'
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
} from './types.js'
import { systemClock } from './types.js'
import {
  checkBatch,
  checkDuration,
  checkKey,
  checkQuery,
  checkTypeOptions,
  checkVersion,
  filterPredicate,
} from './validate.js'

/** Options of `MemoryRecordStore`. */
export interface MemoryRecordStoreOptions {
  /** The time source for timestamps, TTLs and leases (default: the system clock). */
  readonly clock?: Clock
  /**
   * How many tombstones to keep for `sync` (default 10,000). Beyond that the oldest are dropped,
   * and a `sync` that starts before a dropped tombstone fails with `ERR_DATABROKER_SYNC_TOO_OLD`.
   */
  readonly maxTombstones?: number
  /**
   * How often, in milliseconds, to look for records past their TTL while some type has one
   * (default 1,000). Reads also expire records, so this only bounds how late a waiting `sync`
   * hears of an expiry.
   */
  readonly sweepIntervalMs?: number
}

/** The default of `MemoryRecordStoreOptions.maxTombstones`. */
export const DEFAULT_MAX_TOMBSTONES = 10_000

/** A stored state; times are epoch milliseconds. Never mutated once created. */
interface Stored {
  readonly type: string
  readonly id: string
  readonly version: number
  /** Deep-frozen result of a JSON round trip, shared by every record handed out. */
  readonly data: unknown
  readonly modifiedAt: number
  readonly deletedAt: number | undefined
}

interface TypeState {
  /** Live records in modification order (oldest first). */
  readonly live: Map<string, Stored>
  readonly tombstones: Map<string, Stored>
  /** Live ids in ordinal order; dropped whenever the set of live ids changes. */
  sortedIds: string[] | undefined
}

interface Lease {
  readonly id: string
  expiresAt: number
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

function toRecord(s: Stored): DataRecord {
  return {
    type: s.type,
    id: s.id,
    version: s.version,
    data: s.data,
    modifiedAt: new Date(s.modifiedAt),
    deletedAt: s.deletedAt === undefined ? undefined : new Date(s.deletedAt),
  }
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Compact the change log once this many entries are superseded and they are the majority. */
const COMPACT_MIN_STALE = 1024

/** A `RecordStore` kept in process memory. */
export class MemoryRecordStore implements RecordStore {
  readonly #clock: Clock
  readonly #maxTombstones: number
  readonly #sweepIntervalMs: number
  readonly #serverVersion = randomUUID()
  #version = 0
  readonly #types = new Map<string, TypeState>()
  readonly #options = new Map<string, TypeOptions>()
  /** Every stored state in version order; entries no longer current are skipped. */
  #log: Stored[] = []
  #staleInLog = 0
  /** Tombstones in version order (a `Set` iterates in insertion order). */
  readonly #tombstoneOrder = new Set<Stored>()
  /** The highest version of a pruned tombstone: `sync` cannot start before it. */
  #prunedThrough = 0
  readonly #waiters = new ChangeWaiters()
  #notifiedVersion = 0
  readonly #leases = new Map<string, Lease>()
  #sweepTimer: NodeJS.Timeout | undefined
  #closed = false

  constructor(options: MemoryRecordStoreOptions = {}) {
    const { clock = systemClock, maxTombstones = DEFAULT_MAX_TOMBSTONES } = options
    const { sweepIntervalMs = 1_000 } = options
    if (!Number.isSafeInteger(maxTombstones) || maxTombstones < 0) {
      throw new DataBrokerError(
        'ERR_DATABROKER_INVALID_ARGUMENT',
        'maxTombstones must be a non-negative integer',
      )
    }
    if (!Number.isFinite(sweepIntervalMs) || sweepIntervalMs <= 0) {
      throw new DataBrokerError(
        'ERR_DATABROKER_INVALID_ARGUMENT',
        'sweepIntervalMs must be a positive number',
      )
    }
    this.#clock = clock
    this.#maxTombstones = maxTombstones
    this.#sweepIntervalMs = sweepIntervalMs
  }

  get(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(() => {
      checkKey('type', type)
      checkKey('id', id)
      const state = this.#types.get(type)
      if (state === undefined) return undefined
      this.#expire(type, state)
      this.#afterChange()
      const s = state.live.get(id)
      return s === undefined ? undefined : toRecord(s)
    })
  }

  put(records: readonly RecordInput[]): Promise<DataRecord[]> {
    return this.#run(() => {
      const json = checkBatch(records)
      const touched = new Set(records.map((r) => r.type))
      // Expire first, so that a put over an expired record revives a tombstone, as it would have
      // had a read come first.
      for (const type of touched) {
        const state = this.#types.get(type)
        if (state !== undefined) this.#expire(type, state)
      }
      const now = this.#clock.now()
      const stored = records.map((r, i) => {
        const s: Stored = {
          type: r.type,
          id: r.id,
          version: ++this.#version,
          data: deepFreeze(JSON.parse(json[i] as string) as unknown),
          modifiedAt: now,
          deletedAt: undefined,
        }
        this.#store(s)
        return s
      })
      for (const type of touched) {
        const state = this.#types.get(type)
        if (state !== undefined) this.#expire(type, state)
      }
      this.#afterChange()
      return stored.map(toRecord)
    })
  }

  delete(type: string, id: string): Promise<DataRecord | undefined> {
    return this.#run(() => {
      checkKey('type', type)
      checkKey('id', id)
      const state = this.#types.get(type)
      if (state === undefined) return undefined
      this.#expire(type, state)
      const s = state.live.get(id)
      if (s === undefined) {
        this.#afterChange()
        return undefined
      }
      const tombstone = this.#tombstone(s, this.#clock.now())
      this.#afterChange()
      return toRecord(tombstone)
    })
  }

  query(options: QueryOptions): Promise<QueryResult> {
    return this.#run(() => {
      const { offset, limit } = checkQuery(options)
      const state = this.#types.get(options.type)
      if (state === undefined) return { records: [], totalCount: 0 }
      this.#expire(options.type, state)
      this.#afterChange()
      const match = filterPredicate(options.filter)
      const records: DataRecord[] = []
      let totalCount = 0
      for (const id of this.#sortedIds(state)) {
        const s = state.live.get(id) as Stored
        if (!match(s.data)) continue
        if (totalCount >= offset && records.length < limit) records.push(toRecord(s))
        totalCount++
      }
      return { records, totalCount }
    })
  }

  listTypes(): Promise<string[]> {
    return this.#run(() => {
      this.#expireAll()
      return [...this.#types].filter(([, st]) => st.live.size > 0).map(([t]) => t).sort(byId)
    })
  }

  serverInfo(): Promise<ServerInfo> {
    return this.#run(() => this.#info())
  }

  sync(afterVersion: number, options: SyncOptions = {}): AsyncIterable<DataRecord> {
    return { [Symbol.asyncIterator]: () => this.#openSync(afterVersion, options) }
  }

  syncLatest(type?: string): Promise<SyncLatestResult> {
    return this.#run(() => {
      if (type !== undefined) checkKey('type', type)
      this.#expireAll()
      const types = type === undefined ? [...this.#types.keys()].sort(byId) : [type]
      const records: DataRecord[] = []
      for (const t of types) {
        const state = this.#types.get(t)
        if (state === undefined) continue
        for (const id of this.#sortedIds(state)) {
          records.push(toRecord(state.live.get(id) as Stored))
        }
      }
      return { ...this.#info(), records }
    })
  }

  setOptions(type: string, options: TypeOptions): Promise<void> {
    return this.#run(() => {
      checkTypeOptions(type, options)
      const copy: { ttlMs?: number; capacity?: number } = {}
      if (options.ttlMs !== undefined) copy.ttlMs = options.ttlMs
      if (options.capacity !== undefined) copy.capacity = options.capacity
      if (copy.ttlMs === undefined && copy.capacity === undefined) this.#options.delete(type)
      else this.#options.set(type, copy)
      const state = this.#types.get(type)
      if (state !== undefined) this.#expire(type, state)
      this.#afterChange()
      this.#scheduleSweep()
    })
  }

  acquireLease(name: string, durationMs: number): Promise<string | undefined> {
    return this.#run(() => {
      checkKey('name', name)
      checkDuration(durationMs)
      const now = this.#clock.now()
      const held = this.#leases.get(name)
      if (held !== undefined && now < held.expiresAt) return undefined
      const id = randomUUID()
      this.#leases.set(name, { id, expiresAt: now + durationMs })
      return id
    })
  }

  renewLease(name: string, id: string, durationMs: number): Promise<boolean> {
    return this.#run(() => {
      checkKey('name', name)
      checkDuration(durationMs)
      const now = this.#clock.now()
      const held = this.#leases.get(name)
      if (held === undefined || held.id !== id || now >= held.expiresAt) return false
      held.expiresAt = now + durationMs
      return true
    })
  }

  releaseLease(name: string, id: string): Promise<void> {
    return this.#run(() => {
      checkKey('name', name)
      if (this.#leases.get(name)?.id === id) this.#leases.delete(name)
    })
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.#closed = true
    clearInterval(this.#sweepTimer)
    this.#sweepTimer = undefined
    this.#types.clear()
    this.#options.clear()
    this.#log = []
    this.#tombstoneOrder.clear()
    this.#leases.clear()
    this.#waiters.wakeAll()
    return Promise.resolve()
  }

  // --- internals -------------------------------------------------------------------------------

  /** Runs a synchronous operation as a promise, so that every failure is a rejection. */
  #run<T>(op: () => T): Promise<T> {
    try {
      this.#checkOpen()
      return Promise.resolve(op())
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new DataBrokerError('ERR_DATABROKER_CLOSED', 'record store is closed')
  }

  #info(): ServerInfo {
    return { serverVersion: this.#serverVersion, latestRecordVersion: this.#version }
  }

  #state(type: string): TypeState {
    let state = this.#types.get(type)
    if (state === undefined) {
      state = { live: new Map(), tombstones: new Map(), sortedIds: undefined }
      this.#types.set(type, state)
    }
    return state
  }

  /** Makes `s` the current state of its record (live). */
  #store(s: Stored): void {
    const state = this.#state(s.type)
    const previous = state.live.get(s.id)
    if (previous !== undefined) {
      state.live.delete(s.id) // re-insert at the back: modification order
      this.#staleInLog++
    } else {
      const tombstone = state.tombstones.get(s.id)
      if (tombstone !== undefined) {
        state.tombstones.delete(s.id)
        this.#tombstoneOrder.delete(tombstone)
        this.#staleInLog++
      }
      state.sortedIds = undefined
    }
    state.live.set(s.id, s)
    this.#log.push(s)
  }

  /** Replaces the live `s` with a tombstone carrying a new version. */
  #tombstone(s: Stored, now: number): Stored {
    const state = this.#state(s.type)
    const t: Stored = { ...s, version: ++this.#version, modifiedAt: now, deletedAt: now }
    state.live.delete(s.id)
    state.sortedIds = undefined
    state.tombstones.set(s.id, t)
    this.#tombstoneOrder.add(t)
    this.#staleInLog++
    this.#log.push(t)
    return t
  }

  /** Applies a type's TTL and capacity. Only the front of the live map can be affected. */
  #expire(type: string, state: TypeState): void {
    const options = this.#options.get(type)
    if (options === undefined) return
    const now = this.#clock.now()
    if (options.ttlMs !== undefined) {
      const cutoff = now - options.ttlMs
      for (const s of state.live.values()) {
        if (s.modifiedAt > cutoff) break
        this.#tombstone(s, now)
      }
    }
    if (options.capacity !== undefined) {
      for (const s of state.live.values()) {
        if (state.live.size <= options.capacity) break
        this.#tombstone(s, now)
      }
    }
  }

  #expireAll(): void {
    for (const type of this.#options.keys()) {
      const state = this.#types.get(type)
      if (state !== undefined) this.#expire(type, state)
    }
    this.#afterChange()
  }

  /** Prunes tombstones and the log, drops empty types, and wakes `sync` waiters on a change. */
  #afterChange(): void {
    for (const t of this.#tombstoneOrder) {
      if (this.#tombstoneOrder.size <= this.#maxTombstones) break
      this.#tombstoneOrder.delete(t)
      const state = this.#types.get(t.type)
      state?.tombstones.delete(t.id)
      this.#prunedThrough = Math.max(this.#prunedThrough, t.version)
      this.#staleInLog++
      if (state !== undefined && state.live.size === 0 && state.tombstones.size === 0) {
        this.#types.delete(t.type)
      }
    }
    if (this.#staleInLog >= COMPACT_MIN_STALE && this.#staleInLog * 2 > this.#log.length) {
      this.#log = this.#log.filter((s) => this.#isCurrent(s))
      this.#staleInLog = 0
    }
    // Wake only on a new version: waking on every call would let two waiting syncs wake each
    // other forever, since each one sweeps (and so calls this) when it wakes.
    if (this.#version !== this.#notifiedVersion) {
      this.#notifiedVersion = this.#version
      this.#waiters.wakeAll()
    }
  }

  #isCurrent(s: Stored): boolean {
    const state = this.#types.get(s.type)
    return state !== undefined && (state.live.get(s.id) ?? state.tombstones.get(s.id)) === s
  }

  #sortedIds(state: TypeState): string[] {
    state.sortedIds ??= [...state.live.keys()].sort(byId)
    return state.sortedIds
  }

  /** Current states with a version above `after`, in version order. */
  #changesAfter(after: number, type: string | undefined): Stored[] {
    const log = this.#log
    let lo = 0
    let hi = log.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((log[mid] as Stored).version <= after) lo = mid + 1
      else hi = mid
    }
    const out: Stored[] = []
    for (let i = lo; i < log.length; i++) {
      const s = log[i] as Stored
      if ((type === undefined || s.type === type) && this.#isCurrent(s)) out.push(s)
    }
    return out
  }

  /**
   * One sync stream. Written by hand rather than as an async generator so that `return()` (a
   * `break` out of `for await`) ends a `next()` that is waiting for changes: a generator would
   * queue the `return()` behind it until the next change arrived.
   */
  #openSync(afterVersion: number, options: SyncOptions): AsyncIterator<DataRecord> {
    const { type, signal } = options
    let started = false
    let cursor = afterVersion
    return pagedChanges<Stored>({
      signal,
      waiters: this.#waiters,
      toRecord,
      nextPage: () => {
        this.#checkOpen()
        if (!started) {
          started = true
          checkVersion(afterVersion)
          if (type !== undefined) checkKey('type', type)
        }
        this.#expireAll()
        if (cursor < this.#prunedThrough) {
          throw new DataBrokerError(
            'ERR_DATABROKER_SYNC_TOO_OLD',
            `cannot sync after version ${cursor}: ` + `tombstones up to version ${this.#prunedThrough} were pruned`,
          )
        }
        const through = this.#version
        const page = this.#changesAfter(cursor, type)
        cursor = Math.max(cursor, through)
        return page
      },
    })
  }

  /** Runs a timer while some type has a TTL, so that expiries reach waiting `sync` callers. */
  #scheduleSweep(): void {
    const needed = [...this.#options.values()].some((o) => o.ttlMs !== undefined)
    if (needed && this.#sweepTimer === undefined) {
      this.#sweepTimer = setInterval(() => {
        if (!this.#closed) this.#expireAll()
      }, this.#sweepIntervalMs)
      this.#sweepTimer.unref()
    } else if (!needed && this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer)
      this.#sweepTimer = undefined
    }
  }
}
