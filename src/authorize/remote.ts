/**
 * The authorize service over the internal API, for a proxy that does not run it (`services:
 * proxy` with `authorize_service_url(s)`), and for anything else that wants decisions (an Envoy
 * ext_authz or forward-auth adapter later).
 *
 * `POST /authorize/v1/check` takes a `CheckRequest` with the route named by its position and id
 * (both sides load the same configuration; a route the authorize service does not know is
 * refused, never guessed) and answers the `CheckResult` as JSON: data only (a denial is a code, the
 * reasons in words and who/where, never a rendered page), so that every front end renders it for
 * its own client. The client fails closed: an
 * authorize service that cannot be reached, refuses our credential or answers something
 * malformed gives a 503 deny, never an allow.
 */
import type { RouteConfig } from '../config/types.js'
import { InternalApiError, InternalTransportError, ServicePool } from '../internal/index.js'
import type { InternalClientTls, InternalRoute } from '../internal/index.js'
import type { Logger } from '../shared/log.js'
import type { Authorizer, CheckRequest, CheckResult, ClientCertificateInfo, Denial, DenialCode } from './types.js'

export const AUTHORIZE_CHECK_PATH = '/authorize/v1/check'

/** A CheckRequest as it travels: the route by position and id instead of the object. */
export interface WireCheckRequest extends Omit<CheckRequest, 'route'> {
  readonly routeIndex: number
  readonly routeId: string
}

export function encodeCheckRequest(request: CheckRequest): WireCheckRequest {
  const { route, ...rest } = request
  return { ...rest, routeIndex: route.index, routeId: route.id }
}

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const isString = (v: unknown): v is string => typeof v === 'string'
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString)
const isStringMap = (v: unknown): v is Record<string, string> => isObject(v) && Object.values(v).every(isString)

function bad(message: string): InternalApiError {
  return new InternalApiError(400, 'ERR_BAD_REQUEST', message)
}

function headersOf(v: unknown): Record<string, string | string[]> {
  if (!isObject(v)) throw bad('headers must be an object')
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(v)) {
    if (isString(value) || isStringList(value)) out[name.toLowerCase()] = value
    else if (value !== undefined && value !== null) throw bad(`header ${name} must be a string or a list of strings`)
  }
  return out
}

function certificateOf(v: unknown): ClientCertificateInfo | undefined {
  if (v === undefined) return undefined
  if (!isObject(v) || typeof v['presented'] !== 'boolean' || typeof v['valid'] !== 'boolean') throw bad('clientCertificate is malformed')
  for (const k of ['fingerprintSha256', 'spkiSha256', 'subject', 'issuer', 'serialNumber', 'leafPem']) {
    if (!isString(v[k])) throw bad(`clientCertificate.${k} must be a string`)
  }
  for (const k of ['sanDns', 'sanEmail', 'sanUri', 'sanIp']) {
    if (!isStringList(v[k])) throw bad(`clientCertificate.${k} must be a list of strings`)
  }
  if (v['problem'] !== undefined && !isString(v['problem'])) throw bad('clientCertificate.problem must be a string')
  return v as unknown as ClientCertificateInfo
}

/** Reads a wire request; the route is resolved by the caller. Anything malformed is refused. */
export function decodeCheckRequest(body: unknown, route: RouteConfig): CheckRequest {
  if (!isObject(body)) throw bad('body must be an object')
  for (const k of ['requestId', 'method', 'host', 'authority', 'path', 'query', 'clientIp']) {
    if (!isString(body[k])) throw bad(`${k} must be a string`)
  }
  if (body['scheme'] !== 'http' && body['scheme'] !== 'https') throw bad('scheme must be http or https')
  const clientCertificate = certificateOf(body['clientCertificate'])
  const tokenHosts = body['tokenHosts']
  if (tokenHosts !== undefined && !isStringList(tokenHosts)) throw bad('tokenHosts must be a list of strings')
  return {
    route,
    requestId: body['requestId'] as string,
    method: body['method'] as string,
    host: body['host'] as string,
    authority: body['authority'] as string,
    path: body['path'] as string,
    query: body['query'] as string,
    headers: headersOf(body['headers']),
    clientIp: body['clientIp'] as string,
    scheme: body['scheme'],
    ...(clientCertificate ? { clientCertificate } : {}),
    ...(tokenHosts !== undefined ? { tokenHosts } : {}),
  }
}

/** The route a wire request names: the one at its position with its id, else the one with its id. */
export function findRoute(routes: readonly RouteConfig[], index: unknown, id: unknown): RouteConfig | undefined {
  if (!isString(id)) return undefined
  const at = typeof index === 'number' ? routes[index] : undefined
  return at?.id === id ? at : routes.find((r) => r.id === id)
}

const UNKNOWN_ROUTE: Denial = {
  allow: false,
  status: 503,
  code: 'unknown-route',
  reason: 'The authorize service does not know this route: the proxy and the authorize service run different configurations.',
}

/** The internal API routes of the authorize service. */
export function authorizeRoutes(deps: { readonly authorizer: Authorizer; readonly routes: () => readonly RouteConfig[] }): Map<string, InternalRoute> {
  return new Map<string, InternalRoute>([
    [
      AUTHORIZE_CHECK_PATH,
      {
        kind: 'unary',
        async handle(body) {
          if (!isObject(body)) throw bad('body must be an object')
          const route = findRoute(deps.routes(), body['routeIndex'], body['routeId'])
          if (!route) return UNKNOWN_ROUTE
          return await deps.authorizer.check(decodeCheckRequest(body, route))
        },
      },
    ],
  ])
}

