/**
 * The proxy service: listeners, and the request pipeline
 *   hygiene -> internal paths -> route -> redirect/response routes -> authorize -> forward.
 *
 * One TLS listener serves HTTP/1.1 and HTTP/2 (chosen by ALPN) by handing each connection to an
 * HTTP/1.1 or an HTTP/2 server object, so both share the same handler and limits. All state that
 * depends on config lives in a `ProxyState` that is swapped whole on reload.
 */
import { randomUUID } from 'node:crypto'
import { createServer as createHttpServer, ServerResponse } from 'node:http'
import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { createServer as createHttp2Server } from 'node:http2'
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, Http2Session } from 'node:http2'
import type { AddressInfo, Server as NetServer, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { MAX_ENDPOINT_BODY } from '../authenticate/endpoint.js'
import type { EndpointRequest, EndpointResponse } from '../authenticate/endpoint.js'
import type { Authorizer, CheckRequest, CheckResult } from '../authorize/types.js'
import type { Config, RouteConfig } from '../config/types.js'
import type { Logger } from '../shared/log.js'
import type { HttpService, PortcullisMetrics } from '../observability/metrics.js'
import { SpanKind } from '../observability/tracing.js'
import type { RequestTrace, Tracing } from '../observability/tracing.js'
import { prefersJson } from '../ui/negotiate.js'
import { statusTitle } from './error-page.js'
import { guardedRequestListener } from '../shared/boundary.js'
import { runGuarded } from './boundary.js'
import type { HandlerOutcome } from './boundary.js'
import type { FaultInjector } from './fault.js'
import { forward } from './forward.js'
import { createFront, kClientAddress } from './front.js'
import type { Front } from './front.js'
import type { AnyRequest } from './forward.js'
import { buildUpstreamHeaders } from './headers.js'
import { normaliseRemote, parseAuthority, screenHeaders, trustedClientIp } from './request-checks.js'
import { normaliseTarget, parameterAmbiguity, pathAmbiguity } from './request-target.js'
import type { AnyResponse } from './respond.js'
import { sendBody, sendDenial, sendError } from './respond.js'
import { upstreamHost, upstreamPath } from './rewrite.js'
import { ProxyState } from './state.js'
import type { RoutePlan } from './state.js'
import { rejectUpgrade, tunnelUpgrade } from './upgrade.js'
import { TransportRegistry } from './upstreams.js'
import type { Endpoint } from './upstreams.js'

/** The `Allow` header of the 405 for TRACE: every method the proxy forwards (routes may narrow it). */
const ALLOWED_EXCEPT_TRACE = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

export const MAX_HEADER_BYTES = 128 * 1024
/** HTTP/2 listener limits per connection, as Pomerium sets them (see docs/proxy.md). */
const H2_MAX_CONCURRENT_STREAMS = 100
const H2_INITIAL_STREAM_WINDOW = 64 * 1024
/** Slow-header protection: the whole request head must arrive within this time. */
const HEADERS_TIMEOUT_MS = 10_000

/** Portcullis' own endpoints (authenticate host, `/.pomerium/*` on route hosts). */
export interface Endpoints {
  /** Whether a request for this host and normalised path is answered by Portcullis itself. */
  claims(host: string, path: string): boolean
  handle(request: EndpointRequest): Promise<EndpointResponse>
  /** Which service answers this host's endpoints (the `service` label of the request metrics). */
  serviceFor?(host: string): HttpService
}

export interface ProxyDeps {
  readonly authorizer: Authorizer
  readonly logger: Logger
  readonly endpoints?: Endpoints
  /** Request metrics; none are recorded without it. */
  readonly metrics?: PortcullisMetrics | undefined
  /** Tracing; absent when off, and then the request path has no tracing code at all. */
  readonly tracing?: Tracing | undefined
  /** For tests only (src/proxy/fault.ts): makes chosen paths fail inside the handlers. */
  readonly faults?: FaultInjector | undefined
}

/** The upstream headers with the client's trace context replaced by ours (the upstream span). */
function withTraceparent(headers: string[], traceparent: string): string[] {
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    const name = (headers[i] as string).toLowerCase()
    if (name === 'traceparent' || name === 'tracestate') continue
    out.push(headers[i] as string, headers[i + 1] as string)
  }
  if (traceparent !== '') out.push('traceparent', traceparent)
  return out
}

