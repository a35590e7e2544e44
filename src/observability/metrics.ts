/**
 * Prometheus metrics (Pomerium docs: Prometheus), on a registry of our own: Pomerium's names where they
 * apply (`pomerium_http_server_*`, `pomerium_http_client_*`, config reload, build info, storage
 * operations, identity manager), plus Node's process and event-loop metrics from prom-client.
 *
 * Label values are bounded by the configuration, never by traffic: `route` is the route's
 * `name` (else its id), `method` one of the standard methods (else `OTHER`), `status` the status
 * class (`2xx`; Pomerium's dashboards match codes with `status=~"5.."`, which still works). Paths,
 * hosts a client made up, user ids and session ids never become labels.
 *
 * The request path pays for a map lookup and four updates of pre-resolved children.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Counters and gauges for the observability issue. Pomerium exports the same facts as
 * `pomerium_identity_manager_*` (Pomerium docs: Prometheus); the names to export each under are given.
 * Timestamps are Unix milliseconds (Pomerium's `*_timestamp` gauges are in seconds: divide).
 */
export interface IdentityManagerMetrics {
  /** Sessions refreshed: `pomerium_identity_manager_session_refresh_success`. */
  readonly sessionRefreshSuccess: number
  /** Refreshes that failed, temporarily or for good: `pomerium_identity_manager_session_refresh_errors`. */
  readonly sessionRefreshError: number
  /**
   * Sessions the manager deleted (past their end, or refused for good by the provider). No
   * Pomerium counterpart; export as `pomerium_identity_manager_session_deleted` (a Portcullis addition).
   */
  readonly sessionDeleted: number
  /** UserInfo re-reads that succeeded: `pomerium_identity_manager_user_refresh_success`. */
  readonly userInfoRefreshSuccess: number
  /** UserInfo re-reads that failed: `pomerium_identity_manager_user_refresh_errors`. */
  readonly userInfoRefreshError: number
  /** Last successful session or user refresh: `pomerium_identity_manager_last_refresh_timestamp`. */
  readonly lastRefreshAt: number | undefined
  /** `pomerium_identity_manager_session_refresh_success_timestamp`. */
  readonly sessionRefreshSuccessAt: number | undefined
  /** `pomerium_identity_manager_session_refresh_error_timestamp`. */
  readonly sessionRefreshErrorAt: number | undefined
  /** `pomerium_identity_manager_user_refresh_success_timestamp`. */
  readonly userInfoRefreshSuccessAt: number | undefined
  /** `pomerium_identity_manager_user_refresh_error_timestamp`. */
  readonly userInfoRefreshErrorAt: number | undefined
  /** Whether this instance holds the lease and acts (a Portcullis addition: `pomerium_identity_manager_leader`). */
  readonly leader: boolean
  /** Sessions currently scheduled by this instance (0 when not the leader). */
  readonly sessions: number
}

/** What an identity manager reports before it has done anything (the docs and dashboard checks register it). */
/** What the directory sync reports (a view of `DirectorySyncStatus`). */
export interface DirectorySyncMetrics {
  readonly leader: boolean
  readonly successes: number
  readonly errors: number
  readonly throttled: number
  readonly lastSuccessAt: number | undefined
  readonly users: number | undefined
  readonly groups: number | undefined
  readonly stale: boolean
}

export const IDLE_IDENTITY_MANAGER_METRICS: IdentityManagerMetrics = Object.freeze({
  sessionRefreshSuccess: 0,
  sessionRefreshError: 0,
  sessionDeleted: 0,
  userInfoRefreshSuccess: 0,
  userInfoRefreshError: 0,
  lastRefreshAt: undefined,
  sessionRefreshSuccessAt: undefined,
  sessionRefreshErrorAt: undefined,
  userInfoRefreshSuccessAt: undefined,
  userInfoRefreshErrorAt: undefined,
  leader: false,
  sessions: 0,
})

/** Milliseconds, as Pomerium's `*_duration_ms` histograms. */
const DURATION_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
const SIZE_BUCKETS_BYTES = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216]

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE'])

export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : 'OTHER'
}

/** `2xx`; `0xx` when no status was sent (client gone). */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : '0xx'
}

export interface BuildInfo {
  readonly version: string
  readonly revision: string
}

/** Which part of Portcullis answered an HTTP request (`service` label). */
export type HttpService = 'proxy' | 'authenticate'

interface ServerChildren {
  readonly requests: Counter.Internal
  readonly duration: Histogram.Internal<string>
  readonly requestSize: Histogram.Internal<string>
  readonly responseSize: Histogram.Internal<string>
}

