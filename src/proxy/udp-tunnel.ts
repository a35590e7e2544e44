/**
 * The server side of a UDP tunnel (RFC 9298 CONNECT-UDP over the RFC 9297 capsule protocol): the
 * request target names the UDP target, and once the proxy has answered (101 on HTTP/1.1, 200 on
 * HTTP/2 extended CONNECT) {@link relayUdp} carries datagrams between the client's stream of
 * capsules and one connected UDP socket. Pomerium docs: "UDP over HTTP Support" (Pomerium uses
 * CONNECT-UDP, RFC 9298, to establish the UDP tunnel).
 */
import * as dgram from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { isIPv6 } from 'node:net'
import type { Duplex } from 'node:stream'

import { CAPSULE_DATAGRAM, CapsuleParser, UDP_CONTEXT_ID, decodeDatagram, encodeDatagram } from '../shared/capsule.js'

const MASQUE_PREFIX = '/.well-known/masque/udp/'

/** A DNS name or IPv4 literal as it may appear in the path: LDH labels, underscores, dots. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/

/**
 * The UDP target of a CONNECT-UDP request path, the default URI template of RFC 9298 section 3:
 * `/.well-known/masque/udp/{target_host}/{target_port}/`, both variables percent-encoded. An IPv6
 * literal comes with its colons encoded (`2001%3Adb8%3A%3A1`) and is returned in brackets
 * (`[2001:db8::1]`); zone identifiers are not supported (section 3). Names are lower-cased. The
 * port is a decimal 1-65535. Anything else (other paths, a query, extra segments, empty or
 * invalid variables) is undefined.
 */
export function parseMasquePath(path: string): { host: string; port: number } | undefined {
  if (!path.startsWith(MASQUE_PREFIX)) return undefined
  const parts = path.slice(MASQUE_PREFIX.length).split('/')
  if (parts.length !== 3 || parts[2] !== '') return undefined
  const host = percentDecode(parts[0] ?? '')
  const portText = percentDecode(parts[1] ?? '')
  if (host === undefined || portText === undefined) return undefined
  if (!/^[1-9][0-9]{0,4}$/.test(portText)) return undefined
  const port = Number(portText)
  if (port > 65_535) return undefined
  if (host.includes(':')) {
    // isIPv6 accepts a zone ("fe80::1%eth0"): RFC 9298 section 3 does not, and neither do we.
    if (host.includes('%') || !isIPv6(host)) return undefined
    return { host: `[${host.toLowerCase()}]`, port }
  }
  const lower = host.toLowerCase()
  if (!HOST_NAME.test(lower)) return undefined
  return { host: lower, port }
}

