/**
 * Sign-in as one unit for the process that runs the proxy: the session store, providers, the
 * authenticate service, the route endpoints and the authorizer, all reading the current config
 * generation. `serve` builds one and hands its authorizer and endpoints to the proxy.
 */
import { jwksResponse, loadSigningKeys } from '../authorize/identity/index.js'
import type { SigningKeys } from '../authorize/identity/index.js'
import { buildAuthorizePlans } from '../authorize/plans.js'
import type { AuthorizePlans, UpstreamHeaderFactory } from '../authorize/plans.js'
import { createUpstreamHeaderFactory } from '../authorize/upstream-headers.js'
import { createPolicyAuthorizer } from '../authorize/policy-authorizer.js'
import type { Authorizer } from '../authorize/types.js'
import type { Config, RouteConfig } from '../config/types.js'
import { startIdentityManager } from '../session/identity-manager.js'
import type { IdentityManager } from '../session/identity-manager.js'
import { MemoryRecordStore } from '../databroker/index.js'
import type { RecordStore } from '../databroker/index.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import { createBackchannelLogout } from './backchannel.js'
import { BearerSessions } from '../session/bearer-sessions.js'
import type { EndpointRequest, EndpointResponse } from './endpoint.js'
import { json } from './endpoint.js'
import type { IdentityProvider } from '../idp/provider.js'
import { ProviderRegistry } from './provider-registry.js'
import type { ProviderFactory } from './provider-registry.js'
import { SessionRefresher } from '../session/refresher.js'
import { isPortcullisPath, RouteEndpoints } from './route-endpoints.js'
import type { PortalSource } from './route-endpoints.js'
import { AuthenticateService } from './service.js'
import type { AuthenticateDeps } from './service.js'
import { SessionCache } from '../session/session-cache.js'
import { SessionStore, sessionTokenKey } from '../session/session-store.js'
import { buildAuthSettings } from '../session/settings.js'
import type { AuthSettings } from '../session/settings.js'

/** What the proxy asks of Portcullis' own endpoints. */
export interface Endpoints {
  claims(host: string, path: string): boolean
  handle(request: EndpointRequest): Promise<EndpointResponse>
  serviceFor(host: string): 'proxy' | 'authenticate'
}

/** Which of Portcullis' own endpoints a process serves (services apart, reference 1.2). */
interface EndpointChoice {
  /** The authenticate host: served here, passed to the authenticate service, or not served. */
  readonly authenticateHost: 'local' | 'none' | ((request: EndpointRequest) => Promise<EndpointResponse>)
  /** `/.pomerium/*` and `/.well-known/pomerium` on route hosts (the proxy's). */
  readonly routeHosts: boolean
}

interface Authentication {
  readonly authorizer: Authorizer
  /** Every endpoint, as an all-in-one process serves them. */
  readonly endpoints: Endpoints
  /** The endpoints of a process that runs only some of the services. */
  endpointsFor(choice: EndpointChoice): Endpoints
  readonly sessions: SessionStore
  /** Token refresh, user info and session expiry in the background, under a lease (one instance acts). */
  readonly identityManager: IdentityManager
  settings(): AuthSettings
  /** The identity provider of an `idp_id` (readiness checks use it to read discovery). */
  providerFor(idpId: string): IdentityProvider | undefined
  applyConfig(config: Config): void
  /** Stops the background work (before the store closes). */
  close(): Promise<void>
}

interface AuthenticationOptions {
  readonly logger: Logger
  readonly secrets: Secrets
  readonly providerFactory: ProviderFactory
  /** Defaults to an in-memory store (single instance). */
  readonly store?: RecordStore
  readonly backchannelLogout?: AuthenticateDeps['backchannelLogout']
  /**
   * Keep a synced local copy of the sessions (for stores in another process or on PostgreSQL, so
   * the request path reads memory). Default false: a local memory store is already memory.
   */
  readonly syncedSessions?: boolean
  /** Client secret for `idp_provider: builtin` without `idp_client_secret`. */
  readonly builtinClientSecret?: string
  /** Identity headers (JWT assertion, claim headers, Kubernetes, Google) per route; default: built from the config. */
  readonly upstreamHeaders?: UpstreamHeaderFactory
}

function routeLookup(config: Config): (host: string) => RouteConfig | undefined {
  const exact = new Map<string, RouteConfig>()
  const wildcard: RouteConfig[] = []
  for (const r of config.routes) {
    if (r.from.host.startsWith('*.')) wildcard.push(r)
    else if (!exact.has(r.from.host)) exact.set(r.from.host, r)
  }
  return (host) => exact.get(host) ?? wildcard.find((r) => host.endsWith(r.from.host.slice(1)))
}

