/**
 * The authenticate service of one process, and the endpoints the proxy serves on route hosts
 * (`/.pomerium/*`, `/.well-known/pomerium`): which of them this process answers depends on the
 * services it runs (Pomerium docs: All-in-one vs split).
 */
import { createBackchannelLogout } from '../authenticate/backchannel.js'
import type { EndpointRequest, EndpointResponse } from '../authenticate/endpoint.js'
import { json } from '../authenticate/endpoint.js'
import { isPortcullisPath, RouteEndpoints } from '../authenticate/route-endpoints.js'
import type { PortalSource } from '../authenticate/route-endpoints.js'
import { AuthenticateService } from '../authenticate/service.js'
import type { AuthenticateDeps } from '../authenticate/service.js'
import type { AuthorizePlans } from '../authorize/plans.js'
import type { Config, RouteConfig } from '../config/types.js'
import { WebAuthnEndpoints } from '../authenticate/webauthn.js'
import { compilePolicy } from '../policy/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import type { Sessions } from './sessions.js'
import type { SigningKeySource } from './signing-keys.js'

/** What the proxy asks of Portcullis' own endpoints. */
export interface Endpoints {
  claims(host: string, path: string): boolean
  handle(request: EndpointRequest): Promise<EndpointResponse>
  serviceFor(host: string): 'proxy' | 'authenticate'
}

/** Which of Portcullis' own endpoints a process serves (services apart, Pomerium docs: All-in-one vs split). */
export interface EndpointChoice {
  /** The authenticate host: served here, passed to the authenticate service, or not served. */
  readonly authenticateHost: 'local' | 'none' | ((request: EndpointRequest) => Promise<EndpointResponse>)
  /** `/.pomerium/*` and `/.well-known/pomerium` on route hosts (the proxy's). */
  readonly routeHosts: boolean
}

export interface AuthenticateOptions {
  readonly sessions: Sessions
  readonly keys: SigningKeySource
  /** The policy plans, for the routes portal (which routes a user may open). */
  readonly plans: () => AuthorizePlans
  readonly secrets: Secrets
  readonly logger: Logger
  readonly backchannelLogout?: AuthenticateDeps['backchannelLogout']
}

export interface AuthenticateEndpoints {
  endpointsFor(choice: EndpointChoice): Endpoints
  applyConfig(config: Config): void
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

/** The device types and the compiled `device_approvers` of a config generation (the loader refused bad ones). */
function deviceSettingsOf(config: Config): { types: Config['deviceTypes']; approvers: CompiledPolicy | undefined } {
  const ppl = config.deviceApprovers
  return { types: config.deviceTypes, approvers: ppl === undefined ? undefined : compilePolicy(ppl, 'device_approvers').policy }
}

export function setupAuthenticate(config: Config, options: AuthenticateOptions): AuthenticateEndpoints {
  const { sessions: s, logger } = options
  let routeForHost = routeLookup(config)
  const portalFor = (c: Config): PortalSource => ({
    enabled: c.runtimeFlags['routes_portal'] !== false,
    routes: c.routes,
    policyFor: (route) => options.plans().forRoute(route).policy,
  })
  let portal = portalFor(config)
  const common = { settings: () => s.settings(), secrets: options.secrets, sessions: s.sessions, refresher: s.refresher, logger }
  const backchannelLogout = options.backchannelLogout ?? createBackchannelLogout({ sessions: s.sessions, logger })
  const service = new AuthenticateService({ ...common, providers: s.providers, backchannelLogout })
  let deviceSettings = deviceSettingsOf(config)
  const webauthn = new WebAuthnEndpoints({
    settings: () => s.settings(),
    secrets: options.secrets,
    sessions: s.sessions,
    devices: s.devices,
    deviceTypes: () => deviceSettings.types,
    approvers: () => deviceSettings.approvers,
    logger,
    directory: s.directory,
  })
  const routeEndpoints = new RouteEndpoints({ ...common, routeForHost: (h) => routeForHost(h), jwks: () => options.keys.jwks(), portal: () => portal, webauthn, directory: s.directory })
  const notFound = (request: EndpointRequest): Promise<EndpointResponse> => Promise.resolve(json(404, { error: 'not found', request_id: request.requestId }))
  return {
    endpointsFor(choice) {
      const authnHost = (host: string): boolean => s.settings().enabled && host === s.settings().authenticateHost
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
    },
    applyConfig(next) {
      routeForHost = routeLookup(next)
      portal = portalFor(next)
      deviceSettings = deviceSettingsOf(next)
    },
  }
}
