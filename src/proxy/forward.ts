/**
 * Forwarding one request to one upstream endpoint, streaming both bodies with backpressure.
 *
 * http/https go through undici's `dispatch()` with a handler object (no stream wrappers on the
 * hot path); h2c goes through a node:http2 client stream so that gRPC trailers pass through.
 */
import type { IncomingMessage } from 'node:http'
import type { ClientHttp2Stream, Http2ServerRequest, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'
import { constants as h2constants } from 'node:http2'
import type { Dispatcher } from 'undici'
import type { HeaderPlan } from './headers.js'
import { OVERFLOW_DETAILS } from './circuit-breaker.js'
import type { UpstreamLoad } from './circuit-breaker.js'
import { buildResponseHeaders, sanitiseTrailers } from './headers.js'
import type { AnyResponse } from './respond.js'
import { sendError } from './respond.js'
import type { Endpoint } from './upstreams.js'

export type AnyRequest = IncomingMessage | Http2ServerRequest

export interface ForwardRequest {
  readonly req: AnyRequest
  readonly res: AnyResponse
  readonly requestId: string
  readonly method: string
  /** Upstream path including the query string. */
  readonly path: string
  readonly authority: string
  /** Flat `[name, value, ...]` list from `buildUpstreamHeaders`. */
  readonly headers: string[]
  readonly endpoint: Endpoint
  readonly plan: HeaderPlan
  readonly timeoutMs: number
  readonly idleTimeoutMs: number
  readonly json: boolean
  readonly errorHeaders: Readonly<Record<string, string>>
  /**
   * The client sent `Expect: 100-continue`: `100 Continue` goes out only once the upstream's
   * circuit breaker admits the request, so a refused client never uploads its body.
   */
  readonly expectsContinue?: boolean | undefined
  /** Called once when the exchange is over, for the access log. */
  readonly done: (status: number, bytes: number, details: string) => void
  /** Called once with the upstream's status (undefined: no answer) and how long it took, for metrics. */
  readonly upstreamDone?: ((status: number | undefined, durationMs: number) => void) | undefined
}

interface Failure {
  readonly status: number
  readonly message: string
  readonly details: string
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
])

/** Maps a transport error onto what Envoy answers: 503 connect failures and resets, 504 timeouts, 502 garbage. */
export function classifyUpstreamError(err: unknown): Failure {
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'PORTCULLIS_BAD_RESPONSE') {
    return { status: 502, message: 'The upstream service sent an invalid response.', details: 'upstream_bad_response' }
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'PORTCULLIS_TIMEOUT') {
    return { status: 504, message: 'The upstream service did not answer in time.', details: 'upstream_response_timeout' }
  }
  if (typeof code === 'string' && (CONNECT_CODES.has(code) || code.includes('CERT') || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL'))) {
    return { status: 503, message: 'The upstream service could not be reached.', details: 'upstream_connect_failure' }
  }
  if (err instanceof Error && /certificate|self.signed|tls|ssl/i.test(err.message)) {
    return { status: 503, message: 'The upstream service could not be reached.', details: 'upstream_connect_failure' }
  }
  // node:http2 cancels streams pending on a session that failed to connect with
  // ERR_HTTP2_STREAM_CANCEL; the connect error (e.g. ECONNREFUSED) is its cause.
  if (err instanceof Error && err.cause !== undefined && err.cause !== err) return classifyUpstreamError(err.cause)
  return { status: 502, message: 'The upstream service sent an invalid response.', details: 'upstream_bad_response' }
}

