/**
 * Limits that keep one client from taking the proxy or an upstream for itself: the HTTP/2
 * listener's stream cap (100 per connection, as in Pomerium's Envoy settings) and the upstream
 * circuit breakers (`circuit_breaker_thresholds`: max_connections, max_pending_requests,
 * max_requests), which answer 503 at once when full instead of queueing without end.
 *
 * The attacker's requests are POSTs whose bodies never end, so each one holds an upstream
 * request (and, over HTTP/1.1, an upstream connection) until the test ends the bodies.
 */
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as net from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startRawUpgradeUpstream } from './forwarding-helpers.js'
import type { RawUpgradeUpstream } from './forwarding-helpers.js'

const HOST = 'app.localhost'

function route(to: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { from: `https://${HOST}`, to, allow_public_unauthenticated_access: true, ...extra }
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs`. */
async function waitUntil(condition: () => boolean, what: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${what()}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

interface HoldingUpstream {
  url: string
  /** TCP connections accepted (and kept) so far. */
  connections: number
  /** Requests whose head arrived and whose body has not ended yet. */
  inFlight: number
  /** Requests whose head arrived. */
  requests: number
  close(): Promise<void>
}

/**
 * An HTTP/1.1 (or h2c) upstream that answers a request only once its body has ended.
 * `maxConnections`: the upstream's own capacity (Node drops connections over it), as a small
 * backend has.
 */
async function startHoldingUpstream(kind: 'http1' | 'h2c', maxConnections?: number): Promise<HoldingUpstream> {
  const up: HoldingUpstream = { url: '', connections: 0, inFlight: 0, requests: 0, close: () => Promise.resolve() }
  const sockets = new Set<Socket>()
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    up.requests++
    up.inFlight++
    req.resume()
    req.on('end', () => {
      up.inFlight--
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('done\n')
    })
    req.on('error', () => {
      up.inFlight--
    })
  }
  const server = kind === 'h2c' ? http2.createServer(handler) : http.createServer({ requestTimeout: 0 }, handler)
  if (maxConnections !== undefined) server.maxConnections = maxConnections
  server.on('connection', (s: Socket) => {
    up.connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  up.url = `${kind === 'h2c' ? 'h2c' : 'http'}://127.0.0.1:${port}`
  up.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const s of sockets) s.destroy()
    })
  return up
}

/** A client stream: a POST whose body stays open until `end()`; `status` once answered. */
interface OpenStream {
  status: number | undefined
  end(): void
}

function openStream(session: http2.ClientHttp2Session, path = '/hold'): OpenStream {
  const stream = session.request({ ':method': 'POST', ':path': path, ':authority': HOST, 'content-type': 'text/plain' })
  const s: OpenStream = { status: undefined, end: () => stream.end() }
  stream.on('response', (h) => {
    s.status = Number(h[':status'])
  })
  stream.on('error', () => undefined)
  stream.resume()
  stream.write('started')
  return s
}

/** Sends a WebSocket upgrade request and resolves with the socket and the answer's status line. */
function upgrade(port: number, path: string): Promise<{ socket: Socket; statusLine: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let received = ''
    socket.on('error', reject)
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1')
      if (received.includes('\r\n\r\n')) resolve({ socket, statusLine: received.split('\r\n')[0] ?? '' })
    })
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`)
  })
}

function count(streams: readonly OpenStream[], status: number): number {
  return streams.filter((s) => s.status === status).length
}

// ---- a minimal raw HTTP/2 client, for a peer that ignores the advertised stream limit ----

const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4
const REFUSED_STREAM = 0x7
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId, 5)
  return Buffer.concat([head, payload])
}

/** HPACK: an indexed static-table name with a literal value, not indexed, no Huffman coding. */
function literal(nameIndex: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([nameIndex, value.length]), Buffer.from(value, 'latin1')])
}

/** HEADERS (END_HEADERS) for `POST http://app.localhost/raw`, then a DATA frame without END_STREAM. */
function openPost(streamId: number): Buffer {
  // 0x83 = `:method: POST`, 0x86 = `:scheme: http` (static table 3 and 6); 4 = :path, 1 = :authority.
  const block = Buffer.concat([Buffer.from([0x83, 0x86]), literal(4, '/raw'), literal(1, HOST)])
  return Buffer.concat([frame(0x1, 0x4, streamId, block), frame(0x0, 0, streamId, Buffer.from('started'))])
}

interface RawPeer {
  /** The server's SETTINGS parameters (id -> value), once received. */
  settings: Map<number, number> | undefined
  /** RST_STREAM frames with REFUSED_STREAM received. */
  refused: number
  goaway: boolean
  readonly socket: Socket
}