function percentDecode(segment: string): string | undefined {
  if (segment === '' || /[?#]/.test(segment)) return undefined
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

/** Why a UDP tunnel ended (or the reason a caller gave to `close`). */
export type UdpTunnelReason =
  | 'idle_timeout'
  | 'max_duration'
  | 'downstream_closed'
  | 'downstream_error'
  | 'malformed_capsule'
  | 'resolve_failed'
  | 'socket_error'
  | (string & {})

/** What a tunnel carried so far. */
export interface UdpTunnelStats {
  /** UDP payload bytes sent to the target (what the client's DATAGRAM capsules carried). */
  readonly bytesFromClient: number
  /** UDP payload bytes from the target written to the client. */
  readonly bytesToClient: number
  readonly datagramsFromClient: number
  readonly datagramsToClient: number
  /**
   * Datagrams dropped for backpressure: from the target while the client's stream had more than
   * `maxBufferedBytes` unwritten, and from the client while the socket's send queue had.
   */
  readonly datagramsDropped: number
  /** DATAGRAM capsules with a context id other than 0, dropped silently (RFC 9298 section 4). */
  readonly datagramsIgnored: number
  /** Send failures and ICMP errors (port unreachable, ...) reported by the socket; not fatal. */
  readonly sendErrors: number
}

export interface UdpTunnelResult extends UdpTunnelStats {
  readonly reason: UdpTunnelReason
}

export interface UdpTunnelOptions {
  /** No datagram either way for this long ends the tunnel ('idle_timeout'); 0 = never. */
  readonly idleTimeoutMs: number
  /** The tunnel ends this long after it started ('max_duration'); 0 = never. */
  readonly maxDurationMs: number
  /** Unwritten bytes above which datagrams are dropped instead of queued (default 1 MiB). */
  readonly maxBufferedBytes?: number
  /**
   * Stream bytes already read with the request head (Node's `upgrade` event hands them over as
   * `head`): a client may send capsules right after its request, before the 101 answer.
   */
  readonly head?: Buffer
  /** How the target's name is resolved (default dns.lookup); for tests. */
  readonly lookup?: (host: string) => Promise<{ address: string; family: number }>
}

export interface UdpTunnel {
  /** Ends the tunnel with `reason`: the stream is ended and the UDP socket closed. */
  close(reason: string): void
  /** What it carried so far (a copy). */
  stats(): UdpTunnelStats
  /** Settles once, when the tunnel ended, with why and what it carried. */
  readonly done: Promise<UdpTunnelResult>
}

export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024

/** How long an ended stream may take to flush before it is destroyed. */
const END_GRACE_MS = 2_000

/**
 * Relays between `stream` (the client's side: capsules after the 101/200 answer) and `target`
 * through one connected UDP socket. Each DATAGRAM capsule with context id 0 becomes one datagram
 * to the target; each datagram from the target one DATAGRAM capsule on the stream. Other capsule
 * types are skipped and other context ids dropped (RFC 9297 section 3.2, RFC 9298 section 4).
 * UDP is lossy, so datagrams are dropped (and counted) rather than queued past `maxBufferedBytes`.
 * A malformed capsule, the stream ending or failing, the idle timeout and the maximum duration end
 * the tunnel; a send error or an ICMP error from the target is counted and the tunnel goes on.
 */
export function relayUdp(stream: Duplex, target: { host: string; port: number }, options: UdpTunnelOptions): UdpTunnel {
  const maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES
  const resolve = options.lookup ?? ((host: string) => lookup(host))
  const parser = new CapsuleParser()
  const stats = {
    bytesFromClient: 0,
    bytesToClient: 0,
    datagramsFromClient: 0,
    datagramsToClient: 0,
    datagramsDropped: 0,
    datagramsIgnored: 0,
    sendErrors: 0,
  }
  let socket: dgram.Socket | undefined
  let finished = false
  let settle!: (result: UdpTunnelResult) => void
  const done = new Promise<UdpTunnelResult>((r) => (settle = r))

  const timers: NodeJS.Timeout[] = []
  const idleTimer = options.idleTimeoutMs > 0 ? setTimeout(() => finish('idle_timeout'), options.idleTimeoutMs) : undefined
  if (idleTimer) timers.push(idleTimer)
  if (options.maxDurationMs > 0) timers.push(setTimeout(() => finish('max_duration'), options.maxDurationMs))
  for (const timer of timers) timer.unref()
  const touch = (): void => {
    idleTimer?.refresh()
  }

  const onData = (chunk: Buffer): void => {
    let capsules
    try {
      capsules = parser.push(chunk)
    } catch {
      finish('malformed_capsule')
      return
    }
    for (const capsule of capsules) {
      if (finished) return
      if (capsule.type !== CAPSULE_DATAGRAM) continue
      let datagram
      try {
        datagram = decodeDatagram(capsule.value)
      } catch {
        finish('malformed_capsule')
        return
      }
      if (datagram.contextId !== UDP_CONTEXT_ID) {
        stats.datagramsIgnored++
        continue
      }
      touch()
      if (socket === undefined || socket.getSendQueueSize() > maxBuffered) {
        stats.datagramsDropped++
        continue
      }
      stats.datagramsFromClient++
      stats.bytesFromClient += datagram.payload.length
      socket.send(datagram.payload, (err) => {
        if (err) stats.sendErrors++
      })
    }
  }
  const onEnd = (): void => {
    try {
      parser.end()
    } catch {
      finish('malformed_capsule')
      return
    }
    finish('downstream_closed')
  }
  const onClose = (): void => finish('downstream_closed')
  const onStreamError = (): void => finish('downstream_error')
  const onMessage = (message: Buffer): void => {
    if (finished) return
    touch()
    if (stream.writableLength > maxBuffered || stream.writableEnded || stream.destroyed) {
      stats.datagramsDropped++
      return
    }
    stats.datagramsToClient++
    stats.bytesToClient += message.length
    stream.write(encodeDatagram(message))
  }

  stream.on('error', onStreamError)
  stream.on('close', onClose)
  stream.on('end', onEnd)

  function finish(reason: string): void {
    if (finished) return
    finished = true
    for (const timer of timers) clearTimeout(timer)
    stream.off('data', onData)
    stream.off('end', onEnd)
    stream.off('close', onClose)
    stream.off('error', onStreamError)
    // Late errors (a reset while flushing) have nowhere to go: swallow them.
    stream.on('error', () => {})
    if (socket !== undefined) {
      socket.off('message', onMessage)
      try {
        socket.close()
      } catch {
        // already closed
      }
    }
    endStream(stream)
    settle({ reason, ...stats })
  }

  const host = target.host.startsWith('[') && target.host.endsWith(']') ? target.host.slice(1, -1) : target.host
  resolve(host).then(
    ({ address, family }) => {
      if (finished) return
      const udp = dgram.createSocket(family === 6 ? 'udp6' : 'udp4')
      socket = udp
      let connected = false
      // After connect, errors are ICMP reports for earlier sends (ECONNREFUSED from recvmsg) or
      // send failures: counted, the socket goes on. Before it, the socket could not be set up.
      udp.on('error', () => {
        if (connected) stats.sendErrors++
        else finish('socket_error')
      })
      udp.on('close', () => finish('socket_error'))
      udp.on('message', onMessage)
      udp.connect(target.port, address, () => {
        if (finished) return
        connected = true
        if (options.head !== undefined && options.head.length > 0) onData(options.head)
        if (!finished) stream.on('data', onData)
      })
    },
    () => finish('resolve_failed'),
  )

  return { close: (reason: string) => finish(reason), stats: () => ({ ...stats }), done }
}

/** Ends `stream` gracefully, and destroys it when it has not finished flushing in time. */
function endStream(stream: Duplex): void {
  if (stream.destroyed) return
  // Keep reading (and discarding) so the peer's end is seen and the stream can close.
  stream.resume()
  const timer = setTimeout(() => stream.destroy(), END_GRACE_MS)
  timer.unref()
  stream.once('close', () => clearTimeout(timer))
  stream.end()
}
