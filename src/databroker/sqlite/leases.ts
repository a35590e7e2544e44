/**
 * Named leases in the SQLite file: a holder id and an expiry per name, timed by the store's clock.
 * Only one store holds the file, so each operation is one statement without a transaction.
 */
import { randomUUID } from 'node:crypto'
import type { Clock } from '../types.js'
import { checkDuration } from '../validate.js'
import { checkStorableKey } from './errors.js'
import type { Db } from './schema.js'

function prepareStatements(db: Db) {
  return {
    lease: db.prepare<[string], { id: string; expires_at: number }>(
      'SELECT id, expires_at FROM leases WHERE name = ?',
    ),
    setLease: db.prepare<[string, string, number]>(
      `INSERT INTO leases (name, id, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET id = excluded.id, expires_at = excluded.expires_at`,
    ),
    renewLease: db.prepare<[number, string, string, number]>(
      'UPDATE leases SET expires_at = ? WHERE name = ? AND id = ? AND expires_at > ?',
    ),
    releaseLease: db.prepare<[string, string]>('DELETE FROM leases WHERE name = ? AND id = ?'),
  }
}

/** The leases of one open database file. */
export class SqliteLeases {
  readonly #stmt: ReturnType<typeof prepareStatements>
  readonly #clock: Clock

  constructor(db: Db, clock: Clock) {
    this.#stmt = prepareStatements(db)
    this.#clock = clock
  }

  acquire(name: string, durationMs: number): string | undefined {
    checkStorableKey('name', name)
    checkDuration(durationMs)
    const now = this.#clock.now()
    const held = this.#stmt.lease.get(name)
    if (held !== undefined && now < held.expires_at) return undefined
    const id = randomUUID()
    this.#stmt.setLease.run(name, id, now + durationMs)
    return id
  }

  renew(name: string, id: string, durationMs: number): boolean {
    checkStorableKey('name', name)
    checkDuration(durationMs)
    if (typeof id !== 'string') return false
    const now = this.#clock.now()
    return this.#stmt.renewLease.run(now + durationMs, name, id, now).changes === 1
  }

  release(name: string, id: string): void {
    checkStorableKey('name', name)
    if (typeof id === 'string') this.#stmt.releaseLease.run(name, id)
  }
}
