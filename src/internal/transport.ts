/**
 * The transport of the internal API between Portcullis services: HTTP/2 with JSON bodies.
 *
 * - Cleartext HTTP/2 ("h2c", prior knowledge) when `grpc_insecure` is true, TLS otherwise. A
 *   client picks by the URL scheme (`http:` or `https:`) and always verifies the server's
 *   certificate (system roots plus `certificate_authority`); there is no way to turn that off.
 * - Every request is `POST <path>` with a JSON body and `Authorization: Bearer <internal
 *   credential>` (`./token.ts`). A request without a valid credential gets 401 before anything
 *   else is looked at: no routing, no body read.
 * - A unary answer is a JSON body: the result with status 200, or `{code, message}` otherwise.
 * - A streaming answer is status 200 followed by newline-delimited JSON, one object per line,
 *   with a `{"heartbeat":true}` line every `heartbeatMs` so that idle proxies and the client's
 *   liveness check keep the stream open; an error ends it with an `{"error":{code,message}}`
 *   line. It runs until the client cancels the stream or the server closes.
 */
import http2 from 'node:http2'
import type {
  ClientHttp2Session,
  ClientHttp2Stream,
  Http2Server,
  Http2SecureServer,
  IncomingHttpHeaders,
  ServerHttp2Session,
  ServerHttp2Stream,
} from 'node:http2'
import type { AddressInfo } from 'node:net'
import { rootCertificates } from 'node:tls'
import type { Logger } from '../shared/log.js'
import { createInternalTokenSource, createInternalVerifier } from './token.js'

/** The largest request or unary response body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024
/** Default interval of heartbeat lines on streaming answers. */
export const DEFAULT_HEARTBEAT_MS = 10_000

/** An error answer: an HTTP status and a stable code. */
export class InternalApiError extends Error {
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'InternalApiError'
    this.status = status
    this.code = code
  }
}

/**
 * The call did not get an answer: the connection failed or broke. `beforeSend` is true when the
 * request certainly never reached the server (the connection was never established, or the
 * server refused the stream unprocessed), so that retrying it elsewhere cannot apply it twice.
 */
export class InternalTransportError extends Error {
  readonly beforeSend: boolean

  constructor(message: string, beforeSend: boolean, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'InternalTransportError'
    this.beforeSend = beforeSend
  }
}

// ---------------------------------------------------------------------------------------------
// Server

/** The server's certificate and key (PEM), from the main `certificate*` settings. */
export interface InternalServerTls {
  readonly cert: string | Buffer
  readonly key: string | Buffer
}

/** Sends one line on a streaming answer; resolves once the stream can take more. */
export type StreamSend = (value: unknown) => Promise<void>

export type InternalRoute =
  | { readonly kind: 'unary'; handle(body: unknown): Promise<unknown> }
  | {
      readonly kind: 'stream'
      /** Runs until `signal` aborts (client gone, server closing) or it throws. */
      handle(body: unknown, send: StreamSend, signal: AbortSignal): Promise<void>
    }

export interface InternalServerOptions {
  /** `host:port`; an empty host (`:5443`) listens on every interface; port 0 picks one. */
  readonly address: string
  /** TLS certificate; cleartext HTTP/2 when absent (`grpc_insecure: true`). */
  readonly tls?: InternalServerTls | undefined
  /** The raw 32-byte shared secret: calls must carry a credential derived from it. */
  readonly sharedSecret: Buffer
  readonly logger: Logger
  /** Routes by exact path. */
  readonly routes: ReadonlyMap<string, InternalRoute>
  /** Maps an error thrown by a route to its answer. */
  readonly mapError: (err: unknown) => InternalApiError
  /** Interval of heartbeat lines on streams (default 10 s). */
  readonly heartbeatMs?: number | undefined
  /** Told of every answered call (metrics): a known route's path, else `unknown`. */
  readonly onCall?: ((path: string, status: number, durationMs: number) => void) | undefined
}