function rawPeer(port: number): RawPeer {
  const socket = net.connect(port, '127.0.0.1')
  const peer: RawPeer = { settings: undefined, refused: 0, goaway: false, socket }
  let buffered = Buffer.alloc(0)
  socket.on('error', () => undefined)
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3)
      if (buffered.length < 9 + length) break
      const type = buffered[3]
      const flags = buffered[4] as number
      const payload = buffered.subarray(9, 9 + length)
      buffered = buffered.subarray(9 + length)
      if (type === 0x4 && (flags & 0x1) === 0) {
        const settings = new Map<number, number>()
        for (let i = 0; i + 6 <= payload.length; i += 6) settings.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2))
        peer.settings = settings
      } else if (type === 0x3 && payload.readUInt32BE(0) === REFUSED_STREAM) {
        peer.refused++
      } else if (type === 0x7) {
        peer.goaway = true
      }
    }
  })
  socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0, Buffer.alloc(0))]))
  return peer
}

describe('HTTP/2 listener: streams per connection', () => {
  let upstream: HoldingUpstream
  let proxy: PortcullisProcess
  before(async () => {
    upstream = await startHoldingUpstream('http1')
    proxy = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, routes: [route(upstream.url)] })
  })
  after(async () => {
    await proxy.stop()
    await upstream.close()
  })

  it('hostile: advertises 100 streams and a 64 KiB window, and never forwards more than 100 streams of one connection', async () => {
    const peer = rawPeer(proxy.port)
    try {
      await waitUntil(() => peer.settings !== undefined, () => 'no SETTINGS from the server')
      assert.equal(peer.settings?.get(SETTINGS_MAX_CONCURRENT_STREAMS), 100, 'SETTINGS_MAX_CONCURRENT_STREAMS')
      assert.equal(peer.settings?.get(SETTINGS_INITIAL_WINDOW_SIZE), 65_536, 'SETTINGS_INITIAL_WINDOW_SIZE')
      // A peer that ignores the limit: 150 requests whose bodies never end, on one connection.
      const streams = Array.from({ length: 150 }, (_, i) => 2 * i + 1)
      peer.socket.write(Buffer.concat(streams.map(openPost)))
      // Done when the 50 extra streams were refused (or the connection was ended) and 100 arrived,
      // or as soon as the upstream sees a 101st.
      await waitUntil(
        () => upstream.requests > 100 || ((peer.refused >= 50 || peer.goaway) && upstream.requests >= 100),
        () => `upstream saw ${upstream.requests} requests, ${peer.refused} streams refused, goaway ${peer.goaway}`,
      )
      assert.equal(upstream.requests, 100, 'requests forwarded from one connection')
    } finally {
      peer.socket.destroy()
    }
    await waitUntil(() => upstream.inFlight === 0, () => `${upstream.inFlight} upstream requests still open`)
  })
})

describe('one client cannot starve another', () => {
  let upstream: HoldingUpstream
  let proxy: PortcullisProcess
  before(async () => {
    // A small backend: it takes at most 120 connections and drops the rest.
    upstream = await startHoldingUpstream('http1', 120)
    proxy = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, routes: [route(upstream.url)] })
  })
  after(async () => {
    await proxy.stop()
    await upstream.close()
  })

  it('hostile: 150 never-ending streams on one HTTP/2 connection leave room for another client', async () => {
    const attacker = http2.connect(`http://127.0.0.1:${proxy.port}`)
    attacker.on('error', () => undefined)
    try {
      const streams = Array.from({ length: 150 }, () => openStream(attacker))
      await waitUntil(() => upstream.inFlight >= 100, () => `upstream holds ${upstream.inFlight} requests`)
      const victim = await request(`${proxy.url}/ordinary`, { host: HOST, method: 'POST', body: 'hello' })
      assert.equal(victim.status, 200, 'the other client got an answer')
      assert.equal(count(streams, 503), 0, 'no stream of the attacker was refused by the upstream either')
    } finally {
      attacker.destroy()
    }
  })
})

