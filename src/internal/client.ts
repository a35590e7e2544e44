/**
 * The internal API client: one HTTP/2 connection per service URL, re-established on demand, that
 * makes unary and streaming calls carrying the internal credential. TLS servers are always
 * verified (system roots plus `certificate_authority`). The wire format is in `wire.ts`.
 */
import http2 from 'node:http2'
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2'
import { rootCertificates } from 'node:tls'
import { createInternalTokenSource } from './token.js'
import {
  answerError,
  InternalApiError,
  InternalTransportError,
  JSON_CONTENT_TYPE,
  LineSplitter,
  MAX_BODY_BYTES,
  parseJsonBody,
} from './wire.js'

/** How a client reaches TLS servers. Verification is always on. */
export interface InternalClientTls {
  /** Extra CA certificates (PEM) trusted besides the system roots (`certificate_authority`). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[] | undefined
  /** The name expected in the server certificate instead of the URL host (`override_certificate_name`). */
  readonly serverName?: string | undefined
}

interface InternalConnectionOptions {
  readonly sharedSecret: Buffer
  readonly tls?: InternalClientTls | undefined
}

/** What a streaming call reports. */
interface StreamHandlers {
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
        [HTTP2_HEADER_CONTENT_TYPE]: JSON_CONTENT_TYPE,
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
          parsed = parseJsonBody(text)
        } catch {
          finish(() => reject(new InternalApiError(502, 'ERR_BAD_ANSWER', `${this.url.origin}: answer is not JSON`)))
          return
        }
        if (status === 200) return finish(() => resolve(parsed))
        finish(() => reject(answerError(status, parsed)))
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
    const lines = new LineSplitter()
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
      for (const line of lines.push(chunk.toString('utf8'))) {
        if (ended) break
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
    })
    stream.on('end', () => {
      if (status !== 0 && status !== 200) {
        let body: unknown
        try {
          body = JSON.parse(Buffer.concat(errorChunks).toString('utf8'))
        } catch {
          // keep the status
        }
        end(answerError(status, body))
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
