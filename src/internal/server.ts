/**
 * The internal API server: HTTP/2 (TLS, or cleartext with `grpc_insecure`), every call checked
 * for the internal credential before anything else, then routed by exact path to a unary or a
 * streaming handler. The wire format is in `wire.ts`.
 */
import { randomUUID } from 'node:crypto'
import http2 from 'node:http2'
import type {
  Http2Server,
  Http2SecureServer,
  IncomingHttpHeaders,
  ServerHttp2Session,
  ServerHttp2Stream,
} from 'node:http2'
import type { AddressInfo } from 'node:net'
import { runGuarded } from '../shared/boundary.js'
import type { HandlerOutcome } from '../shared/boundary.js'
import type { Logger } from '../shared/log.js'
import { createInternalVerifier } from './token.js'
import {
  DEFAULT_HEARTBEAT_MS,
  encodeLine,
  errorBody,
  errorLine,
  InternalApiError,
  JSON_CONTENT_TYPE,
  MAX_BODY_BYTES,
  parseJsonBody,
  STREAM_CONTENT_TYPE,
} from './wire.js'

/** The server's certificate and key (PEM), from the main `certificate*` settings. */
export interface InternalServerTls {
  readonly cert: string | Buffer
  readonly key: string | Buffer
}

/** Sends one line on a streaming answer; resolves once the stream can take more. */
type StreamSend = (value: unknown) => Promise<void>

export type InternalRoute =
  | { readonly kind: 'unary'; handle(body: unknown): Promise<unknown> }
  | {
      readonly kind: 'stream'
      /** Runs until `signal` aborts (client gone, server closing) or it throws. */
      handle(body: unknown, send: StreamSend, signal: AbortSignal): Promise<void>
    }

interface InternalServerOptions {
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
function parseListenAddress(address: string): { host: string; port: number } {
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
    stream.respond({ ':status': status, 'content-type': JSON_CONTENT_TYPE })
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
      try {
        resolve(parseJsonBody(Buffer.concat(chunks).toString('utf8')))
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
  // Every call runs inside the boundary (src/shared/boundary.ts): what escapes a route, the error
  // mapping or the call recorder costs this call a 500 (`ERR_INTERNAL` with a request id to find
  // the log line by), never the process.
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {}) // resets by the client are normal (cancelled syncs)
    runGuarded(
      () => onStream(stream, headers),
      (err) => {
        const requestId = randomUUID()
        logger.error({ err, requestId, listener: 'internal API', path: headers[':path'] }, 'internal API: call handling failed')
        // An answer already sent in full stands; one cut short can only be reset.
        if (stream.destroyed || stream.closed || stream.writableEnded) return
        if (stream.headersSent) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
        else send(stream, 500, { ...errorBody('ERR_INTERNAL', 'internal error'), requestId })
      },
    )
  })

  function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): HandlerOutcome {
    const startedAt = performance.now()
    const path = headers[':path'] ?? ''
    const route = routes.get(path)
    const answered = (status: number): void => record?.(route ? path : 'unknown', status, performance.now() - startedAt)
    // The credential comes first: nothing else about an unauthenticated request is looked at.
    if (!authorized(headers.authorization)) {
      if (refusedLogged++ < 100 || refusedLogged % 1000 === 0) {
        logger.warn({ path: headers[':path'] }, 'internal API: request without a valid internal credential refused')
      }
      send(stream, 401, errorBody('ERR_UNAUTHENTICATED', 'a valid internal credential is required'))
      answered(401)
      return
    }
    if (!route) {
      send(stream, 404, errorBody('ERR_NOT_FOUND', 'no such method'))
      answered(404)
      return
    }
    if (headers[':method'] !== 'POST') {
      send(stream, 405, errorBody('ERR_METHOD_NOT_ALLOWED', 'use POST'))
      answered(405)
      return
    }
    return serve(stream, route, path).then(answered)
  }

  /** Resolves with the status answered. */
  async function serve(stream: ServerHttp2Stream, route: InternalRoute, path: string): Promise<number> {
    let body: unknown
    try {
      body = await readBody(stream)
    } catch (err) {
      if (err instanceof InternalApiError) {
        send(stream, err.status, errorBody(err.code, err.message))
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
        send(stream, e.status, errorBody(e.code, e.message))
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
      const ok = stream.write(encodeLine(value))
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
      stream.respond({ ':status': 200, 'content-type': STREAM_CONTENT_TYPE })
      await route.handle(body, write, ac.signal)
    } catch (err) {
      if (!ac.signal.aborted) {
        const e = mapError(err)
        if (e.status >= 500) logger.error({ err }, 'internal API stream failed')
        await write(errorLine(e))
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
