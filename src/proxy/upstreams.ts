/**
 * Upstream endpoints: connection pools, passive ejection and active health checks.
 *
 * http/https targets use an undici Pool (keep-alive, one per origin and TLS setting, shared by
 * every route and kept across config reloads when unchanged). h2c targets use one node:http2
 * session with prior knowledge, since undici does not speak cleartext HTTP/2.
 */
import { connect as http2Connect } from 'node:http2'
import type { ClientHttp2Session } from 'node:http2'
import { createHash } from 'node:crypto'
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import { lookup as dnsLookup } from 'node:dns'
import { connect as netConnect } from 'node:net'
import type { LookupAddress, LookupOptions } from 'node:dns'
import type { CircuitBreakers, Config, HealthCheckConfig, OutlierDetection, RouteConfig, TcpHealthCheck, UpstreamTarget, UpstreamTlsConfig } from '../config/types.js'
import type { Logger } from '../shared/log.js'
import { createBalancer } from './balancer.js'
import type { Balanced, Balancer } from './balancer.js'
import { UpstreamLoad } from './circuit-breaker.js'

/** A cleartext HTTP/2 connection, re-established when it closes or receives GOAWAY. */
export class H2cConnection {
  readonly #origin: string
  #session: ClientHttp2Session | undefined

  constructor(origin: string) {
    this.#origin = origin
  }

