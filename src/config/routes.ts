/**
 * Route validation and normalisation (reference §3). Each route is first checked against the
 * descriptor table, then the cross-field rules run; every problem is reported, and a route
 * with errors is left out (the whole load fails anyway).
 */
import { Pattern } from '../shared/pattern.js'
import { createHash } from 'node:crypto'
import type {
  CircuitBreakers,
  DirectResponse,
  HealthCheckConfig,
  LoadBalancingPolicy,
  RedirectConfig,
  RewriteResponseHeader,
  RouteConfig,
  RouteFrom,
  TcpHealthCheck,
  UpstreamTarget,
} from './types.js'
import { HEALTH_CHECK_SETTINGS, REMOVED_ROUTE_KEYS, ROUTE_SETTINGS } from './schema.js'
import { isRecord } from './coerce.js'
import { indexPath, joinPath } from './issues.js'
import { isHeaderName, readHeaderMap, routeResponseHeaders } from './headers.js'
import { normaliseObject } from './normalise.js'
import type { LoadContext } from './normalise.js'
import { certificateError, keyPairError } from './tls.js'
import { readRouteServiceSettings } from './service-settings.js'
import type { RouteServiceDefaults } from './service-settings.js'

/** Global values that routes inherit. */
export interface RouteDefaults {
  readonly defaultUpstreamTimeoutMs: number
  readonly setResponseHeaders: Readonly<Record<string, string>>
  readonly allowUpgrades: readonly string[]
  readonly passIdentityHeaders: boolean
  /** Global `circuit_breaker_thresholds`, over Envoy's defaults. */
  readonly circuitBreakers: CircuitBreakers
  /** Global `bearer_token_format` and `idp_access_token_allowed_audiences`. */
  readonly services: RouteServiceDefaults
}

/** Envoy's circuit-breaker defaults (max_connections, max_pending_requests, max_requests: 1024). */
export const DEFAULT_CIRCUIT_BREAKERS: CircuitBreakers = { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024 }

/**
 * `circuit_breaker_thresholds` of a route or of the global config, each field over `base`.
 * `max_retries` and `max_connection_pools` are accepted only: Portcullis never retries and keeps
 * one pool per upstream.
 */
export function circuitBreakersOf(raw: Readonly<Record<string, unknown>>, base: CircuitBreakers): CircuitBreakers {
  const value = raw['circuit_breaker_thresholds']
  if (!isRecord(value)) return base
  const field = (name: string, fallback: number): number => {
    const n = value[name]
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : fallback
  }
  return {
    // No connection at all would leave every request waiting: one is always allowed.
    maxConnections: Math.max(1, field('max_connections', base.maxConnections)),
    maxPendingRequests: field('max_pending_requests', base.maxPendingRequests),
    maxRequests: field('max_requests', base.maxRequests),
  }
}

const FROM_SCHEMES = ['https', 'http', 'tcp+https', 'udp+https', 'ssh']
const FORWARDED_TO_SCHEMES = ['http', 'https', 'h2c', 'http+unix', 'https+unix']
const OTHER_TO_SCHEMES = ['tcp', 'udp', 'ssh']
const REDIRECT_CODES = [301, 302, 303, 307, 308]
const FROM_EXPECTED =
  'expected an https:// URL with a host and no path (schemes: https, http, tcp+https, udp+https, ssh)'

/** Parses a route `from` URL without WHATWG URL, which would hide explicit default ports. */
export function parseFrom(text: string): (RouteFrom & { url: string }) | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(\/?)$/.exec(text.trim())
  if (!m) return undefined
  const scheme = (m[1] ?? '').toLowerCase()
  const authority = m[2] ?? ''
  if (!FROM_SCHEMES.includes(scheme) || authority.includes('@')) return undefined
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(authority)
  if (!hp) return undefined
  let host = (hp[1] ?? '').toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host === '' || (!host.startsWith('[') && !/^[a-z0-9*_-]+(\.[a-z0-9*_-]+)*$/.test(host))) {
    return undefined
  }
  const port = hp[2] === undefined ? undefined : Number(hp[2])
  if (port !== undefined && (port < 1 || port > 65535)) return undefined
  return { scheme, host, port, url: `${scheme}://${host}${port === undefined ? '' : `:${port}`}` }
}

