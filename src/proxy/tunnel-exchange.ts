/**
 * TCP and UDP tunnels through the proxy pipeline (docs/tunnels.md; Pomerium docs: TCP support,
 * UDP support). A tunnel runs the same stages as a request:
 *
 *   prepare (the target names a `tcp+https` / `udp+https` route) -> authorize (the route's policy,
 *   the same contract) -> forward (dial the upstream, answer 200 / 101, relay)
 *
 * Every refusal (no route 404, sign-in 302, denied 403, upstream 502/503/504) is answered before a
 * single byte is relayed, and bytes the client sent early are held unread until the tunnel is
 * granted: an upstream that was not granted never sees them. The client side is a `TunnelIo`:
 * an HTTP/1.1 socket (CONNECT, or `Upgrade: connect-udp`) or an HTTP/2 stream (CONNECT, or
 * extended CONNECT with `:protocol connect-udp`).
 */
import type { Duplex } from 'node:stream'
import type { Http2ServerRequest } from 'node:http2'
import type { IncomingMessage } from 'node:http'
import type { Denial } from '../authorize/types.js'
import { SpanKind } from '../observability/tracing.js'
import type { RequestTrace } from '../observability/tracing.js'
import type { HandlerOutcome } from './boundary.js'
import { statusTitle } from './error-page.js'
import type { AnyRequest } from './forward.js'
import type { Exchange, Log, PipelineContext } from './pipeline.js'
import { routeLabel } from './pipeline.js'
import { parseAuthority, screenHeaders, trustedClientIp } from './request-checks.js'
import { checkRequest, clientAddressOf, dialledNamesOf } from './stages.js'
import type { LocalReply, Prepared, RoutedRequest, UpstreamRequest } from './stages.js'
import type { ProxyState } from './state.js'
import { dialUpstream, relay, UpstreamDialError } from './tunnel.js'
import type { Relay, TunnelEnd } from './tunnel.js'
import { parseMasquePath, relayUdp } from './udp-tunnel.js'

/** Where the login of a tunnel client starts when it has no valid token (what the client does on 3xx). */
const LOGIN_PATH = '/.pomerium/api/v1/login'

export type TunnelKind = 'tcp' | 'udp'

/** The client's side of one tunnel, however it arrived. */
export interface TunnelIo {
  /** Where the tunnel's bytes flow once it is granted. */
  readonly stream: Duplex
  /** Bytes the client sent after the request head (HTTP/1.1), held until the tunnel is granted. */
  readonly head: Buffer
  /** TCP: the `host:port` asked for (CONNECT target / `:authority`); UDP: the request path. */
  readonly target: string
  /** The names the client dialled Portcullis by: TLS server name, the listener's address. */
  readonly dialled: readonly string[]
  /** Answers with a refusal and closes. */
  refuse(status: number, headers: Readonly<Record<string, string>>, body: string): void
  /** Answers that the tunnel is up (200, or 101 for HTTP/1.1 connect-udp). */
  accept(kind: TunnelKind): void
}

/** An HTTP/1.1 CONNECT (the listener's `connect` event) or a connect-udp upgrade. */
export function h1TunnelIo(req: IncomingMessage, socket: Duplex, head: Buffer): TunnelIo {
  // From now on the client's FIN ends one direction only (half-close): the stream reads this at
  // the time the FIN arrives, and nothing has been read past the request head yet.
  socket.allowHalfOpen = true
  return {
    stream: socket,
    head,
    target: req.url ?? '',
    dialled: dialledNamesOf(req),
    refuse(status, headers, body) {
      let text = `HTTP/1.1 ${status} ${statusTitle(status)}\r\n`
      for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`
      text += `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
      socket.end(text, () => socket.destroy())
    },
    accept(kind) {
      socket.write(
        kind === 'tcp'
          ? 'HTTP/1.1 200 Connection established\r\n\r\n'
          : 'HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: connect-udp\r\ncapsule-protocol: ?1\r\n\r\n',
      )
    },
  }
}

