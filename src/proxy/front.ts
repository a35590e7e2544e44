/**
 * Connection intake for the main listener, before any HTTP parsing: the optional PROXY protocol
 * header, then TLS (certificate by SNI, protocol by ALPN, client certificate when
 * `downstream_mtls` sets a CA) or, on a cleartext listener, a look at the first bytes to tell an
 * HTTP/2 prior-knowledge client (h2c) from HTTP/1.1. Each connection is then handed to the
 * HTTP/1.1 or the HTTP/2 server object.
 */
import { createServer as createNetServer } from 'node:net'
import type { Server as NetServer, Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import type { SecureContext } from 'node:tls'
import type { Config } from '../config/types.js'
import { inspectConnection } from './client-cert.js'
import { acceptProxyProtocol } from './proxy-protocol.js'
import { normaliseRemote } from './request-checks.js'
import type { CertificateSet } from './tls.js'

/** The client address of a connection (from PROXY protocol, else the peer), set on the socket handed to HTTP. */
export const kClientAddress = Symbol('portcullis.clientAddress')
/** The listener's own address the client reached (tunnels accept tokens issued for it), set beside kClientAddress. */
export const kLocalAddress = Symbol('portcullis.localAddress')

type Tagged = Socket & { [kClientAddress]?: string; [kLocalAddress]?: string }

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
const NOTHING = Buffer.alloc(0)

export interface Front {
  readonly server: NetServer
  /** Updates the certificate served to clients that send no SNI. */
  setDefaultCertificate(cert: string, key: string): void
}

export function createFront(options: FrontOptions): Front {
  // Not half-open: a client's FIN closes the connection, whoever holds it (the sniff, the TLS
  // handshake, the HTTP servers). A TCP tunnel makes its own socket half-open (tunnel-exchange.ts).
  const server = createNetServer({ noDelay: true })
  server.on('connection', (raw: Socket) => {
    options.track(raw)
    raw.on('error', () => raw.destroy())
    /** `head`: bytes already read from the connection (past a PROXY header). */
    const proceed = (address: string | undefined, head: Buffer): void => {
      ;(raw as Tagged)[kClientAddress] = address ?? normaliseRemote(raw.remoteAddress)
      ;(raw as Tagged)[kLocalAddress] = normaliseRemote(raw.localAddress)
      if (options.insecure) return routeCleartext(raw, head, options)
      terminateTls(detachBuffered(raw, head), options)
    }
    if (options.proxyProtocol) acceptProxyProtocol(raw, options.handshakeTimeoutMs, (p, rest) => proceed(p.address, rest))
    else proceed(undefined, NOTHING)
  })
  return {
    server,
    setDefaultCertificate() {
      // Nothing to do: every handshake takes its contexts (and client CAs) from the current
      // CertificateSet, so reloads apply to new connections.
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
 * Server-side TLS for one connection (a socket, or a stream replaying bytes read ahead). The TLS
 * socket is made here rather than by a tls.Server so that every connection, with or without a
 * PROXY header, takes its contexts and client-certificate settings from the current
 * CertificateSet.
 *
 * With `downstream_mtls` the client is asked for a certificate. Under `reject_connection` OpenSSL
 * fails the handshake when none is sent; a certificate that fails verification (chain, depth,
 * CRL, SANs) gets the connection closed right after the handshake, before any HTTP is read,
 * which is also what Node does for chain errors. Otherwise the verdict is kept on the socket for
 * the authorizer.
 */
function terminateTls(stream: Socket | Duplex, options: FrontOptions): void {
  const certs = options.certificates()
  const mtls = certs?.clientCertificates
  const reject = mtls?.enforcement === 'reject_connection'
  const socket = new TLSSocket(stream, {
    isServer: true,
    ...(certs ? { secureContext: certs.defaultContext } : {}),
    SNICallback: sniCallback(options),
    ALPNProtocols: alpnFor(options.codec),
    requestCert: mtls !== undefined,
    rejectUnauthorized: reject,
  })
  const timer = setTimeout(() => socket.destroy(), options.handshakeTimeoutMs)
  socket.on('error', () => socket.destroy())
  socket.once('close', () => clearTimeout(timer))
  socket.once('secure', () => {
    clearTimeout(timer)
    releaseControl(socket)
    // A client certificate never changes on a connection (Envoy does not renegotiate either).
    socket.disableRenegotiation()
    if (mtls) {
      const info = inspectConnection(socket, mtls)
      if (reject && !info.valid) {
        socket.destroy()
        return
      }
    }
    ;(socket as Tagged)[kClientAddress] = (stream as unknown as Tagged)[kClientAddress] ?? ''
    ;(socket as Tagged)[kLocalAddress] = (stream as unknown as Tagged)[kLocalAddress] ?? ''
    options.deliver(socket, socket.alpnProtocol === 'h2' ? 'h2' : 'h1')
  })
}

/**
 * What tls.Server does for its sockets once the handshake is done (Node's onServerSocketSecure):
 * the socket no longer counts as connecting (an HTTP/2 session waits for that before it reads
 * anything), and from now on TLS errors are emitted as 'error' (before, Node only reports them
 * internally), so a broken connection is closed rather than left to time out.
 */
function releaseControl(socket: TLSSocket): void {
  const internal = socket as unknown as { secureConnecting?: boolean; _releaseControl?: () => boolean }
  internal.secureConnecting = false
  if (typeof internal._releaseControl === 'function') internal._releaseControl()
}

/**
 * Cleartext: HTTP/1.1, or HTTP/2 with prior knowledge when the client opens with the h2 preface.
 * `head`: bytes already read from the connection (past a PROXY header), routed like a first read.
 */
function routeCleartext(raw: Socket, head: Buffer, options: FrontOptions): void {
  if (options.codec !== 'auto') {
    if (options.codec === 'http2') options.deliver(detachBuffered(raw, head) as Socket, 'h2')
    else deliverHttp1(raw, head, options.proxyProtocol, options)
    return
  }
  const route = (first: Buffer): void => {
    const n = Math.min(first.length, H2_PREFACE.length)
    const h2 = n >= 4 && first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))
    // Node's HTTP/2 session reads from the socket handle and would miss bytes already read, so it
    // gets a stream that replays them.
    if (h2) options.deliver(detachBuffered(raw, first) as Socket, 'h2')
    else deliverHttp1(raw, first, true, options)
  }
  if (head.length > 0) {
    route(head)
    return
  }
  // Until the first byte arrives no HTTP server owns the connection, so none of their timeouts
  // apply: a client that connects and stays silent is cut off here.
  const silence = setTimeout(() => raw.destroy(), options.handshakeTimeoutMs)
  raw.once('close', () => clearTimeout(silence))
  const onData = (chunk: Buffer): void => {
    clearTimeout(silence)
    raw.off('data', onData)
    route(chunk)
  }
  raw.on('data', onData)
}

/**
 * Hands a connection to the HTTP/1.1 server, then gives it the bytes already read (`head`) as the
 * 'data' event it parses.
 *
 * `streamUsed`: bytes were read through the socket's stream before (a sniff, a PROXY header). Node's
 * HTTP/1.1 server then must not read the socket's handle directly, as it does for a fresh socket:
 * it pauses a socket whose request body is not being consumed by stopping the handle, but a socket
 * stream that has delivered data asks its handle to read again on its own (a pending resume, the
 * stream reading ahead), so the handle reads on while the socket counts as paused, later pauses do
 * nothing, and an upload to a slow upstream is read into memory as fast as the client sends it
 * (hundreds of megabytes). A 'data' listener makes the server read through the socket's stream
 * instead, whose ordinary backpressure stops the handle once the stream's buffer is full.
 */
function deliverHttp1(raw: Socket, head: Buffer, streamUsed: boolean, options: FrontOptions): void {
  options.deliver(raw, 'h1')
  if (streamUsed) raw.on('data', readThroughStream)
  if (head.length > 0) raw.emit('data', head)
}

/** See deliverHttp1: its presence is what matters. */
function readThroughStream(): void {}

/**
 * TLS and HTTP/2 read straight from a socket's handle and miss bytes already read (`head`, after
 * a PROXY header or a protocol sniff, and any in the socket's JavaScript buffer). When there are
 * such bytes, wrap the socket in a stream that yields them first; otherwise hand the socket over
 * as it is.
 */
function detachBuffered(raw: Socket, head: Buffer): Socket | Duplex {
  if (head.length === 0 && raw.readableLength === 0) return raw
  const buffered: Buffer[] = head.length > 0 ? [head] : []
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
  Object.assign(stream, { [kClientAddress]: (raw as Tagged)[kClientAddress], [kLocalAddress]: (raw as Tagged)[kLocalAddress], remoteAddress: raw.remoteAddress })
  return stream
}