/** Reads a CheckResult from the wire; undefined when anything is off (the caller fails closed). */
export function decodeCheckResult(v: unknown): CheckResult | undefined {
  if (!isObject(v)) return undefined
  if (v['allow'] === true) {
    const ok =
      (v['setHeaders'] === undefined || isStringMap(v['setHeaders'])) &&
      (v['removeHeaders'] === undefined || isStringList(v['removeHeaders'])) &&
      (v['removeHeaderPrefixes'] === undefined || isStringList(v['removeHeaderPrefixes'])) &&
      (v['routingKey'] === undefined || isString(v['routingKey'])) &&
      (v['user'] === undefined || isString(v['user'])) &&
      (v['setMultiHeaders'] === undefined || (isObject(v['setMultiHeaders']) && Object.values(v['setMultiHeaders']).every(isStringList)))
    return ok ? (v as unknown as CheckResult) : undefined
  }
  if (v['allow'] !== false) return undefined
  return decodeDenial(v)
}

const DENIAL_CODES: ReadonlySet<string> = new Set<DenialCode>([
  'policy-denied',
  'client-certificate',
  'device-denied',
  'device-enrollment',
  'sign-in',
  'unauthenticated',
  'invalid-credential',
  'sign-in-not-configured',
  'robots-txt',
  'upstream-credential',
  'unavailable',
  'unknown-route',
  'denied',
])

/**
 * A denial rebuilt from its known fields only: anything else the answer carries (a rendered body
 * from a build that still sent one) is dropped, never shown to the client.
 */
function decodeDenial(v: Json): Denial | undefined {
  const status = v['status']
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599 || !isString(v['reason'])) return undefined
  if (v['code'] !== undefined && !isString(v['code'])) return undefined
  for (const k of ['location', 'user', 'route', 'details']) if (v[k] !== undefined && !isString(v[k])) return undefined
  for (const k of ['reasons', 'policyReasons']) if (v[k] !== undefined && !isStringList(v[k])) return undefined
  if (v['headers'] !== undefined && !isStringMap(v['headers'])) return undefined
  // A code from a newer authorize service is still a denial: answered from its status and reason.
  const code = isString(v['code']) && DENIAL_CODES.has(v['code']) ? (v['code'] as DenialCode) : 'denied'
  const text = (k: string): string | undefined => (isString(v[k]) ? v[k] : undefined)
  const list = (k: string): string[] | undefined => (isStringList(v[k]) ? v[k] : undefined)
  const [reasons, policyReasons, user, route, details, location] = [list('reasons'), list('policyReasons'), text('user'), text('route'), text('details'), text('location')]
  const headers = isStringMap(v['headers']) ? v['headers'] : undefined
  return {
    allow: false,
    status,
    code,
    reason: v['reason'],
    ...(reasons !== undefined ? { reasons } : {}),
    ...(policyReasons !== undefined ? { policyReasons } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(route !== undefined ? { route } : {}),
    ...(details !== undefined ? { details } : {}),
    ...(location !== undefined ? { location } : {}),
    ...(headers !== undefined ? { headers } : {}),
  }
}

export interface RemoteAuthorizerOptions {
  /** `authorize_internal_service_url`, else `authorize_service_urls`, else `authorize_service_url`. */
  readonly urls: readonly string[]
  readonly sharedSecret: Buffer
  readonly tls?: InternalClientTls | undefined
  readonly logger: Logger
  /** Time limit of one check on one URL (default 5 s). */
  readonly timeoutMs?: number | undefined
}

export interface RemoteAuthorizer extends Authorizer {
  close(): void
}

const UNAVAILABLE: Denial = {
  allow: false,
  status: 503,
  code: 'unavailable',
  reason: 'The authorization service is unavailable. Try again in a moment.',
}

/** An `Authorizer` that asks the authorize service over the internal API, failing over between its URLs. */
export function createRemoteAuthorizer(options: RemoteAuthorizerOptions): RemoteAuthorizer {
  const pool = new ServicePool({ service: 'authorize', urls: options.urls, sharedSecret: options.sharedSecret, tls: options.tls, logger: options.logger })
  const timeoutMs = options.timeoutMs ?? 5_000
  return {
    async check(request) {
      try {
        // A check changes nothing: it can always be asked again elsewhere.
        const answer = decodeCheckResult(await pool.call(AUTHORIZE_CHECK_PATH, encodeCheckRequest(request), timeoutMs, 'always'))
        if (answer) return answer
        options.logger.error({ requestId: request.requestId }, 'the authorize service answered a malformed result: denied')
        return UNAVAILABLE
      } catch (err) {
        if (err instanceof InternalApiError) {
          const hint = err.status === 401 ? ' (is shared_secret the same on every service?)' : ''
          options.logger.error({ requestId: request.requestId, status: err.status, code: err.code }, `the authorize service refused the check${hint}: denied`)
        } else if (!(err instanceof InternalTransportError)) {
          options.logger.error({ requestId: request.requestId, err }, 'authorize check failed: denied')
        }
        return UNAVAILABLE
      }
    },
    close: () => pool.close(),
  }
}
