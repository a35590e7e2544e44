/**
 * TCP tunnels (docs/tunnels.md): the upstream connection of an allowed CONNECT, and the relay
 * between it and the client's stream (an HTTP/1.1 socket after `200`, or an HTTP/2 stream).
 *
 * The relay passes each side's FIN on (half-close) and ends when both directions are done, reads
 * a side only while the other can take more (a slow reader never makes the proxy buffer without
 * bound), and closes on the idle timeout, the maximum duration or `close(reason)`.
 */
import { connect as netConnect, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect, TLSSocket } from 'node:tls'
import type { UpstreamTlsConfig } from '../config/types.js'
import { CodedError } from '../shared/errors.js'

/** How long a tunnel's upstream may take to accept the connection (Envoy's connect_timeout is 10 s). */
export const TUNNEL_CONNECT_TIMEOUT_MS = 10_000
const MAX_PROXY_RESPONSE_HEAD = 16 * 1024
/**
 * The buffer a side of a tunnel is read into (see SocketReader), reused while the other side takes
 * each read at once: it starts small (an idle tunnel holds one per side, most tunnels are
 * interactive or short, and a set-up should not pay for a large allocation) and grows fourfold,
 * up to the largest, each time a read fills it (a bulk transfer).
 */
const FIRST_READ_BUFFER = 4 * 1024
const LARGEST_READ_BUFFER = 256 * 1024
/** What a tcp:// upstream may send before the relay starts (a server-first greeting) before it is paused. */
const MAX_EARLY_UPSTREAM_BYTES = 64 * 1024

/**
 * Reads a socket into a reused buffer rather than a new Buffer per read: a `tcp://` upstream
 * through net's `onread`, the client's connection through readIntoReusedBuffer. A 64 KiB Buffer
 * per read is garbage V8 has to collect, and after the process has been idle it does so with a
 * major collection about every 100 ms of a bulk transfer, which doubled the relay's CPU per byte
 * (README, Tunnel performance). A read is written to the other side at once; when that stream
 * took it whole (nothing left queued), the same buffer takes the next read, otherwise the queued
 * chunk keeps it and the next read gets a new one. Bytes that arrive before the relay starts are
 * copied and kept (a server-first greeting such as SSH's).
 */
export class SocketReader {
  #size = FIRST_READ_BUFFER
  #buffer: Buffer = Buffer.allocUnsafe(FIRST_READ_BUFFER)
  #inUse = false
  #early: Buffer[] = []
  #earlyBytes = 0
  #sink: ((chunk: Buffer, capacity: number) => boolean) | undefined

  /** For net's `onread.buffer`: called before every read. */
  readonly nextBuffer = (): Buffer => {
    if (this.#inUse || this.#buffer.length !== this.#size) {
      this.#buffer = Buffer.allocUnsafe(this.#size)
      this.#inUse = false
    }
    return this.#buffer
  }

