/**
 * The directory sync (docs/directory.md): every `idp_refresh_directory_interval`, one instance
 * (the holder of the `directory-sync` lease in the databroker) reads the whole directory from the
 * provider within `idp_refresh_directory_timeout` and writes what changed. A failed read changes
 * nothing: the last complete read stays in effect, and the failure shows in the metrics
 * (`portcullis_directory_sync_errors`), in `/status` (`directory.last_error`, `stale`) and in the
 * log. After a failure the next attempt comes sooner (30 s, doubling up to the interval).
 */
import type { RecordStore } from '../databroker/index.js'
import type { Logger } from '../shared/log.js'
import { DirectoryHttp } from './http.js'
import type { DirectoryFetch } from './http.js'
import type { DirectoryProvider } from './provider.js'
import { writeDirectory } from './write.js'
import type { DirectorySource } from '../session/directory.js'

export const DIRECTORY_SYNC_LEASE = 'directory-sync'

export interface DirectorySyncStatus {
  readonly provider: string
  readonly leader: boolean
  readonly successes: number
  readonly errors: number
  readonly throttled: number
  readonly lastSuccessAt: number | undefined
  readonly lastErrorAt: number | undefined
  readonly lastError: string | undefined
  readonly users: number | undefined
  readonly groups: number | undefined
  /** The last attempt failed: the data in use is from an earlier read. */
  readonly stale: boolean
}

export interface DirectorySyncOptions {
  readonly store: RecordStore
  readonly provider: DirectoryProvider
  readonly logger: Logger
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly source?: DirectorySource
  readonly fetch?: DirectoryFetch
  /** First retry delay after a failed sync (default 30 s). */
  readonly retryMs?: number
  /** Backoff of throttled requests inside one sync (default 1 s, doubling). */
  readonly backoffMs?: number
}

export class DirectorySync {
  readonly #o: DirectorySyncOptions
  #leaseId: string | undefined
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #stopped = false
  #failuresInARow = 0
  #status: DirectorySyncStatus
  #waiters: Array<() => void> = []
  #unwatch: (() => void) | undefined
  /** Aborts a round under way when the sync stops (a reload with new settings, shutdown). */
  readonly #stopping = new AbortController()
  #inRound = false
  #again = false

  constructor(options: DirectorySyncOptions) {
    this.#o = options
    this.#status = { provider: options.provider.name, leader: false, successes: 0, errors: 0, throttled: 0, lastSuccessAt: undefined, lastErrorAt: undefined, lastError: undefined, users: undefined, groups: undefined, stale: false }
  }

  status(): DirectorySyncStatus {
    return this.#status
  }

  /** Starts syncing now and then every interval. */
  start(): void {
    this.#unwatch = this.#o.provider.watch?.(() => this.trigger())
    this.#schedule(0)
  }

  /** Syncs as soon as possible (the source says it changed). */
  trigger(): void {
    if (this.#stopped) return
    if (this.#inRound) {
      this.#again = true
      return
    }
    clearTimeout(this.#timer)
    this.#schedule(0)
  }

  /** Runs one round now (tests, `portcullis directory sync`); resolves when it is done. */
  async runOnce(): Promise<void> {
    await this.#round()
  }

  /** Resolves after the next round that ends (successfully or not). */
  nextRound(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#stopping.abort()
    this.#unwatch?.()
    clearTimeout(this.#timer)
    await this.#running?.catch(() => undefined)
    if (this.#leaseId) await this.#o.store.releaseLease(DIRECTORY_SYNC_LEASE, this.#leaseId).catch(() => undefined)
  }

  #schedule(ms: number): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#inRound = true
      this.#running = this.#round().finally(() => {
        this.#inRound = false
        const failed = this.#failuresInARow > 0
        const retry = Math.min(this.#o.intervalMs, (this.#o.retryMs ?? 30_000) * 2 ** Math.max(0, this.#failuresInARow - 1))
        const again = this.#again
        this.#again = false
        this.#schedule(again ? 0 : failed ? retry : this.#o.intervalMs)
      })
    }, ms)
    this.#timer.unref()
  }

  /** Holds (or takes) the lease for the next interval and the sync in it. */
  async #lead(): Promise<boolean> {
    const { store, intervalMs, timeoutMs } = this.#o
    const duration = intervalMs + timeoutMs + 30_000
    if (this.#leaseId && (await store.renewLease(DIRECTORY_SYNC_LEASE, this.#leaseId, duration))) return true
    this.#leaseId = await store.acquireLease(DIRECTORY_SYNC_LEASE, duration)
    return this.#leaseId !== undefined
  }

  async #round(): Promise<void> {
    const { logger, provider } = this.#o
    try {
      let leader = false
      try {
        leader = await this.#lead()
      } catch (err) {
        this.#fail(err, 'the databroker is unavailable')
        return
      }
      this.#status = { ...this.#status, leader }
      if (!leader) return
      const started = Date.now()
      const signal = AbortSignal.any([AbortSignal.timeout(this.#o.timeoutMs), this.#stopping.signal])
      const http = new DirectoryHttp({
        fetch: this.#o.fetch,
        signal,
        backoffMs: this.#o.backoffMs,
        maxWaitMs: this.#o.timeoutMs,
        onThrottle: (waitMs, url) => logger.warn({ provider: provider.name, url, waitMs: Math.round(waitMs) }, 'directory provider throttles: waiting before retrying'),
      })
      try {
        const data = await provider.read(http)
        const written = await writeDirectory(this.#o.store, this.#o.source ?? 'sync', data)
        this.#failuresInARow = 0
        this.#status = {
          ...this.#status,
          successes: this.#status.successes + 1,
          throttled: this.#status.throttled + http.throttled,
          lastSuccessAt: Date.now(),
          users: data.users.length,
          groups: data.groups.length,
          stale: false,
        }
        logger.info({ provider: provider.name, users: data.users.length, groups: data.groups.length, changed: written.put, deleted: written.deleted, requests: http.requests, ms: Date.now() - started }, 'directory synced')
      } catch (err) {
        this.#status = { ...this.#status, throttled: this.#status.throttled + http.throttled }
        // Stopped part-way: nothing was written, and this is no failure of the provider.
        if (this.#stopped) return
        this.#fail(err, 'the previous directory data stays in effect')
      }
    } finally {
      for (const w of this.#waiters.splice(0)) w()
    }
  }

  #fail(err: unknown, consequence: string): void {
    this.#failuresInARow++
    const message = err instanceof Error ? err.message : String(err)
    this.#status = { ...this.#status, errors: this.#status.errors + 1, lastErrorAt: Date.now(), lastError: message, stale: true }
    this.#o.logger.error({ provider: this.#o.provider.name, err: message }, `directory sync failed; ${consequence}`)
  }
}
