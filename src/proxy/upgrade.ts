/**
 * Upgraded connections (WebSocket, SPDY/3.1, any type listed in `allow_upgrades`): after the
 * request has been routed and authorised like any other, the proxy opens a raw connection to the
 * upstream, replays the rewritten request head and then splices the two sockets together.
 * A raw pipe costs about what nginx does, and survives config reloads because it holds no
 * reference to the config once established.
 */
import { connect as netConnect } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import type { UpstreamTlsConfig } from '../config/types.js'
import { OVERFLOW_DETAILS } from './circuit-breaker.js'
import { isUnixTarget } from './upstreams.js'
import type { Endpoint } from './upstreams.js'

/** Bounds on what the proxy waits for before a tunnel exists. */
const CONNECT_TIMEOUT_MS = 10_000
const RESPONSE_HEAD_TIMEOUT_MS = 10_000
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024
/** How long a refused upgrade's body may take to arrive when its length is unknown. */
const REFUSAL_LINGER_MS = 5_000

export interface UpgradeRequest {
  readonly requestId: string
  /** The lower-cased upgrade token the client asked for; the upstream must answer 101 with it. */
  readonly token: string
  readonly socket: Duplex
  readonly head: Buffer
  readonly method: string
  readonly path: string
  readonly headers: string[]
  readonly endpoint: Endpoint
  readonly tls: UpstreamTlsConfig
  readonly idleTimeoutMs: number
  readonly done: (status: number, bytes: number, details: string) => void
}

/** Writes a minimal HTTP/1.1 answer on a socket that never reached the HTTP response machinery. */
export function rejectUpgrade(socket: Duplex, status: number, title: string, message: string, requestId: string): void {
  const body = `${message}\nRequest ID: ${requestId}\n`
  // No HTTP server timeout applies to an upgraded socket any more: close it once the answer is
  // flushed instead of waiting for the client to close its side.
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  )
}

