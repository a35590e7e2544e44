/**
 * The client side of a UDP tunnel (RFC 9298 CONNECT-UDP; Pomerium docs: "UDP over HTTP
 * Support"): datagrams arriving on the local UDP socket travel as DATAGRAM capsules (RFC 9297) on
 * the tunnel's stream, and the datagrams the stream carries back go to the local peer that last
 * sent one. The local socket belongs to the caller (the `portcullis udp` command): the relay
 * listens on it and sends from it, and never closes it.
 */
import type { RemoteInfo, Socket } from 'node:dgram'
import type { Duplex } from 'node:stream'

import { CAPSULE_DATAGRAM, CapsuleParser, UDP_CONTEXT_ID, decodeDatagram, encodeDatagram } from '../shared/capsule.js'

/** Unwritten stream bytes above which local datagrams are dropped instead of queued (1 MiB). */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024

/** How long an ended stream may take to flush before it is destroyed. */
const END_GRACE_MS = 2_000

/** What one relay carried. */
export interface DatagramRelayStats {
  /** Local datagrams written to the stream, and their payload bytes. */
  readonly datagramsSent: number
  readonly bytesSent: number
  /** Datagrams from the stream sent to the local peer, and their payload bytes. */
  readonly datagramsReceived: number
  readonly bytesReceived: number
  /**
   * Datagrams dropped: local ones while the stream had more than `maxBufferedBytes` unwritten,
   * and ones from the stream before any local peer had sent one (no one to give them to).
   */
  readonly datagramsDropped: number
  /** DATAGRAM capsules with a context id other than 0, dropped silently (RFC 9298 section 4). */
  readonly datagramsIgnored: number
}

export interface DatagramRelayOptions {
  /** Default {@link DEFAULT_MAX_BUFFERED_BYTES}. */
  readonly maxBufferedBytes?: number
}

export interface DatagramRelay {
  /** Ends the stream and stops relaying (`closed` settles with 'closed'); the local socket stays open. */
  close(): void
  /**
   * Settles once with why the relay stopped: 'closed' (close() was called), 'stream_ended' (the
   * server ended the stream), 'stream_error: <message>', 'malformed_capsule' or 'local_closed'
   * (the caller closed the local socket).
   */
  readonly closed: Promise<string>
  /** What it carried so far (a copy). */
  stats(): DatagramRelayStats
}

/**
 * Relays between the already-bound `local` socket and `stream` (the tunnel after the server's
 * 101/200 answer) until the stream ends or fails, a malformed capsule arrives, or `close()`.
 * UDP is lossy, so a datagram that would queue more than `maxBufferedBytes` on the stream is
 * dropped (and counted) rather than buffered without bound. Capsules of other types are skipped.
 */
export function relayDatagrams(stream: Duplex, local: Socket, options: DatagramRelayOptions = {}): DatagramRelay {
  const maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES
  const parser = new CapsuleParser()
  const stats = { datagramsSent: 0, bytesSent: 0, datagramsReceived: 0, bytesReceived: 0, datagramsDropped: 0, datagramsIgnored: 0 }
  let peer: { address: string; port: number } | undefined
  let finished = false
  let settle!: (reason: string) => void
  const closed = new Promise<string>((r) => (settle = r))

  const onMessage = (message: Buffer, rinfo: RemoteInfo): void => {
    if (finished) return
    peer = { address: rinfo.address, port: rinfo.port }
    if (stream.writableLength > maxBuffered) {
      stats.datagramsDropped++
      return
    }
    stats.datagramsSent++
    stats.bytesSent += message.length
    stream.write(encodeDatagram(message))
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
      if (peer === undefined) {
        stats.datagramsDropped++
        continue
      }
      stats.datagramsReceived++
      stats.bytesReceived += datagram.payload.length
      try {
        // Send errors (the local peer went away) are the local socket's 'error' events: the
        // caller's to report; a datagram lost here is what UDP allows.
        local.send(datagram.payload, peer.port, peer.address)
      } catch {
        finish('local_closed')
        return
      }
    }
  }
  const onEnd = (): void => {
    try {
      parser.end()
    } catch {
      finish('malformed_capsule')
      return
    }
    finish('stream_ended')
  }
  const onStreamClose = (): void => finish('stream_ended')
  const onStreamError = (err: Error): void => finish(`stream_error: ${err.message}`)
  const onLocalClose = (): void => finish('local_closed')
  const onLocalError = (): void => {
    // Counted by nobody here: the caller owns the socket and its error reporting. Listening keeps
    // an ICMP report from being an unhandled 'error' while the relay runs.
  }

  function finish(reason: string): void {
    if (finished) return
    finished = true
    local.off('message', onMessage)
    local.off('close', onLocalClose)
    local.off('error', onLocalError)
    stream.off('data', onData)
    stream.off('end', onEnd)
    stream.off('close', onStreamClose)
    stream.off('error', onStreamError)
    stream.on('error', () => {}) // late errors while flushing have nowhere to go
    if (!stream.destroyed) {
      stream.resume()
      const timer = setTimeout(() => stream.destroy(), END_GRACE_MS)
      timer.unref()
      stream.once('close', () => clearTimeout(timer))
      stream.end()
    }
    settle(reason)
  }

  local.on('message', onMessage)
  local.on('close', onLocalClose)
  local.on('error', onLocalError)
  stream.on('data', onData)
  stream.on('end', onEnd)
  stream.on('close', onStreamClose)
  stream.on('error', onStreamError)
  if (stream.destroyed || stream.readableEnded) finish('stream_ended')

  return { close: () => finish('closed'), closed, stats: () => ({ ...stats }) }
}
