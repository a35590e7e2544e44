/**
 * A local, synced copy of the session records (Pomerium docs: Databroker model "synced data"): filled with
 * `syncLatest`, kept current with `sync`, so that the request path reads sessions from memory
 * even when the store is another process or PostgreSQL. A session the copy does not have yet
 * (made a moment ago through another instance) is read through from the store, so a fresh
 * sign-in works at once; a deleted session disappears from the copy as soon as its tombstone
 * arrives (sign-out elsewhere is refused within the sync delay).
 *
 * A sync stream reconnects by itself, so a store that is down (or cut off by the network) would
 * leave the copy silently stale: a sign-out through another instance would go unnoticed. The
 * cache therefore probes the store every {@link PROBE_INTERVAL_MS}; once it has not reached the
 * store for {@link STALE_AFTER_MS} it stops answering (reads go to the store, which fails: 503,
 * never a stale "still signed in") and starts over with a fresh snapshot when the store is back.
 * Short outages (a PostgreSQL restart) are bridged by the copy.
 */
import { isDataBrokerError } from '../databroker/index.js'
import type { RecordStore } from '../databroker/index.js'
import type { Logger } from '../shared/log.js'
import { SESSION_TYPE, slimSessionData } from './session-store.js'
import type { SessionReadCache } from './session-store.js'

/** How often the store is probed while the copy is in use. */
const PROBE_INTERVAL_MS = 2_000
/** How long the copy keeps answering without reaching the store. */
const STALE_AFTER_MS = 10_000

interface SessionCacheOptions {
  readonly probeIntervalMs?: number
  readonly staleAfterMs?: number
}

export class SessionCache implements SessionReadCache {
  readonly #store: RecordStore
  readonly #logger: Logger
  readonly #records = new Map<string, unknown>()
  readonly #abort = new AbortController()
  readonly #probeIntervalMs: number
  readonly #staleAfterMs: number
  #ready = false
  #running: Promise<void> | undefined
  #probe: NodeJS.Timeout | undefined
  /** Aborts the current snapshot + sync round, so that the loop starts over. */
  #round: AbortController | undefined
  #lastContact = Date.now()

  constructor(store: RecordStore, logger: Logger, options: SessionCacheOptions = {}) {
    this.#store = store
    this.#logger = logger
    this.#probeIntervalMs = options.probeIntervalMs ?? PROBE_INTERVAL_MS
    this.#staleAfterMs = options.staleAfterMs ?? STALE_AFTER_MS
  }

  /** True once the first snapshot is in; before that every read goes to the store. */
  get ready(): boolean {
    return this.#ready
  }

  /**
   * The cached data of a session in its slim form (no sealed tokens: see `slimSessionData`), or
   * undefined when the copy has none (read through then).
   */
  get(id: string): unknown {
    return this.#ready ? this.#records.get(id) : undefined
  }

  note(id: string, data: unknown): void {
    if (data === undefined) this.#records.delete(id)
    else this.#records.set(id, data)
  }

  start(): void {
    this.#running ??= this.#loop()
    this.#probe ??= setInterval(() => void this.#checkContact(), this.#probeIntervalMs).unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#probe)
    this.#abort.abort()
    await this.#running?.catch(() => undefined)
  }

  async #checkContact(): Promise<void> {
    try {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        this.#store.serverInfo(),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('store probe timed out')), this.#probeIntervalMs).unref())),
      ]).finally(() => clearTimeout(timer))
      this.#lastContact = Date.now()
    } catch (err) {
      if (this.#ready && Date.now() - this.#lastContact > this.#staleAfterMs) {
        this.#logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'session store unreachable for too long: the session copy is no longer used until it is current again')
        this.#ready = false
        this.#round?.abort()
      }
    }
  }

  /** Replaces the copy with a snapshot (slim form); returns the version to sync on from. */
  async #snapshot(): Promise<number> {
    const latest = await this.#store.syncLatest(SESSION_TYPE)
    this.#records.clear()
    for (const r of latest.records) this.#records.set(r.id, slimSessionData(r.data))
    return latest.latestRecordVersion
  }

  async #loop(): Promise<void> {
    const main = this.#abort.signal
    while (!main.aborted) {
      const round = new AbortController()
      this.#round = round
      const signal = AbortSignal.any([main, round.signal])
      try {
        // The snapshot's records are dropped once copied (a variable that outlived this step
        // would keep every whole record, tokens included, alive as long as the sync runs).
        const from = await this.#snapshot()
        this.#lastContact = Date.now()
        this.#ready = true
        for await (const r of this.#store.sync(from, { type: SESSION_TYPE, signal })) {
          if (r.deletedAt !== undefined) this.#records.delete(r.id)
          else this.#records.set(r.id, slimSessionData(r.data))
        }
        if (round.signal.aborted && !main.aborted) throw new Error('the session copy went stale')
      } catch (err) {
        if (main.aborted || (isDataBrokerError(err) && err.code === 'ERR_DATABROKER_CLOSED')) return
        // Until the copy is current again, read from the store: never serve a stale "still signed in".
        this.#ready = false
        if (!(isDataBrokerError(err) && err.code === 'ERR_DATABROKER_SYNC_TOO_OLD')) {
          this.#logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'session cache sync interrupted; reading from the store until it resumes')
          await new Promise((r) => setTimeout(r, 1000).unref())
        }
      }
    }
  }
}
