/**
 * Envoy-style circuit breakers for one upstream transport (`circuit_breaker_thresholds`, see
 * docs/proxy.md): two counters checked before each request, so that a full upstream is answered
 * `503` at once instead of queueing requests (and holding their clients' memory) without bound.
 *
 * A transport is shared by every route with the same upstream and limits, and survives reloads,
 * so the counters see all traffic to that upstream.
 */
import type { CircuitBreakers } from '../config/types.js'

export class UpstreamLoad {
  /** Requests (and upgraded tunnels) admitted and not yet answered in full. */
  inFlight = 0
  /** Requests in the pool's queue, not yet written to a connection (connection pools only). */
  waiting = 0
  /** Pool connections carrying a request. */
  busy = 0
  readonly #maxRequests: number
  readonly #maxPending: number
  readonly #maxConnections: number
  /** Whether requests can wait for a connection (an HTTP/1.1 pool); h2c multiplexes instead. */
  readonly #pooled: boolean

  constructor(limits: CircuitBreakers, pooled: boolean) {
    this.#maxRequests = limits.maxRequests
    this.#maxPending = limits.maxPendingRequests
    this.#maxConnections = limits.maxConnections
    this.#pooled = pooled
  }

  /** Whether one more request may be sent now (a few integer compares: this is per request). */
  admits(): boolean {
    if (this.inFlight >= this.#maxRequests) return false
    if (!this.#pooled || this.waiting < this.#maxPending) return true
    // The queue is full, but a new request waits only when every connection the pool may open is
    // busy; otherwise the waiting ones are only connecting and one more may join them.
    return this.busy < this.#maxConnections
  }
}

/** Envoy's `response-code-details` for a request refused by a circuit breaker. */
export const OVERFLOW_DETAILS = 'upstream_reset_before_response_started{overflow}'
