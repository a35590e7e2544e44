/**
 * The proxy service's listeners. Every request and upgrade they accept runs the pipeline
 * (pipeline.ts: prepare -> authorize -> headers -> forward) inside the error boundary (boundary.ts).
 *
 * One TLS listener serves HTTP/1.1 and HTTP/2 (chosen by ALPN) by handing each connection to an
 * HTTP/1.1 or an HTTP/2 server object, so both share the same handler and limits. All state that
 * depends on config lives in a `ProxyState` that is swapped whole on reload.
 */
import { randomUUID } from 'node:crypto'
import { createServer as createHttpServer, ServerResponse } from 'node:http'
import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createHttp2Server } from 'node:http2'
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, Http2Session } from 'node:http2'
import type { AddressInfo, Server as NetServer, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Config } from '../config/types.js'
import { prefersJson } from '../ui/negotiate.js'
import { createForwardAuthHandler } from './forward-auth.js'
import { startExtAuthz } from './ext-authz.js'
import type { ExtAuthzServer } from './ext-authz.js'
import { statusTitle } from './error-page.js'
import { guardedRequestListener } from '../shared/boundary.js'
import { runGuarded } from './boundary.js'
import type { HandlerOutcome } from './boundary.js'
import { createFront } from './front.js'
import type { Front } from './front.js'
import type { AnyRequest } from './forward.js'
import { ProxyPipeline } from './pipeline.js'
import type { PipelineDeps } from './pipeline.js'
import { parseAuthority } from './request-checks.js'
import type { AnyResponse } from './respond.js'
import { sendError } from './respond.js'
import { ProxyState } from './state.js'
import { rejectUpgrade } from './upgrade.js'
import { TransportRegistry } from './upstreams.js'
import { h1TunnelIo } from './tunnel-exchange.js'

export const MAX_HEADER_BYTES = 128 * 1024
/** HTTP/2 listener limits per connection, as Pomerium sets them (see docs/proxy.md). */
const H2_MAX_CONCURRENT_STREAMS = 100
const H2_INITIAL_STREAM_WINDOW = 64 * 1024
/** Slow-header protection: the whole request head must arrive within this time. */
const HEADERS_TIMEOUT_MS = 10_000

/** What the proxy needs from the other services; the forward stages are the pipeline's defaults. */
export type ProxyDeps = Omit<PipelineDeps, 'forward' | 'tunnel'>

export interface ListenerInfo {
  readonly name: 'main' | 'http_redirect' | 'forward_auth' | 'ext_authz' | 'grpc' | 'metrics' | 'health' | 'scim'
  readonly url: string
  readonly port: number
}

export class ProxyServer {
  #state: ProxyState
  readonly #registry = new TransportRegistry()
  readonly #deps: ProxyDeps
  readonly #h1: HttpServer
  readonly #h2: Http2Server
  #front: Front | undefined
  #redirect: HttpServer | undefined
  #forwardAuth: HttpServer | undefined
  #extAuthz: ExtAuthzServer | undefined
  readonly #sockets = new Set<Socket>()
  readonly #sessions = new Set<Http2Session>()
  #draining = false
  /** The stages every request and upgrade runs (pipeline.ts); this class owns the listeners. */
  readonly #pipeline: ProxyPipeline