describe('circuit_breaker_thresholds', () => {
  let upstream: HoldingUpstream
  let h2c: HoldingUpstream
  let tunnels: RawUpgradeUpstream
  let queued: HoldingUpstream
  let proxy: PortcullisProcess
  before(async () => {
    upstream = await startHoldingUpstream('http1')
    queued = await startHoldingUpstream('http1')
    h2c = await startHoldingUpstream('h2c')
    tunnels = await startRawUpgradeUpstream()
    proxy = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      routes: [
        route(upstream.url, { prefix: '/pooled', circuit_breaker_thresholds: { max_connections: 2, max_pending_requests: 2 } }),
        route(h2c.url, { prefix: '/multiplexed', circuit_breaker_thresholds: { max_requests: 2 } }),
        route(tunnels.url, { prefix: '/tunnel', allow_websockets: true, circuit_breaker_thresholds: { max_requests: 1 } }),
        route(queued.url, { prefix: '/queued', timeout: '1s', circuit_breaker_thresholds: { max_connections: 1, max_pending_requests: 1 } }),
      ],
    })
  })
  after(async () => {
    await proxy.stop()
    await Promise.all([upstream.close(), h2c.close(), tunnels.close(), queued.close()])
  })

  it('max_connections and max_pending_requests: the upstream sees 2 connections, 2 requests wait, the rest get 503 at once', async () => {
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`)
    client.on('error', () => undefined)
    try {
      const first = [openStream(client, '/pooled/a'), openStream(client, '/pooled/b')]
      await waitUntil(() => upstream.inFlight === 2, () => `upstream holds ${upstream.inFlight} requests`)
      const more = Array.from({ length: 4 }, (_, i) => openStream(client, `/pooled/more-${i}`))
      // Two wait for a connection; two find the queue full and are answered while all still hold.
      await waitUntil(() => count(more, 503) === 2, () => `statuses ${more.map((s) => s.status).join(',')}`)
      assert.equal(upstream.connections, 2)
      assert.equal(upstream.requests, 2)
      // Once the first requests end, the waiting ones go through on the same two connections.
      for (const s of [...first, ...more]) s.end()
      await waitUntil(() => count([...first, ...more], 200) === 4, () => `statuses ${[...first, ...more].map((s) => s.status).join(',')}`)
      assert.equal(upstream.connections, 2)
      const overflow = await proxy.waitForLog((e) => e['response-code'] === 503)
      assert.equal(overflow['response-code-details'], 'upstream_reset_before_response_started{overflow}')
    } finally {
      client.destroy()
    }
  })

  it('max_requests: an h2c upstream gets at most 2 requests at once, the third gets 503 at once, without 100 Continue', async () => {
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`)
    client.on('error', () => undefined)
    try {
      const held = [openStream(client, '/multiplexed/a'), openStream(client, '/multiplexed/b')]
      await waitUntil(() => h2c.inFlight === 2, () => `h2c upstream holds ${h2c.inFlight} requests`)
      const third = openStream(client, '/multiplexed/c')
      await waitUntil(() => third.status !== undefined, () => 'the third request got no answer')
      assert.equal(third.status, 503)
      // A client that waits for 100 Continue before its body gets the 503 without ever being
      // invited to upload.
      const waiting = client.request({ ':method': 'POST', ':path': '/multiplexed/d', ':authority': HOST, expect: '100-continue' })
      waiting.on('error', () => undefined)
      let continued = false
      waiting.once('continue', () => (continued = true))
      const waitingStatus = await new Promise<number>((resolve) => waiting.once('response', (h) => resolve(Number(h[':status']))))
      waiting.close()
      assert.equal(waitingStatus, 503)
      assert.equal(continued, false, '100 Continue was sent for a request the circuit breaker refused')
      assert.equal(h2c.requests, 2)
      for (const s of held) s.end()
      await waitUntil(() => count(held, 200) === 2, () => `statuses ${held.map((s) => s.status).join(',')}`)
    } finally {
      client.destroy()
    }
  })

  it('max_requests counts upgraded tunnels: a second WebSocket gets 503 until the first one closes', async () => {
    const first = await upgrade(proxy.port, '/tunnel/one')
    try {
      assert.match(first.statusLine, /^HTTP\/1\.1 101 /)
      const second = await upgrade(proxy.port, '/tunnel/two')
      second.socket.destroy()
      assert.match(second.statusLine, /^HTTP\/1\.1 503 /)
      assert.deepEqual(tunnels.upgrades, ['websocket'])
    } finally {
      first.socket.destroy()
    }
    await proxy.waitForLog((e) => e['response-code'] === 101)
    const third = await upgrade(proxy.port, '/tunnel/three')
    third.socket.destroy()
    assert.match(third.statusLine, /^HTTP\/1\.1 101 /)
  })

  it('a request waiting for a connection gets 504 at the route timeout, and still holds its place until the pool lets it go', async () => {
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`)
    client.on('error', () => undefined)
    try {
      // GETs end their requests at once, so the route timeout runs from the start.
      const get = (path: string): OpenStream => {
        const stream = client.request({ ':path': path, ':authority': HOST })
        const s: OpenStream = { status: undefined, end: () => undefined }
        stream.on('response', (h) => {
          s.status = Number(h[':status'])
        })
        stream.on('error', () => undefined)
        stream.resume()
        return s
      }
      const holder = openStream(client, '/queued/holder')
      await waitUntil(() => queued.inFlight === 1, () => `upstream holds ${queued.inFlight} requests`)
      const waiting = get('/queued/waiting')
      await waitUntil(() => waiting.status !== undefined, () => 'the waiting request got no answer')
      assert.equal(waiting.status, 504)
      // Its place in the pool's queue is only given back when the pool reaches it.
      const refused = get('/queued/refused')
      await waitUntil(() => refused.status !== undefined, () => 'no answer')
      assert.equal(refused.status, 503)
      holder.end()
      await waitUntil(() => holder.status !== undefined, () => 'the holder got no answer')
      assert.equal(holder.status, 200)
      // The pool drops the timed-out request without sending it, and the queue is free again.
      const after = get('/queued/after')
      await waitUntil(() => after.status !== undefined, () => 'no answer')
      assert.equal(after.status, 200)
      assert.equal(queued.requests, 2, 'the timed-out request never reached the upstream')
    } finally {
      client.destroy()
    }
  })
})
