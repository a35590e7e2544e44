/**
 * Header rules between client, proxy and upstream (Pomerium docs: Rewriting, Headers, Other upstream headers, Stripped from client requests).
 *
 * Request headers are rebuilt from the client's raw list in one pass: hop-by-hop headers, our
 * own credentials and every `x-pomerium-*`/`x-envoy-*` header a client tries to supply are
 * dropped (whatever their case, and with `_` read as `-`), then the proxy's own headers are
 * appended last so that nothing a client lists in `Connection` can remove them.
 */
import { isTemplate } from '../config/header-templates.js'
import type { RouteConfig } from '../config/types.js'

/** Never forwarded in either direction (RFC 9110 7.6.1 plus the legacy ones Envoy also drops). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'http2-settings',
])

/** Client copies of headers only the proxy may set. */
const PROXY_OWNED = new Set([
  'x-request-id',
  'x-pomerium-authorization',
  'x-pomerium-reproxy-policy',
  'x-pomerium-reproxy-policy-hmac',
  'x-pomerium-original-host',
  'x-pomerium-routing-key',
  'x-envoy-external-address',
  // Envoy's default (SANITIZE): upstreams read this as the client's mTLS identity.
  'x-forwarded-client-cert',
])

/** Per-route header plan, computed once per config. */
export interface HeaderPlan {
  readonly removeNames: ReadonlySet<string>
  /** `set_request_headers`, lower-case names, `$$` already unescaped. */
  readonly setHeaders: readonly (readonly [string, string])[]
  readonly setNames: ReadonlySet<string>
  readonly passIdentityHeaders: boolean
  readonly responseHeaders: readonly (readonly [string, string])[]
  readonly rewriteResponseHeaders: readonly { readonly header: string; readonly prefix: string; readonly value: string }[]
  readonly keepForwardedHost: boolean
}

export function buildHeaderPlan(route: RouteConfig, globalPassIdentity: boolean): HeaderPlan {
  const setHeaders = Object.entries(route.setRequestHeaders)
    .filter(([name]) => name.toLowerCase() !== 'host' && !name.startsWith(':'))
    // `${pomerium.*}` templates are rendered per request by authorize, which sets those headers.
    .filter(([, value]) => !isTemplate(value))
    .map(([name, value]) => [name.toLowerCase(), value.replace(/\$\$/g, '$')] as const)
  const removeNames = new Set(route.removeRequestHeaders.map((n) => n.toLowerCase()))
  return {
    removeNames,
    setHeaders,
    setNames: new Set(setHeaders.map(([n]) => n)),
    passIdentityHeaders: route.passIdentityHeaders ?? globalPassIdentity,
    responseHeaders: Object.entries(route.setResponseHeaders).map(([n, v]) => [n.toLowerCase(), v] as const),
    rewriteResponseHeaders: route.rewriteResponseHeaders.map((r) => ({ ...r, header: r.header.toLowerCase() })),
    keepForwardedHost: !removeNames.has('x-forwarded-host'),
  }
}

export interface UpstreamHeaderInput {
  readonly rawHeaders: readonly string[]
  readonly plan: HeaderPlan
  /** The Host to send upstream. */
  readonly upstreamHost: string
  /** The client's Host, when the proxy rewrote it (adds X-Forwarded-Host and x-pomerium-original-host). */
  readonly originalHost: string | undefined
  readonly requestId: string
  readonly remoteAddress: string
  readonly clientIp: string
  readonly scheme: 'http' | 'https'
  readonly skipXffAppend: boolean
  /**
   * `xff_num_trusted_hops` > 0: a proxy in front of us sets X-Forwarded-Proto and -Host. Without
   * one, client values are dropped: frameworks read the first X-Forwarded-Host entry as the
   * host, and a client-chosen one poisons links the app builds.
   */
  readonly trustForwardedHeaders: boolean
  readonly dropUnderscoreHeaders: boolean
  readonly cookieName: string
  readonly authzSet: Readonly<Record<string, string>> | undefined
  readonly authzRemove: readonly string[] | undefined
  /** Headers authorize sends several times (one `Impersonate-Group` per group). */
  readonly authzSetMulti?: Readonly<Record<string, readonly string[]>> | undefined
  /** Lower-case name prefixes authorize removes (`impersonate-extra-`). */
  readonly authzRemovePrefixes?: readonly string[] | undefined
  /** Keep `Connection`/`Upgrade` for a forwarded upgrade request. */
  readonly upgrade: string | undefined
}

