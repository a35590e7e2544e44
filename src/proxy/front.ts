/**
 * Connection intake for the main listener, before any HTTP parsing: the optional PROXY protocol
 * header, then TLS (certificate by SNI, protocol by ALPN) or, on a cleartext listener, a look at
 * the first bytes to tell an HTTP/2 prior-knowledge client (h2c) from HTTP/1.1. Each connection is
 * then handed to the HTTP/1.1 or the HTTP/2 server object.
 */
import { createServer as createNetServer } from 'node:net'
import type { Server as NetServer, Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { createServer as createTlsServer, TLSSocket } from 'node:tls'
import type { SecureContext, Server as TlsServer } from 'node:tls'
import type { Config } from '../config/types.js'
import { acceptProxyProtocol } from './proxy-protocol.js'
import { normaliseRemote } from './request-checks.js'
import type { CertificateSet } from './tls.js'

/** The client address of a connection (from PROXY protocol, else the peer), set on the socket handed to HTTP. */
export const kClientAddress = Symbol('portcullis.clientAddress')

type Tagged = Socket & { [kClientAddress]?: string }

export type Protocol = 'h1' | 'h2'

export interface FrontOptions {
  readonly insecure: boolean
  readonly codec: Config['codecType']
  readonly proxyProtocol: boolean
  /** Current certificates (read per handshake, so reloads apply to new connections). */
  readonly certificates: () => CertificateSet | undefined
  readonly handshakeTimeoutMs: number
  /** Every accepted TCP connection, for draining on shutdown. */
  readonly track: (socket: Socket) => void
  readonly deliver: (socket: Socket, protocol: Protocol) => void
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n')

export interface Front {
  readonly server: NetServer
  /** Updates the certificate served to clients that send no SNI. */
  setDefaultCertificate(cert: string, key: string): void
}

export function createFront(options: FrontOptions): Front {
  const tls = options.insecure ? undefined : createTlsTerminator(options)
  const server = createNetServer({ noDelay: true })
  server.on('connection', (raw: Socket) => {
    options.track(raw)
    raw.on('error', () => raw.destroy())
    const proceed = (address: string | undefined): void => {
      ;(raw as Tagged)[kClientAddress] = address ?? normaliseRemote(raw.remoteAddress)
      if (!tls) return routeCleartext(raw, options)
      const stream = detachBuffered(raw)
      if (stream === raw) tls.emit('connection', raw)
      else terminateTls(stream, options)
    }
    if (options.proxyProtocol) acceptProxyProtocol(raw, options.handshakeTimeoutMs, (p) => proceed(p.address))
    else proceed(undefined)
  })
  return {
    server,
    setDefaultCertificate(cert, key) {
      tls?.setSecureContext({ cert, key })
    },
  }
}

function alpnFor(codec: Config['codecType']): string[] {
  return codec === 'http1' ? ['http/1.1'] : codec === 'http2' ? ['h2'] : ['h2', 'http/1.1']
}

function sniCallback(options: FrontOptions): (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void {
  return (name, cb) => {
    const certs = options.certificates()
    if (!certs) cb(new Error('TLS is not configured'))
    else cb(null, certs.contextFor(name.toLowerCase()))
  }
}

/**
 * TLS over a stream that is not a plain socket (bytes were read ahead): the TLS server object
 * only accepts sockets it can unwrap, so the server-side TLS socket is made here.
 */
function terminateTls(stream: Duplex, options: FrontOptions): void {
  const certs = options.certificates()
  const socket = new TLSSocket(stream, {
    isServer: true,
    ...(certs ? { secureContext: certs.defaultContext } : {}),
    SNICallback: sniCallback(options),
    ALPNProtocols: alpnFor(options.codec),
  })
  const timer = setTimeout(() => socket.destroy(), options.handshakeTimeoutMs)
  socket.on('error', () => socket.destroy())
  socket.once('close', () => clearTimeout(timer))
  socket.once('secure', () => {
    clearTimeout(timer)
    ;(socket as Tagged)[kClientAddress] = (stream as unknown as Tagged)[kClientAddress] ?? ''
    options.deliver(socket, socket.alpnProtocol === 'h2' ? 'h2' : 'h1')
  })
}

function createTlsTerminator(options: FrontOptions): TlsServer {
  const pair = options.certificates()?.defaultPair
  const server = createTlsServer({
    ALPNProtocols: alpnFor(options.codec),
    SNICallback: sniCallback(options),
    // Served when the client sends no SNI (e.g. https://<ip>/).
    ...(pair ? { cert: pair.cert, key: pair.key } : {}),
    handshakeTimeout: options.handshakeTimeoutMs,
  })
  server.on('secureConnection', (socket: TLSSocket) => {
    ;(socket as Tagged)[kClientAddress] = (socket as Tagged)[kClientAddress] ?? parentAddress(socket)
    options.deliver(socket, socket.alpnProtocol === 'h2' ? 'h2' : 'h1')
  })
  server.on('tlsClientError', (_err, socket) => socket.destroy())
  return server
}

function parentAddress(socket: TLSSocket): string {
  const parent = (socket as unknown as { _parent?: Tagged })._parent
  return parent?.[kClientAddress] ?? normaliseRemote(socket.remoteAddress)
}

/** Cleartext: HTTP/1.1, or HTTP/2 with prior knowledge when the client opens with the h2 preface. */
function routeCleartext(raw: Socket, options: FrontOptions): void {
  if (options.codec !== 'auto') {
    options.deliver(options.codec === 'http2' ? (detachBuffered(raw) as Socket) : raw, options.codec === 'http2' ? 'h2' : 'h1')
    raw.resume()
    return
  }
  // Until the first byte arrives no HTTP server owns the connection, so none of their timeouts
  // apply: a client that connects and stays silent is cut off here.
  const silence = setTimeout(() => raw.destroy(), options.handshakeTimeoutMs)
  raw.once('close', () => clearTimeout(silence))
  const onData = (chunk: Buffer): void => {
    clearTimeout(silence)
    raw.off('data', onData)
    raw.pause()
    raw.unshift(chunk)
    const n = Math.min(chunk.length, H2_PREFACE.length)
    const h2 = n >= 4 && chunk.subarray(0, n).equals(H2_PREFACE.subarray(0, n))
    // Node's HTTP/1.1 server reads bytes pushed back onto the socket; its HTTP/2 session reads
    // from the socket handle and would miss them, so it gets a stream that replays them.
    options.deliver(h2 ? (detachBuffered(raw) as Socket) : raw, h2 ? 'h2' : 'h1')
    raw.resume()
  }
  raw.on('data', onData)
  // The PROXY protocol reader leaves the socket paused.
  raw.resume()
}

/**
 * TLS and HTTP/2 read straight from a socket's handle and miss bytes already read into its
 * JavaScript buffer (after a PROXY header or a protocol sniff). When there are such bytes, wrap
 * the socket in a stream that yields them first; otherwise hand the socket over as it is.
 */
function detachBuffered(raw: Socket): Socket | Duplex {
  if (raw.readableLength === 0) return raw
  const buffered: Buffer[] = []
  let chunk: Buffer | null
  while ((chunk = raw.read() as Buffer | null) !== null) buffered.push(chunk)
  const stream = new Duplex({
    read() {
      raw.resume()
    },
    write(data: Buffer, _encoding, cb) {
      raw.write(data, cb)
    },
    final(cb) {
      raw.end(cb)
    },
    destroy(err, cb) {
      raw.destroy(err ?? undefined)
      cb(err)
    },
  })
  for (const b of buffered) stream.push(b)
  raw.on('data', (data: Buffer) => {
    if (!stream.push(data)) raw.pause()
  })
  raw.on('end', () => stream.push(null))
  raw.on('close', () => stream.destroy())
  Object.assign(stream, { [kClientAddress]: (raw as Tagged)[kClientAddress], remoteAddress: raw.remoteAddress })
  return stream
}