/** An HTTP/2 CONNECT or extended CONNECT stream. */
export function h2TunnelIo(req: Http2ServerRequest): TunnelIo {
  const stream = req.stream
  const udp = req.headers[':protocol'] !== undefined
  return {
    stream,
    head: Buffer.alloc(0),
    target: (udp ? req.headers[':path'] : req.headers[':authority']) ?? '',
    dialled: dialledNamesOf(req),
    refuse(status, headers, body) {
      if (stream.destroyed || stream.headersSent) return
      stream.respond({ ':status': status, ...headers, 'content-type': 'text/plain; charset=utf-8' })
      stream.end(body)
    },
    accept(kind) {
      stream.respond({ ':status': 200, ...(kind === 'udp' ? { 'capsule-protocol': '?1' } : {}) })
    },
  }
}

export class TunnelExchange implements Exchange {
  readonly req: AnyRequest
  readonly requestId: string
  readonly upgrade = undefined
  readonly tokenHosts: readonly string[]
  readonly #context: PipelineContext
  readonly #io: TunnelIo
  readonly #kind: TunnelKind

  constructor(context: PipelineContext, req: AnyRequest, io: TunnelIo, requestId: string, kind: TunnelKind) {
    this.#context = context
    this.req = req
    this.#io = io
    this.requestId = requestId
    this.#kind = kind
    this.tokenHosts = io.dialled
  }

  /** Stage 1 for tunnels: the target names the route; there is no path to normalise. */
  prepare(state: ProxyState): Prepared {
    const req = this.req
    const screened = screenHeaders(req.rawHeaders, state.config.headersWithUnderscoresAction)
    if (screened) return { kind: 'reply', status: 400, message: `Bad request: ${screened}.`, log: true }
    const target = this.#kind === 'tcp' ? this.#io.target : parseMasquePath(this.#io.target.split('?')[0] ?? '')
    const auth = typeof target === 'string' ? parseAuthority(target) : target && parseAuthority(`${target.host}:${target.port}`)
    if (!auth || auth.port === undefined) {
      const expected = this.#kind === 'tcp' ? 'CONNECT host:port' : 'the path /.well-known/masque/udp/{host}/{port}/'
      return { kind: 'reply', status: 400, message: `Bad request: expected ${expected}.`, log: true }
    }
    const table = this.#kind === 'tcp' ? state.tcpTunnels : state.udpTunnels
    const plan = table.match(auth.host, auth.port, '/')
    const authority = `${auth.host}:${auth.port}`
    if (!plan) return { kind: 'reply', status: 404, message: `No ${this.#kind} route is configured for ${authority}.`, log: true }
    const remote = clientAddressOf(req)
    const clientIp = trustedClientIp(remote, req.headers['x-forwarded-for'], state.config.xffNumTrustedHops)
    return { kind: 'route', plan, host: auth.host, authority, path: '/', query: '', clientIp, remote }
  }

  reply(p: LocalReply): number {
    return this.#refuse(p.status, p.message, p.location)
  }

  error(status: number, message: string): number {
    return this.#refuse(status, message)
  }

  /**
   * A tunnel client is a program, not a browser: whatever says "sign in" is a 302 (pomerium-cli
   * runs its login on any 3xx and keeps its token on 503), everything else its status.
   */
  denial(denial: Denial): number {
    if (denial.code === 'sign-in' || denial.code === 'unauthenticated' || denial.code === 'invalid-credential') {
      return this.#refuse(302, 'Sign-in required: run the login at /.pomerium/api/v1/login.', denial.location ?? LOGIN_PATH)
    }
    const why = denial.reasons && denial.reasons.length > 0 ? `\nWhy: ${denial.reasons.join('; ')}` : ''
    return this.#refuse(denial.status, `${denial.reason}${why}`)
  }

  endpoint(): HandlerOutcome {
    // prepare() never sends a tunnel to Portcullis' own endpoints.
    this.#refuse(404, 'Not found.')
  }

  screen(): boolean {
    return false
  }