/** Returns the upstream request headers as a flat `[name, value, ...]` list. */
export function buildUpstreamHeaders(input: UpstreamHeaderInput): string[] {
  const raw = input.rawHeaders
  const plan = input.plan
  const out: string[] = []
  const authzNames =
    input.authzSet || input.authzSetMulti
      ? new Set([...Object.keys(input.authzSet ?? {}), ...Object.keys(input.authzSetMulti ?? {})].map((n) => n.toLowerCase()))
      : undefined
  let connectionTokens: Set<string> | undefined
  let xff: string | undefined
  let xfp: string | undefined
  let xfh: string | undefined
  let assertion: string | undefined
  let assertionFor: string | undefined
  let cookies: string | undefined

  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase()
    if (lower === 'connection') {
      connectionTokens ??= new Set()
      for (const t of (raw[i + 1] as string).split(',')) connectionTokens.add(t.trim().toLowerCase())
    }
  }

  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    if (name.charCodeAt(0) === 0x3a /* : pseudo-header */) continue
    let lower = name.toLowerCase()
    if (lower.includes('_')) {
      if (input.dropUnderscoreHeaders) continue
      // Some upstreams (CGI, WSGI) read `_` as `-`: judge the name the way they will.
      lower = lower.replace(/_/g, '-')
    }
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'te' && value.trim().toLowerCase() === 'trailers') out.push('te', 'trailers')
      continue
    }
    if (PROXY_OWNED.has(lower) || lower.startsWith('x-envoy-')) continue
    if (connectionTokens?.has(lower)) continue
    if (lower.startsWith('x-pomerium-')) {
      if (lower === 'x-pomerium-jwt-assertion') assertion ??= value
      else if (lower === 'x-pomerium-jwt-assertion-for') assertionFor ??= value
      continue
    }
    switch (lower) {
      case 'host':
        continue
      case 'authorization':
        // Our session handle in either accepted form (the forms Pomerium accepts) stays with us.
        if (/^pomerium\s/i.test(value) || /^bearer\s+pomerium-/i.test(value)) continue
        break
      case 'cookie': {
        // HTTP/2 clients send one cookie header per cookie; HTTP/1.1 upstreams expect one line.
        const kept = stripCookie(value, input.cookieName)
        if (kept !== '') cookies = cookies === undefined ? kept : `${cookies}; ${kept}`
        continue
      }
      case 'x-forwarded-for':
        xff = xff === undefined ? value : `${xff}, ${value}`
        continue
      case 'x-forwarded-proto':
        xfp ??= value
        continue
      case 'x-forwarded-host':
        xfh = xfh === undefined ? value : `${xfh}, ${value}`
        continue
      default:
        break
    }
    if (plan.removeNames.has(lower) || plan.setNames.has(lower)) continue
    if (input.authzRemove?.includes(lower)) continue
    // What authorize sets replaces the client's copy, never joins it (a client's own X-Email or
    // Authorization must not reach the upstream beside ours).
    if (authzNames?.has(lower)) continue
    if (input.authzRemovePrefixes?.some((p) => lower.startsWith(p))) continue
    out.push(name, value)
  }

  if (cookies !== undefined && !plan.removeNames.has('cookie') && !plan.setNames.has('cookie')) out.push('cookie', cookies)
  out.push('host', input.upstreamHost)
  if (!input.trustForwardedHeaders) {
    xfp = undefined
    xfh = undefined
  }
  if (input.upgrade !== undefined) out.push('connection', 'upgrade', 'upgrade', input.upgrade)
  if (!input.skipXffAppend) xff = xff === undefined ? input.remoteAddress : `${xff}, ${input.remoteAddress}`
  if (xff !== undefined && !plan.removeNames.has('x-forwarded-for')) out.push('x-forwarded-for', xff)
  if (!plan.removeNames.has('x-forwarded-proto')) {
    out.push('x-forwarded-proto', xfp ?? input.scheme)
  }
  if (input.originalHost !== undefined) {
    if (plan.keepForwardedHost) out.push('x-forwarded-host', xfh === undefined ? input.originalHost : `${xfh}, ${input.originalHost}`)
    out.push('x-pomerium-original-host', input.originalHost)
  } else if (xfh !== undefined && plan.keepForwardedHost) {
    out.push('x-forwarded-host', xfh)
  }
  out.push('x-request-id', input.requestId)
  out.push('x-envoy-external-address', input.clientIp)
  if (plan.passIdentityHeaders) {
    // Chained Pomerium: the assertion of the proxy in front moves to X-Pomerium-Jwt-Assertion-For.
    const chained = assertionFor ?? assertion
    if (chained !== undefined) out.push('x-pomerium-jwt-assertion-for', chained)
  }
  for (const [n, v] of plan.setHeaders) out.push(n, v)
  if (input.authzSet) for (const [n, v] of Object.entries(input.authzSet)) out.push(n, v)
  if (input.authzSetMulti) for (const [n, vs] of Object.entries(input.authzSetMulti)) for (const v of vs) out.push(n, v)
  return out
}

