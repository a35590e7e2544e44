/**
 * Upstreams that misbehave, and clients that try to turn a tunnel into a bypass: regression tests
 * for an upgrade the upstream refuses (the client's socket must never become a raw pipe past
 * routing and authorisation), trailers HTTP/2 cannot carry, informational responses, uploads
 * slower than the route timeout, and HTTP/2 requests whose :authority and Host disagree.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import * as http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { rawHttp, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { Upstream } from '../fixtures/upstreams.js'
import { waitFor } from '../fixtures/wait.js'

/** Script answer: close the connection without a word. ('' means: stay silent.) */
const CLOSE = '<close>'
/** The pause between the chunks of a deliberately slow upload: 4 of them outlast the 1 s route timeout. */
const SLOW_UPLOAD_CHUNK_GAP_MS = 400

/** A TCP upstream that answers each request line by a scripted raw response, and records request heads. */
async function scriptedUpstream(script: (head: string) => string | Buffer): Promise<{ port: number; heads: string[]; close: () => Promise<void> }> {
  const heads: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    let buffered = ''
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1')
      let end: number
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        const head = buffered.slice(0, end)
        buffered = buffered.slice(end + 4)
        heads.push(head)
        const answer = script(head)
        if (answer === CLOSE) socket.destroy()
        else if (answer !== '') socket.write(answer)
      }
    })
    socket.on('error', () => socket.destroy())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as AddressInfo).port,
    heads,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

