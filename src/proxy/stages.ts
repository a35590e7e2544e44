/**
 * The stages of the proxy pipeline (docs/proxy.md, "The request pipeline") that do not write to
 * the client: `prepare` (hygiene, Portcullis' own paths, routing), the authorize service's
 * `CheckRequest`, and `upstreamRequest` (the headers stage: endpoint, path, Host and headers for
 * the upstream). Plain requests and upgrades run the same functions, so both apply the same rules.
 */
import { isIP } from 'node:net'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { CheckRequest, CheckResult } from '../authorize/types.js'
import type { AnyRequest } from './forward.js'
import { kClientAddress, kLocalAddress } from './front.js'
import { buildUpstreamHeaders } from './headers.js'
import { normaliseRemote, parseAuthority, screenHeaders, trustedClientIp } from './request-checks.js'
import { normaliseTarget, parameterAmbiguity, pathAmbiguity } from './request-target.js'
import { upstreamHost, upstreamPath } from './rewrite.js'
import type { ProxyState, RoutePlan } from './state.js'
import type { Endpoint } from './upstreams.js'

/** The `Allow` header of the 405 for TRACE: every method the proxy forwards (routes may narrow it). */
const ALLOWED_EXCEPT_TRACE = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/** An answer the proxy gives without asking anyone (hygiene, health, no route). */
export interface LocalReply {
  readonly kind: 'reply'
  readonly status: number
  readonly message: string
  readonly location?: string
  /** Whether the access log records it (health checks are not logged). */
  readonly log: boolean
  /** A plain-text body instead of the error page. */
  readonly text?: string
  readonly allow?: string
}

/** A request for Portcullis' own endpoints (authenticate host, `/.pomerium/*`). */
export interface EndpointTarget {
  readonly kind: 'endpoint'
  readonly host: string
  readonly authority: string
  readonly path: string
  readonly query: string
  readonly clientIp: string
}

/** A request for a configured route. */
export interface RoutedRequest {
  readonly kind: 'route'
  readonly plan: RoutePlan
  readonly host: string
  readonly authority: string
  readonly path: string
  readonly query: string
  readonly clientIp: string
  /** The connection's peer (or PROXY protocol) address, before `xff_num_trusted_hops`. */
  readonly remote: string
}

/** What the request head resolved to before authorisation. */
export type Prepared = LocalReply | EndpointTarget | RoutedRequest

/** What the upstream receives for an allowed request: chosen by the headers stage. */
export interface UpstreamRequest {
  readonly endpoint: Endpoint
  /** Host (or :authority) for the upstream. */
  readonly host: string
  /** Path and query for the upstream. */
  readonly path: string
  /** Flat `[name, value, ...]` list. */
  readonly headers: string[]
}

