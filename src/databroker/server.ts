/**
 * The databroker's internal API: serves a local `RecordStore` to other Portcullis services (and
 * data-plane workers) over the internal API (`../internal/`), so that
 * `createRemoteRecordStore` (`./remote.ts`) is a `RecordStore` too.
 *
 * Every method is `POST /databroker/v1/<method>` with a JSON body; see `docs/services.md` for the
 * bodies. `sync` answers newline-delimited JSON: a `{"hello":{"serverVersion"}}` line first, then
 * `{"record":…}` lines, `{"heartbeat":true}` lines while idle, and `{"error":{code,message}}` if
 * it fails. Errors keep their `DataBrokerError` code. A store that was closed under the server
 * answers `ERR_DATABROKER_UNAVAILABLE`: for a remote caller the databroker is unavailable, and
 * its own store is not closed.
 */
import { DataBrokerError, isDataBrokerError } from './errors.js'
import { statusOf } from '../shared/errors.js'
import type { DataRecord, RecordInput, RecordStore, TypeOptions } from './types.js'
import type { Logger } from '../shared/log.js'
import { InternalApiError, startInternalServer } from '../internal/index.js'
import type { InternalRoute, InternalServerTls } from '../internal/index.js'

/**
 * The internal API address in all-in-one mode. Pomerium listens on `:5443` (every interface);
 * Portcullis binds loopback by default, as only local workers need it (docs/services.md).
 */
export const ALL_IN_ONE_GRPC_ADDRESS = '127.0.0.1:5443'

/** The path prefix of the databroker methods. */
export const DATABROKER_API_PREFIX = '/databroker/v1/'

/** A record as it travels: timestamps in milliseconds since the epoch. */
export interface WireRecord {
  readonly type: string
  readonly id: string
  readonly version: number
  readonly data: unknown
  readonly modifiedAt: number
  readonly deletedAt?: number
}

function encodeRecord(r: DataRecord): WireRecord {
  return {
    type: r.type,
    id: r.id,
    version: r.version,
    data: r.data,
    modifiedAt: r.modifiedAt.getTime(),
    ...(r.deletedAt ? { deletedAt: r.deletedAt.getTime() } : {}),
  }
}

export function decodeRecord(w: WireRecord): DataRecord {
  return {
    type: w.type,
    id: w.id,
    version: w.version,
    data: w.data,
    modifiedAt: new Date(w.modifiedAt),
    deletedAt: typeof w.deletedAt === 'number' ? new Date(w.deletedAt) : undefined,
  }
}

/** The HTTP status for each error code. */

/** The answer to an error thrown by an internal API route (databroker codes kept; anything else 500). */
export function internalErrorAnswer(err: unknown): InternalApiError {
  if (err instanceof InternalApiError) return err
  if (isDataBrokerError(err)) {
    if (err.code === 'ERR_DATABROKER_CLOSED') {
      return new InternalApiError(503, 'ERR_DATABROKER_UNAVAILABLE', 'the databroker is shutting down')
    }
    return new InternalApiError(statusOf(err.code), err.code, err.message)
  }
  return new InternalApiError(500, 'ERR_DATABROKER_UNAVAILABLE', 'internal error')
}

function invalid(message: string): DataBrokerError {
  return new DataBrokerError('ERR_DATABROKER_INVALID_ARGUMENT', message)
}

type Body = Record<string, unknown>

function obj(v: unknown): Body {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('body must be an object')
  return v as Body
}

function str(b: Body, k: string): string {
  const v = b[k]
  if (typeof v !== 'string') throw invalid(`${k} must be a string`)
  return v
}

function num(b: Body, k: string): number {
  const v = b[k]
  if (typeof v !== 'number') throw invalid(`${k} must be a number`)
  return v
}

function optional<T>(b: Body, k: string, read: (b: Body, k: string) => T): T | undefined {
  return b[k] === undefined || b[k] === null ? undefined : read(b, k)
}

