/**
 * Forward-auth (docs/delegated-authorization.md): nginx `auth_request`, Caddy `forward_auth` and
 * Traefik `ForwardAuth` ask Portcullis whether to let a request through. The original request
 * arrives as `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` (or nginx's `X-Original-URI` /
 * `X-Original-Method`, or `X-Original-URL`) plus the client's own headers (cookies).
 *
 * What Pomerium's old forward-auth lacked (it was removed for it): the forwarded headers are
 * believed only from `forward_auth.trusted_proxies`; and the forwarded request goes through the
 * proxy's own `prepare` stage, so the route is chosen, and the path normalised and screened,
 * exactly as the built-in proxy would for the same request.
 *
 * Envoy's HTTP ext_authz mode sends the original request itself under the path prefix `/envoy`
 * (its Host the app's host), and gets the `/verify` answers.
 *
 * Two answers:
 * - `/auth` (nginx `auth_request`, which accepts only 2xx, 401 and 403): 200 allow, 401 sign in
 *   (with `Location`), 403 anything else; no body.
 * - `/verify` (Caddy, Traefik, and nginx's `error_page` location): the whole answer the built-in
 *   proxy would give: 200 allow, or the redirect, the 403/450/495 page, the JSON error.
 * An allow carries the identity headers for the upstream (`X-Pomerium-Jwt-Assertion`, claim
 * headers) as response headers, for the fronting proxy to copy.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Authorizer, CheckRequest, CheckResult, ClientCertificateInfo, Denial } from '../authorize/types.js'
import type { Config } from '../config/types.js'
import { cidrsContain, compileCidrs } from '../policy/index.js'
import type { CidrSet } from '../policy/index.js'
import type { Logger } from '../shared/log.js'
import { prefersJson } from '../ui/negotiate.js'
import type { AnyRequest } from './forward.js'
import { kClientAddress } from './front.js'
import { forwardedCertificate } from './client-cert.js'
import { normaliseRemote } from './request-checks.js'
import { sendBody, sendDenial, sendError } from './respond.js'
import { prepare } from './stages.js'
import type { ProxyState } from './state.js'

export interface ForwardAuthDeps {
  readonly state: () => ProxyState
  readonly authorizer: Authorizer
  readonly logger: Logger
}

type Mode = 'auth' | 'verify'

/**
 * Envoy's HTTP ext_authz mode (`http_service.path_prefix: /envoy`): the request arrives as the
 * original one, its path after the prefix, its Host the app's host.
 */
const ENVOY_PREFIX = '/envoy'

function envoyOriginalOf(req: IncomingMessage, peer: string): Original | string {
  const url = req.url ?? '/'
  const uri = url.slice(ENVOY_PREFIX.length) || '/'
  if (!uri.startsWith('/')) return 'the path after /envoy is not a path'
  const authority = one(req.headers, 'host')
  if (authority === null || authority === undefined || authority === '') return 'Host is missing'
  const proto = one(req.headers, 'x-forwarded-proto')
  if (proto === null) return 'x-forwarded-proto appears more than once'
  const scheme = (proto ?? 'https').toLowerCase()
  if (scheme !== 'http' && scheme !== 'https') return 'X-Forwarded-Proto must be http or https'
  const method = (req.method ?? 'GET').toUpperCase()
  const xff = one(req.headers, 'x-forwarded-for')
  if (xff === null) return 'x-forwarded-for appears more than once'
  const last = xff?.split(',').at(-1)?.trim()
  return { method, scheme, authority, uri, clientIp: normaliseRemote(last !== undefined && last !== '' ? last : peer) }
}

/** Headers that describe the original request, or the hop: never passed on as the client's. */
const FORWARDING = /^(x-forwarded-|x-original-|x-real-ip$|x-client-cert$|forwarded$|host$|content-length$|transfer-encoding$|connection$)/

const trustedByConfig = new WeakMap<Config, CidrSet | undefined>()

function trustedProxies(config: Config): CidrSet | undefined {
  if (!trustedByConfig.has(config)) {
    const compiled = config.forwardAuth ? compileCidrs(config.forwardAuth.trustedProxies) : undefined
    trustedByConfig.set(config, compiled && !('error' in compiled) ? compiled : undefined)
  }
  return trustedByConfig.get(config)
}

function one(headers: IncomingHttpHeaders, name: string): string | undefined | null {
  const v = headers[name]
  if (v === undefined) return undefined
  // A repeated forwarding header could be read differently by the proxy and by us: refuse it.
  if (Array.isArray(v)) return null
  return v
}

/** The original request as the fronting proxy describes it. */
export interface Original {
  readonly method: string
  readonly scheme: 'http' | 'https'
  readonly authority: string
  readonly uri: string
  readonly clientIp: string
}