/** Removes our session cookie (and its chunks `name_0`...) from a Cookie header, keeping the rest. */
export function stripCookie(header: string, cookieName: string): string {
  if (!header.includes(cookieName)) return header
  const kept: string[] = []
  for (const part of header.split(';')) {
    const trimmed = part.trim()
    const eq = trimmed.indexOf('=')
    const name = eq === -1 ? trimmed : trimmed.slice(0, eq)
    if (name === cookieName || (name.startsWith(`${cookieName}_`) && /^\d+$/.test(name.slice(cookieName.length + 1)))) continue
    if (trimmed !== '') kept.push(trimmed)
  }
  return kept.join('; ')
}

/**
 * Trailers the client may receive: hop-by-hop and pseudo-headers removed (HTTP/2 refuses
 * connection-specific fields, and Node would fail the stream after the body was sent).
 * Undefined when nothing is left.
 */
export function sanitiseTrailers(trailers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> | undefined {
  let out: Record<string, string> | undefined
  for (const name in trailers) {
    const value = trailers[name]
    const lower = name.toLowerCase()
    if (value === undefined || HOP_BY_HOP.has(lower) || lower.charCodeAt(0) === 0x3a || lower === 'content-length' || lower === 'host') continue
    out ??= {}
    out[lower] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

/**
 * Builds the client response headers from the upstream's: hop-by-hop headers dropped,
 * `set_response_headers` (with Pomerium's security defaults) applied, `rewrite_response_headers`
 * applied, and the request id added.
 */
export function buildResponseHeaders(
  upstream: Readonly<Record<string, string | string[] | undefined>>,
  plan: HeaderPlan,
  requestId: string,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  let connectionTokens: string[] | undefined
  const connection = upstream['connection']
  if (typeof connection === 'string') connectionTokens = connection.split(',').map((t) => t.trim().toLowerCase())
  for (const name in upstream) {
    const value = upstream[name]
    if (value === undefined || HOP_BY_HOP.has(name) || name.charCodeAt(0) === 0x3a) continue
    if (connectionTokens?.includes(name)) continue
    out[name] = value
  }
  for (const [n, v] of plan.responseHeaders) out[n] = v
  for (const r of plan.rewriteResponseHeaders) {
    const current = out[r.header]
    if (typeof current === 'string' && current.startsWith(r.prefix)) out[r.header] = r.value + current.slice(r.prefix.length)
  }
  out['x-request-id'] = requestId
  return out
}