export interface InternalServer {
  /** The URL clients use, `http://host:port` or `https://host:port` (loopback for a wildcard). */
  readonly url: string
  readonly port: number
  /** Stops accepting, ends running streams and closes every connection. */
  close(): Promise<void>
}

/** Splits `host:port`, `[v6]:port` or `:port`. */
export function parseListenAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address.trim())
  const port = Number(m?.[3])
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new Error(`invalid internal API address ${JSON.stringify(address)}: want host:port`)
  }
  return { host: m[1] ?? m[2] ?? '', port }
}

function send(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return
  try {
    stream.respond({ ':status': status, 'content-type': 'application/json' })
    stream.end(JSON.stringify(body))
  } catch {
    // the client went away
  }
}

function readBody(stream: ServerHttp2Stream): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        reject(new InternalApiError(413, 'ERR_BODY_TOO_LARGE', 'request body too large'))
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
        return
      }
      chunks.push(chunk)
    })
    stream.once('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      if (text === '') return resolve({})
      try {
        resolve(JSON.parse(text))
      } catch {
        reject(new InternalApiError(400, 'ERR_BAD_REQUEST', 'request body is not JSON'))
      }
    })
    stream.once('error', reject)
    stream.once('close', () => reject(new InternalApiError(499, 'ERR_CANCELLED', 'client went away')))
  })
}

