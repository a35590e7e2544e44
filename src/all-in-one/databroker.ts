/**
 * Storage for the services of one process, and the databroker service itself: a process that runs
 * the databroker opens the configured store (memory, file, PostgreSQL) and serves it on the
 * internal API; every other process reaches a databroker over that API (Pomerium docs: All-in-one vs split).
 */
import type { Config } from '../config/types.js'
import { openRecordStore } from '../databroker/from-config.js'
import { createRemoteRecordStore } from '../databroker/remote.js'
import { databrokerRoutes } from '../databroker/server.js'
import type { RecordStore } from '../databroker/types.js'
import type { InternalRoute } from '../internal/index.js'
import type { Logger } from '../shared/log.js'
import type { ServicePlan } from './services.js'

export interface InternalClientOptions {
  readonly sharedSecret: Buffer
  readonly tls: { readonly ca?: string; readonly serverName?: string } | undefined
  readonly timeoutMs: number | undefined
}

export interface OpenedStorage {
  readonly store: RecordStore
  /** `memory`, `file`, `postgres`, or `remote` (another process's databroker). */
  readonly type: string
}

/** The store the services of this process use: the local one when it runs the databroker, else a client of one. */
export async function openStorage(config: Config, plan: ServicePlan, logger: Logger, client: InternalClientOptions): Promise<OpenedStorage> {
  if (plan.databroker) return openRecordStore(config, logger)
  if (plan.databrokerUrls.length === 0) throw new Error('services without databroker need databroker_service_url (or databroker_service_urls / databroker_internal_service_url)')
  return { store: createRemoteRecordStore({ urls: plan.databrokerUrls, logger, ...client }), type: 'remote' }
}

/** The databroker service: the internal API routes that serve `store` to other processes. */
export function setupDatabroker(store: RecordStore): Array<[string, InternalRoute]> {
  return [...databrokerRoutes(store)]
}