function h2get(port: number, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders | undefined }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`)
    session.on('error', reject)
    const req = session.request({ ':path': path, ':authority': 'app.localhost', ...headers })
    let status = 0
    let body = ''
    let trailers: http2.IncomingHttpHeaders | undefined
    req.on('response', (h) => (status = Number(h[':status'])))
    req.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = t
    })
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      session.close()
      resolve({ status, body, trailers })
    })
    req.on('error', (err: Error) => {
      session.close()
      reject(err)
    })
    req.end()
  })
}

describe('hostile upstreams and tunnel abuse', () => {
  let upstream: Awaited<ReturnType<typeof scriptedUpstream>>
  let proxy: PortcullisProcess
  let uploads: Server
  before(async () => {
    // Answers only once the whole request body has arrived, as most applications do.
    uploads = createServer((req, res) => {
      let n = 0
      req.on('data', (d: Buffer) => (n += d.length))
      req.on('end', () => res.end(`uploaded ${n}`))
    })
    await new Promise<void>((r) => uploads.listen(0, '127.0.0.1', r))
    const uploadsPort = (uploads.address() as AddressInfo).port
    upstream = await scriptedUpstream((head) => {
      const path = head.split(' ')[1] ?? ''
      if (path.startsWith('/ws-refused')) return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno'
      if (path.startsWith('/ws-empty-refusal')) return 'HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n'
      if (path.startsWith('/ws-silent')) return ''
      if (path.startsWith('/ws-close')) return CLOSE
      if (path.startsWith('/ws-ok')) return 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'
      if (path.startsWith('/ws-wrong-token')) return 'HTTP/1.1 101 Switching Protocols\r\nupgrade: something-else\r\nconnection: upgrade\r\n\r\n'
      if (path.startsWith('/trailers')) {
        // keep-alive and proxy-connection are connection-specific: HTTP/2 forbids them.
        return 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-check\r\n\r\n2\r\nhi\r\n0\r\nkeep-alive: timeout=5\r\nproxy-connection: x\r\nx-check: 1\r\n\r\n'
      }
      if (path.startsWith('/early')) return 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal'
      return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'
    })
    proxy = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      routes: [
        { from: 'https://app.localhost', prefix: '/admin', to: `http://127.0.0.1:${upstream.port}` },
        { from: 'https://app.localhost', prefix: '/upload', to: `http://127.0.0.1:${uploadsPort}`, timeout: '1s', allow_public_unauthenticated_access: true },
        { from: 'https://app.localhost', to: `http://127.0.0.1:${upstream.port}`, allow_websockets: true, allow_public_unauthenticated_access: true },
      ],
    })
  })
  after(async () => {
    await proxy.stop()
    await upstream.close()
    await new Promise<void>((r) => uploads.close(() => r()))
  })

  it('hostile: an upgrade the upstream does not accept never turns the connection into a pipe to a protected path', async () => {
    upstream.heads.length = 0
    const out = await rawHttp(
      proxy.port,
      'GET /ws-refused HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' +
        'GET /admin/secret HTTP/1.1\r\nHost: app.localhost\r\nX-Pomerium-Claim-Email: admin@corp\r\n\r\n',
      { timeoutMs: 3000 },
    )
    assert.match(out, /^HTTP\/1\.1 200 OK/)
    assert.match(out, /connection: close/i)
    assert.ok(!upstream.heads.some((h) => h.includes('/admin')), `the upstream saw: ${upstream.heads.join(' | ')}`)
  })

  it('hostile: a 101 for another protocol than the one asked for is not accepted', async () => {
    upstream.heads.length = 0
    const out = await rawHttp(
      proxy.port,
      'GET /ws-wrong-token HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: app.localhost\r\n\r\n',
      { timeoutMs: 3000 },
    )
    assert.doesNotMatch(out, /^HTTP\/1\.1 101/)
    assert.ok(!upstream.heads.some((h) => h.includes('/admin')))
  })

  it('an accepted upgrade (101 with the same token) is spliced', async () => {
    const out = await rawHttp(proxy.port, 'GET /ws-ok HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', { timeoutMs: 2000 })
    assert.match(out, /^HTTP\/1\.1 101/)
  })

  function upgradeAndWaitClose(path: string, timeoutMs: number): Promise<{ text: string; closedAfterMs: number | undefined }> {
    return new Promise((resolve) => {
      const started = Date.now()
      const socket = net.connect(proxy.port, '127.0.0.1', () => {
        socket.write(`GET ${path} HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`)
      })
      let text = ''
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')))
      socket.on('error', () => {})
      const timer = setTimeout(() => {
        socket.destroy()
        resolve({ text, closedAfterMs: undefined })
      }, timeoutMs)
      socket.on('close', () => {
        clearTimeout(timer)
        resolve({ text, closedAfterMs: Date.now() - started })
      })
    })
  }

  it('a refused upgrade with an empty body is answered and closed at once', async () => {
    const r = await upgradeAndWaitClose('/ws-empty-refusal', 3000)
    assert.match(r.text, /^HTTP\/1\.1 401/)
    assert.notEqual(r.closedAfterMs, undefined, 'the proxy kept the connection open')
  })

  it('an upgrade the route does not allow is answered 403 and the connection released, even if the client keeps its side open', async () => {
    const socket = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true })
    let text = ''
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')))
    const released = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 3000)
      // Once the proxy has finished answering, writing more must hit a closed socket (RST):
      // a proxy that only half-closed would still accept the bytes.
      socket.on('end', () => {
        setTimeout(() => socket.write('more'), 200)
        setTimeout(() => socket.write('more'), 400)
      })
      const done = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      socket.on('error', done)
      socket.on('close', done)
    })
    socket.write('GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n')
    assert.equal(await released, true)
    assert.match(text, /^HTTP\/1\.1 403/)
    socket.destroy()
  })

  it('an upstream that closes without answering an upgrade gives the client a 502', async () => {
    const r = await upgradeAndWaitClose('/ws-close', 3000)
    assert.match(r.text, /^HTTP\/1\.1 502/)
  })

  it('an upstream that never answers an upgrade gives the client a 504 within the answer timeout', async () => {
    const r = await upgradeAndWaitClose('/ws-silent', 15_000)
    assert.match(r.text, /^HTTP\/1\.1 504/)
    assert.ok(r.closedAfterMs !== undefined && r.closedAfterMs < 13_000)
  })

  it('an h2c upgrade offer with a body is refused rather than forwarded without its body', async () => {
    upstream.heads.length = 0
    const out = await rawHttp(proxy.port, 'POST /x HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello', { timeoutMs: 2000 })
    assert.match(out, /^HTTP\/1\.1 400/)
    assert.equal(upstream.heads.length, 0)
  })

  it('upstream trailers that HTTP/2 forbids are dropped instead of crashing the proxy', async () => {
    const first = await h2get(proxy.port, '/trailers')
    assert.equal(first.status, 200)
    assert.equal(first.body, 'hi')
    assert.equal(first.trailers?.['x-check'], '1')
    assert.equal(first.trailers?.['keep-alive'], undefined)
    // The process is still alive and serving.
    const again = await request(`${proxy.url}/`, { host: 'app.localhost' })
    assert.equal(again.status, 200)
    assert.equal(proxy.process.exitCode, null)
  })

  it('an informational 103 from the upstream is skipped and the final response delivered', async () => {
    const r = await request(`${proxy.url}/early`, { host: 'app.localhost' })
    assert.equal(r.status, 200)
    assert.equal(r.body, 'final')
    const h2 = await h2get(proxy.port, '/early')
    assert.equal(h2.status, 200)
    assert.equal(h2.body, 'final')
  })

  it('the route timeout starts when the upload is complete, not when it starts', async () => {
    // A deliberately slow client: 4 chunks 400 ms apart, 1.6 s of upload against a 1 s route
    // timeout (the pauses are the behaviour under test, not a wait for something).
    const socket = net.connect(proxy.port, '127.0.0.1')
    await new Promise<void>((r) => socket.once('connect', () => r()))
    let answer = ''
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')))
    socket.write('POST /upload HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\nConnection: close\r\n\r\n')
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, SLOW_UPLOAD_CHUNK_GAP_MS))
      socket.write('x')
    }
    await new Promise<void>((r) => socket.once('close', () => r()))
    assert.match(answer, /^HTTP\/1\.1 200/)
    assert.match(answer, /uploaded 4$/)
  })

  it('hostile: an HTTP/2 request whose :authority and Host differ is refused', async () => {
    const r = await h2get(proxy.port, '/', { host: 'other.localhost' })
    assert.equal(r.status, 400)
  })
})

