/**
 * The PostgreSQL record store: persistent, and shared by any number of Portcullis instances
 * pointing at the same database and schema (Pomerium's `postgres` databroker backend).
 *
 * - Every write runs in one transaction that first locks the single `server` row. That row holds
 *   the version counter, so writers (across instances) take versions in commit order, and a sync
 *   reader that has seen version N can never later find an uncommitted N-1 appear.
 * - The same transaction sends `NOTIFY` with the new latest version. Each store keeps one
 *   dedicated connection that `LISTEN`s and wakes the local `sync` iterators, which then read the
 *   changes after the last version they saw. The listener reconnects with backoff; on reconnection
 *   every waiting sync re-reads, so nothing written meanwhile is lost.
 * - Time comes from the injected `Clock` only (never the database's `now()`): TTL expiry, lease
 *   expiry and `modifiedAt` all use it. Expired records become tombstones lazily, when an
 *   operation touches their type, and from a periodic sweep so that waiting syncs hear of them.
 * - Tombstones beyond `maxTombstones` are pruned oldest first; the highest pruned version is kept
 *   so that a `sync` from before it fails with `ERR_DATABROKER_SYNC_TOO_OLD`.
 * - Database failures reject with `ERR_DATABROKER_UNAVAILABLE` (fail closed), values PostgreSQL
 *   cannot store (a NUL character, an unpaired surrogate) with `ERR_DATABROKER_INVALID_ARGUMENT`.
 *
 * Modules: `schema.ts` (tables and migrations), `records.ts` (record reads and writes, TTL,
 * capacity, pruning), `sync.ts` (the change feed and its listener), `leases.ts`, `errors.ts`,
 * and `store.ts` wiring them into `PostgresRecordStore`.
 */
export { createPostgresRecordStore, PostgresRecordStore } from './store.js'
export type { PostgresRecordStoreOptions } from './store.js'
