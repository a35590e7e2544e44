/**
 * Which services this process runs (`services`, Pomerium docs: All-in-one vs split) and where it finds the others.
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

export function servicePlan(config: Config): ServicePlan {
  const s = config.services
  const all = s.includes('all')
  const runs = (name: string): boolean => all || s.includes(name)
  const explicitGrpc = config.grpcAddress
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
    databrokerUrls: config.databrokerServiceUrls,
    authorizeUrls: config.authorizeServiceUrls,
    authenticateInternalUrl: config.authenticateInternalServiceUrl,
    grpcAddress: servesInternal ? (all ? explicitGrpc : (explicitGrpc ?? ALL_IN_ONE_GRPC_ADDRESS)) : undefined,
    grpcInsecure: config.grpcInsecure ?? all,
  }
}