/** The routes serving `store`. */
export function databrokerRoutes(store: RecordStore): Map<string, InternalRoute> {
  const unary = (handle: (b: Body) => Promise<unknown>): InternalRoute => ({
    kind: 'unary',
    handle: (body) => handle(obj(body)),
  })
  const rec = (r: DataRecord | undefined): { record: WireRecord | null } => ({
    record: r ? encodeRecord(r) : null,
  })
  const routes: Record<string, InternalRoute> = {
    get: unary(async (b) => rec(await store.get(str(b, 'type'), str(b, 'id')))),
    put: unary(async (b) => {
      const list = b['records']
      if (!Array.isArray(list)) throw invalid('records must be an array')
      const records: RecordInput[] = list.map((x: unknown) => {
        const r = obj(x)
        return { type: str(r, 'type'), id: str(r, 'id'), data: r['data'] }
      })
      return { records: (await store.put(records)).map(encodeRecord) }
    }),
    delete: unary(async (b) => rec(await store.delete(str(b, 'type'), str(b, 'id')))),
    query: unary(async (b) => {
      const filter = b['filter']
      if (filter !== undefined && filter !== null && (typeof filter !== 'object' || Array.isArray(filter))) {
        throw invalid('filter must be an object of field values')
      }
      const offset = optional(b, 'offset', num)
      const limit = optional(b, 'limit', num)
      const res = await store.query({
        type: str(b, 'type'),
        ...(filter ? { filter: filter as Record<string, string> } : {}),
        ...(offset === undefined ? {} : { offset }),
        ...(limit === undefined ? {} : { limit }),
      })
      return { records: res.records.map(encodeRecord), totalCount: res.totalCount }
    }),
    listTypes: unary(async () => ({ types: await store.listTypes() })),
    serverInfo: unary(async () => await store.serverInfo()),
    syncLatest: unary(async (b) => {
      const type = optional(b, 'type', str)
      const res = await store.syncLatest(...(type === undefined ? [] : [type]))
      return {
        serverVersion: res.serverVersion,
        latestRecordVersion: res.latestRecordVersion,
        records: res.records.map(encodeRecord),
      }
    }),
    setOptions: unary(async (b) => {
      const o = obj(b['options'] ?? {})
      const ttlMs = optional(o, 'ttlMs', num)
      const capacity = optional(o, 'capacity', num)
      const options: TypeOptions = {
        ...(ttlMs === undefined ? {} : { ttlMs }),
        ...(capacity === undefined ? {} : { capacity }),
      }
      await store.setOptions(str(b, 'type'), options)
      return {}
    }),
    acquireLease: unary(async (b) => ({
      id: (await store.acquireLease(str(b, 'name'), num(b, 'durationMs'))) ?? null,
    })),
    renewLease: unary(async (b) => ({
      renewed: await store.renewLease(str(b, 'name'), str(b, 'id'), num(b, 'durationMs')),
    })),
    releaseLease: unary(async (b) => {
      await store.releaseLease(str(b, 'name'), str(b, 'id'))
      return {}
    }),
    // The snapshot as a stream: one line per record, so that no answer has to fit in one body
    // (a unary answer is capped at MAX_BODY_BYTES, about 12,000 sessions).
    syncLatestStream: {
      kind: 'stream',
      async handle(body, send) {
        const type = optional(obj(body), 'type', str)
        const res = await store.syncLatest(...(type === undefined ? [] : [type]))
        await send({ hello: { serverVersion: res.serverVersion, latestRecordVersion: res.latestRecordVersion, count: res.records.length } })
        for (const r of res.records) await send({ record: encodeRecord(r) })
        await send({ end: true })
      },
    },
    sync: {
      kind: 'stream',
      async handle(body, send, signal) {
        const b = obj(body)
        const after = num(b, 'afterVersion')
        const type = optional(b, 'type', str)
        const { serverVersion } = await store.serverInfo()
        await send({ hello: { serverVersion } })
        const changes = store.sync(after, { signal, ...(type === undefined ? {} : { type }) })
        for await (const r of changes) await send({ record: encodeRecord(r) })
      },
    },
  }
  return new Map(Object.entries(routes).map(([k, v]) => [`${DATABROKER_API_PREFIX}${k}`, v]))
}

interface DatabrokerServerOptions {
  /** The store to serve; the server does not close it. */
  readonly store: RecordStore
  /** `host:port` to listen on (`grpc_address`); port 0 picks a free one. */
  readonly address: string
  /** Certificate and key: TLS. Absent: cleartext HTTP/2 (`grpc_insecure: true`). */
  readonly tls?: InternalServerTls | undefined
  /** The raw 32-byte shared secret; the credential key is derived from it. */
  readonly sharedSecret: Buffer
  readonly logger: Logger
  /** Interval of sync heartbeat lines (default 10 s). */
  readonly heartbeatMs?: number | undefined
}

export interface DatabrokerServer {
  /** The URL a remote store uses to reach this server (loopback when listening on all interfaces). */
  readonly url: string
  /** Stops the server, ending running syncs (clients reconnect elsewhere). The store stays open. */
  close(): Promise<void>
}

/** Serves `store` on the internal API. */
export async function startDatabrokerServer(options: DatabrokerServerOptions): Promise<DatabrokerServer> {
  const server = await startInternalServer({
    address: options.address,
    tls: options.tls,
    sharedSecret: options.sharedSecret,
    logger: options.logger,
    routes: databrokerRoutes(options.store),
    mapError: internalErrorAnswer,
    heartbeatMs: options.heartbeatMs,
  })
  return { url: server.url, close: () => server.close() }
}
