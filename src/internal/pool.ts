/**
 * Several URLs of one internal service (`databroker_service_urls`, `authorize_service_urls`):
 * calls rotate over them, and a URL whose connection fails is skipped for a few seconds while
 * the call moves on to the next one. Shared by the remote record store and the remote authorizer.
 */
import type { Logger } from '../shared/log.js'
import { InternalConnection } from './client.js'
import { InternalApiError, InternalTransportError } from './wire.js'
import type { InternalClientTls } from './client.js'

interface ServicePoolOptions {
  /** The service's name in log lines ("databroker", "authorize"). */
  readonly service: string
  /** `http://` (cleartext HTTP/2) or `https://` URLs; at least one. */
  readonly urls: readonly string[]
  /** The raw 32-byte shared secret; the credential key is derived from it. */
  readonly sharedSecret: Buffer
  readonly tls?: InternalClientTls | undefined
  readonly logger: Logger
  /** How long a URL whose connection failed is skipped (default 5 s). */
  readonly downMs?: number | undefined
}

export interface PoolTarget {
  readonly conn: InternalConnection
  downUntil: number
}

/** Whether a call that may have reached a server can be repeated on the next URL. */
export type Retry = 'always' | 'beforeSend'

const DEFAULT_DOWN_MS = 5_000

export class ServicePool {
  readonly service: string
  private readonly targets: PoolTarget[]
  private readonly logger: Logger
  private readonly downMs: number
  private next = 0

  constructor(options: ServicePoolOptions) {
    if (options.urls.length === 0) throw new Error(`the ${options.service} client needs at least one URL`)
    this.service = options.service
    this.targets = options.urls.map((url) => ({
      conn: new InternalConnection(url, { sharedSecret: options.sharedSecret, tls: options.tls }),
      downUntil: 0,
    }))
    this.logger = options.logger
    this.downMs = options.downMs ?? DEFAULT_DOWN_MS
  }

  /** The URLs in the order the next call tries them: rotating, those marked down last. */
  order(): PoolTarget[] {
    const n = this.targets.length
    const start = this.next++ % n
    const rotated = Array.from({ length: n }, (_, i) => this.targets[(start + i) % n] as PoolTarget)
    const now = Date.now()
    const up = rotated.filter((t) => t.downUntil <= now)
    const down = rotated.filter((t) => t.downUntil > now).sort((a, b) => a.downUntil - b.downUntil)
    return [...up, ...down]
  }

  markDown(target: PoolTarget, err: unknown): void {
    const now = Date.now()
    if (target.downUntil <= now) {
      this.logger.warn(
        { url: target.conn.url.origin, err: err instanceof Error ? err.message : String(err) },
        `${this.service} unreachable: failing over to the other URLs for a few seconds`,
      )
    }
    target.downUntil = now + this.downMs
  }

  markUp(target: PoolTarget): void {
    target.downUntil = 0
  }

  /**
   * One unary call, on the first URL that answers. Rejects with the server's `InternalApiError`,
   * or with an `InternalTransportError` when no URL answered (or when the call may have been
   * applied and `retry` is `beforeSend`). `isClosed` stops the loop when the owner was closed.
   */
  async call(path: string, body: unknown, timeoutMs: number, retry: Retry, isClosed: () => boolean = () => false): Promise<unknown> {
    let last: InternalTransportError | undefined
    for (const target of this.order()) {
      if (isClosed()) break
      try {
        const res = await target.conn.call(path, body, timeoutMs)
        if (target.downUntil !== 0) this.markUp(target)
        return res
      } catch (err) {
        if (err instanceof InternalApiError || !(err instanceof InternalTransportError)) throw err
        this.markDown(target, err)
        last = err
        if (!err.beforeSend && retry !== 'always') throw err
      }
    }
    throw new InternalTransportError(`no ${this.service} reachable: ${last?.message ?? 'closed'}`, last?.beforeSend ?? true, last ? { cause: last } : undefined)
  }

  close(): void {
    for (const t of this.targets) t.conn.close()
  }
}
