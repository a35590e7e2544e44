/**
 * The routes portal (Pomerium docs: On every route host, `/.pomerium/routes` and `/.pomerium/api/v1/routes`): which
 * configured routes the signed-in user may open, with what a person needs to recognise them.
 *
 * Pure: no I/O, no clock, no config loading. The caller passes the routes with their compiled
 * policies and who is asking (session, client IP, now); a route is listed when its policy allows
 * a GET of the route's root for that user, exactly as the authorizer would decide it. Deny,
 * sign-in and client-certificate outcomes are not listed (the portal request's own client
 * certificate is evaluated, as for any request). Routes stay in config order.
 */
import type { RouteConfig } from '../config/types.js'
import { decide } from '../policy/index.js'
import type { CompiledPolicy, PolicyClientCertificate, PolicyInput, PolicySession } from '../policy/index.js'

/** What the portal reads of a route. */
export type PortalRouteConfig = Pick<RouteConfig, 'id' | 'name' | 'description' | 'logoUrl' | 'from' | 'fromUrl' | 'prefix' | 'path' | 'regex'>

export interface PortalCandidate {
  readonly route: PortalRouteConfig
  readonly policy: CompiledPolicy
  /**
   * The identity provider that signs users in on this route. A session from another provider
   * does not count there (its cookie would not be accepted), so the route is evaluated as for
   * an anonymous visitor. Undefined: no provider, always anonymous.
   */
  readonly idpId: string | undefined
}

export interface PortalViewer {
  readonly session: PolicySession | undefined
  /** The provider the session comes from. */
  readonly idpId: string | undefined
  /** The trusted client IP of the portal request. */
  readonly clientIp: string
  /** The client certificate of the portal request's connection, when the listener asks for one. */
  readonly clientCertificate?: PolicyClientCertificate | undefined
  readonly now: Date
}

/** How the browser reached the portal: links to routes without a port in `from` reuse this port. */
export interface PortalOrigin {
  readonly scheme: 'http' | 'https'
  /** The port of the portal request's Host header; undefined = the scheme's default. */
  readonly port: number | undefined
}

type PortalRouteType = 'http' | 'tcp' | 'udp' | 'ssh'

/** One route of `/.pomerium/api/v1/routes`, in Pomerium's JSON shape. */
interface PortalRouteJson {
  readonly id: string
  readonly name: string
  readonly type: PortalRouteType
  readonly from: string
  readonly description: string
  readonly logo_url: string
  /** tcp and udp routes: the client command that opens a tunnel; absent otherwise. */
  readonly connect_command?: string
}

/** A listed route: its JSON, and what the HTML page shows. */
export interface PortalEntry {
  readonly json: PortalRouteJson
  /** The configured name, else the `from` URL. */
  readonly title: string
  /** Where the browser opens the route; undefined for wildcard hosts and non-HTTP routes. */
  readonly url: string | undefined
}

/** The request a route's policy is asked about: a GET of the route's root by the viewer. */
function rootInput(route: PortalRouteConfig, session: PolicySession | undefined, viewer: PortalViewer): PolicyInput {
  return { session, method: 'GET', path: rootPath(route), headers: {}, clientIp: viewer.clientIp, now: viewer.now, ...(viewer.clientCertificate ? { clientCertificate: viewer.clientCertificate } : {}) }
}

/** Whether the viewer may open the route now, as the authorizer would decide a GET of its root. */
export function mayOpen(candidate: PortalCandidate, viewer: PortalViewer): boolean {
  const sameProvider = candidate.idpId !== undefined && candidate.idpId === viewer.idpId
  const session = sameProvider ? viewer.session : undefined
  // A route that needs a device the viewer has not registered yet is one they may open: it
  // sends them to register one first (docs/devices.md).
  const kind = decide(candidate.policy.evaluate(rootInput(candidate.route, session, viewer)), candidate.policy.deviceTypes, session).kind
  return kind === 'allow' || kind === 'device-enroll'
}

/** The routes the viewer may open, in config order. */
export function portalRoutes(candidates: readonly PortalCandidate[], viewer: PortalViewer, origin: PortalOrigin): PortalEntry[] {
  // Names come from the whole route list, so a route keeps its name whoever looks.
  const names = routeNames(candidates.map((c) => c.route))
  const entries: PortalEntry[] = []
  candidates.forEach((candidate, i) => {
    if (!mayOpen(candidate, viewer)) return
    const route = candidate.route
    entries.push({ json: routeJson(route, names[i] ?? route.fromUrl), title: route.name ?? route.fromUrl, url: routeUrl(route, origin) })
  })
  return entries
}

/** The body of `/.pomerium/api/v1/routes`. */
export function portalJson(entries: readonly PortalEntry[]): { routes: PortalRouteJson[] } {
  return { routes: entries.map((e) => e.json) }
}

