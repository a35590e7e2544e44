/**
 * The proxy service of one process: the data plane, asking the local authorizer or the authorize
 * service of another process, and serving Portcullis' own endpoints as the services this process
 * runs allow. An authenticate-only process also serves through it, with no routes.
 */
import type { Authorizer } from '../authorize/types.js'
import type { Config } from '../config/types.js'
import type { PortcullisMetrics } from '../observability/metrics.js'
import type { Tracing } from '../observability/tracing.js'
import { faultInjectorFromEnv } from '../proxy/fault.js'
import { ProxyServer } from '../proxy/server.js'
import type { Logger } from '../shared/log.js'
import type { Endpoints } from './authenticate.js'

export interface ProxyOptions {
  readonly authorizer: Authorizer
  readonly endpoints: Endpoints
  readonly logger: Logger
  readonly metrics: PortcullisMetrics | undefined
  readonly tracing: Tracing | undefined
  /** False in an authenticate-only process: its host and nothing else, no routes. */
  readonly routes: boolean
}

export interface ProxyService {
  readonly server: ProxyServer
  applyConfig(config: Config): void
}

export function setupProxy(config: Config, options: ProxyOptions): ProxyService {
  const proxyConfig = (c: Config): Config => (options.routes ? c : { ...c, routes: [] })
  // Read once here; only tests set it (src/proxy/fault.ts).
  const faults = faultInjectorFromEnv(process.env, options.logger)
  const server = new ProxyServer(proxyConfig(config), { authorizer: options.authorizer, endpoints: options.endpoints, logger: options.logger, metrics: options.metrics, tracing: options.tracing, faults })
  return { server, applyConfig: (next) => server.applyConfig(proxyConfig(next)) }
}
