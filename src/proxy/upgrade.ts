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
import type { Endpoint } from './upstreams.js'

export interface UpgradeRequest {
  readonly requestId: string
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
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
  )
}

export function tunnelUpgrade(u: UpgradeRequest): void {
  const url = u.endpoint.target.url
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const upstream =
    url.protocol === 'https:'
      ? tlsConnect({
          host,
          port,
          rejectUnauthorized: !u.tls.skipVerify,
          ...(u.tls.serverName !== undefined ? { servername: u.tls.serverName } : /^[0-9.:]+$/.test(host) ? {} : { servername: host }),
          ...(u.tls.customCa !== undefined ? { ca: u.tls.customCa } : {}),
          ...(u.tls.clientCert !== undefined && u.tls.clientKey !== undefined ? { cert: u.tls.clientCert, key: u.tls.clientKey } : {}),
          ALPNProtocols: ['http/1.1'],
        })
      : netConnect({ host, port })
  const connectEvent = url.protocol === 'https:' ? 'secureConnect' : 'connect'
  let head = `${u.method} ${u.path} HTTP/1.1\r\n`
  for (let i = 0; i < u.headers.length; i += 2) head += `${u.headers[i]}: ${u.headers[i + 1]}\r\n`
  head += '\r\n'

  let established = false
  let bytes = 0
  let status = 0
  let finished = false
  const finish = (s: number, details: string): void => {
    if (finished) return
    finished = true
    u.endpoint.active--
    u.done(s, bytes, details)
  }
  u.endpoint.active++
  upstream.once(connectEvent, () => {
    established = true
    upstream.write(head)
    if (u.head.length > 0) upstream.write(u.head)
    upstream.once('data', (chunk: Buffer) => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'))
      status = m ? Number(m[1]) : 502
      u.endpoint.recordOutcome(status)
    })
    upstream.on('data', (chunk: Buffer) => {
      bytes += chunk.length
    })
    upstream.pipe(u.socket)
    u.socket.pipe(upstream)
  })
  if (u.idleTimeoutMs > 0) {
    upstream.setTimeout(u.idleTimeoutMs, () => {
      upstream.destroy()
      u.socket.destroy()
    })
  }
  upstream.on('error', () => {
    if (!established) {
      u.endpoint.recordOutcome(undefined)
      rejectUpgrade(u.socket, 503, 'Service Unavailable', 'The upstream service could not be reached.', u.requestId)
      finish(503, 'upstream_connect_failure')
    } else {
      u.socket.destroy()
    }
  })
  upstream.on('close', () => {
    u.socket.destroy()
    finish(status || 502, 'via_upstream')
  })
  u.socket.on('error', () => upstream.destroy())
  u.socket.on('close', () => upstream.destroy())
}
