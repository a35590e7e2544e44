/**
 * The proxy pipeline (docs/proxy.md, "The request pipeline"): every request and every upgrade
 * runs the same named stages
 *
 *   prepare -> authorize -> headers -> forward
 *
 * with the access log and the request span opened after `prepare`. What differs between the two
 * is only how an answer is written (an HTTP response, or a raw reply on an upgrade's socket), what
 * is checked on a route before authorisation (direct responses and CONNECT; the upgrade token),
 * and where `forward` goes (forward.ts, or a tunnel in upgrade.ts): an `Exchange` says that.
 *
 * `handle()` and `handleUpgrade()` take request and response objects only, never a listener: the
 * listeners (server.ts) wrap them in the error boundary (boundary.ts), and unit tests drive them
 * directly with a recording forward stage.
 */
import type { Duplex } from 'node:stream'
import { MAX_ENDPOINT_BODY } from '../authenticate/endpoint.js'
import type { EndpointRequest, EndpointResponse } from '../authenticate/endpoint.js'
import type { Authorizer, CheckRequest, CheckResult, Denial } from '../authorize/types.js'
import type { RouteConfig } from '../config/types.js'
import type { HttpService, PortcullisMetrics } from '../observability/metrics.js'
import { SpanKind } from '../observability/tracing.js'
import type { RequestTrace, Tracing } from '../observability/tracing.js'
import type { Logger } from '../shared/log.js'
import { prefersJson } from '../ui/negotiate.js'
import type { HandlerOutcome } from './boundary.js'
import { statusTitle } from './error-page.js'
import type { FaultInjector } from './fault.js'
import { forward } from './forward.js'
import type { AnyRequest, ForwardRequest } from './forward.js'
import type { AnyResponse } from './respond.js'
import { sendBody, sendDenial, sendError } from './respond.js'
import { authorityOf, checkRequest, clientAddressOf, localNamesOf, prepare, upstreamRequest, withTraceparent } from './stages.js'
import type { EndpointTarget, LocalReply, Prepared, RoutedRequest, UpstreamRequest } from './stages.js'
import type { ProxyState } from './state.js'
import { rejectUpgrade, tunnelUpgrade } from './upgrade.js'
import { h2TunnelIo, TunnelExchange } from './tunnel-exchange.js'
import type { TunnelIo } from './tunnel-exchange.js'
import { TunnelRegistry } from './tunnels.js'
import type { UpgradeRequest } from './upgrade.js'

/** Portcullis' own endpoints (authenticate host, `/.pomerium/*` on route hosts). */
export interface Endpoints {
  /** Whether a request for this host and normalised path is answered by Portcullis itself. */
  claims(host: string, path: string): boolean
  handle(request: EndpointRequest): Promise<EndpointResponse>
  /** Which service answers this host's endpoints (the `service` label of the request metrics). */
  serviceFor?(host: string): HttpService
}

export interface PipelineDeps {
  readonly authorizer: Authorizer
  readonly logger: Logger
  readonly endpoints?: Endpoints | undefined
  /** Request metrics; none are recorded without it. */
  readonly metrics?: PortcullisMetrics | undefined
  /** Tracing; absent when off, and then the request path has no tracing code at all. */
  readonly tracing?: Tracing | undefined
  /** For tests only (src/proxy/fault.ts): makes chosen paths fail inside the handlers. */
  readonly faults?: FaultInjector | undefined
  /** The forward stage of plain requests (default: forward.ts, to the upstream). */
  readonly forward?: ((request: ForwardRequest) => void) | undefined
  /** The forward stage of upgrades (default: a tunnel, upgrade.ts). */
  readonly tunnel?: ((upgrade: UpgradeRequest) => void) | undefined
  /** How often open TCP/UDP tunnels are authorised again (default tunnels.ts TUNNEL_RECHECK_MS). */
  readonly tunnelRecheckMs?: number | undefined
}

/** The access-log (and request span) call of one exchange. */
export type Log = (status: number, bytes: number, details: string) => void

/** The `route` label of a route's metrics: its name, else its id (bounded by the configuration). */
export function routeLabel(route: RouteConfig): string {
  return route.name ?? route.id
}