/** Stage 1, prepare: hygiene, health checks, Portcullis' own paths and routing; everything before authorisation. */
export function prepare(req: AnyRequest, state: ProxyState, claims: ((host: string, path: string) => boolean) | undefined): Prepared {
  const config = state.config
  // Node's parser takes a request line without a version as HTTP/0.9 (and still reads headers);
  // Envoy refuses it, and so do we.
  if (!('stream' in req) && req.httpVersionMajor !== 1) return { kind: 'reply', status: 400, message: 'Bad request: the HTTP version is not supported.', log: true }
  const screened = screenHeaders(req.rawHeaders, config.headersWithUnderscoresAction)
  if (screened) return { kind: 'reply', status: 400, message: `Bad request: ${screened}.`, log: true }
  const rawAuthority = authorityOf(req)
  if ('stream' in req && req.headers.host !== undefined && req.headers[':authority'] !== undefined && req.headers.host !== req.headers[':authority']) {
    // RFC 9113 8.3.1: the two must agree; a mismatch is how routing and policy get confused.
    return { kind: 'reply', status: 400, message: 'Bad request: :authority and Host differ.', log: true }
  }
  const auth = parseAuthority(rawAuthority)
  if (!auth) return { kind: 'reply', status: 400, message: 'Bad request: the Host header is missing or malformed.', log: true }
  const target = normaliseTarget(req.url ?? '', {
    normalizePath: config.normalizePath,
    mergeSlashes: config.mergeSlashes,
    escapedSlashes: config.pathWithEscapedSlashesAction,
  })
  if (target.kind === 'bad') return { kind: 'reply', status: 400, message: `Bad request: ${target.reason}.`, log: true }
  if (target.kind === 'redirect') return { kind: 'reply', status: 307, message: 'Redirecting to the unescaped path.', location: target.location, log: true }
  const path = target.path
  // TRACE echoes the request, credentials included, back to whoever can read the answer (a
  // cross-site tracing aid); Envoy refuses it, and so do we, without asking any upstream.
  // A 405 names the methods that are allowed (RFC 9110, 15.5.6).
  if (req.method === 'TRACE') return { kind: 'reply', status: 405, message: 'Method not allowed: TRACE is not accepted.', log: true, allow: ALLOWED_EXCEPT_TRACE }
  if (path === '/ping' || path === '/healthz') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { kind: 'reply', status: 405, message: 'Method not allowed.', log: false, allow: 'GET, HEAD' }
    return { kind: 'reply', status: 200, message: 'OK', text: 'OK\n', log: false }
  }
  if (claims?.(auth.host, path)) {
    const clientIp = trustedClientIp(clientAddressOf(req), req.headers['x-forwarded-for'], config.xffNumTrustedHops)
    return { kind: 'endpoint', host: auth.host, authority: rawAuthority as string, path, query: target.query, clientIp }
  }
  if (isInternalPath(path)) {
    // Reserved for Portcullis' own endpoints on every host; never forwarded upstream.
    return { kind: 'reply', status: 404, message: 'This Portcullis endpoint is not available.', log: true }
  }
  const port = auth.port ?? (state.scheme === 'https' ? 443 : 80)
  // One lookup finds the route and everything the proxy derived from it.
  const plan = state.table.match(auth.host, port, path)
  if (!plan) return { kind: 'reply', status: 404, message: `No route is configured for ${auth.host}${path}.`, log: true }
  // Only the matched route knows whether its upstream needs such paths; the answer still comes
  // before authorisation, so a policy never judges a path the upstream would read differently.
  // `/admin;x/secret` is `/admin/secret` to Tomcat: refused when that would be another route
  // (a protected prefix walked around) or another decision (an http_path rule walked around).
  const ambiguity = plan.route.allowAmbiguousPaths
    ? undefined
    : (pathAmbiguity(path) ??
      parameterAmbiguity(path, (stripped) => state.table.match(auth.host, port, stripped) === plan && plan.pathComparison?.(path, stripped) !== true))
  if (ambiguity) return { kind: 'reply', status: 400, message: `Bad request: the path contains ${ambiguity}.`, log: true }
  const remote = clientAddressOf(req)
  const clientIp = trustedClientIp(remote, req.headers['x-forwarded-for'], config.xffNumTrustedHops)
  return { kind: 'route', plan, host: auth.host, authority: rawAuthority as string, path, query: target.query, clientIp, remote }
}

/** Stage 2's question to the authorize service (src/authorize/types.ts). */
export function checkRequest(req: AnyRequest, p: RoutedRequest, requestId: string, state: ProxyState, tokenHosts?: readonly string[]): CheckRequest {
  // downstream_mtls: what this connection's TLS handshake established (verified once per connection).
  const clientCertificate = state.clientCertificateFor(req)
  return {
    requestId,
    route: p.plan.route,
    method: req.method ?? 'GET',
    host: p.host,
    authority: p.authority,
    path: p.path,
    query: p.query,
    headers: req.headers,
    clientIp: p.clientIp,
    scheme: state.scheme,
    ...(clientCertificate ? { clientCertificate } : {}),
    ...(tokenHosts ? { tokenHosts } : {}),
  }
}

/**
 * Stage 3, headers: after an allow decision, picks the endpoint and computes what the upstream
 * receives (path, Host, headers with the authorize service's changes). Undefined when no
 * endpoint is available. `upgrade`: the client's Upgrade header, kept for upgrades only.
 */
