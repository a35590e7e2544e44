import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import type { Authorizer, CheckRequest, CheckResult } from '../authorize/types.js'
import type { RouteConfig, UpstreamTlsConfig } from '../config/types.js'
import { createLogger } from '../shared/log.js'
import type { RoutePlan } from './state.js'
import { createHash, randomBytes } from 'node:crypto'
import { Duplex } from 'node:stream'
import { dialUpstream, relay, UpstreamDialError, SocketReader } from './tunnel.js'
import type { RelayOptions } from './tunnel.js'
import { TunnelRegistry } from './tunnels.js'

/** A connected pair of real loopback sockets, both half-open (as the proxy's are). */
async function socketPair(): Promise<{ a: Socket; b: Socket; close(): void }> {
  const server = createServer({ allowHalfOpen: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const a = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  const b = await accepted
  await new Promise<void>((resolve) => (a.connecting ? a.once('connect', () => resolve()) : resolve()))
  server.close()
  return {
    a,
    b,
    close: () => {
      a.destroy()
      b.destroy()
    },
  }
}

function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (c: string) => (text += c))
    socket.once('end', () => resolve(text))
  })
}

/**
 * The upstream side as the proxy has it for a `tcp://` route: dialled by dialUpstream, read
 * through its SocketReader. `greeting`: what the upstream sends as soon as it accepts.
 */
async function dialledPair(greeting = ''): Promise<{ a: Socket; b: Socket; reader: NonNullable<Awaited<ReturnType<typeof dialUpstream>>['reader']>; close(): void }> {
  const server = createServer({ allowHalfOpen: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>((resolve) =>
    server.once('connection', (s: Socket) => {
      if (greeting !== '') s.write(greeting)
      resolve(s)
    }),
  )
  const url = new URL(`tcp://127.0.0.1:${(server.address() as AddressInfo).port}`)
  const dialled = await dialUpstream({ url, connectAuthority: 'x:1', tls: { skipVerify: false } as UpstreamTlsConfig })
  const b = await accepted
  server.close()
  assert.ok(dialled.reader, 'a tcp:// upstream is read through a SocketReader')
  return {
    a: dialled.socket,
    b,
    reader: dialled.reader,
    close: () => {
      dialled.socket.destroy()
      b.destroy()
    },
  }
}

type Variant = 'pipe' | 'reader'
const VARIANTS: readonly Variant[] = ['pipe', 'reader']

/**
 * client <-> [proxy: clientSide relay upstreamSide] <-> upstream. `variant`: both sides read
 * through stream events (what an HTTP/2 stream or a proxy upstream gets), or each into a
 * SocketReader's reused buffer (an HTTP/1.1 CONNECT to a tcp:// upstream).
 */
async function tunnel(options: RelayOptions = { idleTimeoutMs: 0, maxDurationMs: 0 }, clientHead = '', upstreamHead = '', variant: Variant = 'pipe') {
  const down = await socketPair()
  if (variant === 'reader') {
    const up = await dialledPair()
    const r = relay(down.b, up.a, Buffer.from(clientHead), Buffer.from(upstreamHead), { ...options, upstreamReader: up.reader })
    assert.deepEqual(r.reads, { client: 'reused-buffer', upstream: 'reused-buffer' }, 'both sides read into reused buffers on this Node.js')
    return { client: down.a, upstream: up.b, relay: r, close: () => (down.close(), up.close()) }
  }
  const up = await socketPair()
  const r = relay(down.b, up.a, Buffer.from(clientHead), Buffer.from(upstreamHead), { ...options, reuseClientReadBuffer: false })
  assert.deepEqual(r.reads, { client: 'stream', upstream: 'stream' })
  return { client: down.a, upstream: up.b, relay: r, close: () => (down.close(), up.close()) }
}

for (const variant of VARIANTS)
test(`relay (${variant}): head bytes first, then both directions; each FIN is passed on and the tunnel ends when both are done`, async () => {
  const t = await tunnel(undefined, 'early:', 'banner:', variant)
  const atUpstream = readAll(t.upstream)
  const atClient = readAll(t.client)
  t.client.end('from-client')
  // The client has finished; the upstream can still answer, then finishes too.
  assert.equal(await atUpstream, 'early:from-client')
  t.upstream.end('from-upstream')
  assert.equal(await atClient, 'banner:from-upstream')
  const end = await t.relay.done
  assert.equal(end.reason, 'closed')
  assert.equal(end.bytesFromClient, 'early:from-client'.length)
  assert.equal(end.bytesToClient, 'banner:from-upstream'.length)
  t.close()
})

test('relay: the idle timeout ends a silent tunnel; traffic keeps it open', async () => {
  const t = await tunnel({ idleTimeoutMs: 300, maxDurationMs: 0 })
  t.upstream.on('data', (c: Buffer) => t.upstream.write(c))
  t.client.resume()
  const started = Date.now()
  const pings = setInterval(() => t.client.write('.'), 50)
  await new Promise((r) => setTimeout(r, 600))
  clearInterval(pings)
  assert.ok(!t.client.destroyed, 'still open while bytes flow')
  const end = await t.relay.done
  assert.equal(end.reason, 'idle_timeout')
  assert.ok(Date.now() - started >= 600)
  t.close()
})

test('relay: the maximum duration ends a busy tunnel; close(reason) ends it at once', async () => {
  const t = await tunnel({ idleTimeoutMs: 0, maxDurationMs: 200 })
  t.client.resume()
  const pings = setInterval(() => t.client.write('.'), 20)
  const end = await t.relay.done
  clearInterval(pings)
  assert.equal(end.reason, 'max_duration')
  t.close()
  const u = await tunnel()
  // The proxy's side is destroyed: the client sees the end of the stream.
  const closed = new Promise((r) => u.client.once('end', r))
  u.client.resume()
  u.relay.close('access_revoked')
  assert.equal((await u.relay.done).reason, 'access_revoked')
  await closed
  u.close()
})

for (const variant of VARIANTS)
test(`relay (${variant}): a client that does not read makes the relay stop reading the upstream (bounded memory)`, async () => {
  const t = await tunnel(undefined, '', '', variant)
  // The client never reads; the upstream offers 64 MiB.
  const chunk = Buffer.alloc(1024 * 1024, 1)
  let offered = 0
  const offer = (): void => {
    while (offered < 64 && t.upstream.write(chunk)) offered++
    if (offered < 64) t.upstream.once('drain', () => {
      offered++
      offer()
    })
  }
  offer()
  // Wait until the relay's reading has settled (it stops when the client side is full).
  let last = -1
  for (let i = 0; i < 100 && t.relay.bytes().toClient !== last; i++) {
    last = t.relay.bytes().toClient
    await new Promise((r) => setTimeout(r, 50))
  }
  const relayed = t.relay.bytes().toClient
  assert.ok(relayed < 24 * 1024 * 1024, `relayed ${relayed} bytes to a client that reads nothing`)
  assert.ok(offered < 64, 'the upstream was held back too')
  t.close()
})

/** A stream that completes each write a few milliseconds later and only then takes the bytes. */
function lateTaker(): { stream: Duplex; taken: Buffer[] } {
  const taken: Buffer[] = []
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      setTimeout(() => {
        taken.push(Buffer.from(chunk))
        callback()
      }, 3)
    },
  })
  return { stream, taken }
}

