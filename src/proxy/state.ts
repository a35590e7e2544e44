/**
 * Everything the data plane derives from one config, built once and swapped whole on reload
 * (requests in flight keep the generation they started with).
 */
import type { ClientCertificateInfo } from '../authorize/types.js'
import type { Config, RouteConfig } from '../config/types.js'
import { compilePathComparison } from '../policy/index.js'
import type { PathComparison } from '../policy/index.js'
import type { Logger } from '../shared/log.js'
import { createAccessLogger } from './access-log.js'
import type { AccessLogger } from './access-log.js'
import { connectionCertificate } from './client-cert.js'
import type { ClientCertPolicy } from './client-cert.js'
import { buildHeaderPlan } from './headers.js'
import type { HeaderPlan } from './headers.js'
import { buildPathPlan, targetPathPrefix } from './rewrite.js'
import type { PathPlan } from './rewrite.js'
import { RouteTable } from './route-table.js'
import { buildCertificateSet } from './tls.js'
import type { CertificateSet } from './tls.js'
import { Cluster } from './upstreams.js'
import type { TransportRegistry } from './upstreams.js'

export interface RoutePlan {
  readonly route: RouteConfig
  readonly headers: HeaderPlan
  readonly paths: PathPlan
  readonly cluster: Cluster | undefined
  /** Path prefix of each endpoint's `to` URL, by endpoint index. */
  readonly targetPrefixes: readonly (string | undefined)[]
  readonly upgrades: ReadonlySet<string>
  readonly clusterName: string
  /** Whether the route's policy could decide two paths differently; undefined when it reads no path. */
  readonly pathComparison: PathComparison | undefined
}

export class ProxyState {
  readonly config: Config
  /** Finds a request's route plan (route, headers, upstreams) in one lookup (HTTP routes only). */
  readonly table: RouteTable<RoutePlan>
  /** `tcp+https` routes, found by the CONNECT target `host:port` (docs/tunnels.md). */
  readonly tcpTunnels: RouteTable<RoutePlan>
  /** `udp+https` routes, found by the CONNECT-UDP target `host:port`. */
  readonly udpTunnels: RouteTable<RoutePlan>
  /** Tunnel routes by id, so that an open tunnel finds its route again after a reload. */
  readonly tunnelRoutes: ReadonlyMap<string, RoutePlan>
  readonly plans: ReadonlyMap<RouteConfig, RoutePlan>
  readonly accessLog: AccessLogger
  readonly certificates: CertificateSet | undefined
  /** `downstream_mtls` when a CA is set: the listener asks for client certificates. */
  readonly clientCertificates: ClientCertPolicy | undefined
  /** Global response headers, for pages the proxy answers itself. */
  readonly localHeaders: Readonly<Record<string, string>>
  readonly cookieName: string
  /** The main listener's scheme, as seen by clients. */
  readonly scheme: 'http' | 'https'
  readonly transportKeys: ReadonlySet<string>

  constructor(config: Config, registry: TransportRegistry, logger: Logger) {
    this.config = config
    const plans = new Map<RouteConfig, RoutePlan>()
    const keys = new Set<string>()
    for (const route of config.routes) {
      const cluster = route.to.length > 0 && (isHttpTarget(route) || isTunnelRoute(route)) ? new Cluster(route, registry, config.dnsLookupFamily, logger) : undefined
      for (const e of cluster?.endpoints ?? []) keys.add(e.transportKey)
      plans.set(route, {
        route,
        headers: buildHeaderPlan(route, config.passIdentityHeaders),
        paths: buildPathPlan(route),
        cluster,
        targetPrefixes: route.to.map(targetPathPrefix),
        upgrades: new Set(route.allowedUpgrades.map((u) => u.toLowerCase())),
        clusterName: route.name ?? `route-${route.id}`,
        pathComparison: compilePathComparison(route.policy),
      })
    }
    this.plans = plans
    const all = [...plans.values()]
    const scheme = (s: string) => all.filter((p) => p.route.from.scheme === s)
    this.table = new RouteTable(all.filter((p) => p.route.from.scheme === 'https' || p.route.from.scheme === 'http'), (plan) => plan.route)
    this.tcpTunnels = new RouteTable(scheme('tcp+https'), (plan) => plan.route)
    this.udpTunnels = new RouteTable(scheme('udp+https'), (plan) => plan.route)
    this.tunnelRoutes = new Map(all.filter((p) => isTunnelRoute(p.route)).map((p) => [p.route.id, p]))
    this.transportKeys = keys
    this.clientCertificates = config.downstreamMtls
    this.accessLog = createAccessLogger(config.accessLogFields, logger, (req) => this.clientCertificateFor(req))
    const mtls = this.clientCertificates
    if (mtls) {
      for (const problem of mtls.errors) logger.error({ problem }, 'downstream_mtls: every client certificate is refused until this is fixed')
      for (const problem of mtls.warnings) logger.warn({ problem }, 'downstream_mtls')
      if (config.insecureServer) logger.warn('downstream_mtls is set but insecure_server is true: clients cannot present certificates over cleartext')
    }
    this.certificates = config.insecureServer ? undefined : buildCertificateSet(config.certificates, mtls)
    this.localHeaders = Object.fromEntries(Object.entries(config.setResponseHeaders).map(([k, v]) => [k.toLowerCase(), v]))
    this.scheme = config.insecureServer ? 'http' : 'https'
    this.cookieName = config.cookie.name
  }

  /**
   * The client certificate for a request's CheckRequest: undefined when this config asks for
   * none; otherwise what the connection's handshake established (connections accepted before
   * `downstream_mtls` was configured count as presenting none).
   */
  clientCertificateFor(req: object): ClientCertificateInfo | undefined {
    return this.clientCertificates ? connectionCertificate(req) : undefined
  }

  start(): void {
    for (const p of this.plans.values()) p.cluster?.start()
  }

  stop(): void {
    for (const p of this.plans.values()) p.cluster?.stop()
  }
}

const FORWARDED_PROTOCOLS = new Set(['http:', 'https:', 'h2c:', 'http+unix:', 'https+unix:'])

export function isTunnelRoute(route: RouteConfig): boolean {
  return route.from.scheme === 'tcp+https' || route.from.scheme === 'udp+https'
}

function isHttpTarget(route: RouteConfig): boolean {
  return route.to.every((t) => FORWARDED_PROTOCOLS.has(t.url.protocol))
}