/**
 * TCP and UDP tunnel routes (Pomerium docs: TCP support, UDP support): the port in `from` tells
 * routes apart (clients ask for `host:port`), `to` is `tcp://` / `udp://` with a port, or for TCP
 * an `http(s)://` proxy that receives a CONNECT of its own; there is no path to match.
 */
function checkTunnelRoute(from: RouteFrom, raw: Record<string, unknown>, to: readonly UpstreamTarget[], path: string, ctx: LoadContext): void {
  const kind = from.scheme === 'tcp+https' ? 'tcp' : 'udp'
  if (from.port === undefined) {
    ctx.issues.error(joinPath(path, 'from'), raw['from'], `expected ${from.scheme}://host:port: a ${kind} route names the port clients ask for`)
  }
  if (from.host.includes('*')) ctx.issues.error(joinPath(path, 'from'), raw['from'], `${kind} routes take an exact host, not a wildcard`)
  for (const key of ['prefix', 'path', 'regex', 'redirect', 'response']) {
    if (raw[key] !== undefined) ctx.issues.error(joinPath(path, key), raw[key], `not allowed on a ${kind} route (it has no paths and always needs a to)`, 'key')
  }
  to.forEach((t, i) => {
    const scheme = t.url.protocol.slice(0, -1)
    const ok = kind === 'udp' ? scheme === 'udp' : scheme === 'tcp' || scheme === 'http' || scheme === 'https'
    if (!ok) {
      const expected = kind === 'udp' ? 'a udp://host:port upstream' : 'a tcp://host:port upstream, or an http(s):// proxy to send a CONNECT to'
      ctx.issues.error(to.length === 1 && !Array.isArray(raw['to']) ? joinPath(path, 'to') : indexPath(joinPath(path, 'to'), i), t.url.href, `expected ${expected}`)
    }
  })
}

/**
 * Envoy's `tcp_health_check` (Pomerium docs: Health Checks): connect, optionally send
 * `send.text` (hex) and expect every `receive[].text` (hex) in the answer; with neither, a
 * connection that opens is healthy.
 */
function buildTcpHealthCheck(value: unknown, path: string, ctx: LoadContext): TcpHealthCheck | undefined {
  if (value === null) return { send: undefined, receive: [] }
  if (!isRecord(value)) {
    ctx.issues.error(path, value, 'expected a mapping {send: {text: HEX}, receive: [{text: HEX}]} (both optional)')
    return undefined
  }
  const hex = (v: unknown, at: string): Buffer | undefined => {
    const text = isRecord(v) ? v['text'] : undefined
    if (typeof text !== 'string' || !/^(?:[0-9a-fA-F]{2})+$/.test(text)) {
      ctx.issues.error(at, v, 'expected {text: HEX} with an even number of hex digits')
      return undefined
    }
    return Buffer.from(text, 'hex')
  }
  const send = value['send'] === undefined ? undefined : hex(value['send'], joinPath(path, 'send'))
  const receiveRaw = value['receive'] ?? []
  const list = Array.isArray(receiveRaw) ? receiveRaw : [receiveRaw]
  const receive = list.map((r, i) => hex(r, indexPath(joinPath(path, 'receive'), i))).filter((b): b is Buffer => b !== undefined)
  return { send, receive }
}

/** Compiles a route regex with RE2 semantics, as Pomerium/Envoy apply it; a string is the error. */
export function compileRegex(source: string, anchored: boolean): Pattern | string {
  return Pattern.compile(source, anchored)
}

function upstreamFamily(scheme: string): string {
  if (scheme === 'tcp' || scheme === 'udp' || scheme === 'ssh') return scheme
  if (scheme.endsWith('+unix')) return 'unix'
  return 'http'
}

