/**
 * The PostgreSQL backend's schema and its migrations. Every store runs `migrate` when it starts:
 * inside one transaction holding an advisory lock derived from the schema name, it creates the
 * schema and the `portcullis_migrations` table if missing, then applies, in order, each migration
 * whose version is not recorded there yet. Two instances starting at once therefore serialise on
 * the lock, and the second one finds nothing left to do. PostgreSQL DDL is transactional, so a
 * migration that fails leaves nothing half-applied.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { ClientBase } from 'pg'
import type { Logger } from '../../shared/log.js'

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** The store's tables in one schema, as quoted `schema.table` names. */
export interface Tables {
  readonly server: string
  readonly records: string
  readonly options: string
  readonly leases: string
}

/** The quoted names of the tables in `schema`. */
export function tablesOf(schema: string): Tables {
  const s = quoteIdent(schema)
  return {
    server: `${s}.server`,
    records: `${s}.records`,
    options: `${s}.type_options`,
    leases: `${s}.leases`,
  }
}

/** One schema change; `statements` get the quoted schema name. */
interface Migration {
  readonly version: number
  readonly name: string
  readonly statements: (schema: string) => readonly string[]
}

/**
 * The migrations, in version order. Never edit one that has shipped: add a new one. Old code must
 * keep working on a schema that a newer instance already migrated (rolling upgrades), so changes
 * should be additive.
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'records, server, type options, leases',
    statements: (s) => [
      // The single row holding the store's identity and its version counter. Every write
      // transaction locks this row first, which serialises writers across instances so that
      // record versions become visible in the order they were assigned (a SEQUENCE would not
      // guarantee that: a later value can commit before an earlier one, and a sync reader that
      // already moved past it would never see the earlier one).
      `CREATE TABLE ${s}.server (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        server_version text NOT NULL,
        latest_version bigint NOT NULL DEFAULT 0,
        pruned_through bigint NOT NULL DEFAULT 0,
        tombstones bigint NOT NULL DEFAULT 0
      )`,
      // Live records and tombstones (deleted_at set). COLLATE "C" gives ordinal ordering by id.
      `CREATE TABLE ${s}.records (
        type text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        data jsonb NOT NULL,
        modified_at timestamptz NOT NULL,
        deleted_at timestamptz,
        PRIMARY KEY (type, id)
      )`,
      // sync: changes after a version, in version order (optionally of one type).
      `CREATE UNIQUE INDEX records_version ON ${s}.records (version)`,
      `CREATE INDEX records_type_version ON ${s}.records (type, version)`,
      // query and listTypes: live records of a type, by id.
      `CREATE INDEX records_live_id ON ${s}.records (type, id) WHERE deleted_at IS NULL`,
      // TTL expiry: live records of a type modified before a cutoff.
      `CREATE INDEX records_live_modified ON ${s}.records (type, modified_at)
        WHERE deleted_at IS NULL`,
      // Tombstone pruning: the oldest tombstones.
      `CREATE INDEX records_tombstones ON ${s}.records (version) WHERE deleted_at IS NOT NULL`,
      // Object filters in query are pushed down as `data @> $filter`.
      `CREATE INDEX records_data ON ${s}.records USING gin (data jsonb_path_ops)`,
      `CREATE TABLE ${s}.type_options (
        type text COLLATE "C" PRIMARY KEY,
        ttl_ms double precision,
        capacity integer
      )`,
      `CREATE TABLE ${s}.leases (
        name text COLLATE "C" PRIMARY KEY,
        id text NOT NULL,
        expires_at timestamptz NOT NULL
      )`,
    ],
  },
]

/** The newest migration version this code knows. */
const LATEST_MIGRATION = MIGRATIONS.at(-1)?.version ?? 0

/** The advisory lock key pair for migrating `schema`: a fixed class plus a hash of the name. */
function lockKeys(schema: string): [number, number] {
  const hash = createHash('sha256').update(schema).digest()
  return [0x50_43_4d_47 /* "PCMG" */, hash.readInt32BE(0)]
}

/** Creates or upgrades the schema. Runs on a client that is not inside a transaction. */
export async function migrate(client: ClientBase, schema: string, logger?: Logger): Promise<void> {
  const s = quoteIdent(schema)
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', lockKeys(schema))
    // Checked first rather than with IF NOT EXISTS, which needs the CREATE privilege on the
    // database even when the schema exists.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`)
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${s}.portcullis_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`,
    )
    const { rows } = await client.query<{ version: number }>(
      `SELECT version FROM ${s}.portcullis_migrations`,
    )
    const applied = new Set(rows.map((r) => r.version))
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue
      for (const sql of m.statements(s)) await client.query(sql)
      await client.query(`INSERT INTO ${s}.portcullis_migrations (version, name) VALUES ($1, $2)`, [
        m.version,
        m.name,
      ])
      logger?.info({ schema, version: m.version }, `databroker postgres: applied migration`)
    }
    // Created once and kept: the server version identifies this store's history across restarts.
    await client.query(
      `INSERT INTO ${s}.server (singleton, server_version) VALUES (true, $1)
       ON CONFLICT (singleton) DO NOTHING`,
      [randomUUID()],
    )
    const newest = Math.max(0, ...applied)
    if (newest > LATEST_MIGRATION) {
      logger?.warn(
        { schema, version: newest, known: LATEST_MIGRATION },
        'databroker postgres: the schema was migrated by a newer version of portcullis',
      )
    }
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw err
  }
}