/** What differs between a plain request, an upgrade and a tunnel; the stages themselves are shared. */
export interface Exchange {
  readonly req: AnyRequest
  readonly requestId: string
  /** Stage 1 for exchanges that are not HTTP requests for a path (tunnels); default `prepare`. */
  prepare?(state: ProxyState): Prepared
  /** Other hosts whose session tokens are accepted (tunnels: the names Portcullis was dialled by). */
  readonly tokenHosts?: readonly string[]
  /** The Upgrade header the headers stage keeps; undefined for a plain request. */
  readonly upgrade: string | undefined
  /** Answers a local reply of `prepare`; returns the body bytes written. */
  reply(p: LocalReply, state: ProxyState): number
  error(status: number, message: string, state: ProxyState): number
  denial(denial: Denial, state: ProxyState): number
  endpoint(p: EndpointTarget, state: ProxyState, log: Log, rt: RequestTrace | undefined): HandlerOutcome
  /** Route-level answers before authorisation; true when the exchange was answered. */
  screen(p: RoutedRequest, state: ProxyState, log: Log): boolean
  /** Stage 4; `upstream` is undefined when no endpoint is available; `user`: who was allowed. */
  forward(p: RoutedRequest, upstream: UpstreamRequest | undefined, state: ProxyState, rt: RequestTrace | undefined, log: Log, user?: string): void
}

/** What an exchange uses of its pipeline. */
export interface PipelineContext {
  readonly deps: PipelineDeps
  /** Open tunnels, asked again while they last (tunnels.ts). */
  readonly tunnels: TunnelRegistry
  forward(request: ForwardRequest): void
  /** Hands the socket to a tunnel (from then on the error boundary only closes it). */
  tunnel(socket: Duplex, upgrade: UpgradeRequest): void
  /** Marks a stream as carrying a tunnel: the error boundary must not write an answer on it. */
  claim(stream: Duplex): void
}

export class ProxyPipeline {
  readonly #deps: PipelineDeps
  readonly #state: () => ProxyState
  readonly #draining: () => boolean
  readonly #claims: ((host: string, path: string) => boolean) | undefined
  readonly #context: PipelineContext
  /** Upgrade sockets handed to a tunnel: the error boundary must not write an answer on them. */
  readonly #tunnelled = new WeakSet<Duplex>()

  /** `state`: the current config generation (swapped whole on reload); `draining`: the listener is shutting down. */
  constructor(deps: PipelineDeps, state: () => ProxyState, draining: () => boolean = () => false) {
    this.#deps = deps
    this.#state = state
    this.#draining = draining
    const endpoints = deps.endpoints
    this.#claims = endpoints ? (host, path) => endpoints.claims(host, path) : undefined
    const tunnel = deps.tunnel ?? tunnelUpgrade
    this.#context = {
      deps,
      tunnels: new TunnelRegistry(deps.authorizer, () => this.#state().tunnelRoutes, deps.logger, deps.tunnelRecheckMs),
      forward: deps.forward ?? forward,
      tunnel: (socket, upgrade) => {
        this.#tunnelled.add(socket)
        tunnel(upgrade)
      },
      claim: (stream) => this.#tunnelled.add(stream),
    }
  }