  forward(p: RoutedRequest, upstream: UpstreamRequest | undefined, state: ProxyState, rt: RequestTrace | undefined, log: Log, user?: string): void {
    const io = this.#io
    if (!upstream) {
      log(503, this.#refuse(503, 'No healthy upstream is available for this route.'), 'no_healthy_upstream')
      return
    }
    const endpoint = upstream.endpoint
    const load = endpoint.transport.load
    if (!load.admits()) {
      log(503, this.#refuse(503, 'The upstream service is busy: too many tunnels are open to it.'), 'upstream_reset_before_response_started{overflow}')
      return
    }
    if (io.stream.destroyed) {
      log(0, 0, 'downstream_remote_disconnect')
      return
    }
    const route = p.plan.route
    const label = routeLabel(route)
    const metrics = this.#context.deps.metrics
    const span = rt?.child('tunnel', SpanKind.CLIENT, { 'server.address': endpoint.target.url.host, 'portcullis.tunnel': this.#kind })
    endpoint.active++
    load.inFlight++
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      endpoint.active--
      load.inFlight--
    }
    // The client may go away while the upstream is being dialled.
    io.stream.once('close', release)
    const opened = (r: Pick<Relay, 'close' | 'done' | 'bytes'>): void => {
      metrics?.tunnelOpened(label, this.#kind)
      const forget = this.#context.tunnels.add({
        check: checkRequest(this.req, p, this.requestId, state, this.tokenHosts),
        close: (reason) => r.close(reason),
      })
      void r.done.then((end: TunnelEnd) => {
        forget()
        release()
        metrics?.tunnelClosed(label, this.#kind, end.reason, end.bytesFromClient, end.bytesToClient, end.durationMs)
        span?.end({ 'portcullis.close_reason': end.reason, 'portcullis.bytes_from_client': end.bytesFromClient, 'portcullis.bytes_to_client': end.bytesToClient }, false)
        this.#context.deps.logger.info(
          { requestId: this.requestId, route: label, kind: this.#kind, user: user ?? '', upstream: endpoint.target.url.host, bytesFromClient: end.bytesFromClient, bytesToClient: end.bytesToClient, durationMs: end.durationMs, reason: end.reason },
          'tunnel closed',
        )
        log(200, end.bytesToClient, end.reason)
      })
    }
    const idleTimeoutMs = route.idleTimeoutMs > 0 ? route.idleTimeoutMs : state.config.timeoutIdleMs
    const maxDurationMs = route.timeoutMs
    if (this.#kind === 'udp') {
      const url = endpoint.target.url
      endpoint.recordOutcome(200)
      this.#context.claim(io.stream)
      io.accept('udp')
      const udpStartedAt = Date.now()
      const udp = relayUdp(io.stream, { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) }, { idleTimeoutMs, maxDurationMs, head: io.head })
      opened({
        close: (reason) => udp.close(reason),
        bytes: () => ({ fromClient: 0, toClient: 0 }),
        done: udp.done.then((e) => ({ reason: e.reason, bytesFromClient: e.bytesFromClient, bytesToClient: e.bytesToClient, durationMs: Date.now() - udpStartedAt })),
      })
      return
    }
    const startedAt = Date.now()
    dialUpstream({ url: endpoint.target.url, connectAuthority: `${route.from.host}:${route.from.port ?? 0}`, tls: route.tls }).then(
      ({ socket, head, reader }) => {
        endpoint.recordOutcome(200)
        if (io.stream.destroyed) {
          socket.destroy()
          release()
          log(0, 0, 'downstream_remote_disconnect')
          return
        }
        this.#context.claim(io.stream)
        io.accept('tcp')
        opened(relay(io.stream, socket, io.head, head, { idleTimeoutMs, maxDurationMs, ...(reader !== undefined ? { upstreamReader: reader } : {}) }))
      },
      (err: unknown) => {
        release()
        const e = err instanceof UpstreamDialError ? err : new UpstreamDialError(502, 'upstream_connect_failure', 'The upstream service could not be reached.')
        endpoint.recordOutcome(undefined)
        span?.end({ 'portcullis.close_reason': e.details, 'portcullis.dial_ms': Date.now() - startedAt }, true)
        log(e.status, this.#refuse(e.status, e.message), e.details)
      },
    )
  }

  /** Writes a refusal; returns the body bytes. */
  #refuse(status: number, message: string, location?: string): number {
    const body = `${message}\nRequest ID: ${this.requestId}\n`
    this.#io.refuse(status, { 'x-request-id': this.requestId, ...(location !== undefined ? { location } : {}) }, body)
    return Buffer.byteLength(body)
  }
}
