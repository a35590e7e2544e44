/**
 * The PostgreSQL backend's change feed. Write transactions `NOTIFY` the schema's channel with
 * their latest version; each store keeps one dedicated connection that `LISTEN`s and wakes its
 * waiting `sync` streams, which then read the changes after the last version they saw. The
 * listener reconnects with backoff; on reconnection every waiting stream re-reads, so nothing
 * written meanwhile is lost.
 */
import { createHash } from 'node:crypto'
import { Client } from 'pg'
import type { Notification } from 'pg'
import type { Logger } from '../../shared/log.js'
import { ChangeWaiters, pagedChanges } from '../change-waiters.js'
import { DataBrokerError } from '../errors.js'
import type { DataRecord, SyncOptions } from '../types.js'
import { checkVersion } from '../validate.js'
import { checkPgKey, closedError, mapError } from './errors.js'
import type { PostgresRecords } from './records.js'
import { quoteIdent } from './schema.js'

/** Changes a sync reads per query. */
const SYNC_BATCH = 500

/** The NOTIFY channel of `schema`: one per schema, so that stores in other schemas are not woken. */
export function channelOf(schema: string): string {
  return `portcullis_${createHash('sha256').update(schema).digest('hex').slice(0, 24)}`
}

/** What `PostgresChangeFeed` works with. */
interface ChangeFeedSettings {
  readonly connectionString: string
  readonly connectionTimeoutMs: number
  readonly schema: string
  readonly channel: string
  readonly logger: Logger | undefined
  /** Backoff of the listener's reconnection attempts. */
  readonly reconnectInitialMs: number
  readonly reconnectMaxMs: number
  readonly records: PostgresRecords
  readonly isClosed: () => boolean
}

/** The listener connection and the `sync` streams of one store. */
export class PostgresChangeFeed {
  readonly #settings: ChangeFeedSettings
  readonly #waiters = new ChangeWaiters()
  #listener: Client | undefined
  #reconnectTimer: NodeJS.Timeout | undefined
  #reconnectDelayMs: number
  /** Bumped on every wake-up, so that a sync notices one that came while it was querying. */
  #epoch = 0
  /** The highest version announced so far (locally or by NOTIFY). */
  #announced = 0

  constructor(settings: ChangeFeedSettings) {
    this.#settings = settings
    this.#reconnectDelayMs = settings.reconnectInitialMs
  }

  /** Starts listening; `latestVersion` is the version already committed when the store opened. */
  async start(latestVersion: number): Promise<void> {
    this.#announced = latestVersion
    await this.#connectListener()
  }

  /**
   * Stops reconnecting, wakes every waiting stream (which then finds the store closed) and ends
   * the listener connection; call once the store is marked closed.
   */
  close(): Promise<void> | undefined {
    clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = undefined
    this.#wakeAll()
    const listener = this.#listener
    this.#listener = undefined
    return listener?.end()
  }

  /** Wakes waiting syncs for `version`, unless an earlier wake-up already covered it. */
  announce(version: number): void {
    if (version <= this.#announced) return
    this.#announced = version
    this.#wakeAll()
  }

  /**
   * One sync stream, written by hand (like the memory backend's) so that `return()` settles a
   * `next()` that is waiting for changes.
   */
  open(afterVersion: number, options: SyncOptions): AsyncIterator<DataRecord> {
    const { records, isClosed } = this.#settings
    const { type, signal } = options
    let started = false
    let cursor = afterVersion
    let epoch = this.#epoch
    return pagedChanges<DataRecord>({
      signal,
      waiters: this.#waiters,
      toRecord: (r) => r,
      // Wait only if no wake-up came while querying: it may be for a change the query missed.
      mayWait: () => epoch === this.#epoch,
      nextPage: async () => {
        try {
          if (isClosed()) throw closedError()
          if (!started) {
            started = true
            checkVersion(afterVersion)
            if (type !== undefined) checkPgKey('type', type)
          }
          await records.expireDue(undefined)
          epoch = this.#epoch
          const changes = await records.changesAfter(cursor, type, SYNC_BATCH)
          if (cursor < changes.prunedThrough) {
            throw new DataBrokerError(
              'ERR_DATABROKER_SYNC_TOO_OLD',
              `cannot sync after version ${cursor}: ` + `tombstones up to version ${changes.prunedThrough} were pruned`,
            )
          }
          const lastSeen = changes.records.at(-1)?.version ?? cursor
          cursor = changes.records.length === SYNC_BATCH ? lastSeen : Math.max(cursor, changes.latest)
          return changes.records
        } catch (err) {
          throw mapError(err, isClosed())
        }
      },
    })
  }

  #wakeAll(): void {
    this.#epoch++
    this.#waiters.wakeAll()
  }

  async #connectListener(): Promise<void> {
    const { connectionString, connectionTimeoutMs, schema, channel, isClosed } = this.#settings
    const client = new Client({
      connectionString,
      connectionTimeoutMillis: connectionTimeoutMs,
      application_name: `portcullis-listener ${schema}`.slice(0, 63),
    })
    client.on('error', (err) => this.#listenerLost(client, err))
    client.on('end', () => this.#listenerLost(client, undefined))
    client.on('notification', (msg: Notification) => {
      if (msg.channel !== channel) return
      const version = Number(msg.payload)
      if (Number.isSafeInteger(version)) this.announce(version)
      else this.#wakeAll()
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${quoteIdent(channel)}`)
    } catch (err) {
      void client.end().catch(() => undefined)
      throw err
    }
    if (isClosed()) {
      void client.end().catch(() => undefined)
      return
    }
    this.#listener = client
  }

  #listenerLost(client: Client, err: Error | undefined): void {
    if (this.#listener !== client) return
    this.#listener = undefined
    void client.end().catch(() => undefined)
    if (this.#settings.isClosed()) return
    this.#settings.logger?.warn(
      { err, schema: this.#settings.schema },
      'databroker postgres: change listener lost; reconnecting',
    )
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    const { isClosed, logger, schema } = this.#settings
    if (isClosed() || this.#reconnectTimer !== undefined) return
    const delay = this.#reconnectDelayMs * (0.5 + Math.random() / 2)
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined
      if (isClosed()) return
      this.#connectListener().then(
        () => {
          this.#reconnectDelayMs = this.#settings.reconnectInitialMs
          if (isClosed()) return
          logger?.info({ schema }, 'databroker postgres: listener reconnected')
          // Changes committed while nobody listened: every waiting sync reads again.
          this.#wakeAll()
        },
        (err: unknown) => {
          this.#reconnectDelayMs = Math.min(this.#settings.reconnectMaxMs, this.#reconnectDelayMs * 2)
          logger?.warn({ err, schema }, 'databroker postgres: listener reconnection failed')
          this.#scheduleReconnect()
        },
      )
    }, delay)
    this.#reconnectTimer.unref()
  }
}
