import { createHash } from 'node:crypto'

interface TokenCacheOptions {
  /** Most entries kept; the least recently used goes first. Default 1000. */
  maxEntries?: number
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
}

/**
 * A bounded LRU of verification results with expiry. Entries are keyed by SHA-256 over the whole
 * token and a context (the kind of token and the accepted audiences), never by a prefix, a claim
 * or `kid`: a result is only ever reused for the very same token checked the very same way
 * (hostile-input case: protocol / availability). Raw tokens are not kept.
 */
export class TokenCache<T> {
  readonly maxEntries: number
  private readonly now: () => number
  private readonly entries = new Map<string, { value: T; expiresAt: number }>()

  constructor(options: TokenCacheOptions = {}) {
    const max = options.maxEntries ?? 1000
    if (!Number.isInteger(max) || max < 1) throw new TypeError('TokenCache: maxEntries must be a positive integer')
    this.maxEntries = max
    this.now = options.now ?? Date.now
  }

  /** The cache key: SHA-256 of the length-prefixed context and the token. */
  static keyOf(token: string, context = ''): string {
    return createHash('sha256').update(`${context.length}:${context}\n`).update(token).digest('base64url')
  }

  get(token: string, context = ''): T | undefined {
    const key = TokenCache.keyOf(token, context)
    const entry = this.entries.get(key)
    if (!entry) return undefined
    this.entries.delete(key)
    if (entry.expiresAt <= this.now()) return undefined
    this.entries.set(key, entry) // most recently used last
    return entry.value
  }

  /** Keep `value` until `expiresAt` (epoch ms); an already expired value is not stored. */
  set(token: string, value: T, expiresAt: number, context = ''): void {
    if (!(expiresAt > this.now())) return
    const key = TokenCache.keyOf(token, context)
    this.entries.delete(key)
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      this.entries.delete(oldest.value)
    }
    this.entries.set(key, { value, expiresAt })
  }

  delete(token: string, context = ''): void {
    this.entries.delete(TokenCache.keyOf(token, context))
  }

  clear(): void {
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }
}
