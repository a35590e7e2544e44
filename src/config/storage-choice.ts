/**
 * Which record store a config selects (Pomerium docs: Databroker model), without opening anything: the type follows
 * `databroker_storage_type`, or, as in Pomerium, the connection string's scheme when only that is
 * given (`postgres://`/`postgresql://` → postgres, `file:` → file).
 */

export type StorageType = 'memory' | 'file' | 'postgres'

export interface StorageChoice {
  readonly type: StorageType
  /** The connection string, when the type needs one. */
  readonly connectionString: string | undefined
}

/** Which backend a config selects, before anything is opened (also used by config checks). */
export function storageChoice(raw: Readonly<Record<string, unknown>>): StorageChoice {
  const cs = typeof raw['databroker_storage_connection_string'] === 'string' && raw['databroker_storage_connection_string'] !== '' ? raw['databroker_storage_connection_string'] : undefined
  const explicit = raw['databroker_storage_type']
  let type: StorageType = explicit === 'file' || explicit === 'postgres' ? explicit : 'memory'
  if (type === 'memory' && cs !== undefined) {
    if (/^postgres(ql)?:\/\//i.test(cs)) type = 'postgres'
    else if (/^file:/i.test(cs)) type = 'file'
  }
  return { type, connectionString: cs }
}

