/**
 * Which services this process runs (`services`, reference 1.2) and where it finds the databroker.
 * `all` (default) runs everything with a local store. A process without `databroker` uses the
 * databroker of `databroker_internal_service_url`, else `databroker_service_urls`, else
 * `databroker_service_url`, over the internal API; a process with `databroker` serves its store
 * on `grpc_address` when split, or when `grpc_address` is set explicitly in all-in-one mode.
 */
import type { Config } from '../config/types.js'
import { ALL_IN_ONE_GRPC_ADDRESS } from '../databroker/server.js'

export interface ServicePlan {
  readonly proxy: boolean
  readonly databroker: boolean
  /** Where to find the databroker when this process does not run it. */
  readonly databrokerUrls: readonly string[]
  /** Where to serve the local databroker; undefined when it is not served. */
  readonly grpcAddress: string | undefined
  readonly grpcInsecure: boolean
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

export function servicePlan(config: Config): ServicePlan {
  const s = config.services
  const all = s.includes('all')
  const runs = (name: string): boolean => all || s.includes(name)
  const raw = config.raw
  const urls = [str(raw['databroker_internal_service_url'])].filter((u): u is string => u !== undefined)
  const list = Array.isArray(raw['databroker_service_urls']) ? (raw['databroker_service_urls'] as unknown[]).filter((u): u is string => typeof u === 'string' && u !== '') : []
  const databrokerUrls = urls.length > 0 ? urls : list.length > 0 ? list : [str(raw['databroker_service_url'])].filter((u): u is string => u !== undefined)
  const explicitGrpc = str(raw['grpc_address'])
  const databroker = runs('databroker')
  const proxy = runs('proxy') || runs('authenticate') || runs('authorize')
  return {
    proxy,
    databroker,
    databrokerUrls,
    grpcAddress: databroker ? (all ? explicitGrpc : (explicitGrpc ?? ALL_IN_ONE_GRPC_ADDRESS)) : undefined,
    grpcInsecure: typeof raw['grpc_insecure'] === 'boolean' ? raw['grpc_insecure'] : all,
  }
}
