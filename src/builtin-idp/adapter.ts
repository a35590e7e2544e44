/**
 * The built-in identity provider's storage: sessions, grants, codes and tokens in this process's
 * memory. oidc-provider's own in-memory adapter warns that it is for development only and is
 * shared by every provider in the process; this one belongs to one provider, drops expired
 * entries every minute and caps the total, dropping the oldest first.
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

export interface MemoryStore {
  factory: AdapterFactory
  /** Entries of one model kind ('Session', 'Grant', 'RefreshToken', ...), for tests. */
  count(kind: string): number
  close(): void
}

export function createMemoryStore(options: { maxEntries?: number; now?: () => number } = {}): MemoryStore {
  const now = options.now ?? Date.now
  const maxEntries = options.maxEntries ?? 200_000
  const store = new Map<string, Entry>()
  const key = (kind: string, id: string): string => `${kind}\u0000${id}`

  function live(k: string): Entry | undefined {
    const entry = store.get(k)
    if (entry?.expiresAt !== undefined && entry.expiresAt <= now()) {
      store.delete(k)
      return undefined
    }
    return entry
  }

  function purge(): void {
    const t = now()
    for (const [k, entry] of store) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= t) store.delete(k)
    }
  }
  const timer = setInterval(purge, 60_000)
  timer.unref()

  class MemoryAdapter implements Adapter {
    constructor(private readonly kind: string) {}

    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const k = key(this.kind, id)
      store.delete(k)
      store.set(k, { payload, expiresAt: expiresIn ? now() + expiresIn * 1000 : undefined })
      while (store.size > maxEntries) {
        const oldest = store.keys().next()
        if (oldest.done === true) break
        store.delete(oldest.value)
      }
      return Promise.resolve()
    }

    find(id: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(live(key(this.kind, id))?.payload)
    }

    findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(this.findBy((p) => p.userCode === userCode))
    }

    findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(this.findBy((p) => p.uid === uid))
    }

    private findBy(match: (payload: AdapterPayload) => boolean): AdapterPayload | undefined {
      const prefix = key(this.kind, '')
      for (const [k, entry] of store) {
        if (k.startsWith(prefix) && match(entry.payload) && live(k)) return entry.payload
      }
      return undefined
    }

    consume(id: string): Promise<void> {
      const entry = live(key(this.kind, id))
      if (entry) entry.payload = { ...entry.payload, consumed: Math.floor(now() / 1000) }
      return Promise.resolve()
    }

    destroy(id: string): Promise<void> {
      store.delete(key(this.kind, id))
      return Promise.resolve()
    }

    revokeByGrantId(grantId: string): Promise<void> {
      const prefix = key(this.kind, '')
      for (const [k, entry] of store) {
        if (k.startsWith(prefix) && entry.payload.grantId === grantId) store.delete(k)
      }
      return Promise.resolve()
    }
  }

  return {
    factory: (kind: string) => new MemoryAdapter(kind),
    count(kind) {
      purge()
      const prefix = key(kind, '')
      let n = 0
      for (const k of store.keys()) if (k.startsWith(prefix)) n++
      return n
    },
    close() {
      clearInterval(timer)
      store.clear()
    },
  }
}