  constructor(config: Config, deps: ProxyDeps) {
    this.#deps = deps
    this.#state = new ProxyState(config, this.#registry, deps.logger)
    this.#pipeline = new ProxyPipeline(deps, () => this.#state, () => this.#draining)
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
    // HTTP/1.1 CONNECT: a TCP tunnel (docs/tunnels.md). Node hands over the socket unread.
    this.#h1.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#handleTunnel(req, socket, head, 'tcp'))
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
        // RFC 8441 extended CONNECT, for CONNECT-UDP over HTTP/2 (RFC 9298; docs/tunnels.md).
        enableConnectProtocol: true,
      },
      // nghttp2's own memory per session (headers, frames waiting to be sent), in MB: past it new
      // streams are refused. Node's default, stated here because the bound matters.
      maxSessionMemory: 10,
    })
    this.#h2.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#handleRequest(req, res, false))
    this.#h2.on('checkContinue', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#handleRequest(req, res, true))
    // Node's HTTP/2 compatibility layer emits CONNECT (and extended CONNECT) as 'connect', not
    // 'request'; the pipeline tells tunnels apart by method (docs/tunnels.md).
    this.#h2.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#handleRequest(req, res, false))
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
    if (config.forwardAuth) {
      // docs/delegated-authorization.md: nginx, Caddy and Traefik ask here; plain HTTP on a private address.
      const handler = createForwardAuthHandler({ state: () => this.#state, authorizer: this.#deps.authorizer, logger: this.#deps.logger })
      const listener = guardedRequestListener((req, res) => handler(req, res), { listener: 'forward_auth', logger: this.#deps.logger })
      const mtls = config.forwardAuth.tls
      const server: HttpServer = mtls
        ? createHttpsServer({ maxHeaderSize: MAX_HEADER_BYTES, cert: mtls.cert, key: mtls.key, ca: mtls.clientCa, requestCert: true, rejectUnauthorized: true }, listener)
        : createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, listener)
      server.headersTimeout = HEADERS_TIMEOUT_MS
      this.#forwardAuth = server
      const fport = await listenOn(server, config.forwardAuth.address.host, config.forwardAuth.address.port)
      infos.push({ name: 'forward_auth', url: `${mtls ? 'https' : 'http'}://${displayHost(config.forwardAuth.address.host)}:${fport}`, port: fport })
    }
    if (config.extAuthz) {
      // docs/delegated-authorization.md: Envoy's ext_authz filter and Istio's CUSTOM action.
      const server = await startExtAuthz({ state: () => this.#state, authorizer: this.#deps.authorizer, logger: this.#deps.logger }, config.extAuthz.address.host, config.extAuthz.address.port, config.extAuthz.tls)
      this.#extAuthz = server
      infos.push({ name: 'ext_authz', url: `${config.extAuthz.tls ? 'https' : 'http'}://${displayHost(config.extAuthz.address.host)}:${server.port}`, port: server.port })
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
    // A tunnel has no end of its own to wait for: shutting down ends them.
    this.#pipeline.tunnels.closeAll('shutdown')
    const closed = [this.#front?.server, this.#redirect, this.#forwardAuth].map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve()))
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
    this.#forwardAuth?.closeAllConnections()
    await Promise.all(closed)
    await this.#extAuthz?.close()
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

  /**
   * The error boundary of every request (src/proxy/boundary.ts): whatever fails inside the
   * handler costs this request a `500` with its request id, never the process.
   */
  #handleRequest(req: AnyRequest, res: AnyResponse, expectsContinue: boolean): void {
    const requestId = randomUUID()
    runGuarded(
      () => this.#pipeline.handle(req, res, requestId, expectsContinue),
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

  /** The error boundary of every upgrade request, as `#handleRequest` is for the others. */
  #handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const requestId = randomUUID()
    runGuarded(
      () => this.#onUpgrade(req, socket, head, requestId),
      (err) => {
        this.#deps.logger.error({ err, requestId }, 'upgrade handling failed')
        // Once a tunnel owns the socket, no HTTP answer can be written on it any more.
        if (this.#pipeline.tunnelled(socket)) socket.destroy()
        else if (!socket.destroyed && !socket.writableEnded) rejectUpgrade(socket, 500, 'Internal Server Error', 'The request could not be completed.', requestId)
      },
    )
  }

  /** The error boundary of every HTTP/1.1 tunnel request (CONNECT, connect-udp), as for upgrades. */
  #handleTunnel(req: IncomingMessage, socket: Duplex, head: Buffer, kind: 'tcp' | 'udp'): void {
    const requestId = randomUUID()
    runGuarded(
      () => this.#pipeline.handleTunnel(req, h1TunnelIo(req, socket, head), requestId, kind),
      (err) => {
        this.#deps.logger.error({ err, requestId }, 'tunnel handling failed')
        if (this.#pipeline.tunnelled(socket)) socket.destroy()
        else if (!socket.destroyed && !socket.writableEnded) rejectUpgrade(socket, 500, 'Internal Server Error', 'The request could not be completed.', requestId)
      },
    )
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string): HandlerOutcome {
    const token = (req.headers.upgrade ?? '').trim().toLowerCase()
    if (token === 'connect-udp') return this.#pipeline.handleTunnel(req, h1TunnelIo(req, socket, head), requestId, 'udp')
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
    return this.#pipeline.handleUpgrade(req, socket, head, requestId)
  }
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