/** 4 MiB in bulk (reads fill the buffer), then 256 KiB in small pieces a millisecond apart, then the FIN. */
async function sendBulkThenTrickle(to: Socket, data: Buffer): Promise<void> {
  const bulk = data.length - 256 * 1024
  await new Promise<void>((resolve) => (to.write(data.subarray(0, bulk)) ? resolve() : to.once('drain', () => resolve())))
  for (let at = bulk; at < data.length; ) {
    const n = Math.min(data.length - at, 700 + (at % 900))
    to.write(data.subarray(at, at + n))
    await new Promise((resolve) => setTimeout(resolve, 1))
    at += n
  }
  to.end()
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

// The receiving stream completes each write a few milliseconds late and only then takes the bytes
// (as a socket whose kernel buffer is full does): a buffer reused too early would already hold a
// later read by then. Small reads come several to a pending write (under the high-water mark).
test("relay (reader): the upstream's read buffer is reused only once the client has taken a read whole (bulk and trickled bytes arrive byte for byte)", async (t) => {
  const client = lateTaker()
  const up = await dialledPair()
  t.after(() => {
    up.close()
    client.stream.destroy()
  })
  const r = relay(client.stream, up.a, Buffer.alloc(0), Buffer.alloc(0), { idleTimeoutMs: 0, maxDurationMs: 0, upstreamReader: up.reader })
  assert.equal(r.reads.upstream, 'reused-buffer')
  const data = randomBytes(4 * 1024 * 1024 + 256 * 1024)
  const finished = new Promise((resolve) => client.stream.once('finish', resolve))
  await sendBulkThenTrickle(up.b, data)
  await finished
  assert.equal(sha256(Buffer.concat(client.taken)), sha256(data))
  client.stream.push(null)
  assert.equal((await r.done).bytesToClient, data.length)
})

test("relay (reader): the client's read buffer is reused only once the upstream has taken a read whole; bytes buffered before the relay go first", async (t) => {
  const upstream = lateTaker()
  const down = await socketPair()
  t.after(() => {
    down.close()
    upstream.stream.destroy()
  })
  // Bytes the client sends while the tunnel is being decided wait in the socket's stream buffer.
  down.b.pause()
  down.a.write('buffered-before-relay:')
  await new Promise<void>((resolve) => down.b.once('readable', () => resolve()))
  const r = relay(down.b, upstream.stream, Buffer.from('head:'), Buffer.alloc(0), { idleTimeoutMs: 0, maxDurationMs: 0 })
  assert.equal(r.reads.client, 'reused-buffer', 'an accepted socket reads into a reused buffer on this Node.js')
  const data = randomBytes(4 * 1024 * 1024 + 256 * 1024)
  const finished = new Promise((resolve) => upstream.stream.once('finish', resolve))
  await sendBulkThenTrickle(down.a, data)
  await finished
  const expected = Buffer.concat([Buffer.from('head:buffered-before-relay:'), data])
  assert.equal(sha256(Buffer.concat(upstream.taken)), sha256(expected))
  upstream.stream.push(null)
  assert.equal((await r.done).bytesFromClient, expected.length)
})

test('SocketReader: the read buffer starts small, grows fourfold (4 KiB to 256 KiB) while reads fill it, shrinks on a trickle, and is reused until retained', () => {
  const reader = new SocketReader()
  reader.attach(() => true)
  const sizes: number[] = []
  for (let i = 0; i < 5; i++) {
    const buffer = reader.nextBuffer()
    sizes.push(buffer.length)
    reader.onRead(buffer.length, buffer) // a read that filled the buffer: a bulk transfer
  }
  assert.deepEqual(sizes, [4096, 16384, 65536, 262144, 262144])
  const a = reader.nextBuffer()
  reader.onRead(100_000, a)
  const b = reader.nextBuffer()
  assert.equal(b, a, 'reused: the client took the read whole')
  reader.onRead(100_000, b)
  reader.retain()
  const c = reader.nextBuffer()
  assert.notEqual(c, b, 'a new buffer: the client still holds the last read')
  assert.equal(c.length, 262144)
  // A trickle again (an interactive session after a bulk transfer): back to the small buffer.
  reader.onRead(10, c)
  assert.equal(reader.nextBuffer().length, 4096)
})

for (const variant of VARIANTS)
test(`relay (${variant}): a client FIN that arrived before the relay started is passed on, and the tunnel ends as closed`, { timeout: 10_000 }, async (t) => {
  const down = await socketPair()
  const dialled = variant === 'reader' ? await dialledPair() : undefined
  const up = dialled ?? (await socketPair())
  t.after(() => {
    down.close()
    up.close()
  })
  // The client finishes while the upstream is being dialled: its 'end' is emitted before relay().
  down.a.end()
  for (let i = 0; i < 200 && !down.b.readableEnded; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  assert.equal(down.b.readableEnded, true)
  const options: RelayOptions = dialled
    ? { idleTimeoutMs: 0, maxDurationMs: 0, upstreamReader: dialled.reader }
    : { idleTimeoutMs: 0, maxDurationMs: 0, reuseClientReadBuffer: false }
  const r = relay(down.b, up.a, Buffer.from('head'), Buffer.alloc(0), options)
  assert.equal(await readAll(up.b), 'head', 'the upstream got the bytes and then the FIN')
  up.b.end('bye')
  assert.equal(await readAll(down.a), 'bye')
  assert.equal((await r.done).reason, 'closed')
})

test('relay (reader): small reads queued behind a stalled client are copied, not left each holding a read buffer', async (t) => {
  // A client stream that takes writes at once until it stalls, then never completes them (an
  // HTTP/2 stream out of window, a peer that stopped reading).
  let stalled = false
  const held: Buffer[] = []
  const client = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      if (stalled) held.push(chunk)
      else callback()
    },
  })
  const up = await dialledPair()
  t.after(() => {
    up.close()
    client.destroy()
  })
  const r = relay(client, up.a, Buffer.alloc(0), Buffer.alloc(0), { idleTimeoutMs: 0, maxDurationMs: 0, upstreamReader: up.reader })
  // A bulk transfer grows the read buffer to 256 KiB.
  const bulk = 1024 * 1024
  up.b.write(randomBytes(bulk))
  for (let i = 0; i < 400 && r.bytes().toClient < bulk; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  assert.equal(r.bytes().toClient, bulk)
  // Then the client stalls and a chatty upstream sends 300 short messages, one read each: they
  // queue (under the stream's high-water mark) behind the first, which never completes.
  stalled = true
  for (let i = 0; i < 300; i++) {
    up.b.write(`message ${i}\n`)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  for (let i = 0; i < 200 && r.bytes().toClient < bulk + 3000; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  const queue = (client as unknown as { _writableState: { getBuffer(): { chunk: Buffer }[] } })._writableState.getBuffer().map((e) => e.chunk)
  const chunks = [...held, ...queue]
  assert.ok(chunks.length > 100, `${chunks.length} writes queued`)
  const pinned = [...new Set(chunks.map((c) => c.buffer))].reduce((sum, b) => sum + b.byteLength, 0)
  assert.ok(pinned < 600 * 1024, `the queued writes hold ${Math.round(pinned / 1024)} KiB of buffers`)
})

test('relay (reader): what a server-first upstream sends before the relay starts reaches the client first', async (t) => {
  const down = await socketPair()
  const up = await dialledPair('SSH-2.0-test\r\n')
  t.after(() => {
    down.close()
    up.close()
  })
  // The greeting arrives while the tunnel is being granted, before relay() runs.
  await new Promise((r) => setTimeout(r, 50))
  const r = relay(down.b, up.a, Buffer.alloc(0), Buffer.alloc(0), { idleTimeoutMs: 0, maxDurationMs: 0, upstreamReader: up.reader })
  const atClient = readAll(down.a)
  up.b.end('rest')
  down.a.end()
  assert.equal(await atClient, 'SSH-2.0-test\r\nrest')
  assert.equal((await r.done).bytesToClient, 'SSH-2.0-test\r\nrest'.length)
})

test('dialUpstream: refused → 502, an http proxy upstream gets a CONNECT of its own (2xx → tunnel, else 502)', async () => {
  const dead = createServer()
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r))
  const deadPort = (dead.address() as AddressInfo).port
  await new Promise<void>((r) => dead.close(() => r()))
  const tls = { skipVerify: false, serverName: undefined, customCa: undefined, clientCert: undefined, clientKey: undefined }
  await assert.rejects(dialUpstream({ url: new URL(`tcp://127.0.0.1:${deadPort}`), connectAuthority: 'db:1', tls }), (e: unknown) => e instanceof UpstreamDialError && e.status === 502)

  const seen: string[] = []
  const proxy: Server = createServer((s) => {
    s.once('data', (head: Buffer) => {
      seen.push(head.toString('latin1').split('\r\n')[0] ?? '')
      if (seen.length === 1) s.write('HTTP/1.1 200 OK\r\n\r\nfirst-bytes')
      else s.end('HTTP/1.1 403 Forbidden\r\n\r\n')
    })
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  const url = new URL(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`)
  const ok = await dialUpstream({ url, connectAuthority: 'db.example.com:5432', tls })
  assert.equal(ok.head.toString(), 'first-bytes')
  ok.socket.destroy()
  await assert.rejects(dialUpstream({ url, connectAuthority: 'db.example.com:5432', tls }), (e: unknown) => e instanceof UpstreamDialError && e.status === 502)
  assert.deepEqual(seen, ['CONNECT db.example.com:5432 HTTP/1.1', 'CONNECT db.example.com:5432 HTTP/1.1'])
  proxy.close()
})

test('TunnelRegistry: a sweep closes tunnels whose route is gone or whose decision is now a denial (or fails); allowed ones stay', async () => {
  const route = (id: string): RouteConfig => ({ id }) as RouteConfig
  const check = (id: string, user: string): CheckRequest => ({ route: route(id), headers: { user } }) as unknown as CheckRequest
  let routes = new Map<string, RoutePlan>([
    ['a', { route: route('a') } as RoutePlan],
    ['b', { route: route('b') } as RoutePlan],
  ])
  const authorizer: Authorizer = {
    check(request): CheckResult {
      if (request.headers['user'] === 'broken') throw new Error('store down')
      return request.headers['user'] === 'alice' ? { allow: true } : { allow: false, status: 403, code: 'policy-denied', reason: 'no' }
    },
  }
  const registry = new TunnelRegistry(authorizer, () => routes, createLogger('disabled'), 60_000)
  const closed: string[] = []
  const add = (name: string, c: CheckRequest): void => {
    registry.add({ check: c, close: (reason) => closed.push(`${name}:${reason}`) })
  }
  add('alice-a', check('a', 'alice'))
  add('bob-a', check('a', 'bob'))
  add('alice-b', check('b', 'alice'))
  add('broken-a', check('a', 'broken'))
  await registry.sweep()
  assert.deepEqual(closed.sort(), ['bob-a:access_revoked', 'broken-a:authorize_error'])
  routes = new Map([['a', { route: route('a') } as RoutePlan]])
  closed.length = 0
  await registry.sweep()
  assert.ok(closed.includes('alice-b:route_removed'))
  assert.ok(!closed.some((c) => c.startsWith('alice-a')))
})
