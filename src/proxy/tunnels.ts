/**
 * The open tunnels of one proxy, asked again every few seconds whether they may stay open
 * (docs/tunnels.md). A tunnel outlives the request that opened it, so the decision that granted it
 * is repeated: a sign-out, a revoked session, a policy that no longer admits the user or a route
 * removed by a reload ends it within one interval. Routes that still exist keep their tunnels
 * across reloads, judged by the route's new policy.
 */
import type { Authorizer, CheckRequest, CheckResult } from '../authorize/types.js'
import type { Logger } from '../shared/log.js'
import type { RoutePlan } from './state.js'

/** How often open tunnels are checked again (the upper bound on how long a revoked one lives on). */
export const TUNNEL_RECHECK_MS = 3_000

export interface OpenTunnel {
  /** The question that granted it; asked again with the route of the current configuration. */
  readonly check: CheckRequest
  close(reason: string): void
}

export class TunnelRegistry {
  readonly #open = new Set<OpenTunnel>()
  readonly #authorizer: Authorizer
  readonly #routes: () => ReadonlyMap<string, RoutePlan>
  readonly #logger: Logger
  readonly #intervalMs: number
  #timer: NodeJS.Timeout | undefined
  #sweeping = false

  constructor(authorizer: Authorizer, routes: () => ReadonlyMap<string, RoutePlan>, logger: Logger, intervalMs = TUNNEL_RECHECK_MS) {
    this.#authorizer = authorizer
    this.#routes = routes
    this.#logger = logger
    this.#intervalMs = intervalMs
  }

  get size(): number {
    return this.#open.size
  }

  /** Tracks a tunnel until the returned function is called (when it closes). */
  add(tunnel: OpenTunnel): () => void {
    this.#open.add(tunnel)
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.sweep(), this.#intervalMs)
      this.#timer.unref()
    }
    return () => {
      this.#open.delete(tunnel)
      if (this.#open.size === 0 && this.#timer) {
        clearInterval(this.#timer)
        this.#timer = undefined
      }
    }
  }

  /** Asks again for every open tunnel; closes those no longer allowed. */
  async sweep(): Promise<void> {
    if (this.#sweeping) return
    this.#sweeping = true
    try {
      const routes = this.#routes()
      await Promise.all(
        [...this.#open].map(async (tunnel) => {
          const plan = routes.get(tunnel.check.route.id)
          if (!plan) {
            tunnel.close('route_removed')
            return
          }
          let result: CheckResult
          try {
            result = await this.#authorizer.check({ ...tunnel.check, route: plan.route })
          } catch (err) {
            // Fail closed, as a new tunnel would be refused.
            this.#logger.warn({ err, requestId: tunnel.check.requestId }, 'tunnel re-check failed; closing it')
            tunnel.close('authorize_error')
            return
          }
          if (!result.allow) tunnel.close(result.status === 503 ? 'authorize_unavailable' : 'access_revoked')
        }),
      )
    } finally {
      this.#sweeping = false
    }
  }

  closeAll(reason: string): void {
    for (const tunnel of [...this.#open]) tunnel.close(reason)
  }
}
