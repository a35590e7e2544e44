/**
 * Opens the record store a config asks for (Pomerium docs: Databroker model): `databroker_storage_type` `memory`
 * (default), `file` (SQLite) or `postgres`, with `databroker_storage_connection_string[_file]`.
 * As in Pomerium, the type follows from the connection string when only that is given:
 * `postgres://` / `postgresql://` mean postgres, `file://` means file.
 */
import type { Config } from '../config/types.js'
import type { Logger } from '../shared/log.js'
import { MemoryRecordStore } from './memory.js'
import { createPostgresRecordStore } from './postgres/index.js'
import { createSqliteRecordStore, sqlitePathFromUrl } from './sqlite/index.js'
import type { StorageType } from '../config/storage-choice.js'
import type { RecordStore } from './types.js'

export type { StorageType }

export async function openRecordStore(config: Config, logger: Logger): Promise<{ store: RecordStore; type: StorageType }> {
  const choice = config.storage
  switch (choice.type) {
    case 'memory':
      return { store: new MemoryRecordStore(), type: 'memory' }
    case 'file': {
      if (choice.connectionString === undefined) throw new Error('databroker_storage_connection_string is required with databroker_storage_type: file (e.g. file:///var/lib/portcullis)')
      return { store: createSqliteRecordStore({ path: sqlitePathFromUrl(choice.connectionString), logger }), type: 'file' }
    }
    case 'postgres': {
      if (choice.connectionString === undefined) throw new Error('databroker_storage_connection_string is required with databroker_storage_type: postgres (e.g. postgres://user@db/portcullis)')
      return { store: await Promise.resolve(createPostgresRecordStore({ connectionString: choice.connectionString, logger })), type: 'postgres' }
    }
  }
}
