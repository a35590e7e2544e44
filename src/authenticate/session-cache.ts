/**
 * A local, synced copy of the session records (reference 1.4 "synced data"): filled with
 * `syncLatest`, kept current with `sync`, so that the request path reads sessions from memory
 * even when the store is another process or PostgreSQL. A session the copy does not have yet
 * (made a moment ago through another instance) is read through from the store, so a fresh
 * sign-in works at once; a deleted session disappears from the copy as soon as its tombstone
 * arrives (sign-out elsewhere is refused within the sync delay).
 */
import { isDataBrokerError } from '../databroker/index.js'
import type { RecordStore } from '../databroker/index.js'
import type { Logger } from '../shared/log.js'
import { SESSION_TYPE } from './session-store.js'
import type { SessionReadCache } from './session-store.js'

export class SessionCache implements SessionReadCache {
  readonly #store: RecordStore
  readonly #logger: Logger
  readonly #records = new Map<string, unknown>()
  readonly #abort = new AbortController()
  #ready = false
  #running: Promise<void> | undefined

  constructor(store: RecordStore, logger: Logger) {
    this.#store = store
    this.#logger = logger
  }

  /** True once the first snapshot is in; before that every read goes to the store. */
  get ready(): boolean {
    return this.#ready
  }

  /** The cached record data of a session, or undefined when the copy has none (read through then). */
  get(id: string): unknown {
    return this.#ready ? this.#records.get(id) : undefined
  }

  note(id: string, data: unknown): void {
    if (data === undefined) this.#records.delete(id)
    else this.#records.set(id, data)
  }

  start(): void {
    this.#running ??= this.#loop()
  }

  async stop(): Promise<void> {
    this.#abort.abort()
    await this.#running?.catch(() => undefined)
  }

  async #loop(): Promise<void> {
    const signal = this.#abort.signal
    while (!signal.aborted) {
      try {
        const latest = await this.#store.syncLatest(SESSION_TYPE)
        this.#records.clear()
        for (const r of latest.records) this.#records.set(r.id, r.data)
        this.#ready = true
        for await (const r of this.#store.sync(latest.latestRecordVersion, { type: SESSION_TYPE, signal })) {
          if (r.deletedAt !== undefined) this.#records.delete(r.id)
          else this.#records.set(r.id, r.data)
        }
      } catch (err) {
        if (signal.aborted || (isDataBrokerError(err) && err.code === 'ERR_DATABROKER_CLOSED')) return
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