function originalOf(req: IncomingMessage, peer: string): Original | string {
  const h = req.headers
  const fields = ['x-forwarded-method', 'x-original-method', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-uri', 'x-original-uri', 'x-original-url', 'x-real-ip']
  const v: Record<string, string | undefined> = {}
  for (const name of fields) {
    const value = one(h, name)
    if (value === null) return `${name} appears more than once`
    v[name] = value
  }
  let scheme = v['x-forwarded-proto']
  let authority = v['x-forwarded-host']
  let uri = v['x-forwarded-uri'] ?? v['x-original-uri']
  const full = v['x-original-url']
  if (full !== undefined && (authority === undefined || uri === undefined)) {
    if (!URL.canParse(full)) return 'X-Original-URL is not an absolute URL'
    const u = new URL(full)
    scheme ??= u.protocol.slice(0, -1)
    authority ??= u.host
    uri ??= `${u.pathname}${u.search}`
  }
  if (authority === undefined || authority === '') return 'X-Forwarded-Host is missing'
  if (uri === undefined || !uri.startsWith('/')) return 'X-Forwarded-Uri (or X-Original-URI) is missing or not a path'
  scheme = (scheme ?? 'https').toLowerCase()
  if (scheme !== 'http' && scheme !== 'https') return 'X-Forwarded-Proto must be http or https'
  const method = (v['x-forwarded-method'] ?? v['x-original-method'] ?? 'GET').toUpperCase()
  if (!/^[A-Z]{1,20}$/.test(method)) return 'X-Forwarded-Method is not an HTTP method'
  // The client: the last X-Forwarded-For entry (added by the trusted proxy itself), else X-Real-IP.
  const xff = one(h, 'x-forwarded-for')
  if (xff === null) return 'x-forwarded-for appears more than once'
  const last = xff?.split(',').at(-1)?.trim()
  const clientIp = normaliseRemote(last !== undefined && last !== '' ? last : (v['x-real-ip'] ?? peer))
  return { method, scheme, authority, uri, clientIp }
}

/**
 * downstream_mtls through a fronting proxy: the client certificate it terminated, URL-encoded PEM
 * (nginx `$ssl_client_escaped_cert`) or base64 DER (Caddy) in `X-Client-Cert`, checked like a
 * connection's. Only asked
 * for when downstream_mtls is configured; absent means no certificate.
 */
function clientCertificateOf(req: IncomingMessage, state: ProxyState): ClientCertificateInfo | undefined | string {
  const policy = state.clientCertificates
  if (!policy) return undefined
  const value = one(req.headers, 'x-client-cert')
  if (value === null) return 'x-client-cert appears more than once'
  let pem: string
  try {
    pem = decodeURIComponent(value ?? '')
  } catch {
    return 'X-Client-Cert is not URL-encoded PEM'
  }
  // Base64 DER (Caddy's certificate_der_base64) is the same certificate without the PEM lines.
  if (!pem.includes('-----BEGIN') && /^[A-Za-z0-9+/]+=*$/.test(pem.trim())) pem = `-----BEGIN CERTIFICATE-----\n${pem.trim()}\n-----END CERTIFICATE-----\n`
  return forwardedCertificate(pem, policy)
}

/**
 * The original request in the shape the proxy's `prepare` stage reads, from the client's headers
 * as a flat `[name, value, ...]` list (forwarding and hop headers left out).
 */
function asProxyRequest(clientRawHeaders: readonly string[], o: Original): { request: AnyRequest; headers: Record<string, string | string[] | undefined> } {
  const headers: Record<string, string | string[] | undefined> = { host: o.authority }
  const rawHeaders: string[] = ['Host', o.authority]
  for (let i = 0; i + 1 < clientRawHeaders.length; i += 2) {
    const name = clientRawHeaders[i] as string
    const value = clientRawHeaders[i + 1] as string
    const lower = name.toLowerCase()
    if (FORWARDING.test(lower) || lower.startsWith(':')) continue
    rawHeaders.push(name, value)
    const prior = headers[lower]
    // Node's rules for repeated headers: cookies joined with "; ", set-cookie kept apart, others ", ".
    headers[lower] = prior === undefined ? value : lower === 'cookie' ? `${String(prior)}; ${value}` : Array.isArray(prior) ? [...prior, value] : lower === 'set-cookie' ? [prior, value] : `${prior}, ${value}`
  }
  const request = {
    httpVersionMajor: 1,
    method: o.method,
    url: o.uri,
    headers,
    rawHeaders,
    socket: { [kClientAddress]: o.clientIp },
  }
  return { request: request as unknown as AnyRequest, headers }
}

/**
 * Decides a request a fronting proxy (or Envoy) describes, as the built-in proxy would: its own
 * prepare stage (hygiene, normalisation, the route), then the authorizer. A request the proxy
 * would answer itself (no route, a bad path, a health check) is refused: never a 2xx.
 */
export async function decideForwarded(
  deps: Pick<ForwardAuthDeps, 'authorizer' | 'logger'>,
  state: ProxyState,
  original: Original,
  rawHeaders: readonly string[],
  requestId: string,
  clientCertificate?: ClientCertificateInfo,
): Promise<CheckResult> {
  const { request, headers } = asProxyRequest(rawHeaders, original)
  // The proxy's own prepare stage, with the scheme the client used at the fronting proxy.
  const view = Object.create(state, { scheme: { value: original.scheme } }) as ProxyState
  const prepared = prepare(request, view, undefined)
  if (prepared.kind !== 'route') {
    const status = prepared.kind === 'reply' ? prepared.status : 404
    const message = prepared.kind === 'reply' ? prepared.message : 'Portcullis endpoints are served on the main listener.'
    return { allow: false, status: status >= 200 && status < 400 ? 403 : status, code: 'denied', reason: message }
  }
  const check: CheckRequest = {
    requestId,
    route: prepared.plan.route,
    method: original.method,
    host: prepared.host,
    authority: prepared.authority,
    path: prepared.path,
    query: prepared.query,
    headers,
    clientIp: prepared.clientIp,
    scheme: original.scheme,
    ...(clientCertificate ? { clientCertificate } : {}),
  }
  try {
    return await deps.authorizer.check(check)
  } catch (err) {
    deps.logger.error({ err, requestId }, 'forward-auth: the authorize service failed')
    return { allow: false, status: 503, code: 'unavailable', reason: 'The authorize service is unavailable.' }
  }
}

export function createForwardAuthHandler(deps: ForwardAuthDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    const requestId = randomUUID()
    const state = deps.state()
    const path = (req.url ?? '/').split('?')[0]
    const envoy = path === ENVOY_PREFIX || path?.startsWith(`${ENVOY_PREFIX}/`) === true
    const mode: Mode | undefined = path === '/auth' ? 'auth' : path === '/verify' || path === '/' || envoy ? 'verify' : undefined
    const json = prefersJson(req.headers.accept)
    const headOnly = req.method === 'HEAD'
    const peer = normaliseRemote(req.socket.remoteAddress)
    // With forward_auth.tls the handshake has verified the caller's certificate; trusted_proxies,
    // when given, narrows further.
    const settings = state.config.forwardAuth
    const certified = settings?.tls !== undefined && (req.socket as { authorized?: boolean }).authorized === true
    const trusted = trustedProxies(state.config)
    const inRange = trusted !== undefined && settings !== undefined && settings.trustedProxies.length > 0 && cidrsContain(trusted, peer)
    if (!(settings?.tls !== undefined ? certified && (settings.trustedProxies.length === 0 || inRange) : inRange)) {
      deps.logger.warn({ requestId, peer }, 'forward-auth call refused: the caller is not in forward_auth.trusted_proxies')
      sendError(res, 403, 'This address may not ask for forward-auth decisions (forward_auth.trusted_proxies).', requestId, json, {}, headOnly)
      return
    }
    if (!mode) {
      sendError(res, 404, 'Forward-auth answers at /auth (nginx auth_request) and /verify (Caddy, Traefik).', requestId, json, {}, headOnly)
      return
    }
    const original = envoy ? envoyOriginalOf(req, peer) : originalOf(req, peer)
    if (typeof original === 'string') {
      deps.logger.info({ requestId, peer, problem: original }, 'forward-auth call refused: the original request cannot be read')
      answer(res, mode, { allow: false, status: 400, code: 'denied', reason: `Bad request: ${original}.` }, requestId, json, headOnly)
      return
    }
    const certificate = clientCertificateOf(req, state)
    if (typeof certificate === 'string') {
      answer(res, mode, { allow: false, status: 400, code: 'denied', reason: `Bad request: ${certificate}.` }, requestId, json, headOnly)
      return
    }
    const result = await decideForwarded(deps, state, original, req.rawHeaders, requestId, certificate)
    answer(res, mode, result, requestId, json, headOnly)
  }
}

function answer(res: ServerResponse, mode: Mode, result: CheckResult, requestId: string, json: boolean, headOnly: boolean): void {
  if (result.allow) {
    const headers: Record<string, string | string[]> = { 'x-request-id': requestId, 'cache-control': 'no-store' }
    for (const [name, value] of Object.entries(result.setHeaders ?? {})) headers[name] = value
    for (const [name, values] of Object.entries(result.setMultiHeaders ?? {})) headers[name] = [...values]
    sendBody(res, 200, headers, '', true)
    return
  }
  // A 2xx answer means "let it through" to every fronting proxy: robots.txt of a protected
  // route, which the built-in proxy answers itself, is refused here instead.
  const denial: Denial = result.status >= 200 && result.status < 300 ? { ...result, status: 403 } : result
  if (mode === 'auth') {
    const status = denial.status === 401 || denial.code === 'sign-in' ? 401 : 403
    const headers: Record<string, string> = { 'x-request-id': requestId, 'cache-control': 'no-store', 'x-portcullis-status': String(denial.status) }
    if (denial.location !== undefined) headers['location'] = denial.location
    sendBody(res, status, headers, '', true)
    return
  }
  sendDenial(res, denial, requestId, json, {}, headOnly)
}