export function tunnelUpgrade(u: UpgradeRequest): void {
  // A tunnel holds an upstream connection of its own for as long as it lasts: it counts as a
  // request in flight (circuit_breaker_thresholds.max_requests), so tunnels are bounded too.
  const load = u.endpoint.transport.load
  if (!load.admits()) {
    rejectUpgrade(u.socket, 503, 'Service Unavailable', 'The upstream service is busy: too many requests are waiting for it.', u.requestId)
    u.done(503, 0, OVERFLOW_DETAILS)
    return
  }
  const url = u.endpoint.target.url
  const secure = url.protocol === 'https:' || url.protocol === 'https+unix:'
  const socketPath = isUnixTarget(url) ? decodeURIComponent(url.pathname) : undefined
  const port = Number(url.port) || (secure ? 443 : 80)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const where = socketPath !== undefined ? { path: socketPath } : { host, port }
  const upstream = secure
    ? tlsConnect({
        ...where,
        rejectUnauthorized: !u.tls.skipVerify,
        ...(u.tls.serverName !== undefined ? { servername: u.tls.serverName } : socketPath !== undefined || /^[0-9.:]+$/.test(host) ? {} : { servername: host }),
        ...(u.tls.customCa !== undefined ? { ca: u.tls.customCa } : {}),
        ...(u.tls.clientCert !== undefined && u.tls.clientKey !== undefined ? { cert: u.tls.clientCert, key: u.tls.clientKey } : {}),
        ALPNProtocols: ['http/1.1'],
      })
    : netConnect(where)
  const connectEvent = secure ? 'secureConnect' : 'connect'
  let head = `${u.method} ${u.path} HTTP/1.1\r\n`
  for (let i = 0; i < u.headers.length; i += 2) head += `${u.headers[i]}: ${u.headers[i + 1]}\r\n`
  head += '\r\n'

  let established = false
  let upgraded = false
  let bytes = 0
  let status = 0
  let finished = false
  const finish = (s: number, details: string): void => {
    if (finished) return
    finished = true
    u.endpoint.active--
    load.inFlight--
    u.done(s, bytes, details)
  }
  u.endpoint.active++
  load.inFlight++
  const connectTimer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), CONNECT_TIMEOUT_MS)
  let headTimer: NodeJS.Timeout | undefined
  upstream.once(connectEvent, () => {
    established = true
    clearTimeout(connectTimer)
    headTimer = setTimeout(() => {
      upstream.destroy()
      rejectUpgrade(u.socket, 504, 'Gateway Timeout', 'The upstream service did not answer the upgrade in time.', u.requestId)
      finish(504, 'upstream_response_timeout')
    }, RESPONSE_HEAD_TIMEOUT_MS)
    // Only the request head goes now: the client's bytes wait until the upstream has agreed to
    // switch protocols, so they can never be read as further HTTP requests by the upstream.
    upstream.write(head)
    let buffered: Buffer = Buffer.alloc(0)
    const onHead = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) {
        if (buffered.length > MAX_RESPONSE_HEAD_BYTES) {
          upstream.destroy()
          rejectUpgrade(u.socket, 502, 'Bad Gateway', 'The upstream service sent an invalid response.', u.requestId)
          finish(502, 'upstream_bad_response')
        }
        return
      }
      upstream.off('data', onHead)
      clearTimeout(headTimer)
      const headText = buffered.subarray(0, end).toString('latin1')
      const rest = buffered.subarray(end + 4)
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(headText)
      status = m ? Number(m[1]) : 502
      u.endpoint.recordOutcome(status)
      if (!m) {
        upstream.destroy()
        rejectUpgrade(u.socket, 502, 'Bad Gateway', 'The upstream service sent an invalid response.', u.requestId)
        finish(502, 'upstream_bad_response')
        return
      }
      if (status < 200 && (status !== 101 || upgradeTokenOf(headText) !== u.token)) {
        // Switching to a protocol the client did not ask for (or an interim answer) is not
        // something to relay: the client would take the connection for what it asked.
        upstream.destroy()
        rejectUpgrade(u.socket, 502, 'Bad Gateway', 'The upstream service answered the upgrade with a different protocol.', u.requestId)
        finish(502, 'upgrade_failed')
        return
      }
      if (status === 101) {
        upgraded = true
        u.socket.write(buffered)
        bytes += rest.length
        if (u.head.length > 0) upstream.write(u.head)
        upstream.on('data', (c: Buffer) => {
          bytes += c.length
        })
        upstream.pipe(u.socket)
        u.socket.pipe(upstream)
        return
      }
      passThroughRefusal(headText, rest)
    }
    upstream.on('data', onHead)
  })

  /**
   * The upstream answered without switching protocols (401, 426, even 200): the client gets
   * that answer and the connection is closed, never left open as a raw pipe.
   */
  const passThroughRefusal = (headText: string, rest: Buffer): void => {
    const lines = headText.split('\r\n').filter((l) => !/^(connection|keep-alive|upgrade|transfer-encoding):/i.test(l))
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(headText)
    const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(headText)
    // A chunked body is passed on as a close-delimited one: the chunk framing is not re-parsed.
    if (chunked) lines.push('transfer-encoding: chunked')
    u.socket.write(`${lines.join('\r\n')}\r\nx-request-id: ${u.requestId}\r\nconnection: close\r\n\r\n`)
    let remaining = length ? Number(length[1]) : Infinity
    const forwardBody = (c: Buffer): void => {
      const part = c.length > remaining ? c.subarray(0, remaining) : c
      remaining -= part.length
      bytes += part.length
      u.socket.write(part)
      if (remaining <= 0) {
        upstream.destroy()
        u.socket.end(() => u.socket.destroy())
      }
    }
    if (rest.length > 0) forwardBody(rest)
    if (remaining <= 0) {
      upstream.destroy()
      u.socket.end(() => u.socket.destroy())
    } else {
      upstream.on('data', forwardBody)
      upstream.setTimeout(REFUSAL_LINGER_MS, () => upstream.destroy())
    }
  }

  if (u.idleTimeoutMs > 0) {
    upstream.setTimeout(u.idleTimeoutMs, () => {
      upstream.destroy()
      u.socket.destroy()
    })
  }
  upstream.on('error', () => {
    clearTimeout(connectTimer)
    if (!established) {
      u.endpoint.recordOutcome(undefined)
      rejectUpgrade(u.socket, 503, 'Service Unavailable', 'The upstream service could not be reached.', u.requestId)
      finish(503, 'upstream_connect_failure')
    } else if (upgraded) {
      u.socket.destroy()
    }
  })
  upstream.on('close', () => {
    clearTimeout(connectTimer)
    clearTimeout(headTimer)
    if (upgraded) u.socket.destroy()
    else if (status === 0 && established && !u.socket.writableEnded) {
      rejectUpgrade(u.socket, 502, 'Bad Gateway', 'The upstream service closed the connection without answering.', u.requestId)
    } else if (!u.socket.writableEnded) u.socket.end(() => u.socket.destroy())
    finish(status || 502, upgraded ? 'via_upstream' : 'upgrade_failed')
  })
  u.socket.on('error', () => upstream.destroy())
  u.socket.on('close', () => upstream.destroy())
}

/** The lower-cased `Upgrade` token of a response head, or undefined. */
function upgradeTokenOf(headText: string): string | undefined {
  const m = /\r\nupgrade:[ \t]*([^\r\n]*)/i.exec(headText)
  return m?.[1]?.trim().toLowerCase()
}
