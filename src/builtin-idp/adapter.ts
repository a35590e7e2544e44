/**
 * The built-in identity provider's storage: sessions, grants, codes and tokens in this process's
 * memory. oidc-provider's own in-memory adapter warns that it is for development only and is
 * shared by every provider in the process; this one belongs to one provider and drops expired
 * entries every minute.
 *
 * Each model kind has its own table and its own cap, and a full table drops its own least
 * recently written entry, never another kind's. Anyone can create an interaction (every
 * anonymous authorization request does) or a session (the end-session page), so a flood of those
 * must only push out other pending sign-ins, never the grants and refresh tokens that keep
 * signed-in users signed in. Grants, refresh tokens, access tokens and codes are created only by
 * a completed sign-in or an authenticated client.
 *
 * Consequence: a restart ends every IdP session and invalidates every refresh token (the next
 * refresh fails with `invalid_grant` and Portcullis asks the user to sign in again). ID tokens
 * and access-token signatures survive, since the keys are derived from the secret.
 */
import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider'

interface Entry {
  payload: AdapterPayload
  /** Epoch milliseconds; undefined when the provider set no expiry. */
  expiresAt: number | undefined
}

/** Entries kept per model kind; `default` covers every kind not named. */
export type StoreLimits = Readonly<Partial<Record<string, number>>> & { readonly default?: number }

/**
 * Sized for a small deployment: about 50,000 signed-in users (each holds one session, one grant,
 * one refresh token and one access token at a time; refresh tokens rotate only near the end of
 * their life). Pending sign-ins are few and short-lived, so their cap is lower.
 */
export const DEFAULT_STORE_LIMITS: StoreLimits = {
  Interaction: 20_000,
  Session: 50_000,
  Grant: 50_000,
  RefreshToken: 50_000,
  AccessToken: 50_000,
  AuthorizationCode: 10_000,
  default: 10_000,
}

interface MemoryStore {
  factory: AdapterFactory
  /** Entries of one model kind ('Session', 'Grant', 'RefreshToken', ...), for tests. */
  count(kind: string): number
  close(): void
}

export function createMemoryStore(options: { limits?: StoreLimits; now?: () => number } = {}): MemoryStore {
  const now = options.now ?? Date.now
  const limits: StoreLimits = { ...DEFAULT_STORE_LIMITS, ...options.limits }
  for (const [kind, limit] of Object.entries(limits)) {
    if (limit !== undefined && (!Number.isInteger(limit) || limit <= 0)) throw new TypeError(`built-in IdP: store limit of ${kind} must be a positive whole number`)
  }
  const tables = new Map<string, Map<string, Entry>>()
  const tableOf = (kind: string): Map<string, Entry> => {
    let table = tables.get(kind)
    if (!table) {
      table = new Map()
      tables.set(kind, table)
    }
    return table
  }

  function live(table: Map<string, Entry>, id: string): Entry | undefined {
    const entry = table.get(id)
    if (entry?.expiresAt !== undefined && entry.expiresAt <= now()) {
      table.delete(id)
      return undefined
    }
    return entry
  }

  function purge(): void {
    const t = now()
    for (const table of tables.values()) {
      for (const [id, entry] of table) {
        if (entry.expiresAt !== undefined && entry.expiresAt <= t) table.delete(id)
      }
    }
  }
  const timer = setInterval(purge, 60_000)
  timer.unref()

  class MemoryAdapter implements Adapter {
    private readonly table: Map<string, Entry>
    private readonly limit: number

    constructor(kind: string) {
      this.table = tableOf(kind)
      this.limit = limits[kind] ?? limits.default ?? 10_000
    }

    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      // Re-inserting keeps the Map in least-recently-written order, the order entries are dropped in.
      this.table.delete(id)
      this.table.set(id, { payload, expiresAt: expiresIn ? now() + expiresIn * 1000 : undefined })
      // The least recently written is also the nearest to expiry for kinds with one lifetime;
      // no scan for expired entries here, which a flood would turn into work per request.
      while (this.table.size > this.limit) {
        const oldest = this.table.keys().next()
        if (oldest.done === true) break
        this.table.delete(oldest.value)
      }
      return Promise.resolve()
    }

    find(id: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(live(this.table, id)?.payload)
    }

    findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(this.findBy((p) => p.userCode === userCode))
    }

    findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(this.findBy((p) => p.uid === uid))
    }

    private findBy(match: (payload: AdapterPayload) => boolean): AdapterPayload | undefined {
      for (const [id, entry] of this.table) {
        if (match(entry.payload) && live(this.table, id)) return entry.payload
      }
      return undefined
    }

    consume(id: string): Promise<void> {
      const entry = live(this.table, id)
      if (entry) entry.payload = { ...entry.payload, consumed: Math.floor(now() / 1000) }
      return Promise.resolve()
    }

    destroy(id: string): Promise<void> {
      this.table.delete(id)
      return Promise.resolve()
    }

    revokeByGrantId(grantId: string): Promise<void> {
      for (const [id, entry] of this.table) {
        if (entry.payload.grantId === grantId) this.table.delete(id)
      }
      return Promise.resolve()
    }
  }

  return {
    factory: (kind: string) => new MemoryAdapter(kind),
    count(kind) {
      purge()
      return tables.get(kind)?.size ?? 0
    },
    close() {
      clearInterval(timer)
      for (const table of tables.values()) table.clear()
    },
  }
}