  session(): ClientHttp2Session {
    const current = this.#session
    if (current && !current.closed && !current.destroyed) return current
    const session = http2Connect(this.#origin)
    const forget = (): void => {
      if (this.#session === session) this.#session = undefined
    }
    session.on('error', forget)
    session.on('close', forget)
    session.on('goaway', forget)
    session.unref()
    this.#session = session
    return session
  }

  close(): void {
    this.#session?.close()
    this.#session = undefined
  }
}

/** How requests reach one upstream, and its circuit-breaker counters. */
export type Transport =
  | { readonly kind: 'pool'; readonly pool: Dispatcher; readonly load: UpstreamLoad }
  | { readonly kind: 'h2c'; readonly connection: H2cConnection; readonly load: UpstreamLoad }
  /** A tcp:// or udp:// target of a tunnel route: every tunnel dials its own connection. */
  | { readonly kind: 'raw'; readonly load: UpstreamLoad }

/** Keeps one transport per origin + TLS setting across config generations. */
export class TransportRegistry {
  readonly #transports = new Map<string, Transport>()

  get(target: UpstreamTarget, tls: UpstreamTlsConfig, options: ConnectOptions): { key: string; transport: Transport } {
    const limits = options.limits
    const key = `${transportKey(target, tls)}|${limits.maxConnections}/${limits.maxPendingRequests}/${limits.maxRequests}|${options.dnsLookupFamily}`
    let transport = this.#transports.get(key)
    if (!transport) {
      transport = createTransport(target, tls, options)
      this.#transports.set(key, transport)
    }
    return { key, transport }
  }

  /** Closes transports no current route uses; in-flight requests on them finish first. */
  sweep(inUse: ReadonlySet<string>): void {
    for (const [key, transport] of this.#transports) {
      if (inUse.has(key)) continue
      this.#transports.delete(key)
      void closeTransport(transport)
    }
  }

  async closeAll(): Promise<void> {
    const closing: Promise<void>[] = []
    for (const transport of this.#transports.values()) closing.push(closeTransport(transport, true))
    this.#transports.clear()
    await Promise.allSettled(closing)
  }
}

function closeTransport(transport: Transport, force = false): Promise<void> {
  if (transport.kind === 'raw') return Promise.resolve()
  if (transport.kind === 'h2c') {
    transport.connection.close()
    return Promise.resolve()
  }
  return force ? transport.pool.destroy() : transport.pool.close()
}

function transportKey(target: UpstreamTarget, tls: UpstreamTlsConfig): string {
  const url = target.url
  if (isUnixTarget(url)) return `${url.protocol}//${url.pathname}#${tlsDigest(tls)}`
  if (url.protocol !== 'https:') return `${url.protocol}//${url.host}`
  return `https://${url.host}#${tlsDigest(tls)}`
}

function tlsDigest(tls: UpstreamTlsConfig): string {
  return createHash('sha256')
    .update(JSON.stringify([tls.skipVerify, tls.serverName, tls.customCa, tls.clientCert, tls.clientKey]))
    .digest('hex')
    .slice(0, 16)
}

/** Connection settings that are not about TLS. */
export interface ConnectOptions {
  /** `circuit_breaker_thresholds`: connections, waiting and in-flight requests to one upstream. */
  readonly limits: CircuitBreakers
  readonly dnsLookupFamily: Config['dnsLookupFamily']
}

/** `dns_lookup_family` as net.connect options (Envoy's V4_PREFERRED = IPv4 addresses first). */
function dnsOptions(family: Config['dnsLookupFamily']): Record<string, unknown> {
  switch (family) {
    case 'V4_ONLY':
      return { family: 4 }
    case 'V6_ONLY':
      return { family: 6 }
    case 'V4_PREFERRED':
      return {
        lookup: (host: string, opts: LookupOptions, cb: LookupCallback) => dnsLookup(host, { ...opts, verbatim: false }, cb),
      }
    case 'AUTO':
    case 'ALL':
      return {}
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

function createTransport(target: UpstreamTarget, tls: UpstreamTlsConfig, options: ConnectOptions): Transport {
  const url = target.url
  if (url.protocol === 'tcp:' || url.protocol === 'udp:') {
    // Envoy's TCP proxy bounds upstream connections (max_connections); each tunnel is one.
    return { kind: 'raw', load: new UpstreamLoad({ ...options.limits, maxRequests: options.limits.maxConnections }, false) }
  }
  if (url.protocol === 'h2c:') {
    return { kind: 'h2c', connection: new H2cConnection(`http://${url.host}`), load: new UpstreamLoad(options.limits, false) }
  }
  const unix = isUnixTarget(url)
  const tlsUpstream = url.protocol === 'https:' || url.protocol === 'https+unix:'
  // A unix-socket upstream has no host: undici wants an origin, and the socket path does the rest.
  const origin = unix ? (tlsUpstream ? 'https://localhost' : 'http://localhost') : `${url.protocol}//${url.host}`
  const connect: Record<string, unknown> = unix ? {} : { ...dnsOptions(options.dnsLookupFamily) }
  if (tlsUpstream) {
    // Verification stays on unless the route opts out with tls_skip_verify.
    connect['rejectUnauthorized'] = !tls.skipVerify
    const serverName = tls.serverName ?? (unix || isIpLiteral(url.hostname) ? undefined : url.hostname)
    if (serverName !== undefined) connect['servername'] = serverName
    if (tls.customCa !== undefined) connect['ca'] = tls.customCa
    if (tls.clientCert !== undefined && tls.clientKey !== undefined) {
      connect['cert'] = tls.clientCert
      connect['key'] = tls.clientKey
    }
  }
  const pool = new Pool(origin, {
    connect,
    ...(unix ? { socketPath: decodeURIComponent(url.pathname) } : {}),
    connections: options.limits.maxConnections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 300_000,
    headersTimeout: 0,
    bodyTimeout: 0,
    // Node's own parser limit on the client side matches the 128 KiB header limit downstream.
    maxHeaderSize: 128 * 1024,
  })
  return { kind: 'pool', pool, load: new UpstreamLoad(options.limits, true) }
}

/** `http+unix:///run/app.sock`: the URL path is the socket path. */
export function isUnixTarget(url: URL): boolean {
  return url.protocol === 'http+unix:' || url.protocol === 'https+unix:'
}

function isIpLiteral(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.startsWith('[')
}

/** One `to` target of one route. Health state is per config generation. */
export class Endpoint implements Balanced {
  readonly key: string
  readonly weight: number
  /** Position in the route's `to` list. */
  readonly index: number
  readonly target: UpstreamTarget
  readonly transport: Transport
  readonly transportKey: string
  active = 0
  healthy = true
  ejectedUntil = 0
  #consecutiveFailures = 0
  #ejections = 0
  readonly #outlier: OutlierDetection

  constructor(target: UpstreamTarget, index: number, transport: { key: string; transport: Transport }, outlier: OutlierDetection) {
    this.target = target
    this.index = index
    this.key = target.url.href
    this.weight = target.weight
    this.transport = transport.transport
    this.transportKey = transport.key
    this.#outlier = outlier
  }

  isAvailable(now: number): boolean {
    return this.healthy && now >= this.ejectedUntil
  }

  /** Records how a forwarded request went: `failed` means connect error, timeout or (optionally) a 5xx. */
  recordOutcome(status: number | undefined): void {
    const failed = status === undefined || (this.#outlier.count5xx ? status >= 500 : status === 502 || status === 503 || status === 504)
    if (!failed) {
      this.#consecutiveFailures = 0
      return
    }
    this.#consecutiveFailures++
    if (this.#consecutiveFailures >= this.#outlier.consecutiveFailures) {
      this.#consecutiveFailures = 0
      this.#ejections++
      const duration = Math.min(this.#outlier.baseEjectionMs * this.#ejections, this.#outlier.maxEjectionMs)
      this.ejectedUntil = Date.now() + duration
    }
  }
}

/** The upstreams of one route: endpoints, their balancer and their health checkers. */
export class Cluster {
  readonly endpoints: readonly Endpoint[]
  readonly balancer: Balancer<Endpoint>
  readonly #checkers: HealthChecker[] = []

  constructor(route: RouteConfig, registry: TransportRegistry, dnsLookupFamily: Config['dnsLookupFamily'], logger: Logger) {
    const outlier = route.outlierDetection
    const connect: ConnectOptions = { limits: route.circuitBreakers, dnsLookupFamily }
    this.endpoints = route.to.map((t, i) => new Endpoint(t, i, registry.get(t, route.tls, connect), outlier))
    this.balancer = createBalancer(route.loadBalancingPolicy, this.endpoints, route.healthyPanicThresholdPercent)
    for (const hc of route.healthChecks) {
      if (!hc.http && !hc.tcp) continue
      for (const endpoint of this.endpoints) this.#checkers.push(new HealthChecker(endpoint, hc, route, logger))
    }
  }

  start(): void {
    for (const c of this.#checkers) c.start()
  }

  stop(): void {
    for (const c of this.#checkers) c.stop()
  }
}

/** Active HTTP health checking of one endpoint, with Envoy's threshold semantics. */
class HealthChecker {
  readonly #endpoint: Endpoint
  readonly #hc: HealthCheckConfig
  readonly #host: string
  readonly #logger: Logger
  readonly #routeName: string
  #timer: NodeJS.Timeout | undefined
  #successes = 0
  #failures = 0
  #stopped = false

  constructor(endpoint: Endpoint, hc: HealthCheckConfig, route: RouteConfig, logger: Logger) {
    this.#endpoint = endpoint
    this.#hc = hc
    this.#host = hc.http?.host ?? endpoint.target.url.host
    this.#logger = logger
    this.#routeName = route.name ?? route.fromUrl
  }

  start(): void {
    this.#schedule(0)
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
  }

  #schedule(delay: number): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => void this.#probe(), delay)
    this.#timer.unref()
  }

  async #probe(): Promise<void> {
    const { http, tcp } = this.#hc
    let ok = false
    try {
      if (http) {
        const status = await probe(this.#endpoint.transport, this.#endpoint.target, http.path, this.#host, this.#hc.timeoutMs)
        ok = http.expectedStatuses.some(([lo, hi]) => status >= lo && status < hi)
      } else if (tcp) {
        ok = await probeTcp(this.#endpoint.target.url, tcp, this.#hc.timeoutMs)
      }
    } catch {
      ok = false
    }
    if (this.#stopped) return
    if (ok) {
      this.#failures = 0
      this.#successes++
      if (!this.#endpoint.healthy && this.#successes >= this.#hc.healthyThreshold) {
        this.#endpoint.healthy = true
        this.#logger.info({ route: this.#routeName, upstream: this.#endpoint.key }, 'upstream passed health checks')
      }
    } else {
      this.#successes = 0
      this.#failures++
      if (this.#endpoint.healthy && this.#failures >= this.#hc.unhealthyThreshold) {
        this.#endpoint.healthy = false
        this.#logger.warn({ route: this.#routeName, upstream: this.#endpoint.key }, 'upstream failed health checks')
      }
    }
    this.#schedule(this.#hc.intervalMs)
  }
}

/**
 * Envoy's TCP health check: the connection opens, and when `send` is set, the answer contains
 * every `receive` string in order before the timeout. Only tcp:// (and http(s):// proxy) targets.
 */
function probeTcp(url: URL, check: TcpHealthCheck, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) || (url.protocol === 'https:' ? 443 : 80) })
    let received = Buffer.alloc(0)
    let next = 0
    const finish = (ok: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs > 0 ? timeoutMs : 5000)
    socket.once('error', () => finish(false))
    socket.once('connect', () => {
      if (check.receive.length === 0) {
        if (check.send) socket.write(check.send)
        finish(true)
        return
      }
      if (check.send) socket.write(check.send)
    })
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]).subarray(-64 * 1024)
      while (next < check.receive.length) {
        const expected = check.receive[next] as Buffer
        const at = received.indexOf(expected)
        if (at === -1) return
        received = received.subarray(at + expected.length)
        next++
      }
      finish(true)
    })
    socket.once('end', () => finish(false))
  })
}

async function probe(transport: Transport, target: UpstreamTarget, path: string, host: string, timeoutMs: number): Promise<number> {
  const signal = AbortSignal.timeout(timeoutMs > 0 ? timeoutMs : 5000)
  if (transport.kind === 'raw') throw new Error('HTTP health checks need an HTTP upstream')
  if (transport.kind === 'pool') {
    const res = await transport.pool.request({ path, method: 'GET', headers: { host, 'user-agent': 'Portcullis-HealthCheck' }, signal })
    await res.body.dump()
    return res.statusCode
  }
  void target
  return await new Promise<number>((resolve, reject) => {
    const stream = transport.connection.session().request({ ':path': path, ':method': 'GET', ':authority': host }, { signal })
    stream.on('response', (headers) => {
      resolve(Number(headers[':status']))
      stream.close()
    })
    stream.on('error', reject)
    stream.end()
  })
}