/** The `route` label of a route's metrics: its name, else its id (bounded by the configuration). */
export function routeLabel(route: RouteConfig): string {
  return route.name ?? route.id
}

export interface ListenerInfo {
  readonly name: 'main' | 'http_redirect' | 'grpc' | 'metrics' | 'health'
  readonly url: string
  readonly port: number
}


/** What the request head resolved to before authorisation. */
type Prepared =
  | {
      readonly kind: 'endpoint'
      readonly host: string
      readonly authority: string
      readonly path: string
      readonly query: string
      readonly clientIp: string
    }
  | { readonly kind: 'reply'; readonly status: number; readonly message: string; readonly location?: string; readonly log: boolean; readonly text?: string; readonly allow?: string }
  | {
      readonly kind: 'route'
      readonly plan: RoutePlan
      readonly host: string
      readonly authority: string
      readonly path: string
      readonly query: string
      readonly clientIp: string
      readonly remote: string
    }

export class ProxyServer {
  #state: ProxyState
  readonly #registry = new TransportRegistry()
  readonly #deps: ProxyDeps
  readonly #h1: HttpServer
  readonly #h2: Http2Server
  #front: Front | undefined
  #redirect: HttpServer | undefined
  readonly #sockets = new Set<Socket>()
  readonly #sessions = new Set<Http2Session>()
  #draining = false
  /** Upgrade sockets handed to a tunnel: the error boundary must not write an answer on them. */
  readonly #tunnelled = new WeakSet<Duplex>()