export function routeType(route: Pick<RouteConfig, 'from'>): PortalRouteType {
  switch (route.from.scheme) {
    case 'tcp+https':
      return 'tcp'
    case 'udp+https':
      return 'udp'
    case 'ssh':
      return 'ssh'
    default:
      return 'http'
  }
}

/**
 * The client command for tcp and udp routes: `portcullis tcp host:port`, in the form of
 * Pomerium's `pomerium-cli tcp host:port` (the Portcullis client takes the same argument).
 */
export function connectCommand(route: Pick<RouteConfig, 'from'>): string | undefined {
  const type = routeType(route)
  if (type !== 'tcp' && type !== 'udp') return undefined
  const { host, port } = route.from
  return `portcullis ${type} ${host}${port === undefined ? '' : `:${port}`}`
}

function routeJson(route: PortalRouteConfig, name: string): PortalRouteJson {
  const command = connectCommand(route)
  return {
    id: route.id,
    name,
    type: routeType(route),
    from: route.fromUrl,
    description: route.description ?? '',
    logo_url: route.logoUrl ?? '',
    ...(command !== undefined ? { connect_command: command } : {}),
  }
}

/** The path a visit to the route starts at: its prefix or path, else `/` (regex routes too). */
export function rootPath(route: Pick<RouteConfig, 'prefix' | 'path' | 'regex'>): string {
  if (route.regex !== undefined) return '/'
  const p = route.path ?? route.prefix
  return p !== undefined && p.startsWith('/') ? p : '/'
}

/**
 * The URL a browser opens for an HTTP route. A `from` without a port matches any incoming port,
 * so the link keeps the port the portal was reached on when the schemes agree. Wildcard hosts
 * and non-HTTP routes have no single URL.
 */
export function routeUrl(route: PortalRouteConfig, origin: PortalOrigin): string | undefined {
  const { scheme, host } = route.from
  if ((scheme !== 'http' && scheme !== 'https') || host.includes('*')) return undefined
  const port = route.from.port ?? (scheme === origin.scheme ? origin.port : undefined)
  const defaultPort = scheme === 'https' ? 443 : 80
  const authority = port === undefined || port === defaultPort ? host : `${host}:${port}`
  return `${scheme}://${authority}${rootPath(route)}`
}

const slug = (text: string): string =>
  text
    .toLowerCase()
    .replace(/^[/\s]+|[/\s]+$/g, '')
    .replace(/[^a-z0-9._~-]+/g, '-')

/**
 * Names for routes without one, in the spirit of Pomerium's generated names: the first label of
 * the host (`grafana` for `grafana.example.com`) with the prefix or path (`grafana-admin`); when
 * two routes end up with the same name, the port and then the whole host are added, and a
 * counter as the last resort. Configured names are kept as written.
 */
export function routeNames(routes: readonly PortalRouteConfig[]): string[] {
  const labels = (r: PortalRouteConfig): string[] => r.from.host.replace(/^\[|\]$/g, '').split('.').filter((l) => l !== '*' && l !== '')
  const suffix = (r: PortalRouteConfig): string => {
    const p = r.regex !== undefined ? 're' : slug(r.path ?? r.prefix ?? '')
    return p === '' ? '' : `-${p}`
  }
  const port = (r: PortalRouteConfig): string => (r.from.port === undefined ? '' : `-${r.from.port}`)
  const attempts: ((r: PortalRouteConfig) => string)[] = [
    (r) => `${labels(r)[0] ?? 'route'}${suffix(r)}`,
    (r) => `${labels(r)[0] ?? 'route'}${suffix(r)}${port(r)}`,
    (r) => `${labels(r).join('-') || 'route'}${suffix(r)}${port(r)}`,
  ]
  const names = routes.map((r) => r.name)
  const taken = new Set(names.filter((n): n is string => n !== undefined))
  let pending = routes.map((_, i) => i).filter((i) => names[i] === undefined)
  for (const attempt of attempts) {
    const proposed = new Map<string, number[]>()
    for (const i of pending) {
      const name = attempt(routes[i] as PortalRouteConfig)
      proposed.set(name, [...(proposed.get(name) ?? []), i])
    }
    const left: number[] = []
    for (const [name, indexes] of proposed) {
      if (indexes.length === 1 && !taken.has(name)) {
        names[indexes[0] as number] = name
        taken.add(name)
      } else left.push(...indexes)
    }
    pending = left.sort((a, b) => a - b)
  }
  for (const i of pending) {
    const base = attempts[attempts.length - 1]?.(routes[i] as PortalRouteConfig) ?? 'route'
    let name = base
    for (let n = 2; taken.has(name); n++) name = `${base} (${n})`
    names[i] = name
    taken.add(name)
  }
  return names.map((n, i) => n ?? routes[i]?.fromUrl ?? 'route')
}