function parseTo(value: unknown, path: string, ctx: LoadContext): UpstreamTarget[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0) {
    ctx.issues.error(path, value, 'expected an upstream URL or a non-empty list of URLs')
    return []
  }
  const targets: UpstreamTarget[] = []
  const families = new Set<string>()
  let weighted = 0
  list.forEach((entry, i) => {
    const p = typeof value === 'string' ? path : indexPath(path, i)
    if (typeof entry !== 'string') {
      ctx.issues.error(p, entry, 'expected an upstream URL string')
      return
    }
    let text = entry.trim()
    let weight = 1
    const withWeight = /^(.*),\s*([^,]*)$/.exec(text)
    if (withWeight) {
      weighted++
      text = (withWeight[1] ?? '').trim()
      weight = /^\d+$/.test(withWeight[2] ?? '') ? Number(withWeight[2]) : 0
      if (weight < 1) {
        ctx.issues.error(p, entry, 'expected "url,weight" with a positive integer weight')
        return
      }
    }
    if (!URL.canParse(text)) {
      ctx.issues.error(p, entry, 'expected an http://, https:// or h2c:// upstream URL')
      return
    }
    const url = new URL(text)
    if (url.protocol.endsWith('+unix:') && (url.host !== '' || url.pathname === '' || url.pathname === '/')) {
      ctx.issues.error(p, entry, 'expected a unix socket upstream as http+unix:///path/to/socket')
      return
    }
    const scheme = url.protocol.slice(0, -1).toLowerCase()
    if (!FORWARDED_TO_SCHEMES.includes(scheme) && !OTHER_TO_SCHEMES.includes(scheme)) {
      ctx.issues.error(p, entry, 'expected an http://, https:// or h2c:// upstream URL')
      return
    }
    if (url.host === '' && !scheme.endsWith('+unix')) {
      ctx.issues.error(p, entry, 'expected an upstream URL with a host')
      return
    }
    if (scheme === 'ssh') {
      ctx.issues.warning(p, entry, 'ssh:// upstreams are not supported yet (native SSH routes)')
    }
    if ((scheme === 'tcp' || scheme === 'udp') && url.port === '') {
      ctx.issues.error(p, entry, `expected a ${scheme}://host:port upstream with a port`)
      return
    }
    families.add(upstreamFamily(scheme))
    targets.push({ url, weight })
  })
  // As Pomerium: weights are all-or-none, since an unweighted entry's share would be a guess.
  if (targets.length === list.length && weighted > 0 && weighted < list.length) {
    ctx.issues.error(path, value, 'either every upstream URL has a weight ("url,weight") or none has')
  }
  if (families.size > 1) {
    ctx.issues.error(path, value, `cannot mix upstream kinds (${[...families].join(', ')}): tcp, udp, unix and http upstreams must not share a route`)
  }
  return targets
}

function buildRedirect(raw: Record<string, unknown>, path: string, ctx: LoadContext): RedirectConfig {
  const code = (raw['response_code'] as number | undefined) ?? 301
  if (!REDIRECT_CODES.includes(code)) {
    ctx.issues.error(joinPath(path, 'response_code'), code, `expected one of ${REDIRECT_CODES.join(', ')}`)
  }
  const port = raw['port_redirect'] as number | undefined
  if (port !== undefined && (port < 1 || port > 65535)) {
    ctx.issues.error(joinPath(path, 'port_redirect'), port, 'expected a port between 1 and 65535')
  }
  return {
    httpsRedirect: raw['https_redirect'] as boolean | undefined,
    schemeRedirect: raw['scheme_redirect'] as string | undefined,
    hostRedirect: raw['host_redirect'] as string | undefined,
    portRedirect: port,
    pathRedirect: raw['path_redirect'] as string | undefined,
    prefixRewrite: raw['prefix_rewrite'] as string | undefined,
    responseCode: code,
    stripQuery: (raw['strip_query'] as boolean | undefined) ?? false,
  }
}

