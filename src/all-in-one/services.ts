/**
 * Which services this process runs (`services`, reference 1.2) and where it finds the others.
 *
 * - `all` (default) runs everything with a local store.
 * - A process without `databroker` uses the databroker of `databroker_internal_service_url`, else
 *   `databroker_service_urls`, else `databroker_service_url`, over the internal API.
 * - A process with `proxy` but not `authorize` asks the authorize service of
 *   `authorize_internal_service_url`, else `authorize_service_urls`, else `authorize_service_url`.
 * - A process with `proxy` but not `authenticate` passes requests for the authenticate host to
 *   `authenticate_internal_service_url` (when set; else that host is not served here).
 * - The internal API (`grpc_address`) carries the databroker and the authorize service of this
 *   process: it is served when split, or when `grpc_address` is set explicitly in all-in-one mode.
 */
import type { Config } from '../config/types.js'
import { ALL_IN_ONE_GRPC_ADDRESS } from '../databroker/server.js'

export interface ServicePlan {
  readonly proxy: boolean
  readonly authenticate: boolean
  readonly authorize: boolean
  readonly databroker: boolean
  /** Where to find the databroker when this process does not run it. */
  readonly databrokerUrls: readonly string[]
  /** Where to find the authorize service when this process runs the proxy without it. */
  readonly authorizeUrls: readonly string[]
  /** Where the proxy passes requests for the authenticate host when this process does not run it. */
  readonly authenticateInternalUrl: string | undefined
  /** Where to serve the internal API (databroker, authorize); undefined when it is not served. */
  readonly grpcAddress: string | undefined
  readonly grpcInsecure: boolean
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((u): u is string => typeof u === 'string' && u !== '') : [])

/** The internal URL, else the URL list, else the single URL. */
function serviceUrls(raw: Readonly<Record<string, unknown>>, service: string): string[] {
  const internal = str(raw[`${service}_internal_service_url`])
  if (internal !== undefined) return [internal]
  const many = list(raw[`${service}_service_urls`])
  if (many.length > 0) return many
  const one = str(raw[`${service}_service_url`])
  return one === undefined ? [] : [one]
}

export function servicePlan(config: Config): ServicePlan {
  const s = config.services
  const all = s.includes('all')
  const runs = (name: string): boolean => all || s.includes(name)
  const raw = config.raw
  const explicitGrpc = str(raw['grpc_address'])
  const databroker = runs('databroker')
  const authorize = runs('authorize')
  const proxy = runs('proxy')
  const authenticate = runs('authenticate')
  const servesInternal = databroker || (authorize && !proxy)
  return {
    proxy,
    authenticate,
    authorize,
    databroker,
    databrokerUrls: serviceUrls(raw, 'databroker'),
    authorizeUrls: serviceUrls(raw, 'authorize'),
    authenticateInternalUrl: str(raw['authenticate_internal_service_url']),
    grpcAddress: servesInternal ? (all ? explicitGrpc : (explicitGrpc ?? ALL_IN_ONE_GRPC_ADDRESS)) : undefined,
    grpcInsecure: typeof raw['grpc_insecure'] === 'boolean' ? raw['grpc_insecure'] : all,
  }
}