export function upstreamRequest(
  req: AnyRequest,
  p: RoutedRequest,
  result: Extract<CheckResult, { allow: true }>,
  state: ProxyState,
  requestId: string,
  upgrade: string | undefined,
): UpstreamRequest | undefined {
  const { plan } = p
  const endpoint = plan.cluster?.balancer.pick(result.routingKey ?? p.clientIp)
  if (!endpoint) return undefined
  const route = plan.route
  const host = upstreamHost(route, plan.paths, p.authority, p.path, req.headers, endpoint.target)
  const path = upstreamPath(route, plan.paths, p.path, plan.targetPrefixes[endpoint.index]) + p.query
  const config = state.config
  const headers = buildUpstreamHeaders({
    rawHeaders: req.rawHeaders,
    plan: plan.headers,
    upstreamHost: host.host,
    originalHost: host.rewritten ? p.authority : undefined,
    requestId,
    remoteAddress: p.remote,
    clientIp: p.clientIp,
    scheme: state.scheme,
    skipXffAppend: config.skipXffAppend,
    trustForwardedHeaders: config.xffNumTrustedHops > 0,
    dropUnderscoreHeaders: config.headersWithUnderscoresAction === 'drop',
    cookieName: state.cookieName,
    authzSet: result.setHeaders,
    authzRemove: result.removeHeaders,
    authzSetMulti: result.setMultiHeaders,
    authzRemovePrefixes: result.removeHeaderPrefixes,
    upgrade,
  })
  return { endpoint, host: host.host, path, headers }
}

/** The upstream headers with the client's trace context replaced by ours (the upstream span). */
export function withTraceparent(headers: string[], traceparent: string): string[] {
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    const name = (headers[i] as string).toLowerCase()
    if (name === 'traceparent' || name === 'tracestate') continue
    out.push(headers[i] as string, headers[i + 1] as string)
  }
  if (traceparent !== '') out.push('traceparent', traceparent)
  return out
}

export function authorityOf(req: AnyRequest): string | undefined {
  return 'stream' in req ? (req.headers[':authority'] ?? req.headers.host) : req.headers.host
}

/** The connection's client address (PROXY protocol or peer), tagged on the socket at accept time. */
export function clientAddressOf(req: AnyRequest): string {
  type Tagged = Socket & { [kClientAddress]?: string; stream?: Tagged }
  const socket = ('stream' in req ? req.stream.session?.socket : req.socket) as Tagged | undefined
  // HTTP/2 over a wrapped stream (cleartext h2 after a PROXY header) sees Node's stream adapter,
  // which keeps the wrapped stream as `.stream`.
  return socket?.[kClientAddress] ?? socket?.stream?.[kClientAddress] ?? normaliseRemote(socket?.remoteAddress)
}

type Addressed = Socket & { [kLocalAddress]?: string; stream?: Addressed }

function connectionOf(req: AnyRequest): Addressed | undefined {
  return ('stream' in req ? req.stream.session?.socket : req.socket)
}

/** Names of the listener address a request reached: its IP, and `localhost` when that is loopback. */
export function localNamesOf(req: AnyRequest): string[] {
  const socket = connectionOf(req)
  const local = socket?.[kLocalAddress] ?? socket?.stream?.[kLocalAddress] ?? normaliseRemote(socket?.localAddress)
  if (!local) return []
  const names = [isIP(local) === 6 ? `[${local}]` : local]
  if (local === '::1' || local.startsWith('127.')) names.push('localhost')
  return names
}

/**
 * The names a client dialled Portcullis by: the TLS server name it sent, and the listener's
 * address names. A tunnel's session token may have been issued for any of them.
 */
export function dialledNamesOf(req: AnyRequest): string[] {
  const sni = (connectionOf(req) as TLSSocket | undefined)?.servername
  const names = localNamesOf(req)
  if (typeof sni === 'string' && sni !== '') names.unshift(sni.toLowerCase())
  return names
}

function isInternalPath(path: string): boolean {
  return path === '/.pomerium' || path.startsWith('/.pomerium/') || path === '/.well-known/pomerium' || path.startsWith('/.well-known/pomerium/')
}