  /**
   * One plain request through the stages. `expectsContinue`: the client sent
   * `Expect: 100-continue` and waits for `100 Continue`. Returns the promise of the work left
   * running, for the error boundary.
   */
  handle(req: AnyRequest, res: AnyResponse, requestId: string, expectsContinue = false): HandlerOutcome {
    if ('stream' in req && req.method === 'CONNECT') {
      // HTTP/2 CONNECT (RFC 9113 8.5) and extended CONNECT for connect-udp (RFC 8441, RFC 9298).
      const protocol = req.headers[':protocol']
      const kind = protocol === undefined ? 'tcp' : protocol === 'connect-udp' ? 'udp' : undefined
      if (kind) return this.handleTunnel(req, h2TunnelIo(req), requestId, kind)
    }
    if (this.#draining() && !('stream' in req)) res.setHeader('connection', 'close')
    return this.#run(new RequestExchange(this.#context, req, res, requestId, expectsContinue))
  }

  /** One upgrade request (not h2c: the listener answers that as a plain request) through the stages. */
  handleUpgrade(req: AnyRequest, socket: Duplex, head: Buffer, requestId: string): HandlerOutcome {
    const token = (req.headers.upgrade ?? '').trim().toLowerCase()
    return this.#run(new UpgradeExchange(this.#context, req, socket, head, requestId, token))
  }

  /**
   * A TCP tunnel (HTTP/1.1 CONNECT: the listener's `connect` event) or a UDP one (CONNECT-UDP:
   * `Upgrade: connect-udp`) through the same stages (docs/tunnels.md).
   */
  handleTunnel(req: AnyRequest, io: TunnelIo, requestId: string, kind: 'tcp' | 'udp'): HandlerOutcome {
    return this.#run(new TunnelExchange(this.#context, req, io, requestId, kind))
  }

  /** The tunnels open now (for shutdown and tests). */
  get tunnels(): TunnelRegistry {
    return this.#context.tunnels
  }

  /** Whether a tunnel owns this upgrade socket (no HTTP answer can be written on it any more). */
  tunnelled(socket: Duplex): boolean {
    return this.#tunnelled.has(socket)
  }

  #run(x: Exchange): HandlerOutcome {
    const state = this.#state()
    const req = x.req
    // Stage 1: prepare.
    const prepared = x.prepare ? x.prepare(state) : prepare(req, state, this.#claims)
    const logged = this.#accessLogFor(req, state, x.requestId, prepared)
    if (prepared.kind === 'reply') {
      const bytes = x.reply(prepared, state)
      if (prepared.log) logged(prepared.status, bytes, 'local_reply')
      return
    }
    const rt = this.#deps.tracing?.startRequest(req.method ?? 'GET', prepared.host, prepared.path, req.headers, prepared.query)
    const log = rt ? tracedLog(rt, logged, prepared) : logged
    if (prepared.kind === 'endpoint') return x.endpoint(prepared, state, log, rt)
    if (x.screen(prepared, state, log)) return
    return this.#authorize(x, prepared, state, rt, log)
  }

  /** Stage 2: authorize; on allow, stage 3 (headers) and stage 4 (forward). */
  #authorize(x: Exchange, p: RoutedRequest, state: ProxyState, rt: RequestTrace | undefined, log: Log): HandlerOutcome {
    const span = rt?.child('authorize check', SpanKind.INTERNAL)
    const then = (result: CheckResult): HandlerOutcome => {
      span?.end({ 'portcullis.allow': result.allow, ...(result.allow ? {} : { 'portcullis.status': result.status }) })
      // After the decision, so that an injected fault travels the way a real one would.
      const fault = this.#deps.faults?.(p.path)
      if (fault) return fault
      if (!result.allow) {
        const bytes = x.denial(result, state)
        log(result.status, bytes, 'ext_authz_denied')
        return
      }
      x.forward(p, upstreamRequest(x.req, p, result, state, x.requestId, x.upgrade), state, rt, log, result.user)
    }
    const fail = (err: unknown): void => {
      span?.end({}, true)
      this.#deps.logger.error({ err, requestId: x.requestId }, 'authorize failed')
      const bytes = x.error(500, 'Authorization could not be completed.', state)
      log(500, bytes, 'ext_authz_error')
    }
    const check = checkRequest(x.req, p, x.requestId, state, x.tokenHosts)
    if (span) return span.run(() => decide(this.#deps.authorizer, check, then, fail))
    return decide(this.#deps.authorizer, check, then, fail)
  }

  /** The access-log call for one request; fields that depend on routing come from `prepared`. */
  #accessLogFor(req: AnyRequest, state: ProxyState, requestId: string, prepared: Prepared): Log {
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
}

/** A plain request (HTTP/1.1 or HTTP/2): answers are HTTP responses, `forward` goes to forward.ts. */
class RequestExchange implements Exchange {
  readonly upgrade = undefined
  readonly #context: PipelineContext
  readonly req: AnyRequest
  readonly #res: AnyResponse
  readonly requestId: string
  readonly #expectsContinue: boolean
  readonly #method: string
  readonly #json: boolean
  readonly #headOnly: boolean

  constructor(context: PipelineContext, req: AnyRequest, res: AnyResponse, requestId: string, expectsContinue: boolean) {
    this.#context = context
    this.req = req
    this.#res = res
    this.requestId = requestId
    this.#expectsContinue = expectsContinue
    this.#method = req.method ?? 'GET'
    this.#json = prefersJson(req.headers.accept)
    this.#headOnly = this.#method === 'HEAD'
  }

  reply(p: LocalReply, state: ProxyState): number {
    if (p.text !== undefined) {
      return sendBody(this.#res, p.status, { 'content-type': 'text/plain', 'x-request-id': this.requestId }, p.text, this.#headOnly)
    }
    const headers: Record<string, string> = { ...state.localHeaders }
    if (p.location !== undefined) headers['location'] = p.location
    if (p.allow !== undefined) headers['allow'] = p.allow
    return sendError(this.#res, p.status, p.message, this.requestId, this.#json, headers, this.#headOnly)
  }

  error(status: number, message: string, state: ProxyState): number {
    return sendError(this.#res, status, message, this.requestId, this.#json, state.localHeaders, this.#headOnly)
  }

  denial(denial: Denial, state: ProxyState): number {
    return sendDenial(this.#res, denial, this.requestId, this.#json, state.localHeaders, this.#headOnly)
  }

  endpoint(p: EndpointTarget, state: ProxyState, log: Log, rt: RequestTrace | undefined): HandlerOutcome {
    if (rt) return rt.run(() => this.#endpoint(p, state, log))
    return this.#endpoint(p, state, log)
  }

  /** Reads a small body, lets the endpoint answer, and writes its response with the global response headers. */
  #endpoint(p: EndpointTarget, state: ProxyState, log: Log): Promise<void> {
    const endpoints = this.#context.deps.endpoints as Endpoints
    const { req, requestId } = this
    const res = this.#res
    const method = this.#method
    const fail = (status: number, message: string): void => {
      log(status, this.error(status, message, state), 'local_reply')
    }
    // Portcullis' own endpoints judge the request themselves, from its body among others.
    if (this.#expectsContinue) res.writeContinue()
    return readSmallBody(req, method === 'POST' ? MAX_ENDPOINT_BODY : 0).then(
      (body) => {
        if (body === undefined) {
          fail(413, 'The request body is too large.')
          return
        }
        return endpoints
          .handle({ requestId, method, host: p.host, authority: p.authority, path: p.path, query: p.query, headers: req.headers, body, clientIp: p.clientIp, scheme: state.scheme, clientCertificate: state.clientCertificateFor(req), localNames: localNamesOf(req) })
          .then(
            (answer) => {
              const headers: Record<string, string | string[]> = { ...answer.headers, ...state.localHeaders, 'x-request-id': requestId }
              if (answer.cookies && answer.cookies.length > 0) headers['set-cookie'] = [...answer.cookies]
              const bytes = sendBody(res, answer.status, headers, answer.body, this.#headOnly)
              log(answer.status, bytes, 'portcullis_endpoint')
            },
            (err: unknown) => {
              this.#context.deps.logger.error({ err, requestId }, 'endpoint failed')
              fail(500, 'The request could not be completed.')
            },
          )
      },
      () => fail(400, 'The request body could not be read.'),
    )
  }

  screen(p: RoutedRequest, state: ProxyState, log: Log): boolean {
    const route = p.plan.route
    if (route.redirect || route.response) {
      const bytes = this.#directRoute(route, p, state)
      log(this.#res.statusCode, bytes, 'direct_response')
      return true
    }
    if (this.#method === 'CONNECT') {
      const bytes = sendError(this.#res, 405, 'CONNECT is not supported on this route.', this.requestId, this.#json, state.localHeaders, false)
      log(405, bytes, 'local_reply')
      return true
    }
    return false
  }

  #directRoute(route: RouteConfig, p: RoutedRequest, state: ProxyState): number {
    const headers: Record<string, string> = { ...state.localHeaders, 'x-request-id': this.requestId }
    if (route.response) {
      headers['content-type'] = 'text/plain; charset=utf-8'
      return sendBody(this.#res, route.response.status, headers, route.response.body, this.#headOnly)
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
    return sendBody(this.#res, r.responseCode, headers, '', this.#headOnly)
  }

  forward(p: RoutedRequest, upstream: UpstreamRequest | undefined, state: ProxyState, rt: RequestTrace | undefined, log: Log): void {
    if (!upstream) {
      log(503, this.error(503, 'No healthy upstream is available for this route.', state), 'no_healthy_upstream')
      return
    }
    const route = p.plan.route
    const upstreamSpan = rt?.child('upstream request', SpanKind.CLIENT, { 'server.address': upstream.endpoint.target.url.host })
    const metricsDone = upstreamMetrics(this.#context.deps.metrics, route)
    this.#context.forward({
      // The client may send its body once it is allowed and the upstream admits it (forward).
      expectsContinue: this.#expectsContinue,
      req: this.req,
      res: this.#res,
      requestId: this.requestId,
      method: this.#method,
      path: upstream.path,
      authority: upstream.host,
      headers: upstreamSpan ? withTraceparent(upstream.headers, upstreamSpan.traceparent()) : upstream.headers,
      endpoint: upstream.endpoint,
      plan: p.plan.headers,
      timeoutMs: minNonZero(route.timeoutMs, state.config.timeoutWriteMs),
      idleTimeoutMs: route.idleTimeoutMs,
      json: this.#json,
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
}

/** An upgrade (WebSocket and the like): answers are raw replies on the socket, `forward` is a tunnel. */
class UpgradeExchange implements Exchange {
  readonly #context: PipelineContext
  readonly req: AnyRequest
  readonly #socket: Duplex
  readonly #head: Buffer
  readonly requestId: string
  /** The lower-cased token the client asked for. */
  readonly #token: string
  readonly upgrade: string

  constructor(context: PipelineContext, req: AnyRequest, socket: Duplex, head: Buffer, requestId: string, token: string) {
    this.#context = context
    this.req = req
    this.#socket = socket
    this.#head = head
    this.requestId = requestId
    this.#token = token
    this.upgrade = req.headers.upgrade ?? token
  }

  reply(p: LocalReply): number {
    return this.error(p.status, p.message)
  }

  error(status: number, message: string): number {
    rejectUpgrade(this.#socket, status, statusTitle(status), message, this.requestId)
    return 0
  }

  denial(denial: Denial): number {
    return this.error(denial.status, denial.reason)
  }

  endpoint(_p: EndpointTarget, _state: ProxyState, log: Log): HandlerOutcome {
    log(404, this.error(404, 'Portcullis endpoints do not take upgrades.'), 'local_reply')
  }

  screen(p: RoutedRequest, _state: ProxyState, log: Log): boolean {
    if (p.plan.upgrades.has(this.#token)) return false
    log(403, this.error(403, `Upgrading to "${this.#token}" is not allowed on this route.`), 'upgrade_failed')
    return true
  }

  forward(p: RoutedRequest, upstream: UpstreamRequest | undefined, _state: ProxyState, rt: RequestTrace | undefined, log: Log): void {
    if (!upstream || upstream.endpoint.target.url.protocol === 'h2c:') {
      log(503, this.error(503, 'No upstream can take this upgrade.'), 'no_healthy_upstream')
      return
    }
    // The client may have gone while authorisation ran.
    if (this.#socket.destroyed) {
      log(0, 0, 'downstream_remote_disconnect')
      return
    }
    // The tunnel's span lasts as long as the tunnel.
    const upstreamSpan = rt?.child('upstream request', SpanKind.CLIENT, { 'server.address': upstream.endpoint.target.url.host, 'portcullis.upgrade': this.#token })
    this.#context.tunnel(this.#socket, {
      requestId: this.requestId,
      token: this.#token,
      socket: this.#socket,
      head: this.#head,
      method: this.req.method ?? 'GET',
      path: upstream.path,
      headers: upstreamSpan ? withTraceparent(upstream.headers, upstreamSpan.traceparent()) : upstream.headers,
      endpoint: upstream.endpoint,
      tls: p.plan.route.tls,
      idleTimeoutMs: p.plan.route.idleTimeoutMs,
      done: upstreamSpan
        ? (status, bytes, details) => {
            upstreamSpan.end({ 'http.response.status_code': status }, status === 0 || status >= 500)
            log(status, bytes, details)
          }
        : log,
    })
  }
}

/** Returns what `then` returned, or the promise of `then`/`fail` when the decision is asynchronous, for the error boundary. */
function decide(authorizer: Authorizer, check: CheckRequest, then: (r: CheckResult) => HandlerOutcome, fail: (err: unknown) => void): HandlerOutcome {
  let result: CheckResult | Promise<CheckResult>
  try {
    result = authorizer.check(check)
  } catch (err) {
    fail(err)
    return undefined
  }
  if (result instanceof Promise) return result.then(then, fail)
  return then(result)
}

/** Ends the request span with the access log line. */
function tracedLog(rt: RequestTrace, log: Log, prepared: Prepared): Log {
  const route = prepared.kind === 'route' ? routeLabel(prepared.plan.route) : undefined
  return (status, bytes, details) => {
    log(status, bytes, details)
    rt.end(status, { 'portcullis.response_details': details, ...(route !== undefined ? { 'portcullis.route': route } : {}) })
  }
}

/** Upstream metrics of one forwarded request; undefined without metrics. */
function upstreamMetrics(metrics: PortcullisMetrics | undefined, route: RouteConfig): ((status: number | undefined, durationMs: number) => void) | undefined {
  if (!metrics) return undefined
  const label = routeLabel(route)
  return (status, durationMs) => metrics.httpClient(label, status, durationMs)
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