  constructor(config: Config, deps: ProxyDeps) {
    this.#deps = deps
    this.#state = new ProxyState(config, this.#registry, deps.logger)
    this.#h1 = createHttpServer({
      maxHeaderSize: MAX_HEADER_BYTES,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
      connectionsCheckingInterval: 1000,
      noDelay: true,
    })
    this.#h1.on('request', (req: IncomingMessage, res: ServerResponse) => this.#handleRequest(req, res, false))
    // With a listener here Node no longer answers `Expect: 100-continue` by itself: the proxy
    // sends `100 Continue` only once the request is allowed (a refusal closes the connection).
    this.#h1.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.#handleRequest(req, res, true))
    this.#h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#handleUpgrade(req, socket, head))
    this.#h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket))
    // #h1 never listens itself (connections are handed to it), but Node starts the connection
    // tracking behind headersTimeout/requestTimeout and closeIdleConnections() on 'listening'.
    // Without it, slow headers are never cut off and idle keep-alives stall shutdown.
    this.#h1.emit('listening')
    this.#h2 = createHttp2Server({
      settings: {
        maxHeaderListSize: MAX_HEADER_BYTES,
        // Pomerium's HTTP/2 settings (Envoy's edge recommendations). Node sends no stream cap by
        // default (unlimited), and one connection could hold thousands of upstream requests.
        maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
        // What a client may send on a stream before the proxy has read it, so one connection
        // buffers at most 100 x 64 KiB of request bodies.
        initialWindowSize: H2_INITIAL_STREAM_WINDOW,
      },
      // nghttp2's own memory per session (headers, frames waiting to be sent), in MB: past it new
      // streams are refused. Node's default, stated here because the bound matters.
      maxSessionMemory: 10,
    })
    this.#h2.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#handleRequest(req, res, false))
    this.#h2.on('checkContinue', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#handleRequest(req, res, true))
    this.#h2.on('session', (session: Http2Session) => {
      this.#sessions.add(session)
      session.once('close', () => this.#sessions.delete(session))
      if (this.#draining) session.close()
    })
    this.#applyTimeouts(config)
  }

  get config(): Config {
    return this.#state.config
  }

  /** Starts the listeners named by the config and resolves with their addresses. */
  async listen(): Promise<ListenerInfo[]> {
    const config = this.#state.config
    const infos: ListenerInfo[] = []
    const scheme = this.#state.scheme
    const front = createFront({
      insecure: config.insecureServer,
      codec: config.codecType,
      proxyProtocol: config.useProxyProtocol,
      certificates: () => this.#state.certificates,
      handshakeTimeoutMs: HEADERS_TIMEOUT_MS,
      track: (socket) => {
        this.#sockets.add(socket)
        socket.once('close', () => this.#sockets.delete(socket))
        if (this.#draining) socket.destroy()
      },
      deliver: (socket, protocol) => {
        if (protocol === 'h2') this.#h2.emit('connection', socket)
        else this.#h1.emit('connection', socket)
      },
    })
    this.#front = front
    const port = await listenOn(front.server, config.address.host, config.address.port)
    infos.push({ name: 'main', url: `${scheme}://${displayHost(config.address.host)}:${port}`, port })
    if (config.httpRedirectAddr) {
      // Inside the boundary every listener has (src/shared/boundary.ts), test faults included.
      const redirect = createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, guardedRequestListener((req, res) => {
        const fault = this.#deps.faults?.((req.url ?? '/').split('?')[0] ?? '/')
        if (fault) return fault
        const auth = parseAuthority(req.headers.host)
        if (!auth) {
          res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end('Bad Request\n')
          return undefined
        }
        res.writeHead(301, { location: `https://${auth.host}${req.url ?? '/'}`, connection: 'close', 'content-length': 0 }).end()
        return undefined
      }, { listener: 'http_redirect', logger: this.#deps.logger }))
      this.#redirect = redirect
      const rport = await listenOn(redirect, config.httpRedirectAddr.host, config.httpRedirectAddr.port)
      infos.push({ name: 'http_redirect', url: `http://${displayHost(config.httpRedirectAddr.host)}:${rport}`, port: rport })
    }
    this.#state.start()
    return infos
  }

  /** Swaps in a new config. Listener addresses are fixed for the life of the process. */
  applyConfig(config: Config): void {
    const previous = this.#state
    const next = new ProxyState(config, this.#registry, this.#deps.logger)
    this.#state = next
    next.start()
    previous.stop()
    this.#registry.sweep(next.transportKeys)
    this.#applyTimeouts(config)
    const pair = next.certificates?.defaultPair
    if (pair) this.#front?.setDefaultCertificate(pair.cert, pair.key)
    const a = previous.config
    if (
      a.address.host !== config.address.host ||
      a.address.port !== config.address.port ||
      a.insecureServer !== config.insecureServer ||
      a.codecType !== config.codecType ||
      a.useProxyProtocol !== config.useProxyProtocol
    ) {
      this.#deps.logger.warn('address, insecure_server, codec_type and use_proxy_protocol changes take effect only after a restart')
    }
  }

  /**
   * Stops accepting, lets requests in flight finish for up to `graceMs`, then closes whatever is
   * left. WebSocket tunnels count as in flight.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.#draining = true
    const closed = [this.#front?.server, this.#redirect].map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve()))
    this.#h1.closeIdleConnections()
    for (const session of this.#sessions) session.close()
    const deadline = Date.now() + graceMs
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      this.#h1.closeIdleConnections()
      await new Promise((r) => setTimeout(r, 50))
    }
    for (const socket of this.#sockets) socket.destroy()
    for (const session of this.#sessions) session.destroy()
    this.#redirect?.closeAllConnections()
    await Promise.all(closed)
    this.#state.stop()
    await this.#registry.closeAll()
  }

  #applyTimeouts(config: Config): void {
    this.#h1.requestTimeout = config.timeoutReadMs
    this.#h1.headersTimeout = config.timeoutReadMs > 0 ? Math.min(HEADERS_TIMEOUT_MS, config.timeoutReadMs) : HEADERS_TIMEOUT_MS
    this.#h1.keepAliveTimeout = config.timeoutIdleMs
    this.#h2.setTimeout(config.timeoutIdleMs)
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable) {
      socket.destroy()
      return
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    const body = `${status} ${statusTitle(status)}\n`
    socket.end(`HTTP/1.1 ${status} ${statusTitle(status)}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`)
  }

  /** Hygiene, internal paths and routing: everything before authorisation. */
  #prepare(req: AnyRequest, state: ProxyState): Prepared {
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
    if (this.#deps.endpoints?.claims(auth.host, path)) {
      const clientIp = trustedClientIp(clientAddressOf(req), req.headers['x-forwarded-for'], config.xffNumTrustedHops)
      return { kind: 'endpoint', host: auth.host, authority: rawAuthority as string, path, query: target.query, clientIp }
    }
    if (isInternalPath(path)) {
      // Reserved for Portcullis' own endpoints on every host; never forwarded upstream.
      return { kind: 'reply', status: 404, message: 'This Portcullis endpoint is not available.', log: true }
    }
    const port = auth.port ?? (state.scheme === 'https' ? 443 : 80)
    const route = state.table.match(auth.host, port, path)
    if (!route) return { kind: 'reply', status: 404, message: `No route is configured for ${auth.host}${path}.`, log: true }
    // Only the matched route knows whether its upstream needs such paths; the answer still comes
    // before authorisation, so a policy never judges a path the upstream would read differently.
    const plan = state.plans.get(route) as RoutePlan
    // `/admin;x/secret` is `/admin/secret` to Tomcat: refused when that would be another route
    // (a protected prefix walked around) or another decision (an http_path rule walked around).
    const ambiguity = route.allowAmbiguousPaths
      ? undefined
      : (pathAmbiguity(path) ??
        parameterAmbiguity(path, (stripped) => state.table.match(auth.host, port, stripped) === route && plan.pathComparison?.(path, stripped) !== true))
    if (ambiguity) return { kind: 'reply', status: 400, message: `Bad request: the path contains ${ambiguity}.`, log: true }
    const remote = clientAddressOf(req)
    const clientIp = trustedClientIp(remote, req.headers['x-forwarded-for'], config.xffNumTrustedHops)
    return { kind: 'route', plan, host: auth.host, authority: rawAuthority as string, path, query: target.query, clientIp, remote }
  }

  /** The access-log call for one request; fields that depend on routing come from `prepared`. */
  #accessLogFor(req: AnyRequest, state: ProxyState, requestId: string, prepared: Prepared): (status: number, bytes: number, details: string) => void {
    const startedAt = Date.now()
    return (status, bytes, details) => {
      const routed = prepared.kind === 'route' ? prepared : undefined
      const local = prepared.kind === 'endpoint' ? prepared : undefined
      state.accessLog({
        requestId,
        method: req.method ?? 'GET',
        authority: authorityOf(req) ?? '',
        // Never the raw target of a refused request: its query may carry tokens.
        path: routed?.path ?? local?.path ?? (req.url ?? '').split('?')[0] ?? '',
        // Portcullis' own endpoints carry sealed sessions and signatures in their queries: never logged.
        query: routed?.query ?? '',
        headers: req.headers,
        clientIp: routed?.clientIp ?? local?.clientIp ?? clientAddressOf(req),
        forwardedFor: joinHeader(req.headers['x-forwarded-for']),
        startedAt,
        status,
        details,
        bytes,
        upstreamCluster: routed?.plan.clusterName ?? '',
        clusterStatName: routed?.plan.route.name ?? '',
        request: req,
      })
      const metrics = this.#deps.metrics
      if (metrics) {
        const service = local ? (this.#deps.endpoints?.serviceFor?.(local.host) ?? 'proxy') : 'proxy'
        const length = Number(req.headers['content-length'])
        metrics.httpServer(service, routed ? routeLabel(routed.plan.route) : '', req.method ?? 'GET', status, Date.now() - startedAt, Number.isFinite(length) ? length : 0, bytes)
      }
    }
  }

  /** Upstream metrics of one forwarded request; undefined without metrics. */
  #upstreamMetrics(route: RouteConfig): ((status: number | undefined, durationMs: number) => void) | undefined {
    const metrics = this.#deps.metrics
    if (!metrics) return undefined
    const label = routeLabel(route)
    return (status, durationMs) => metrics.httpClient(label, status, durationMs)
  }

  /**
   * After an allow decision: picks the endpoint and computes what the upstream receives (path,
   * Host, headers). Shared by plain requests and upgrades so that both apply the same rules.
   */
  #upstreamRequest(
    req: AnyRequest,
    p: Extract<Prepared, { kind: 'route' }>,
    result: Extract<CheckResult, { allow: true }>,
    state: ProxyState,
    requestId: string,
    upgrade: string | undefined,
  ): { endpoint: Endpoint; host: string; path: string; headers: string[] } | undefined {
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

  /**
   * The error boundary of every request (src/proxy/boundary.ts): whatever fails inside the
   * handler costs this request a `500` with its request id, never the process.
   */
  #handleRequest(req: AnyRequest, res: AnyResponse, expectsContinue: boolean): void {
    const requestId = randomUUID()
    runGuarded(
      () => this.#onRequest(req, res, requestId, expectsContinue),
      (err) => {
        this.#deps.logger.error({ err, requestId }, 'request handling failed')
        if (res.writableEnded) return
        if (res.headersSent) {
          res.destroy()
          return
        }
        const json = prefersJson(req.headers.accept)
        sendError(res, 500, 'The request could not be completed.', requestId, json, this.#state.localHeaders, req.method === 'HEAD')
      },
    )
  }

  /**
   * `expectsContinue`: the client sent `Expect: 100-continue` and waits for `100 Continue`.
   * Returns the promise of the work left running, for the error boundary.
   */
  #onRequest(req: AnyRequest, res: AnyResponse, requestId: string, expectsContinue: boolean): HandlerOutcome {
    const state = this.#state
    const method = req.method ?? 'GET'
    const json = prefersJson(req.headers.accept)
    const headOnly = method === 'HEAD'
    if (this.#draining && !('stream' in req)) res.setHeader('connection', 'close')
    const prepared = this.#prepare(req, state)
    const logged = this.#accessLogFor(req, state, requestId, prepared)
    if (prepared.kind === 'reply') {
      const bytes = this.#reply(res, prepared, requestId, json, headOnly, state)
      if (prepared.log) logged(prepared.status, bytes, 'local_reply')
      return
    }
    const rt = this.#deps.tracing?.startRequest(method, prepared.host, prepared.path, req.headers, prepared.query)
    const log = rt ? this.#tracedLog(rt, logged, prepared) : logged
    if (prepared.kind === 'endpoint') {
      if (rt) return rt.run(() => this.#endpoint(req, res, prepared, requestId, state, log, expectsContinue))
      return this.#endpoint(req, res, prepared, requestId, state, log, expectsContinue)
    }
    const { plan } = prepared
    const route = plan.route
    if (route.redirect || route.response) {
      const bytes = this.#directRoute(res, route, prepared, headOnly, requestId, state)
      log(res.statusCode, bytes, 'direct_response')
      return
    }
    if (method === 'CONNECT') {
      const bytes = sendError(res, 405, 'CONNECT is not supported on this route.', requestId, json, state.localHeaders, false)
      log(405, bytes, 'local_reply')
      return
    }
    const authorizeSpan = rt?.child('authorize check', SpanKind.INTERNAL)
    const then = (result: CheckResult): HandlerOutcome => {
      authorizeSpan?.end({ 'portcullis.allow': result.allow, ...(result.allow ? {} : { 'portcullis.status': result.status }) })
      // After the decision, so that an injected fault travels the way a real one would.
      const fault = this.#deps.faults?.(prepared.path)
      if (fault) return fault
      if (!result.allow) {
        const bytes = sendDenial(res, result, requestId, json, state.localHeaders, headOnly)
        log(result.status, bytes, 'ext_authz_denied')
        return
      }
      const upstream = this.#upstreamRequest(req, prepared, result, state, requestId, undefined)
      if (!upstream) {
        const bytes = sendError(res, 503, 'No healthy upstream is available for this route.', requestId, json, state.localHeaders, headOnly)
        log(503, bytes, 'no_healthy_upstream')
        return
      }
      const upstreamSpan = rt?.child('upstream request', SpanKind.CLIENT, { 'server.address': upstream.endpoint.target.url.host })
      const metricsDone = this.#upstreamMetrics(route)
      forward({
        // The client may send its body once it is allowed and the upstream admits it (forward).
        expectsContinue,
        req,
        res,
        requestId,
        method,
        path: upstream.path,
        authority: upstream.host,
        headers: upstreamSpan ? withTraceparent(upstream.headers, upstreamSpan.traceparent()) : upstream.headers,
        endpoint: upstream.endpoint,
        plan: plan.headers,
        timeoutMs: minNonZero(route.timeoutMs, state.config.timeoutWriteMs),
        idleTimeoutMs: route.idleTimeoutMs,
        json,
        errorHeaders: state.localHeaders,
        done: log,
        upstreamDone: upstreamSpan
          ? (status, ms) => {
              upstreamSpan.end(status === undefined ? {} : { 'http.response.status_code': status }, status === undefined || status >= 500)
              metricsDone?.(status, ms)
            }
          : metricsDone,
      })
    }
    const fail = (err: unknown): void => {
      authorizeSpan?.end({}, true)
      this.#deps.logger.error({ err, requestId }, 'authorize failed')
      const bytes = sendError(res, 500, 'Authorization could not be completed.', requestId, json, state.localHeaders, headOnly)
      log(500, bytes, 'ext_authz_error')
    }
    const check = this.#checkRequest(req, prepared, requestId, state)
    if (authorizeSpan) return authorizeSpan.run(() => this.#authorize(check, then, fail))
    return this.#authorize(check, then, fail)
  }

  /** Ends the request span with the access log line. */
  #tracedLog(rt: RequestTrace, log: (status: number, bytes: number, details: string) => void, prepared: Prepared): (status: number, bytes: number, details: string) => void {
    const route = prepared.kind === 'route' ? routeLabel(prepared.plan.route) : undefined
    return (status, bytes, details) => {
      log(status, bytes, details)
      rt.end(status, { 'portcullis.response_details': details, ...(route !== undefined ? { 'portcullis.route': route } : {}) })
    }
  }

  /** Reads a small body, lets the endpoint answer, and writes its response with the global response headers. */
  #endpoint(
    req: AnyRequest,
    res: AnyResponse,
    p: Extract<Prepared, { kind: 'endpoint' }>,
    requestId: string,
    state: ProxyState,
    log: (status: number, bytes: number, details: string) => void,
    expectsContinue: boolean,
  ): Promise<void> {
    const endpoints = this.#deps.endpoints as Endpoints
    const method = req.method ?? 'GET'
    const headOnly = method === 'HEAD'
    const json = prefersJson(req.headers.accept)
    const fail = (status: number, message: string): void => {
      const bytes = sendError(res, status, message, requestId, json, state.localHeaders, headOnly)
      log(status, bytes, 'local_reply')
    }
    // Portcullis' own endpoints judge the request themselves, from its body among others.
    if (expectsContinue) res.writeContinue()
    return readSmallBody(req, method === 'POST' ? MAX_ENDPOINT_BODY : 0).then(
      (body) => {
        if (body === undefined) {
          fail(413, 'The request body is too large.')
          return
        }
        return endpoints
          .handle({ requestId, method, host: p.host, authority: p.authority, path: p.path, query: p.query, headers: req.headers, body, clientIp: p.clientIp, scheme: state.scheme, clientCertificate: state.clientCertificateFor(req) })
          .then(
            (answer) => {
              const headers: Record<string, string | string[]> = { ...answer.headers, ...state.localHeaders, 'x-request-id': requestId }
              if (answer.cookies && answer.cookies.length > 0) headers['set-cookie'] = [...answer.cookies]
              const bytes = sendBody(res, answer.status, headers, answer.body, headOnly)
              log(answer.status, bytes, 'portcullis_endpoint')
            },
            (err: unknown) => {
              this.#deps.logger.error({ err, requestId }, 'endpoint failed')
              fail(500, 'The request could not be completed.')
            },
          )
      },
      () => fail(400, 'The request body could not be read.'),
    )
  }

  /** Returns what `then` returned, or the promise of `then`/`fail` when the decision is asynchronous, for the error boundary. */
  #authorize(check: CheckRequest, then: (r: CheckResult) => HandlerOutcome, fail: (err: unknown) => void): HandlerOutcome {
    let result: CheckResult | Promise<CheckResult>
    try {
      result = this.#deps.authorizer.check(check)
    } catch (err) {
      fail(err)
      return undefined
    }
    if (result instanceof Promise) return result.then(then, fail)
    return then(result)
  }

  #checkRequest(req: AnyRequest, p: Extract<Prepared, { kind: 'route' }>, requestId: string, state: ProxyState): CheckRequest {
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
    }
  }

  #reply(res: AnyResponse, p: Extract<Prepared, { kind: 'reply' }>, requestId: string, json: boolean, headOnly: boolean, state: ProxyState): number {
    if (p.text !== undefined) {
      return sendBody(res, p.status, { 'content-type': 'text/plain', 'x-request-id': requestId }, p.text, headOnly)
    }
    const headers: Record<string, string> = { ...state.localHeaders }
    if (p.location !== undefined) headers['location'] = p.location
    if (p.allow !== undefined) headers['allow'] = p.allow
    return sendError(res, p.status, p.message, requestId, json, headers, headOnly)
  }

  #directRoute(res: AnyResponse, route: RouteConfig, p: Extract<Prepared, { kind: 'route' }>, headOnly: boolean, requestId: string, state: ProxyState): number {
    const headers: Record<string, string> = { ...state.localHeaders, 'x-request-id': requestId }
    if (route.response) {
      headers['content-type'] = 'text/plain; charset=utf-8'
      return sendBody(res, route.response.status, headers, route.response.body, headOnly)
    }
    const r = route.redirect
    if (!r) return 0
    const scheme = r.httpsRedirect ? 'https' : (r.schemeRedirect ?? state.scheme)
    let host = r.hostRedirect ?? p.host
    if (r.portRedirect !== undefined) host = `${host.replace(/:\d+$/, '')}:${r.portRedirect}`
    else if (r.hostRedirect === undefined && (p.authority.match(/:(\d+)$/) ?? [])[1] && !r.httpsRedirect && r.schemeRedirect === undefined) {
      host = p.authority.toLowerCase()
    }
    let path = p.path
    if (r.pathRedirect !== undefined) path = r.pathRedirect
    else if (r.prefixRewrite !== undefined) path = r.prefixRewrite + p.path.slice((route.prefix ?? '/').length)
    const query = r.stripQuery ? '' : p.query
    headers['location'] = `${scheme}://${host}${path}${query}`
    return sendBody(res, r.responseCode, headers, '', headOnly)
  }

  /** The error boundary of every upgrade request, as `#handleRequest` is for the others. */
  #handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const requestId = randomUUID()
    runGuarded(
      () => this.#onUpgrade(req, socket, head, requestId),
      (err) => {
        this.#deps.logger.error({ err, requestId }, 'upgrade handling failed')
        // Once a tunnel owns the socket, no HTTP answer can be written on it any more.
        if (this.#tunnelled.has(socket)) socket.destroy()
        else if (!socket.destroyed && !socket.writableEnded) rejectUpgrade(socket, 500, 'Internal Server Error', 'The request could not be completed.', requestId)
      },
    )
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string): HandlerOutcome {
    const token = (req.headers.upgrade ?? '').trim().toLowerCase()
    if (token === 'h2c') {
      if ((req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined) {
        // Node has already taken such a request's body off the HTTP parser; rather than forward
        // it without its body, refuse it (clients retry h2c offers without the Upgrade header).
        rejectUpgrade(socket, 400, 'Bad Request', 'An h2c upgrade offer with a request body is not supported.', requestId)
        return
      }
      // Clients such as curl offer h2c opportunistically. Node hands every Upgrade request to
      // this handler with a bare socket, so build the response object it would have made and
      // answer over HTTP/1.1 as if nothing had been offered.
      const res = new ServerResponse(req)
      res.assignSocket(socket as Socket)
      res.shouldKeepAlive = false
      res.once('finish', () => socket.end())
      // A request of its own from here on, with the request boundary (and its 500 page).
      this.#handleRequest(req, res, false)
      return
    }
    const state = this.#state
    const prepared = this.#prepare(req, state)
    const logged = this.#accessLogFor(req, state, requestId, prepared)
    if (prepared.kind === 'reply') {
      rejectUpgrade(socket, prepared.status, statusTitle(prepared.status), prepared.message, requestId)
      if (prepared.log) logged(prepared.status, 0, 'local_reply')
      return
    }
    const rt = this.#deps.tracing?.startRequest(req.method ?? 'GET', prepared.host, prepared.path, req.headers, prepared.query)
    const log = rt ? this.#tracedLog(rt, logged, prepared) : logged
    if (prepared.kind === 'endpoint') {
      rejectUpgrade(socket, 404, 'Not Found', 'Portcullis endpoints do not take upgrades.', requestId)
      log(404, 0, 'local_reply')
      return
    }
    const { plan } = prepared
    if (!plan.upgrades.has(token)) {
      rejectUpgrade(socket, 403, 'Forbidden', `Upgrading to "${token}" is not allowed on this route.`, requestId)
      log(403, 0, 'upgrade_failed')
      return
    }
    const authorizeSpan = rt?.child('authorize check', SpanKind.INTERNAL)
    const authorize = (then: (result: CheckResult) => HandlerOutcome, fail: (err: unknown) => void): HandlerOutcome => {
      const check = this.#checkRequest(req, prepared, requestId, state)
      if (authorizeSpan) return authorizeSpan.run(() => this.#authorize(check, then, fail))
      return this.#authorize(check, then, fail)
    }
    return authorize(
      (result): HandlerOutcome => {
        authorizeSpan?.end({ 'portcullis.allow': result.allow, ...(result.allow ? {} : { 'portcullis.status': result.status }) })
        const fault = this.#deps.faults?.(prepared.path)
        if (fault) return fault
        if (!result.allow) {
          rejectUpgrade(socket, result.status, statusTitle(result.status), result.reason, requestId)
          log(result.status, 0, 'ext_authz_denied')
          return
        }
        const upstream = this.#upstreamRequest(req, prepared, result, state, requestId, req.headers.upgrade ?? token)
        if (!upstream || upstream.endpoint.target.url.protocol === 'h2c:') {
          rejectUpgrade(socket, 503, 'Service Unavailable', 'No upstream can take this upgrade.', requestId)
          log(503, 0, 'no_healthy_upstream')
          return
        }
        // The client may have gone while authorisation ran.
        if (socket.destroyed) {
          log(0, 0, 'downstream_remote_disconnect')
          return
        }
        // The tunnel's span lasts as long as the tunnel.
        const upstreamSpan = rt?.child('upstream request', SpanKind.CLIENT, { 'server.address': upstream.endpoint.target.url.host, 'portcullis.upgrade': token })
        this.#tunnelled.add(socket)
        tunnelUpgrade({
          requestId,
          token,
          socket,
          head,
          method: req.method ?? 'GET',
          path: upstream.path,
          headers: upstreamSpan ? withTraceparent(upstream.headers, upstreamSpan.traceparent()) : upstream.headers,
          endpoint: upstream.endpoint,
          tls: plan.route.tls,
          idleTimeoutMs: plan.route.idleTimeoutMs,
          done: upstreamSpan
            ? (status, bytes, details) => {
                upstreamSpan.end({ 'http.response.status_code': status }, status === 0 || status >= 500)
                log(status, bytes, details)
              }
            : log,
        })
      },
      () => {
        authorizeSpan?.end({}, true)
        rejectUpgrade(socket, 500, 'Internal Server Error', 'Authorization could not be completed.', requestId)
        log(500, 0, 'ext_authz_error')
      },
    )
  }
}

function authorityOf(req: AnyRequest): string | undefined {
  return 'stream' in req ? (req.headers[':authority'] ?? req.headers.host) : req.headers.host
}

/** The connection's client address (PROXY protocol or peer), tagged on the socket at accept time. */
function clientAddressOf(req: AnyRequest): string {
  type Tagged = Socket & { [kClientAddress]?: string; stream?: Tagged }
  const socket = ('stream' in req ? req.stream.session?.socket : req.socket) as Tagged | undefined
  // HTTP/2 over a wrapped stream (cleartext h2 after a PROXY header) sees Node's stream adapter,
  // which keeps the wrapped stream as `.stream`.
  return socket?.[kClientAddress] ?? socket?.stream?.[kClientAddress] ?? normaliseRemote(socket?.remoteAddress)
}

function isInternalPath(path: string): boolean {
  return path === '/.pomerium' || path.startsWith('/.pomerium/') || path === '/.well-known/pomerium' || path.startsWith('/.well-known/pomerium/')
}

/**
 * The request body when it is at most `limit` bytes (empty when `limit` is 0 and none was sent);
 * undefined when it is larger. Larger bodies are not read to the end: the connection closes.
 */
function readSmallBody(req: AnyRequest, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    req.on('data', (chunk: Buffer) => {
      if (done) return
      size += chunk.length
      if (size > limit) {
        done = true
        req.pause()
        resolve(undefined)
        return
      }
      chunks.push(chunk)
    })
    req.once('end', () => {
      if (!done) resolve(Buffer.concat(chunks))
      done = true
    })
    req.once('error', (err) => {
      if (!done) reject(err)
      done = true
    })
  })
}

function joinHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

function minNonZero(a: number, b: number): number {
  if (a <= 0) return b
  if (b <= 0) return a
  return Math.min(a, b)
}

function displayHost(host: string | undefined): string {
  if (!host || host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}

function listenOn(server: NetServer, host: string | undefined, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    const onListening = (): void => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    }
    if (host) server.listen(port, host, onListening)
    else server.listen(port, onListening)
  })
}