describe('clients that hang up', () => {
  let a: Upstream
  let b: Upstream
  let proxy: PortcullisProcess
  before(async () => {
    a = await startHttpEcho()
    b = await startHttpEcho()
    proxy = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'info',
      xff_num_trusted_hops: 1,
      routes: [{ from: 'https://app.localhost', to: [a.url, b.url], load_balancing_policy: 'RING_HASH', allow_public_unauthenticated_access: true }],
    })
  })
  after(async () => {
    await proxy.stop()
    await Promise.all([a.close(), b.close()])
  })

  it('hostile: clients hanging up mid-request do not get a healthy upstream ejected', async () => {
    const ip = '198.51.100.77'
    const first = await request(`${proxy.url}/who`, { host: 'app.localhost', headers: { 'X-Forwarded-For': ip } })
    assert.equal(first.status, 200)
    const sticky = a.requests.length > 0 ? a : b
    const hangUps = (): number => proxy.logs.filter((l) => l.includes('downstream_remote_disconnect')).length
    const hangUpsBefore = hangUps()
    for (let i = 0; i < 8; i++) {
      const reached = a.requests.length + b.requests.length
      const socket = net.connect(proxy.port, '127.0.0.1')
      socket.on('error', () => {})
      socket.write(`GET /delay/1000 HTTP/1.1\r\nHost: app.localhost\r\nX-Forwarded-For: ${ip}\r\n\r\n`)
      // Hang up mid-request: once the upstream has the request, before its delayed answer.
      await waitFor('the request to reach an upstream', () => a.requests.length + b.requests.length > reached)
      socket.destroy()
    }
    await waitFor('the proxy to log every hang-up', () => hangUps() >= hangUpsBefore + 8)
    const before = sticky.requests.length
    const after = await request(`${proxy.url}/who-again`, { host: 'app.localhost', headers: { 'X-Forwarded-For': ip } })
    assert.equal(after.status, 200)
    assert.equal(sticky.requests.length, before + 1, 'the same (healthy) upstream still serves this client')
    const logged = proxy.logs.filter((l) => l.includes('downstream_remote_disconnect'))
    assert.ok(logged.length >= 1, 'hang-ups are logged as downstream_remote_disconnect')
  })
})
