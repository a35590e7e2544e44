/**
 * The route table: compiled once per config, consulted once per request.
 *
 * Matching follows Pomerium (Pomerium docs: Matching): a host picks exact-host routes when any exist for it,
 * otherwise the wildcard routes that match it; inside that candidate list routes are tried in
 * config order and the first whose path rule matches wins (`regex` > `path` > `prefix` > `/`).
 * An exact host is a Map lookup, and the wildcard candidates of a host are computed once and
 * cached, so the per-request cost does not grow with the number of hosts in the config.
 */
import type { RouteConfig } from '../config/types.js'

/** Bounded so that a client cycling random Host headers cannot grow memory without limit. */
const WILDCARD_CACHE_LIMIT = 10_000

/** An entry with its route beside it, so matching reads the route without a call. */
interface Slot<T> {
  readonly route: RouteConfig
  readonly entry: T
}

interface HostEntry<T> {
  readonly slots: readonly Slot<T>[]
}

/**
 * Routes, or whatever the caller keeps per route (`routeOf` finds the route in it): the proxy
 * keeps its per-route plan here, so one lookup finds everything a request needs.
 */
export class RouteTable<T = RouteConfig> {
  readonly #exact = new Map<string, Slot<T>[]>()
  readonly #wildcards: { readonly pattern: RegExp; readonly slot: Slot<T> }[] = []
  readonly #wildcardCache = new Map<string, HostEntry<T>>()

  constructor(entries: readonly T[], ...routeOf: T extends RouteConfig ? [] : [(entry: T) => RouteConfig]) {
    const toRoute = routeOf[0] ?? ((entry: T) => entry as unknown as RouteConfig)
    for (const entry of entries) {
      const route = toRoute(entry)
      const slot = { route, entry }
      if (route.from.host.includes('*')) {
        this.#wildcards.push({ pattern: wildcardPattern(route.from.host), slot })
      } else {
        const list = this.#exact.get(route.from.host)
        if (list) list.push(slot)
        else this.#exact.set(route.from.host, [slot])
      }
    }
  }

  /**
   * Finds the route for a request. `host` must already be canonical (lower case, no trailing
   * dot, no port) and `path` normalised; `port` is the incoming port the client addressed.
   */
  match(host: string, port: number, path: string): T | undefined {
    const candidates = this.#exact.get(host) ?? this.#wildcardEntry(host).slots
    for (const { route, entry } of candidates) {
      if (route.from.port !== undefined && route.from.port !== port) continue
      if (pathMatches(route, path)) return entry
    }
    return undefined
  }

  #wildcardEntry(host: string): HostEntry<T> {
    let entry = this.#wildcardCache.get(host)
    if (entry) return entry
    const slots: Slot<T>[] = []
    for (const w of this.#wildcards) if (w.pattern.test(host)) slots.push(w.slot)
    entry = { slots }
    if (this.#wildcardCache.size >= WILDCARD_CACHE_LIMIT) this.#wildcardCache.clear()
    this.#wildcardCache.set(host, entry)
    return entry
  }
}

export function pathMatches(route: RouteConfig, path: string): boolean {
  if (route.regexCompiled) return route.regexCompiled.test(path)
  if (route.path !== undefined) return route.path === path
  if (route.prefix !== undefined) return path.startsWith(route.prefix)
  return true
}

/** `*` stands for one or more characters of a host name, as Envoy's wildcard domains do. */
function wildcardPattern(host: string): RegExp {
  const body = host
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&'))
    .join('[a-z0-9.-]+')
  return new RegExp(`^${body}$`)
}