interface ClientChildren {
  readonly requests: Counter.Internal
  readonly duration: Histogram.Internal<string>
}

/** Tunnels last from a second (a refused psql) to days (an SSH session): 100 ms to 1 day. */
const TUNNEL_DURATION_BUCKETS_MS = [100, 1000, 10_000, 60_000, 600_000, 3_600_000, 86_400_000]

export class PortcullisMetrics {
  readonly registry = new Registry()
  readonly #serverRequests: Counter<string>
  readonly #serverDuration: Histogram<string>
  readonly #serverRequestSize: Histogram<string>
  readonly #serverResponseSize: Histogram<string>
  readonly #clientRequests: Counter<string>
  readonly #clientDuration: Histogram<string>
  readonly #storageDuration: Histogram<string>
  readonly #internalRequests: Counter<string>
  readonly #internalDuration: Histogram<string>
  readonly #reloadSuccess: Gauge
  readonly #reloadTimestamp: Gauge
  readonly #configChecksum: Gauge
  readonly #policyCount: Gauge
  readonly #tunnelsOpen: Gauge<string>
  readonly #tunnelsClosed: Counter<string>
  readonly #tunnelBytes: Counter<string>
  readonly #tunnelDuration: Histogram<string>
  readonly #serverChildren = new Map<string, ServerChildren>()
  readonly #clientChildren = new Map<string, ClientChildren>()
  #identityManager: (() => IdentityManagerMetrics) | undefined
  #directory: (() => DirectorySyncMetrics | undefined) | undefined

