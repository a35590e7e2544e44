/**
 * Small pieces shared by the forwarding integration tests (forwarding-*.test.ts): a "named"
 * upstream that can say which instance answered, count its TCP connections, fail its health path
 * on demand, delay reading uploads and send awkward response headers; a raw upgrade upstream; and
 * helpers to read the Portcullis child's peak memory and to find a closed port.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import type { PortcullisProcess } from '../fixtures/portcullis.js'

export interface NamedUpstream {
  readonly name: string
  readonly url: string
  readonly port: number
  /** `host:port`, which is also the Host the proxy sends by default (automatic host rewrite). */
  readonly hostPort: string
  /** TCP connections accepted so far. */
  connections: number
  /** Non-health requests served so far. */
  hits: number
  /** Health-path requests served so far. */
  healthHits: number
  /** Status answered on `/health`. */
  healthStatus: number
  /** Last upload size seen on `/slow-upload`. */
  lastUpload: number
  close(): Promise<void>
}

/**
 * An HTTP/1.1 upstream that answers every request with its name (JSON `{name, url, host}`).
 *   /health        answers `healthStatus` (counted separately in `healthHits`)
 *   /slow-upload   does not read the body for `?wait=MS` (default 1500 ms), then counts it
 *   /hop           sends hop-by-hop response headers (Connection-listed, Keep-Alive, ...)
 *   /location      sends `Location: http://internal.example:8080/next`
 */
export async function startNamedUpstream(name: string): Promise<NamedUpstream> {
  const sockets = new Set<Socket>()
  const up: NamedUpstream = {
    name,
    url: '',
    port: 0,
    hostPort: '',
    connections: 0,
    hits: 0,
    healthHits: 0,
    healthStatus: 200,
    lastUpload: 0,
    close: () => Promise.resolve(),
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/health') {
      up.healthHits++
      res.writeHead(up.healthStatus, { 'content-type': 'text/plain' }).end('health\n')
      return
    }
    up.hits++
    if (url.pathname === '/slow-upload') {
      const wait = Number(url.searchParams.get('wait') ?? 1500)
      req.pause()
      setTimeout(() => {
        let n = 0
        req.on('data', (c: Buffer) => {
          n += c.length
        })
        req.on('end', () => {
          up.lastUpload = n
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name, bodyLength: n }))
        })
        req.resume()
      }, wait)
      return
    }
    req.resume()
    req.on('end', () => {
      if (url.pathname === '/hop') {
        res.writeHead(200, [
          ['Content-Type', 'text/plain'],
          ['Connection', 'keep-alive, X-Resp-Hop'],
          ['X-Resp-Hop', 'secret'],
          ['Keep-Alive', 'timeout=7, max=99'],
          ['Proxy-Connection', 'keep-alive'],
          ['X-Normal', 'kept'],
          ['Content-Length', '3'],
        ] as unknown as http.OutgoingHttpHeaders)
        res.end('hop')
        return
      }
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' }
      if (url.pathname === '/location') headers['location'] = 'http://internal.example:8080/next'
      res.writeHead(200, headers).end(JSON.stringify({ name, url: req.url, host: req.headers.host }))
    })
  })
  server.keepAliveTimeout = 30_000
  server.requestTimeout = 0
  server.on('connection', (s: Socket) => {
    up.connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  Object.assign(up, {
    url: `http://127.0.0.1:${port}`,
    port,
    hostPort: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
        server.closeAllConnections()
      }),
  })
  return up
}

export interface RawUpgradeUpstream {
  readonly url: string
  readonly port: number
  /** Upgrade header values received, in order. */
  readonly upgrades: string[]
  close(): Promise<void>
}

/** Accepts any `Upgrade:` with 101 and then echoes raw bytes (for SPDY / custom upgrade tokens). */
export async function startRawUpgradeUpstream(): Promise<RawUpgradeUpstream> {
  const upgrades: string[] = []
  const sockets = new Set<net.Socket>()
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('plain\n')
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => undefined)
    const token = req.headers.upgrade ?? ''
    upgrades.push(token)
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${token}\r\n\r\n`)
    if (head.length > 0) socket.write(head)
    socket.pipe(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    upgrades,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
        server.closeAllConnections()
      }),
  }
}

/** Peak resident set size (VmHWM) of the Portcullis child, in bytes. */
export function peakRssBytes(px: PortcullisProcess): number {
  const pid = px.process.pid
  if (pid === undefined) throw new Error('portcullis has no pid')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status)
  if (m?.[1] === undefined) throw new Error('VmHWM not found in /proc status')
  return Number(m[1]) * 1024
}

/**
 * Starts a new peak for `peakRssBytes`: VmHWM is the peak over the process's whole life, so
 * without this a test would report the peak of whatever the child did before it. Linux resets it
 * to the current RSS when "5" is written to clear_refs.
 */
export function resetPeakRss(px: PortcullisProcess): void {
  const pid = px.process.pid
  if (pid === undefined) throw new Error('portcullis has no pid')
  writeFileSync(`/proc/${pid}/clear_refs`, '5')
}

/** A loopback port that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Upstream name from a NamedUpstream JSON answer. */
export function nameOf(body: string): string {
  return (JSON.parse(body) as { name: string }).name
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