export function createAuthentication(config: Config, options: AuthenticationOptions): Authentication {
  const settingsOptions = options.builtinClientSecret !== undefined ? { builtinClientSecret: options.builtinClientSecret } : {}
  let settings = buildAuthSettings(config, settingsOptions)
  let routeForHost = routeLookup(config)
  const keysFor = (c: Config): SigningKeys =>
    loadSigningKeys(typeof c.raw['signing_key'] === 'string' ? c.raw['signing_key'] : undefined, options.secrets.sharedSecret)
  let keys = keysFor(config)
  let jwks = jwksResponse(keys)
  const headerFactory = options.upstreamHeaders ?? createUpstreamHeaderFactory({ keys: () => keys })
  const plansFor = (c: Config): AuthorizePlans => buildAuthorizePlans(c, { logger: options.logger, headers: headerFactory })
  let plans = plansFor(config)
  const portalFor = (c: Config): PortalSource => ({
    enabled: (c.raw['runtime_flags'] as Readonly<Record<string, unknown>> | undefined)?.['routes_portal'] !== false,
    routes: c.routes,
    policyFor: (route) => plans.forRoute(route).policy,
  })
  let portal = portalFor(config)
  const store = options.store ?? new MemoryRecordStore()
  const cache = options.syncedSessions === true ? new SessionCache(store, options.logger) : undefined
  cache?.start()
  const sessions = new SessionStore(store, { lifetimeMs: settings.sessionLifetimeMs, tokenKey: sessionTokenKey(options.secrets.sharedSecret), ...(cache ? { cache } : {}) })
  const providers = new ProviderRegistry(options.providerFactory)
  const providerFor = (idpId: string): IdentityProvider | undefined => providers.get(settings, idpId)
  // The identity manager is the one refresher (under a lease across instances); see refresher.ts.
  const refresher = new SessionRefresher({ sessions, providerFor, logger: options.logger, refreshOnUse: false })
  const identityManager = startIdentityManager({ store, sessions, providerFor, logger: options.logger.child({ component: 'identity-manager' }) })
  const common = { settings: () => settings, secrets: options.secrets, sessions, refresher, logger: options.logger }
  const backchannelLogout = options.backchannelLogout ?? createBackchannelLogout({ sessions, logger: options.logger })
  const service = new AuthenticateService({ ...common, providers, backchannelLogout })
  const routeEndpoints = new RouteEndpoints({ ...common, routeForHost: (h) => routeForHost(h), jwks: () => jwks, portal: () => portal })
  const notFound = (request: EndpointRequest): Promise<EndpointResponse> => Promise.resolve(json(404, { error: 'not found', request_id: request.requestId }))
  function endpointsFor(choice: EndpointChoice): Endpoints {
    const authnHost = (host: string): boolean => settings.enabled && host === settings.authenticateHost
    return {
      serviceFor: (host) => (authnHost(host) ? 'authenticate' : 'proxy'),
      claims: (host, path) =>
        authnHost(host) ? choice.authenticateHost !== 'none' || (choice.routeHosts && isPortcullisPath(path)) : choice.routeHosts && isPortcullisPath(path),
      handle(request) {
        const onAuthnHost = authnHost(request.host)
        if (onAuthnHost && typeof choice.authenticateHost === 'function') return choice.authenticateHost(request)
        // Discovery and JWKS are the same on every host, the authenticate host included.
        if (request.path.startsWith('/.well-known/pomerium')) return routeEndpoints.handle(request) ?? notFound(request)
        if (onAuthnHost && choice.authenticateHost === 'local') {
          const answer = service.handle(request)
          if (answer) return answer
        }
        return (choice.routeHosts ? routeEndpoints.handle(request) : undefined) ?? notFound(request)
      },
    }
  }
  return {
    authorizer: createPolicyAuthorizer({
      ...common,
      plans: () => plans,
      bearer: new BearerSessions({ sessions, providerFor, logger: options.logger, maxLifetimeMs: () => settings.sessionLifetimeMs }),
    }),
    sessions,
    identityManager,
    settings: () => settings,
    providerFor,
    close: async () => {
      await identityManager.stop()
      await cache?.stop()
    },
    endpoints: endpointsFor({ authenticateHost: 'local', routeHosts: true }),
    endpointsFor,
    applyConfig(next) {
      settings = buildAuthSettings(next, settingsOptions)
      routeForHost = routeLookup(next)
      keys = keysFor(next)
      jwks = jwksResponse(keys)
      plans = plansFor(next)
      portal = portalFor(next)
    },
  }
}