function buildResponse(raw: Record<string, unknown>, path: string, ctx: LoadContext): DirectResponse {
  const status = raw['status'] as number | undefined
  if (status === undefined || status < 200 || status > 599) {
    ctx.issues.error(joinPath(path, 'status'), status, 'expected a status code between 200 and 599')
  }
  return { status: status ?? 200, body: (raw['body'] as string | undefined) ?? '' }
}

function buildHealthChecks(value: unknown, path: string, ctx: LoadContext): HealthCheckConfig[] {
  if (!Array.isArray(value)) return []
  const checks: HealthCheckConfig[] = []
  value.forEach((entry, i) => {
    const p = indexPath(path, i)
    const hc = normaliseObject(entry as Record<string, unknown>, HEALTH_CHECK_SETTINGS, p, ctx, { applyDefaults: true })
    if (hc['grpc_health_check'] !== undefined) {
      ctx.issues.warning(joinPath(p, 'grpc_health_check'), undefined, 'grpc_health_check is not supported yet; this health check is ignored', 'key')
    }
    const httpRaw = hc['http_health_check']
    if (httpRaw === undefined && hc['tcp_health_check'] === undefined && hc['grpc_health_check'] === undefined) {
      ctx.issues.error(p, undefined, 'expected one of http_health_check, tcp_health_check or grpc_health_check')
      return
    }
    let http: HealthCheckConfig['http']
    if (isRecord(httpRaw)) {
      const statuses: (readonly [number, number])[] = []
      const list = httpRaw['expected_statuses']
      ;(Array.isArray(list) ? list : []).forEach((range, j) => {
        const rp = indexPath(joinPath(joinPath(p, 'http_health_check'), 'expected_statuses'), j)
        const start = (range as Record<string, unknown>)['start']
        const end = (range as Record<string, unknown>)['end']
        if (
          typeof start !== 'number' ||
          typeof end !== 'number' ||
          !Number.isInteger(start) ||
          !Number.isInteger(end) ||
          start < 100 ||
          end > 600 ||
          start >= end
        ) {
          ctx.issues.error(rp, range, 'expected {start, end} with 100 <= start < end <= 600 (end is exclusive)')
          return
        }
        statuses.push([start, end])
      })
      http = {
        host: httpRaw['host'] as string | undefined,
        path: (httpRaw['path'] as string | undefined) ?? '/',
        expectedStatuses: statuses.length > 0 ? statuses : [[200, 201]],
      }
    }
    const tcp = hc['tcp_health_check'] === undefined ? undefined : buildTcpHealthCheck(hc['tcp_health_check'], joinPath(p, 'tcp_health_check'), ctx)
    checks.push({
      tcp,
      timeoutMs: hc['timeout'] as number,
      intervalMs: hc['interval'] as number,
      unhealthyThreshold: hc['unhealthy_threshold'] as number,
      healthyThreshold: hc['healthy_threshold'] as number,
      http,
    })
  })
  return checks
}

function buildRewriteResponseHeaders(value: unknown, path: string, ctx: LoadContext): RewriteResponseHeader[] {
  if (!Array.isArray(value)) return []
  const out: RewriteResponseHeader[] = []
  value.forEach((entry, i) => {
    const r = entry as Record<string, unknown>
    const { header, prefix = '', value: replacement = '' } = r
    if (typeof header !== 'string' || !isHeaderName(header) || typeof prefix !== 'string' || typeof replacement !== 'string') {
      ctx.issues.error(indexPath(path, i), entry, 'expected {header, prefix, value} strings with a valid header name')
      return
    }
    out.push({ header, prefix, value: replacement })
  })
  return out
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? (value as string[]) : []
}