  /** For net's `onread.callback`: false pauses the socket until it is resumed. */
  readonly onRead = (bytes: number, buffer: Uint8Array): boolean => {
    const chunk = Buffer.from(buffer.buffer, buffer.byteOffset, bytes)
    if (bytes === buffer.length && this.#size < LARGEST_READ_BUFFER) this.#size = Math.min(LARGEST_READ_BUFFER, this.#size * 4)
    // A trickle after a bulk transfer (an interactive session again): back to the small buffer,
    // so a tunnel that once moved a file does not keep 256 KiB per side while it idles.
    else if (bytes * 64 <= buffer.length) this.#size = FIRST_READ_BUFFER
    if (this.#sink !== undefined) return this.#sink(chunk, buffer.length)
    this.#early.push(Buffer.from(chunk))
    this.#earlyBytes += bytes
    return this.#earlyBytes < MAX_EARLY_UPSTREAM_BYTES
  }

  /** Bytes read before the reader took over (from the socket's stream buffer), to be sent first. */
  keepEarly(chunk: Buffer): void {
    this.#early.push(chunk)
    this.#earlyBytes += chunk.length
  }

  /** The current buffer was handed on and is still referenced: the next read needs another. */
  retain(): void {
    this.#inUse = true
  }

  /** Starts delivering reads to `sink`; returns what arrived before (to be sent first). */
  attach(sink: (chunk: Buffer, capacity: number) => boolean): Buffer {
    this.#sink = sink
    const early = Buffer.concat(this.#early)
    this.#early = []
    this.#earlyBytes = 0
    return early
  }
}

/** Why the upstream could not be reached, as the status the client gets. */
export class UpstreamDialError extends CodedError {
  readonly code: 'ERR_TUNNEL_UPSTREAM_FAILED' | 'ERR_UPSTREAM_TIMEOUT'
  readonly status: 502 | 504
  /** The close reason logged and put on the trace span (`upstream_connect_timeout`, …). */
  readonly details: string
  constructor(status: 502 | 504, details: string, message: string) {
    super(message)
    this.name = 'UpstreamDialError'
    this.code = status === 504 ? 'ERR_UPSTREAM_TIMEOUT' : 'ERR_TUNNEL_UPSTREAM_FAILED'
    this.status = status
    this.details = details
  }
}

export interface DialTarget {
  /** The route's `to`: `tcp://host:port`, or an `http(s)://` proxy that gets a CONNECT of its own. */
  readonly url: URL
  /** For a proxy upstream: the `host:port` to ask it for (the route's `from`). */
  readonly connectAuthority: string
  readonly tls: UpstreamTlsConfig
  readonly timeoutMs?: number
}

/** Node's own names for a net.Socket's `onread` state (lib/net.js); every socket has the three. */
const ONREAD_SLOTS = ['kBuffer', 'kBufferCb', 'kBufferGen'] as const

/**
 * Makes an accepted connection (the client's, handed over by the HTTP/1.1 server after CONNECT)
 * read into a SocketReader, as if it had been created with net's `onread` option, which only
 * sockets this process opens can take. This sets the socket's onread state (found by its symbols'
 * descriptions) and points its handle at the buffer; on any other runtime shape (a TLS socket,
 * an HTTP/2 stream, a Node.js whose internals differ) it returns undefined and the relay reads
 * through stream events as before. Bytes already in the socket's stream buffer are kept as early
 * bytes. tunnel.test.ts checks that this engages on the Node.js we run.
 */
export function readIntoReusedBuffer(stream: Duplex): SocketReader | undefined {
  if (!(stream instanceof Socket) || stream instanceof TLSSocket || stream.readableEncoding !== null) return undefined
  const handle = (stream as unknown as { _handle?: { useUserBuffer?: (buffer: Uint8Array) => void; constructor?: { name?: string } } | null })._handle
  if (handle?.constructor?.name !== 'TCP' || typeof handle.useUserBuffer !== 'function') return undefined
  const symbols = new Map(Object.getOwnPropertySymbols(stream).map((symbol) => [symbol.description, symbol]))
  const [kBuffer, kBufferCb, kBufferGen] = ONREAD_SLOTS.map((name) => symbols.get(name))
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return undefined
  const reader = new SocketReader()
  let chunk: unknown
  while ((chunk = stream.read()) !== null) if (Buffer.isBuffer(chunk)) reader.keepEarly(chunk)
  const first = reader.nextBuffer()
  const state = stream as unknown as Record<symbol, unknown>
  state[kBuffer] = first
  state[kBufferCb] = reader.onRead
  state[kBufferGen] = reader.nextBuffer
  handle.useUserBuffer(first)
  return reader
}

/** Opens the upstream connection of a tunnel; rejects with an UpstreamDialError. */
export function dialUpstream(target: DialTarget): Promise<{ socket: Socket; head: Buffer; reader?: SocketReader }> {
  const url = target.url
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const secure = url.protocol === 'https:'
  const port = Number(url.port) || (secure ? 443 : 80)
  const timeoutMs = target.timeoutMs ?? TUNNEL_CONNECT_TIMEOUT_MS
  // Only a plain tcp:// upstream is read through a SocketReader: a proxy upstream's answer is
  // parsed from 'data' events first, and TLS sockets take no `onread`.
  const reader = url.protocol === 'tcp:' ? new SocketReader() : undefined
  return new Promise((resolve, reject) => {
    const tls = target.tls
    const socket: Socket = secure
      ? tlsConnect({
          host,
          port,
          rejectUnauthorized: !tls.skipVerify,
          ...(tls.serverName !== undefined ? { servername: tls.serverName } : /^[0-9.:]+$/.test(host) ? {} : { servername: host }),
          ...(tls.customCa !== undefined ? { ca: tls.customCa } : {}),
          ...(tls.clientCert !== undefined && tls.clientKey !== undefined ? { cert: tls.clientCert, key: tls.clientKey } : {}),
        })
      : netConnect({
          host,
          port,
          allowHalfOpen: true,
          noDelay: true,
          ...(reader !== undefined ? { onread: { buffer: reader.nextBuffer, callback: reader.onRead } } : {}),
        })
    let settled = false
    const fail = (err: UpstreamDialError): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    const succeed = (head: Buffer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.off('error', onError)
      resolve({ socket, head, ...(reader !== undefined ? { reader } : {}) })
    }
    const timer = setTimeout(() => fail(new UpstreamDialError(504, 'upstream_connect_timeout', 'The upstream service did not accept the connection in time.')), timeoutMs)
    const onError = (err: NodeJS.ErrnoException): void => {
      const timedOut = err.code === 'ETIMEDOUT'
      fail(new UpstreamDialError(timedOut ? 504 : 502, timedOut ? 'upstream_connect_timeout' : 'upstream_connect_failure', 'The upstream service could not be reached.'))
    }
    socket.on('error', onError)
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      if (url.protocol === 'tcp:') {
        succeed(Buffer.alloc(0))
        return
      }
      // An HTTP proxy upstream: ask it for the route's own target, as Pomerium does.
      socket.write(`CONNECT ${target.connectAuthority} HTTP/1.1\r\nHost: ${target.connectAuthority}\r\n\r\n`)
      let buffered = Buffer.alloc(0)
      const onData = (chunk: Buffer): void => {
        buffered = Buffer.concat([buffered, chunk])
        const end = buffered.indexOf('\r\n\r\n')
        if (end === -1) {
          if (buffered.length > MAX_PROXY_RESPONSE_HEAD) fail(new UpstreamDialError(502, 'upstream_bad_response', 'The upstream proxy sent an invalid answer.'))
          return
        }
        socket.off('data', onData)
        socket.off('end', onEnd)
        socket.pause()
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(buffered.subarray(0, end).toString('latin1'))
        if (!status || !(status[1] ?? '').startsWith('2')) {
          fail(new UpstreamDialError(502, 'upstream_connect_refused', `The upstream proxy refused the connection${status ? ` (${status[1]})` : ''}.`))
          return
        }
        succeed(buffered.subarray(end + 4))
      }
      const onEnd = (): void => fail(new UpstreamDialError(502, 'upstream_bad_response', 'The upstream proxy closed the connection without answering.'))
      socket.on('data', onData)
      socket.once('end', onEnd)
    })
  })
}

export interface TunnelEnd {
  /** `closed` (both sides finished), `client_reset`, `upstream_reset`, `idle_timeout`, `max_duration`, or a reason given to close(). */
  readonly reason: string
  readonly bytesFromClient: number
  readonly bytesToClient: number
  readonly durationMs: number
}

export interface RelayOptions {
  /** Ends the tunnel after this long without a byte either way; 0 = never. */
  readonly idleTimeoutMs: number
  /** Ends the tunnel after this long whatever happens; 0 = never. */
  readonly maxDurationMs: number
  /** How `upstream` is read when it was dialled with one (dialUpstream's `reader`); else 'data' events. */
  readonly upstreamReader?: SocketReader
  /** false: read the client through stream events even where readIntoReusedBuffer could (tests). */
  readonly reuseClientReadBuffer?: boolean
}

export interface Relay {
  /** Ends both sides at once with this reason (access revoked, shutdown). */
  close(reason: string): void
  readonly done: Promise<TunnelEnd>
  /** Bytes so far, for metrics while the tunnel is open. */
  readonly bytes: () => { fromClient: number; toClient: number }
  /** How each side is read: into a reused buffer, or through stream events. */
  readonly reads: { readonly client: ReadPath; readonly upstream: ReadPath }
}

export type ReadPath = 'reused-buffer' | 'stream'

/**
 * Relays bytes between `client` and `upstream` until both directions have ended or either side
 * fails. `clientHead`: bytes the client sent before the tunnel was granted (sent upstream first);
 * `upstreamHead`: bytes the upstream sent before the relay started (sent to the client first).
 */
export function relay(client: Duplex, upstream: Duplex, clientHead: Buffer, upstreamHead: Buffer, options: RelayOptions): Relay {
  const startedAt = Date.now()
  let fromClient = 0
  let toClient = 0
  let clientEnded = false
  let upstreamEnded = false
  let finished = false
  let resolveDone!: (end: TunnelEnd) => void
  const done = new Promise<TunnelEnd>((resolve) => {
    resolveDone = resolve
  })
  let idleTimer: NodeJS.Timeout | undefined
  let maxTimer: NodeJS.Timeout | undefined

  const finish = (reason: string, destroy: boolean): void => {
    if (finished) return
    finished = true
    if (idleTimer) clearTimeout(idleTimer)
    if (maxTimer) clearTimeout(maxTimer)
    if (destroy) {
      client.destroy()
      upstream.destroy()
    }
    resolveDone({ reason, bytesFromClient: fromClient, bytesToClient: toClient, durationMs: Date.now() - startedAt })
  }
  const touch = (): void => {
    idleTimer?.refresh()
  }

  /**
   * Moves `from`'s bytes to `to`, reading `from` only while `to` takes more (backpressure), and
   * ends `to` when `from` ends: the FIN is passed on and the other direction stays open
   * (half-close). With a SocketReader, reads arrive in its reused buffer; otherwise pipe() does it.
   */
  const pump = (from: Duplex, to: Duplex, reader: SocketReader | undefined, count: (n: number) => void, onEnd: () => void): void => {
    // `from` may have ended already: a client's FIN can arrive while the upstream is dialled,
    // before the relay starts, and its 'end' has then been emitted (pipe() copes; a listener
    // added now would never fire and the tunnel would hang).
    const whenEnded = (ended: () => void): void => {
      if (from.readableEnded) process.nextTick(ended)
      else from.once('end', ended)
    }
    if (reader === undefined) {
      from.pipe(to)
      from.on('data', (chunk: Buffer) => {
        count(chunk.length)
        touch()
      })
      whenEnded(onEnd)
      return
    }
    const resume = (): void => {
      from.resume()
    }
    const early = reader.attach((chunk, capacity) => {
      count(chunk.length)
      touch()
      // Behind a queue, this chunk waits too. A small one is copied rather than left holding the
      // whole read buffer: backpressure counts queued bytes, not the buffers behind them, and a
      // stalled reader of a chatty upstream would otherwise pin a buffer per message.
      const copy = to.writableLength > 0 && chunk.length * 4 < capacity
      const more = to.write(copy ? Buffer.from(chunk) : chunk)
      const pending = to.writableLength > 0
      if (!copy && pending) reader.retain()
      // write() answers false for any chunk over the high-water mark even when it went out
      // whole; only a queue is a reason to stop reading.
      if (more || !pending) return true
      to.once('drain', resume)
      return false
    })
    if (early.length > 0) {
      count(early.length)
      to.write(early)
    }
    whenEnded(() => {
      to.end()
      onEnd()
    })
  }

  const maybeDone = (): void => {
    if (!clientEnded || !upstreamEnded) return
    // Both FINs passed on: wait for the last bytes to be flushed, then close.
    let pending = 2
    const flushed = (): void => {
      pending--
      if (pending === 0) finish('closed', true)
    }
    for (const side of [client, upstream]) {
      if (side.writableFinished) flushed()
      else side.once('finish', flushed)
    }
  }

  if (clientHead.length > 0) {
    fromClient += clientHead.length
    upstream.write(clientHead)
  }
  if (upstreamHead.length > 0) {
    toClient += upstreamHead.length
    client.write(upstreamHead)
  }
  const clientReader = options.reuseClientReadBuffer === false ? undefined : readIntoReusedBuffer(client)
  const upstreamReader = options.upstreamReader
  pump(client, upstream, clientReader, (n) => (fromClient += n), () => {
    clientEnded = true
    maybeDone()
  })
  pump(upstream, client, upstreamReader, (n) => (toClient += n), () => {
    upstreamEnded = true
    maybeDone()
  })
  client.on('error', () => finish('client_reset', true))
  upstream.on('error', () => finish('upstream_reset', true))
  client.once('close', () => finish(clientEnded && upstreamEnded ? 'closed' : 'client_reset', true))
  upstream.once('close', () => finish(clientEnded && upstreamEnded ? 'closed' : 'upstream_reset', true))
  if (options.idleTimeoutMs > 0) idleTimer = setTimeout(() => finish('idle_timeout', true), options.idleTimeoutMs)
  if (options.maxDurationMs > 0) maxTimer = setTimeout(() => finish('max_duration', true), options.maxDurationMs)
  client.resume()
  upstream.resume()
  return {
    close: (reason) => finish(reason, true),
    done,
    bytes: () => ({ fromClient, toClient }),
    reads: { client: clientReader !== undefined ? 'reused-buffer' : 'stream', upstream: upstreamReader !== undefined ? 'reused-buffer' : 'stream' },
  }
}