  constructor(build: BuildInfo, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry]
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry })
    const info = new Gauge({ name: 'pomerium_build_info', help: 'Build information of the running Portcullis (always 1).', labelNames: ['version', 'revision', 'node_version', 'service'], registers, aggregator: 'first' })
    info.set({ version: build.version, revision: build.revision, node_version: process.version, service: 'portcullis' }, 1)

    this.#serverRequests = new Counter({ name: 'pomerium_http_server_requests_total', help: 'HTTP requests answered, by route, method and status class.', labelNames: ['service', 'route', 'method', 'status'], registers })
    this.#serverDuration = new Histogram({ name: 'pomerium_http_server_request_duration_ms', help: 'Time from the request to the end of the response, in milliseconds.', labelNames: ['service', 'route', 'method', 'status'], buckets: DURATION_BUCKETS_MS, registers })
    this.#serverRequestSize = new Histogram({ name: 'pomerium_http_server_request_size_bytes', help: 'Request body size (Content-Length), in bytes.', labelNames: ['service', 'route', 'method', 'status'], buckets: SIZE_BUCKETS_BYTES, registers })
    this.#serverResponseSize = new Histogram({ name: 'pomerium_http_server_response_size_bytes', help: 'Response body size, in bytes.', labelNames: ['service', 'route', 'method', 'status'], buckets: SIZE_BUCKETS_BYTES, registers })
    this.#clientRequests = new Counter({ name: 'pomerium_http_client_requests_total', help: 'Requests to upstreams, by route and upstream status class (0xx: no answer).', labelNames: ['route', 'status'], registers })
    this.#clientDuration = new Histogram({ name: 'pomerium_http_client_request_duration_ms', help: 'Time from sending a request upstream to the end of its response, in milliseconds.', labelNames: ['route', 'status'], buckets: DURATION_BUCKETS_MS, registers })
    this.#storageDuration = new Histogram({ name: 'pomerium_storage_operation_duration_ms', help: 'Record store operations, in milliseconds.', labelNames: ['backend', 'operation', 'result'], buckets: DURATION_BUCKETS_MS, registers })
    this.#internalRequests = new Counter({ name: 'pomerium_grpc_server_requests_total', help: 'Internal API calls served (HTTP/2 + JSON, the counterpart of Pomerium gRPC), by method and status.', labelNames: ['grpc_method', 'status'], registers })
    this.#internalDuration = new Histogram({ name: 'pomerium_grpc_server_request_duration_ms', help: 'Internal API calls served, in milliseconds (streams: until they end).', labelNames: ['grpc_method', 'status'], buckets: DURATION_BUCKETS_MS, registers })
    this.#reloadSuccess = new Gauge({ name: 'pomerium_config_last_reload_success', help: 'Whether the last configuration load succeeded (1) or failed (0).', registers, aggregator: 'min' })
    this.#reloadTimestamp = new Gauge({ name: 'pomerium_config_last_reload_success_timestamp', help: 'Unix time of the last successful configuration load, in seconds.', registers, aggregator: 'max' })
    this.#configChecksum = new Gauge({ name: 'pomerium_config_checksum_int64', help: 'Checksum of the configuration in effect (48 bits of its SHA-256).', registers, aggregator: 'first' })
    this.#tunnelsOpen = new Gauge({ name: 'portcullis_tunnels_open', help: 'TCP and UDP tunnels open now, by route and kind.', labelNames: ['route', 'kind'], registers })
    this.#tunnelsClosed = new Counter({ name: 'portcullis_tunnels_closed_total', help: 'TCP and UDP tunnels ended, by route, kind and close reason.', labelNames: ['route', 'kind', 'reason'], registers })
    this.#tunnelBytes = new Counter({ name: 'portcullis_tunnel_bytes_total', help: 'Bytes relayed by tunnels, by route, kind and direction (upstream: from the client; downstream: to it).', labelNames: ['route', 'kind', 'direction'], registers })
    this.#tunnelDuration = new Histogram({ name: 'portcullis_tunnel_duration_ms', help: 'How long tunnels stayed open, in milliseconds.', labelNames: ['route', 'kind'], buckets: TUNNEL_DURATION_BUCKETS_MS, registers })
    this.#policyCount = new Gauge({ name: 'pomerium_policy_count_total', help: 'Routes in the configuration in effect.', registers, aggregator: 'first' })

  }

  /** One answered HTTP request. */
  httpServer(service: HttpService, route: string, method: string, status: number, durationMs: number, requestBytes: number, responseBytes: number): void {
    const key = `${service}\u0000${route}\u0000${method}\u0000${status}`
    let c = this.#serverChildren.get(key)
    if (!c) {
      const labels = { service, route, method: methodLabel(method), status: statusClass(status) }
      c = {
        requests: this.#serverRequests.labels(labels),
        duration: this.#serverDuration.labels(labels),
        requestSize: this.#serverRequestSize.labels(labels),
        responseSize: this.#serverResponseSize.labels(labels),
      }
      // Keys are bounded too (routes x methods x codes), but never let a flood of odd codes grow it.
      if (this.#serverChildren.size < 10_000) this.#serverChildren.set(key, c)
    }
    c.requests.inc()
    c.duration.observe(durationMs)
    c.requestSize.observe(requestBytes)
    c.responseSize.observe(responseBytes)
  }

  /** A tunnel was granted and its upstream connected. */
  tunnelOpened(route: string, kind: 'tcp' | 'udp'): void {
    this.#tunnelsOpen.inc({ route, kind })
  }

  /** A tunnel ended (route labels are bounded by the configuration, reasons by the code). */
  tunnelClosed(route: string, kind: 'tcp' | 'udp', reason: string, bytesFromClient: number, bytesToClient: number, durationMs: number): void {
    this.#tunnelsOpen.dec({ route, kind })
    this.#tunnelsClosed.inc({ route, kind, reason })
    this.#tunnelBytes.inc({ route, kind, direction: 'upstream' }, bytesFromClient)
    this.#tunnelBytes.inc({ route, kind, direction: 'downstream' }, bytesToClient)
    this.#tunnelDuration.observe({ route, kind }, durationMs)
  }

  /** One upstream exchange; `status` undefined when the upstream gave no answer. */
  httpClient(route: string, status: number | undefined, durationMs: number): void {
    const key = `${route}\u0000${status ?? 0}`
    let c = this.#clientChildren.get(key)
    if (!c) {
      const labels = { route, status: statusClass(status ?? 0) }
      c = { requests: this.#clientRequests.labels(labels), duration: this.#clientDuration.labels(labels) }
      if (this.#clientChildren.size < 10_000) this.#clientChildren.set(key, c)
    }
    c.requests.inc()
    c.duration.observe(durationMs)
  }

  storageOperation(backend: string, operation: string, ok: boolean, durationMs: number): void {
    this.#storageDuration.observe({ backend, operation, result: ok ? 'ok' : 'error' }, durationMs)
  }

  internalCall(method: string, status: number, durationMs: number): void {
    const labels = { grpc_method: method, status: String(status) }
    this.#internalRequests.inc(labels)
    this.#internalDuration.observe(labels, durationMs)
  }

  /** After every configuration load (the first one included). */
  configLoaded(success: boolean, details?: { routes: number; checksum: number }): void {
    this.#reloadSuccess.set(success ? 1 : 0)
    if (!success || !details) return
    this.#reloadTimestamp.set(Date.now() / 1000)
    this.#configChecksum.set(details.checksum)
    this.#policyCount.set(details.routes)
  }

  /**
   * The identity manager's gauges, registered when a process runs one (authenticate or
   * authorize): a proxy-only or databroker-only process does not export them.
   */
  #registerIdentityManagerGauges(): void {
    const gauge = (name: string, help: string, read: (m: IdentityManagerMetrics) => number | undefined, aggregator: 'sum' | 'max' = 'sum'): void =>
      this.#readGauge(name, help, () => this.#identityManager?.(), read, aggregator)
    const seconds = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : ms / 1000)
    gauge('pomerium_identity_manager_session_refresh_success', 'Sessions refreshed by this instance (counter since start).', (m) => m.sessionRefreshSuccess)
    gauge('pomerium_identity_manager_session_refresh_errors', 'Session refreshes that failed (counter since start).', (m) => m.sessionRefreshError)
    gauge('pomerium_identity_manager_session_deleted', 'Sessions deleted by the identity manager: ended or refused by the provider (Portcullis).', (m) => m.sessionDeleted)
    gauge('pomerium_identity_manager_user_refresh_success', 'User info re-reads that succeeded (counter since start).', (m) => m.userInfoRefreshSuccess)
    gauge('pomerium_identity_manager_user_refresh_errors', 'User info re-reads that failed (counter since start).', (m) => m.userInfoRefreshError)
    gauge('pomerium_identity_manager_last_refresh_timestamp', 'Unix time of the last successful refresh, in seconds.', (m) => seconds(m.lastRefreshAt), 'max')
    gauge('pomerium_identity_manager_session_refresh_success_timestamp', 'Unix time of the last session refresh, in seconds.', (m) => seconds(m.sessionRefreshSuccessAt), 'max')
    gauge('pomerium_identity_manager_session_refresh_error_timestamp', 'Unix time of the last failed session refresh, in seconds.', (m) => seconds(m.sessionRefreshErrorAt), 'max')
    gauge('pomerium_identity_manager_user_refresh_success_timestamp', 'Unix time of the last user info re-read, in seconds.', (m) => seconds(m.userInfoRefreshSuccessAt), 'max')
    gauge('pomerium_identity_manager_user_refresh_error_timestamp', 'Unix time of the last failed user info re-read, in seconds.', (m) => seconds(m.userInfoRefreshErrorAt), 'max')
    gauge('pomerium_identity_manager_leader', 'Whether this instance holds the identity manager lease (Portcullis).', (m) => (m.leader ? 1 : 0), 'max')
  }

  /** A gauge whose value is read from `source` at each scrape (reset when there is none). */
  #readGauge<M>(name: string, help: string, source: () => M | undefined, read: (m: M) => number | undefined, aggregator: 'sum' | 'max'): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      aggregator,
      collect() {
        const m = source()
        const v = m === undefined ? undefined : read(m)
        if (v !== undefined) this.set(v)
        else this.reset()
      },
    })
  }

  /** The directory sync's gauges (docs/directory.md), registered where a sync runs. */
  directorySync(read: () => DirectorySyncMetrics | undefined): void {
    if (this.#directory === undefined) {
      const gauge = (name: string, help: string, value: (m: DirectorySyncMetrics) => number | undefined, aggregator: 'sum' | 'max'): void =>
        this.#readGauge(name, help, () => this.#directory?.(), value, aggregator)
      gauge('portcullis_directory_sync_success', 'Directory syncs that succeeded (counter since start).', (m) => m.successes, 'sum')
      gauge('portcullis_directory_sync_errors', 'Directory syncs that failed; the previous data stayed in effect (counter since start).', (m) => m.errors, 'sum')
      gauge('portcullis_directory_sync_throttled', 'Directory API answers that asked to slow down (429, rate limits), counter since start.', (m) => m.throttled, 'sum')
      gauge('portcullis_directory_sync_last_success_timestamp', 'Unix time of the last successful directory sync, in seconds.', (m) => (m.lastSuccessAt === undefined ? undefined : m.lastSuccessAt / 1000), 'max')
      gauge('portcullis_directory_sync_stale', 'Whether this instance leads the sync and its last attempt failed, so older data is in use (1), or not (0).', (m) => (m.leader && m.stale ? 1 : 0), 'max')
      gauge('portcullis_directory_users', 'Users in the directory after the last sync.', (m) => m.users, 'max')
      gauge('portcullis_directory_groups', 'Groups in the directory after the last sync.', (m) => m.groups, 'max')
      gauge('portcullis_directory_sync_leader', 'Whether this instance holds the directory-sync lease.', (m) => (m.leader ? 1 : 0), 'max')
    }
    this.#directory = read
  }

  identityManager(read: () => IdentityManagerMetrics): void {
    if (this.#identityManager === undefined) this.#registerIdentityManagerGauges()
    this.#identityManager = read
  }

  async exposition(): Promise<string> {
    return await this.registry.metrics()
  }
}