/** The stable route id: a hash of what identifies the route, as Pomerium's route id does. */
export function routeId(parts: {
  from: string
  prefix: string | undefined
  path: string | undefined
  regex: string | undefined
  destination: unknown
}): string {
  const text = JSON.stringify([parts.from, parts.prefix ?? '', parts.path ?? '', parts.regex ?? '', parts.destination])
  return createHash('sha256').update(text).digest('hex').slice(0, 16)
}

/** Validates and builds one route; undefined when it has errors. */
/** A valid route, and its keys as written (normalised) for the loader's own checks. */
export interface BuiltRoute {
  readonly route: RouteConfig
  readonly raw: Readonly<Record<string, unknown>>
}

export function buildRoute(
  input: unknown,
  index: number,
  path: string,
  ctx: LoadContext,
  defaults: RouteDefaults,
): BuiltRoute | undefined {
  if (!isRecord(input)) {
    ctx.issues.error(path, input, 'expected a route mapping with from and to')
    return undefined
  }
  const errorsBefore = ctx.issues.issues.filter((i) => i.severity === 'error').length
  const raw = normaliseObject(input, ROUTE_SETTINGS, path, ctx, { removed: REMOVED_ROUTE_KEYS, applyDefaults: false })
  const at = (key: string): string => joinPath(path, key)
  const bool = (key: string): boolean => raw[key] === true

  // Matching.
  let from: ReturnType<typeof parseFrom>
  if (raw['from'] === undefined) {
    ctx.issues.error(at('from'), undefined, 'required: the external URL of the route')
  } else {
    from = parseFrom(raw['from'] as string)
    if (!from) ctx.issues.error(at('from'), raw['from'], FROM_EXPECTED)
  }
  for (const key of ['prefix', 'path']) {
    const v = raw[key]
    if (typeof v === 'string' && !v.startsWith('/')) ctx.issues.error(at(key), v, 'expected a path starting with /')
  }
  let regexCompiled: Pattern | undefined
  if (typeof raw['regex'] === 'string') {
    const r = compileRegex(raw['regex'], true)
    if (typeof r === 'string') ctx.issues.error(at('regex'), raw['regex'], r)
    else regexCompiled = r
  }

  // Destination: exactly one of to / redirect / response.
  const destinations = ['to', 'redirect', 'response'].filter((k) => raw[k] !== undefined)
  if (destinations.length === 0) {
    ctx.issues.error(path, undefined, 'a route needs one of to, redirect or response')
  } else if (destinations.length > 1) {
    ctx.issues.error(at(destinations[1] ?? ''), undefined, `to, redirect and response are mutually exclusive (found ${destinations.join(', ')})`, 'key')
  }
  const to = raw['to'] === undefined ? [] : parseTo(raw['to'], at('to'), ctx)
  if (from && (from.scheme === 'tcp+https' || from.scheme === 'udp+https')) checkTunnelRoute(from, raw, to, path, ctx)
  else if (from && (from.scheme === 'https' || from.scheme === 'http') && to.some((t) => t.url.protocol === 'tcp:' || t.url.protocol === 'udp:')) {
    ctx.issues.error(at('to'), raw['to'], `tcp:// and udp:// upstreams need a tcp+https:// or udp+https:// from (a tunnel route), not ${from.scheme}://`)
  }
  const redirect = isRecord(raw['redirect']) ? buildRedirect(raw['redirect'], at('redirect'), ctx) : undefined
  const response = isRecord(raw['response']) ? buildResponse(raw['response'], at('response'), ctx) : undefined
  const healthChecks = buildHealthChecks(raw['health_checks'], at('health_checks'), ctx)

  // Rewriting.
  if (raw['prefix_rewrite'] !== undefined && raw['regex_rewrite_pattern'] !== undefined) {
    ctx.issues.error(at('regex_rewrite_pattern'), raw['regex_rewrite_pattern'], 'prefix_rewrite and regex_rewrite_pattern are mutually exclusive')
  }
  const optionalRegex = (key: string): Pattern | undefined => {
    const v = raw[key]
    if (typeof v !== 'string') return undefined
    const r = compileRegex(v, false)
    if (typeof r === 'string') {
      ctx.issues.error(at(key), v, r)
      return undefined
    }
    return r
  }
  const regexRewritePattern = optionalRegex('regex_rewrite_pattern')
  const hostPathRegexRewritePattern = optionalRegex('host_path_regex_rewrite_pattern')

  // Headers.
  const setRequest = readHeaderMap(raw['set_request_headers'], at('set_request_headers'), ctx.issues, false)
  for (const name of Object.keys(setRequest.headers)) {
    if (name.toLowerCase() === 'host') {
      ctx.issues.error(joinPath(at('set_request_headers'), name), name, 'cannot set Host; use host_rewrite', 'key')
      delete setRequest.headers[name]
    }
  }
  const setResponse = readHeaderMap(raw['set_response_headers'], at('set_response_headers'), ctx.issues, true)
  const removeRequestHeaders = stringList(raw['remove_request_headers'])
  removeRequestHeaders.forEach((name, i) => {
    if (!isHeaderName(name)) ctx.issues.error(indexPath(at('remove_request_headers'), i), name, 'expected a header name')
  })

  // Timeouts and upgrades.
  const allowWebsockets = bool('allow_websockets')
  const allowSpdy = bool('allow_spdy')
  const streaming =
    allowWebsockets ||
    allowSpdy ||
    raw['kubernetes_service_account_token'] !== undefined ||
    (from !== undefined && from.scheme !== 'https' && from.scheme !== 'http') ||
    (isRecord(raw['mcp']) && raw['mcp']['server'] !== undefined)
  const upgrades = stringList(raw['allow_upgrades'] ?? defaults.allowUpgrades).map((u) => u.toLowerCase())
  if (allowWebsockets) upgrades.push('websocket')
  if (allowSpdy) upgrades.push('spdy/3.1')
  // kubectl exec / port-forward / attach upgrade to SPDY or WebSocket; Pomerium enables both on Kubernetes routes.
  if (raw['kubernetes_service_account_token'] !== undefined) upgrades.push('websocket', 'spdy/3.1')

  // Upstream TLS.
  const serverName = (raw['tls_upstream_server_name'] ?? raw['tls_server_name']) as string | undefined
  if (raw['tls_server_name'] !== undefined) {
    ctx.issues.warning(at('tls_server_name'), undefined, 'deprecated: use tls_upstream_server_name', 'key')
  }
  const clientCert = raw['tls_client_cert'] as string | undefined
  const clientKey = raw['tls_client_key'] as string | undefined
  if ((clientCert === undefined) !== (clientKey === undefined)) {
    const missing = clientCert === undefined ? 'tls_client_cert' : 'tls_client_key'
    ctx.issues.error(at(missing), undefined, 'tls_client_cert and tls_client_key must be set together')
  } else if (clientCert !== undefined && clientKey !== undefined) {
    const err = keyPairError(clientCert, clientKey)
    if (err.cert) ctx.issues.error(at('tls_client_cert'), undefined, err.cert)
    if (err.key) ctx.issues.error(at('tls_client_key'), undefined, err.key)
  }
  const customCa = raw['tls_custom_ca'] as string | undefined
  if (customCa !== undefined) {
    const err = certificateError(customCa)
    if (err) ctx.issues.error(at(raw['tls_custom_ca_file'] ? 'tls_custom_ca_file' : 'tls_custom_ca'), undefined, err)
  }

  // Access control (reference §3.7).
  const allowedUsers = stringList(raw['allowed_users'])
  const allowedDomains = stringList(raw['allowed_domains'])
  if (bool('allow_public_unauthenticated_access') && (bool('allow_any_authenticated_user') || allowedUsers.length > 0 || allowedDomains.length > 0)) {
    ctx.issues.error(at('allow_public_unauthenticated_access'), true, 'cannot be combined with allow_any_authenticated_user, allowed_users or allowed_domains')
  }
  if (bool('allow_any_authenticated_user') && (allowedUsers.length > 0 || allowedDomains.length > 0)) {
    ctx.issues.error(at('allow_any_authenticated_user'), true, 'cannot be combined with allowed_users or allowed_domains')
  }
  const allowedIdpClaims: Record<string, unknown[]> = {}
  for (const [claim, values] of Object.entries((raw['allowed_idp_claims'] as Record<string, unknown> | undefined) ?? {})) {
    allowedIdpClaims[claim] = Array.isArray(values) ? values : [values]
  }
  if (stringList(raw['depends_on']).length > 5) {
    ctx.issues.error(at('depends_on'), raw['depends_on'], 'expected at most 5 hosts')
  }

  const rewriteResponseHeaders = buildRewriteResponseHeaders(raw['rewrite_response_headers'], at('rewrite_response_headers'), ctx)

  const errorsAfter = ctx.issues.issues.filter((i) => i.severity === 'error').length
  if (errorsAfter > errorsBefore || !from) return undefined

  const prefix = raw['prefix'] as string | undefined
  const exactPath = raw['path'] as string | undefined
  const regex = raw['regex'] as string | undefined
  const destination = raw['to'] ?? raw['redirect'] ?? raw['response']
  const services = readRouteServiceSettings(raw, path, ctx, defaults.services)
  const route: RouteConfig = {
    index,
    id: routeId({ from: from.url, prefix, path: exactPath, regex, destination }),
    name: raw['name'] as string | undefined,
    description: raw['description'] as string | undefined,
    logoUrl: raw['logo_url'] as string | undefined,
    from: { scheme: from.scheme, host: from.host, port: from.port },
    fromUrl: from.url,
    prefix,
    path: exactPath,
    regex,
    regexCompiled,
    to,
    redirect,
    response,
    loadBalancingPolicy: ((raw['load_balancing_policy'] as string | undefined) ?? 'ROUND_ROBIN') as LoadBalancingPolicy,
    healthChecks,
    prefixRewrite: raw['prefix_rewrite'] as string | undefined,
    regexRewritePattern,
    regexRewriteSubstitution: raw['regex_rewrite_substitution'] as string | undefined,
    preserveHostHeader: bool('preserve_host_header'),
    hostRewrite: raw['host_rewrite'] as string | undefined,
    hostRewriteHeader: raw['host_rewrite_header'] as string | undefined,
    hostPathRegexRewritePattern,
    hostPathRegexRewriteSubstitution: raw['host_path_regex_rewrite_substitution'] as string | undefined,
    setRequestHeaders: setRequest.headers,
    removeRequestHeaders,
    setResponseHeaders: routeResponseHeaders(defaults.setResponseHeaders, setResponse),
    rewriteResponseHeaders,
    timeoutMs: (raw['timeout'] as number | undefined) ?? (streaming ? 0 : defaults.defaultUpstreamTimeoutMs),
    idleTimeoutMs: (raw['idle_timeout'] as number | undefined) ?? 0,
    allowWebsockets,
    allowSpdy,
    allowedUpgrades: [...new Set(upgrades)],
    allowAmbiguousPaths: bool('allow_ambiguous_paths'),
    tls: {
      skipVerify: bool('tls_skip_verify'),
      serverName,
      customCa,
      clientCert,
      clientKey,
    },
    circuitBreakers: circuitBreakersOf(raw, defaults.circuitBreakers),
    allowPublicUnauthenticatedAccess: bool('allow_public_unauthenticated_access'),
    allowAnyAuthenticatedUser: bool('allow_any_authenticated_user'),
    corsAllowPreflight: bool('cors_allow_preflight'),
    allowedUsers,
    allowedDomains,
    allowedIdpClaims,
    policy: raw['policy'],
    passIdentityHeaders: (raw['pass_identity_headers'] as boolean | undefined) ?? defaults.passIdentityHeaders,
    ...services,
  }
  return { route, raw }
}
