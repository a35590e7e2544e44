/**
 * Storage settings the descriptors cannot check alone: `file` and `postgres` need a connection
 * string, and it must be of their kind.
 */
import { storageChoice } from './storage-choice.js'
import type { LoadContext } from './normalise.js'

export function checkStorage(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): void {
  const { type, connectionString } = storageChoice(raw)
  if (type === 'memory') return
  if (connectionString === undefined) {
    ctx.issues.error(
      'databroker_storage_connection_string',
      undefined,
      `required with databroker_storage_type: ${type} (${type === 'file' ? 'file:///var/lib/portcullis/' : 'postgres://user:password@host:5432/database'})`,
    )
  } else if (type === 'postgres' && !/^postgres(ql)?:\/\//i.test(connectionString)) {
    ctx.issues.error('databroker_storage_connection_string', '(hidden)', 'expected a postgres:// or postgresql:// URL for databroker_storage_type: postgres')
  } else if (type === 'file' && !/^file:/i.test(connectionString)) {
    ctx.issues.error('databroker_storage_connection_string', '(hidden)', 'expected a file:// URL for databroker_storage_type: file')
  }
}
