/**
 * Everything the authorizer derives from one config generation, per route, built once when the
 * config loads: the compiled policy, how to label the route on a denial page, whether decisions
 * are logged, and how to build the upstream identity headers. Requests never parse or compile.
 */
import { compileTemplate, isTemplate } from '../config/header-templates.js'
import type { Session } from '../session/session-store.js'
import type { Config, RouteConfig } from '../config/types.js'
import { compilePolicy, compileRoutePolicy } from '../policy/index.js'
import type { CompiledPolicy, Evaluation, MtlsEnforcement, PolicyError } from '../policy/index.js'
import type { Logger } from '../shared/log.js'
import { createDecisionLog } from './decision-log.js'
import type { IdentitySession } from './identity/index.js'
import type { CheckRequest } from './types.js'
import type { DeviceTypeRules } from '../session/devices.js'

export interface UpstreamHeaders {
  readonly setHeaders?: Readonly<Record<string, string>>
  readonly removeHeaders?: readonly string[]
  readonly setMultiHeaders?: Readonly<Record<string, readonly string[]>>
  readonly removeHeaderPrefixes?: readonly string[]
}

export interface RoutePlan {
  readonly policy: CompiledPolicy
  /** How a person recognises the route: its name, else its `from`. */
  readonly label: string
  readonly showErrorDetails: boolean
  /** The authorize log of this config generation; undefined when info lines are off. */
  readonly logDecision: ((request: CheckRequest, session: Session | undefined, e: Evaluation) => void) | undefined
  /** Public route that sends no identity upstream: no need to find out who is asking. */
  readonly skipsIdentity: boolean
  /**
   * The route forwards the provider's tokens upstream (`${pomerium.id_token}`,
   * `${pomerium.access_token}` in `set_request_headers`): its requests read the whole session
   * record; every other route reads the slim copy (`SessionStore.getForRequest`).
   */
  readonly needsSessionTokens: boolean
  /**
   * A promise only when a credential must be fetched (Google ID token not cached yet). `session`:
   * the assertion's view of the session (`identitySession`), undefined for an anonymous request.
   */
  upstreamHeaders(request: CheckRequest, session: IdentitySession | undefined): UpstreamHeaders | Promise<UpstreamHeaders>
}

export interface AuthorizePlans {
  forRoute(route: RouteConfig): RoutePlan
  /** The configuration's device types, as device rules read them. */
  readonly devices: DeviceTypeRules
}

/** Builds the identity-header function of one route (identity headers, Kubernetes, Google). */
export type UpstreamHeaderFactory = (route: RouteConfig, config: Config) => RoutePlan['upstreamHeaders']

const NO_HEADERS: UpstreamHeaders = {}

/** `downstream_mtls.enforcement` when client certificates are configured. */
export function mtlsEnforcement(config: Pick<Config, 'mtlsEnforcement'>): MtlsEnforcement | undefined {
  return config.mtlsEnforcement
}

/** Compiles every route's policy; the loader reports the same errors with their key paths. */
export function routePolicyErrors(config: Pick<Config, 'routes' | 'mtlsEnforcement' | 'deviceTypes'>): PolicyError[] {
  const errors: PolicyError[] = []
  const mtls = mtlsEnforcement(config)
  const deviceTypes = config.deviceTypes.map((t) => t.id)
  for (const route of config.routes) errors.push(...compileRoutePolicy(route, { path: `routes[${route.index}]`, deviceTypes, ...(mtls ? { mtls } : {}) }).errors)
  return errors
}

/** Whether a route's `set_request_headers` forward the provider's ID or access token upstream. */
function forwardsSessionTokens(route: RouteConfig): boolean {
  return Object.values(route.setRequestHeaders).some((value) => {
    if (!isTemplate(value)) return false
    const compiled = compileTemplate(value)
    return !('error' in compiled) && compiled.variables.some((v) => v.kind === 'id_token' || v.kind === 'access_token')
  })
}

export function buildAuthorizePlans(config: Config, options: { logger: Logger; headers?: UpstreamHeaderFactory }): AuthorizePlans {
  const mtls = mtlsEnforcement(config)
  const logDecision = createDecisionLog(options.logger, config.authorizeLogFields)
  const denyAll = compilePolicy({ allow: { or: [{ reject: true }] } }).policy as CompiledPolicy
  const plans = new Map<RouteConfig, RoutePlan>()
  const deviceTypes = config.deviceTypes.map((t) => t.id)
  for (const route of config.routes) {
    const compiled = compileRoutePolicy(route, { path: `routes[${route.index}]`, deviceTypes, ...(mtls ? { mtls } : {}) })
    const upstreamHeaders = options.headers?.(route, config) ?? (() => NO_HEADERS)
    plans.set(route, {
      // The loader refuses configs whose policies do not compile; deny everything if one slips through.
      policy: compiled.policy ?? denyAll,
      label: route.name ?? route.fromUrl,
      showErrorDetails: route.showErrorDetails,
      logDecision,
      skipsIdentity: route.allowPublicUnauthenticatedAccess && route.passIdentityHeaders !== true && route.policy === undefined && mtls === undefined,
      needsSessionTokens: forwardsSessionTokens(route),
      upstreamHeaders,
    })
  }
  const fallback: RoutePlan = { policy: denyAll, label: '', showErrorDetails: false, logDecision, skipsIdentity: true, needsSessionTokens: false, upstreamHeaders: () => NO_HEADERS }
  const approval = new Set(config.deviceTypes.filter((t) => t.approvalRequired).map((t) => t.id))
  return { forRoute: (route) => plans.get(route) ?? fallback, devices: { approvalRequired: (typeId) => approval.has(typeId) } }
}
