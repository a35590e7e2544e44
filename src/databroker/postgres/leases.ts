/**
 * Named leases in PostgreSQL: one row per name with its holder and expiry, timed by the store's
 * clock. Each operation is one atomic statement on the pool, so instances sharing the schema
 * agree on the holder.
 */
import { randomUUID } from 'node:crypto'
import type { Pool } from 'pg'
import type { Clock } from '../types.js'
import { checkDuration } from '../validate.js'
import { checkPgKey, unstorable } from './errors.js'

/** The leases in one schema's `leases` table. */
export class PostgresLeases {
  readonly #pool: Pool
  /** The quoted `schema.leases` name. */
  readonly #table: string
  readonly #clock: Clock

  constructor(pool: Pool, table: string, clock: Clock) {
    this.#pool = pool
    this.#table = table
    this.#clock = clock
  }

  async acquire(name: string, durationMs: number): Promise<string | undefined> {
    checkPgKey('name', name)
    checkDuration(durationMs)
    const now = this.#clock.now()
    const id = randomUUID()
    // Atomic: either no row, or the existing row has expired and is taken over. A concurrent
    // acquirer waits on the row lock and then sees the new, unexpired holder.
    const { rows } = await this.#pool.query<{ id: string }>(
      `INSERT INTO ${this.#table} AS l (name, id, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET id = excluded.id, expires_at = excluded.expires_at
       WHERE l.expires_at <= $4
       RETURNING id`,
      [name, id, new Date(now + durationMs), new Date(now)],
    )
    return rows[0]?.id === id ? id : undefined
  }

  async renew(name: string, id: string, durationMs: number): Promise<boolean> {
    checkPgKey('name', name)
    checkDuration(durationMs)
    if (typeof id !== 'string' || unstorable(id)) return false
    const now = this.#clock.now()
    const { rowCount } = await this.#pool.query(
      `UPDATE ${this.#table} SET expires_at = $3
       WHERE name = $1 AND id = $2 AND expires_at > $4`,
      [name, id, new Date(now + durationMs), new Date(now)],
    )
    return rowCount === 1
  }

  async release(name: string, id: string): Promise<void> {
    checkPgKey('name', name)
    if (typeof id !== 'string' || unstorable(id)) return
    await this.#pool.query(`DELETE FROM ${this.#table} WHERE name = $1 AND id = $2`, [name, id])
  }
}