function hasRequestBody(req: AnyRequest): boolean {
  if ('stream' in req) return !req.stream.endAfterHeaders
  const h = req.headers
  return (h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined
}

/** Both response kinds have `write(chunk): boolean`; TypeScript cannot call through the union. */
function writeChunk(res: AnyResponse, chunk: Buffer): boolean {
  return (res as NodeJS.WritableStream).write(chunk)
}

const CLIENT_GONE = 'PORTCULLIS_CLIENT_GONE'

function clientGone(): Error {
  return Object.assign(new Error('client closed the connection'), { code: CLIENT_GONE })
}

function timeoutError(): Error {
  return Object.assign(new Error('route timeout'), { code: 'PORTCULLIS_TIMEOUT' })
}

/** Base for both transports: timers, client-abort handling, and the single completion. */
abstract class Exchange {
  protected readonly f: ForwardRequest
  protected bytes = 0
  protected status = 0
  #timer: NodeJS.Timeout | undefined
  #finished = false
  readonly #startedAt = performance.now()
  protected readonly load: UpstreamLoad
  /** False when the exchange ended before reaching the upstream: not the upstream's doing. */
  protected judgeUpstream = true

  constructor(f: ForwardRequest) {
    this.f = f
    f.endpoint.active++
    this.load = f.endpoint.transport.load
    this.load.inFlight++
    if (f.timeoutMs > 0) {
      // As in Envoy, the route timeout starts once the whole request has arrived, so an upload
      // that takes longer than the timeout is not cut off.
      if (hasRequestBody(f.req) && !f.req.readableEnded) f.req.once('end', () => this.#startTimer())
      else this.#startTimer()
    }
    f.res.once('close', () => {
      if (!this.#finished) this.abortUpstream(clientGone())
    })
  }

  #startTimer(): void {
    if (this.#finished) return
    this.#timer = setTimeout(() => this.abortUpstream(timeoutError()), this.f.timeoutMs)
  }

  protected abstract abortUpstream(reason: Error): void

  /**
   * Sends the upstream's status and headers. Node refuses some values an upstream can send
   * (invalid characters, statuses HTTP/2 cannot carry); that is the upstream's fault, a 502.
   */
  protected startResponse(status: number, headers: IncomingHttpHeaders): boolean {
    try {
      this.f.res.writeHead(status, buildResponseHeaders(headers, this.f.plan, this.f.requestId))
      return true
    } catch (err) {
      this.abortUpstream(Object.assign(new Error('invalid upstream response head', { cause: err }), { code: 'PORTCULLIS_BAD_RESPONSE' }))
      return false
    }
  }

  /** Sends trailers that are valid in both HTTP versions and ends the response. */
  protected endResponse(trailers: IncomingHttpHeaders | undefined): void {
    const res = this.f.res
    const clean = trailers ? sanitiseTrailers(trailers) : undefined
    if (clean) {
      try {
        res.addTrailers(clean)
      } catch {
        // An invalid trailer is dropped, not fatal: the body has already been delivered.
      }
    }
    res.end()
  }

  protected fail(err: unknown): void {
    if (this.#finished) return
    if ((err as { code?: unknown }).code === CLIENT_GONE) {
      // The client left: nothing to answer, and no fault of the upstream's (counting it would
      // let any client get a healthy endpoint ejected). Envoy logs these with status 0.
      this.f.res.destroy()
      this.finish(0, this.bytes, 'downstream_remote_disconnect', null)
      return
    }
    const failure = classifyUpstreamError(err)
    const res = this.f.res
    if (!res.headersSent && !res.destroyed) {
      const bytes = sendError(res, failure.status, failure.message, this.f.requestId, this.f.json, this.f.errorHeaders, this.f.method === 'HEAD')
      this.finish(failure.status, bytes, failure.details, undefined)
    } else {
      res.destroy()
      this.finish(this.status || failure.status, this.bytes, failure.details, undefined)
    }
  }

  /** `upstreamStatus`: undefined for an upstream failure, null when the upstream is not to be judged. */
  protected finish(status: number, bytes: number, details: string, upstreamStatus: number | undefined | null): void {
    if (this.#finished) return
    this.#finished = true
    if (this.#timer) clearTimeout(this.#timer)
    this.f.endpoint.active--
    this.load.inFlight--
    this.released()
    if (upstreamStatus !== null && this.judgeUpstream) {
      this.f.endpoint.recordOutcome(upstreamStatus)
      this.f.upstreamDone?.(upstreamStatus, performance.now() - this.#startedAt)
    }
    this.f.done(status, bytes, details)
  }

  /** The exchange is over for the client; a transport frees what it held for it. */
  protected released(): void {}
}

/**
 * A request through an undici pool. Until the pool writes it on a connection it waits in the
 * pool's queue; it counts as `waiting` until the pool lets it go (even when the client already
 * has its answer), and as `busy` while it holds a connection.
 */
class UndiciExchange extends Exchange implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined
  #pendingAbort: Error | undefined
  #queued: boolean
  #onConnection = false

  constructor(f: ForwardRequest) {
    super(f)
    this.#queued = true
    this.load.waiting++
  }

  /** undici calls this when the request is about to be written on a connection. */
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    this.#leaveQueue()
    if (this.#pendingAbort) {
      controller.abort(this.#pendingAbort)
      return
    }
    this.#onConnection = true
    this.load.busy++
  }

  #leaveQueue(): void {
    if (!this.#queued) return
    this.#queued = false
    this.load.waiting--
  }

  protected override released(): void {
    if (!this.#onConnection) return
    this.#onConnection = false
    this.load.busy--
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // Informational answers (103 Early Hints) are not forwarded; the final one follows.
    if (statusCode < 200) return
    const res = this.f.res
    if (res.destroyed) {
      controller.abort(clientGone())
      return
    }
    this.status = statusCode
    this.startResponse(statusCode, headers)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytes += chunk.length
    const res = this.f.res
    if (!writeChunk(res, chunk)) {
      controller.pause()
      res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.endResponse(trailers)
    this.finish(this.status, this.bytes, 'via_upstream', this.status)
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    // Also how a queued request leaves the queue when it could not be sent (connect failure).
    this.#leaveQueue()
    this.fail(err)
  }

  protected abortUpstream(reason: Error): void {
    if (this.#controller) {
      this.#controller.abort(reason)
      return
    }
    // Still queued: undici cannot take it out of its queue, so it is aborted when the pool
    // reaches it; the client is answered now (504 at the route timeout) rather than then.
    this.#pendingAbort = reason
    this.judgeUpstream = false
    this.fail(reason)
  }
}

class H2cExchange extends Exchange {
  #stream: ClientHttp2Stream | undefined

  start(): void {
    const f = this.f
    if (f.endpoint.transport.kind !== 'h2c') throw new Error('h2c exchange on a non-h2c endpoint')
    const headers: OutgoingHttpHeaders = {
      ':method': f.method,
      ':path': f.path,
      ':authority': f.authority,
      ':scheme': 'http',
    }
    for (let i = 0; i < f.headers.length; i += 2) {
      const name = f.headers[i] as string
      const value = f.headers[i + 1] as string
      if (name === 'host' || name === 'connection' || name === 'upgrade') continue
      const lower = name.toLowerCase()
      const existing = headers[lower]
      if (existing === undefined) headers[lower] = value
      else headers[lower] = Array.isArray(existing) ? [...existing, value] : [String(existing), value]
    }
    const withBody = hasRequestBody(f.req)
    let stream: ClientHttp2Stream
    try {
      stream = f.endpoint.transport.connection.session().request(headers, { endStream: !withBody })
    } catch (err) {
      this.fail(err)
      return
    }
    this.#stream = stream
    if (f.idleTimeoutMs > 0) stream.setTimeout(f.idleTimeoutMs, () => this.abortUpstream(timeoutError()))
    if (withBody) f.req.pipe(stream)
    let trailers: IncomingHttpHeaders | undefined
    stream.on('response', (h) => {
      this.status = Number(h[':status'])
      this.startResponse(this.status, h)
    })
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = t
    })
    stream.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length
      if (!writeChunk(f.res, chunk)) {
        stream.pause()
        f.res.once('drain', () => stream.resume())
      }
    })
    stream.on('end', () => {
      if (!f.res.headersSent) {
        this.fail(new Error('upstream ended the stream without a response'))
        return
      }
      this.endResponse(trailers)
      this.finish(this.status, this.bytes, 'via_upstream', this.status)
    })
    stream.on('error', (err) => this.fail(err))
    stream.on('close', () => {
      if (stream.rstCode !== undefined && stream.rstCode !== h2constants.NGHTTP2_NO_ERROR && !f.res.writableEnded) {
        this.fail(Object.assign(new Error('upstream reset the stream'), { code: 'ECONNRESET' }))
      }
    })
  }

  protected abortUpstream(reason: Error): void {
    const stream = this.#stream
    if (stream && !stream.closed) stream.close(h2constants.NGHTTP2_CANCEL)
    this.fail(reason)
  }
}

/**
 * Sends the request to the endpoint and streams the answer back; never throws. Over the
 * upstream's circuit-breaker limits it answers `503` at once, as Envoy does, and the upstream
 * is not blamed for it (no passive ejection).
 */
export function forward(f: ForwardRequest): void {
  const transport = f.endpoint.transport
  if (!transport.load.admits()) {
    const bytes = sendError(f.res, 503, 'The upstream service is busy: too many requests are waiting for it. Try again shortly.', f.requestId, f.json, f.errorHeaders, f.method === 'HEAD')
    f.done(503, bytes, OVERFLOW_DETAILS)
    return
  }
  if (f.expectsContinue === true) f.res.writeContinue()
  if (transport.kind === 'h2c') {
    new H2cExchange(f).start()
    return
  }
  if (transport.kind === 'raw') throw new Error('an HTTP request routed to a tcp:// or udp:// upstream')
  const exchange = new UndiciExchange(f)
  const idle = f.idleTimeoutMs
  transport.pool.dispatch(
    {
      path: f.path,
      method: f.method,
      headers: f.headers,
      body: hasRequestBody(f.req) ? f.req : null,
      headersTimeout: idle,
      bodyTimeout: idle,
    },
    exchange,
  )
}