/** Starts an internal API server. */
export async function startInternalServer(options: InternalServerOptions): Promise<InternalServer> {
  const { routes, logger, mapError } = options
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS
  const authorized = createInternalVerifier(options.sharedSecret)
  const { host, port } = parseListenAddress(options.address)
  const server: Http2Server | Http2SecureServer = options.tls
    ? http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: false })
    : http2.createServer()
  const sessions = new Set<ServerHttp2Session>()
  const closing = new AbortController()
  let refusedLogged = 0

  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session)
    session.on('close', () => sessions.delete(session))
    session.on('error', () => {})
  })
  const record = options.onCall
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {}) // resets by the client are normal (cancelled syncs)
    const startedAt = performance.now()
    const path = headers[':path'] ?? ''
    const route = routes.get(path)
    const answered = (status: number): void => record?.(route ? path : 'unknown', status, performance.now() - startedAt)
    // The credential comes first: nothing else about an unauthenticated request is looked at.
    if (!authorized(headers.authorization)) {
      if (refusedLogged++ < 100 || refusedLogged % 1000 === 0) {
        logger.warn({ path: headers[':path'] }, 'internal API: request without a valid internal credential refused')
      }
      send(stream, 401, { code: 'ERR_UNAUTHENTICATED', message: 'a valid internal credential is required' })
      answered(401)
      return
    }
    if (!route) {
      send(stream, 404, { code: 'ERR_NOT_FOUND', message: 'no such method' })
      answered(404)
      return
    }
    if (headers[':method'] !== 'POST') {
      send(stream, 405, { code: 'ERR_METHOD_NOT_ALLOWED', message: 'use POST' })
      answered(405)
      return
    }
    void serve(stream, route, path).then(answered)
  })

  /** Resolves with the status answered. */
  async function serve(stream: ServerHttp2Stream, route: InternalRoute, path: string): Promise<number> {
    let body: unknown
    try {
      body = await readBody(stream)
    } catch (err) {
      if (err instanceof InternalApiError) {
        send(stream, err.status, { code: err.code, message: err.message })
        return err.status
      }
      return 400
    }
    if (route.kind === 'unary') {
      try {
        const result = await route.handle(body)
        send(stream, 200, result ?? {})
        return 200
      } catch (err) {
        const e = mapError(err)
        if (e.status >= 500) logger.error({ err, path }, 'internal API call failed')
        send(stream, e.status, { code: e.code, message: e.message })
        return e.status
      }
    }
    await serveStream(stream, route, body)
    return 200
  }

  async function serveStream(
    stream: ServerHttp2Stream,
    route: Extract<InternalRoute, { kind: 'stream' }>,
    body: unknown,
  ): Promise<void> {
    const ac = new AbortController()
    const abort = (): void => ac.abort()
    closing.signal.addEventListener('abort', abort, { once: true })
    stream.once('close', abort)
    const write = async (value: unknown): Promise<void> => {
      if (ac.signal.aborted || stream.destroyed) return
      const ok = stream.write(`${JSON.stringify(value)}\n`)
      if (!ok && !stream.destroyed) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            stream.off('drain', done)
            ac.signal.removeEventListener('abort', done)
            resolve()
          }
          stream.on('drain', done)
          ac.signal.addEventListener('abort', done, { once: true })
        })
      }
    }
    const heartbeat = setInterval(() => void write({ heartbeat: true }), heartbeatMs)
    try {
      stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' })
      await route.handle(body, write, ac.signal)
    } catch (err) {
      if (!ac.signal.aborted) {
        const e = mapError(err)
        if (e.status >= 500) logger.error({ err }, 'internal API stream failed')
        await write({ error: { code: e.code, message: e.message } })
      }
    } finally {
      clearInterval(heartbeat)
      closing.signal.removeEventListener('abort', abort)
      if (!stream.destroyed) {
        // Ended by the handler or the server closing: a clean end tells the client to reconnect.
        if (closing.signal.aborted) stream.close(http2.constants.NGHTTP2_CANCEL)
        else stream.end()
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host === '' ? undefined : host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => logger.error({ err }, 'internal API server error'))
  const bound = (server.address() as AddressInfo).port
  const urlHost =
    host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host
  const url = `${options.tls ? 'https' : 'http'}://${urlHost}:${bound}`
  logger.info({ address: `${host}:${bound}`, tls: options.tls !== undefined }, 'internal API listening')

  let closed: Promise<void> | undefined
  return {
    url,
    port: bound,
    close() {
      closed ??= (async () => {
        const done = new Promise<void>((resolve) => server.close(() => resolve()))
        closing.abort() // ends every stream
        for (const s of sessions) s.close()
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy()
        }, 2_000)
        await done
        clearTimeout(timer)
      })()
      return closed
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Client

/** How a client reaches TLS servers. Verification is always on. */
export interface InternalClientTls {
  /** Extra CA certificates (PEM) trusted besides the system roots (`certificate_authority`). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[] | undefined
  /** The name expected in the server certificate instead of the URL host (`override_certificate_name`). */
  readonly serverName?: string | undefined
}

export interface InternalConnectionOptions {
  readonly sharedSecret: Buffer
  readonly tls?: InternalClientTls | undefined
}

/** What a streaming call reports. */
export interface StreamHandlers {
  /** One parsed line (heartbeats included). */
  onLine(value: unknown): void
  /** The stream ended: cleanly (no argument) or with the error that broke it. */
  onEnd(err?: Error): void
}

/** A running streaming call. */
export interface StreamCall {
  pause(): void
  resume(): void
  /** Cancels the stream; `onEnd` is not called afterwards. */
  cancel(): void
}

const { HTTP2_HEADER_AUTHORIZATION, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH } =
  http2.constants

/** One HTTP/2 connection (re-established on demand) to one internal API URL. */
export class InternalConnection {
  readonly url: URL
  private readonly tokens: ReturnType<typeof createInternalTokenSource>
  private readonly connectOptions: http2.SecureClientSessionOptions
  private session: ClientHttp2Session | undefined
  private readonly connected = new WeakSet<ClientHttp2Session>()
  private active = 0
  private closed = false

  constructor(url: string, options: InternalConnectionOptions) {
    this.url = new URL(url)
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw new Error(`internal service URL ${url}: want http:// or https://`)
    }
    this.tokens = createInternalTokenSource(options.sharedSecret)
    const extra = options.tls?.ca
    const cas = extra === undefined ? [] : Array.isArray(extra) ? extra : [extra]
    this.connectOptions =
      this.url.protocol === 'https:'
        ? {
            ...(cas.length > 0 ? { ca: [...rootCertificates, ...(cas as (string | Buffer)[])] } : {}),
            ...(options.tls?.serverName ? { servername: options.tls.serverName } : {}),
            rejectUnauthorized: true,
          }
        : {}
  }

  private path(method: string): string {
    return `${this.url.pathname.replace(/\/+$/, '')}${method}`
  }

  private getSession(): ClientHttp2Session {
    const current = this.session
    if (current && !current.closed && !current.destroyed) return current
    const s = http2.connect(this.url.origin, this.connectOptions)
    s.on('error', () => {
      // Surfaces on the streams; the connection itself is done for: the next call opens another.
      if (this.session === s) this.session = undefined
      s.destroy()
    })
    s.once('connect', () => this.connected.add(s))
    const drop = (): void => {
      if (this.session === s) this.session = undefined
    }
    s.once('close', drop)
    s.once('goaway', drop)
    this.session = s
    if (this.active === 0) s.unref()
    return s
  }

  private open(method: string, body: unknown): { stream: ClientHttp2Stream; session: ClientHttp2Session } {
    if (this.closed) throw new InternalTransportError('connection closed', true)
    const session = this.getSession()
    let stream: ClientHttp2Stream
    try {
      stream = session.request({
        [HTTP2_HEADER_METHOD]: 'POST',
        [HTTP2_HEADER_PATH]: this.path(method),
        [HTTP2_HEADER_AUTHORIZATION]: this.tokens.authorization(),
        [HTTP2_HEADER_CONTENT_TYPE]: 'application/json',
      })
    } catch (err) {
      if (this.session === session) this.session = undefined
      throw new InternalTransportError(`cannot reach ${this.url.origin}`, true, { cause: err })
    }
    this.active++
    session.ref()
    stream.once('close', () => {
      this.active--
      if (this.active === 0 && !session.destroyed) session.unref()
    })
    stream.end(JSON.stringify(body))
    return { stream, session }
  }

  private transportError(session: ClientHttp2Session, stream: ClientHttp2Stream, err?: Error): InternalTransportError {
    const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM
    const beforeSend = !this.connected.has(session) || refused
    // A connection-level failure (GOAWAY, ENHANCE_YOUR_CALM, protocol error) leaves a session that
    // takes no more streams though it is not yet closed: drop it so the next call reconnects.
    const code = (err as { code?: unknown } | undefined)?.code
    const sessionLevel =
      code === 'ERR_HTTP2_SESSION_ERROR' || code === 'ERR_HTTP2_GOAWAY_SESSION' || stream.rstCode === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM || /ENHANCE_YOUR_CALM/.test(err?.message ?? '')
    if (sessionLevel && !session.destroyed) session.destroy()
    if (this.session === session && (session.destroyed || session.closed)) this.session = undefined
    return new InternalTransportError(
      `${this.url.origin}: ${err?.message ?? 'stream closed without an answer'}`,
      beforeSend,
      err ? { cause: err } : undefined,
    )
  }

  /** Makes a unary call; rejects with `InternalApiError` or `InternalTransportError`. */
  call(method: string, body: unknown, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream
      let session: ClientHttp2Session
      try {
        ;({ stream, session } = this.open(method, body))
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)))
        return
      }
      let status = 0
      let settled = false
      const chunks: Buffer[] = []
      let size = 0
      const finish = (fn: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        fn()
      }
      const timer = setTimeout(() => {
        finish(() => reject(new InternalTransportError(`${this.url.origin}: no answer within ${timeoutMs} ms`, false)))
        stream.close(http2.constants.NGHTTP2_CANCEL)
      }, timeoutMs)
      stream.on('response', (headers) => {
        status = Number(headers[':status'])
      })
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > MAX_BODY_BYTES) {
          finish(() => reject(new InternalApiError(502, 'ERR_BODY_TOO_LARGE', 'answer too large')))
          stream.close(http2.constants.NGHTTP2_CANCEL)
          return
        }
        chunks.push(chunk)
      })
      stream.on('end', () => {
        if (status === 0) return // 'close' reports it
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: unknown
        try {
          parsed = text === '' ? {} : JSON.parse(text)
        } catch {
          finish(() => reject(new InternalApiError(502, 'ERR_BAD_ANSWER', `${this.url.origin}: answer is not JSON`)))
          return
        }
        if (status === 200) return finish(() => resolve(parsed))
        const p = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>
        const code = typeof p['code'] === 'string' ? p['code'] : `HTTP_${status}`
        const message = typeof p['message'] === 'string' ? p['message'] : `HTTP ${status}`
        finish(() => reject(new InternalApiError(status, code, message)))
      })
      stream.on('error', (err: Error) => finish(() => reject(this.transportError(session, stream, err))))
      stream.on('close', () => finish(() => reject(this.transportError(session, stream))))
    })
  }

  /** Opens a streaming call. Transport failures and a clean end both go to `onEnd`. */
  stream(method: string, body: unknown, handlers: StreamHandlers, idleTimeoutMs: number): StreamCall {
    let stream: ClientHttp2Stream
    let session: ClientHttp2Session
    try {
      ;({ stream, session } = this.open(method, body))
    } catch (err) {
      queueMicrotask(() => handlers.onEnd(err as Error))
      return { pause() {}, resume() {}, cancel() {} }
    }
    let ended = false
    let status = 0
    const errorChunks: Buffer[] = []
    let partial = ''
    const end = (err?: Error): void => {
      if (ended) return
      ended = true
      clearTimeout(idle)
      handlers.onEnd(err)
    }
    let idle = setTimeout(onIdle, idleTimeoutMs)
    function onIdle(): void {
      end(new InternalTransportError('stream silent for too long', false))
      stream.close(http2.constants.NGHTTP2_CANCEL)
    }
    stream.on('response', (headers) => {
      status = Number(headers[':status'])
    })
    stream.on('data', (chunk: Buffer) => {
      if (ended) return
      if (status !== 200) {
        errorChunks.push(chunk)
        return
      }
      idle.refresh()
      partial += chunk.toString('utf8')
      let nl = partial.indexOf('\n')
      while (nl >= 0 && !ended) {
        const line = partial.slice(0, nl)
        partial = partial.slice(nl + 1)
        if (line !== '') {
          let value: unknown
          try {
            value = JSON.parse(line)
          } catch {
            end(new InternalApiError(502, 'ERR_BAD_ANSWER', 'stream line is not JSON'))
            stream.close(http2.constants.NGHTTP2_CANCEL)
            return
          }
          handlers.onLine(value)
        }
        nl = partial.indexOf('\n')
      }
    })
    stream.on('end', () => {
      if (status !== 0 && status !== 200) {
        let p: Record<string, unknown> = {}
        try {
          p = JSON.parse(Buffer.concat(errorChunks).toString('utf8')) as Record<string, unknown>
        } catch {
          // keep the status
        }
        const code = typeof p['code'] === 'string' ? p['code'] : `HTTP_${status}`
        const message = typeof p['message'] === 'string' ? p['message'] : `HTTP ${status}`
        end(new InternalApiError(status, code, message))
      } else if (status === 200) end()
    })
    stream.on('error', (err: Error) => end(this.transportError(session, stream, err)))
    stream.on('close', () => end(this.transportError(session, stream)))
    return {
      pause: () => {
        clearTimeout(idle)
        stream.pause()
      },
      resume: () => {
        if (!ended) idle = setTimeout(onIdle, idleTimeoutMs)
        stream.resume()
      },
      cancel: () => {
        ended = true
        clearTimeout(idle)
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL)
      },
    }
  }

  /** Closes the connection; calls in flight fail. */
  close(): void {
    this.closed = true
    const s = this.session
    this.session = undefined
    s?.destroy()
  }
}
