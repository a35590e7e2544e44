/**
 * Connection-level settings of the main listener: `use_proxy_protocol` (v1 and v2, cleartext and
 * TLS), cleartext HTTP/2 with prior knowledge, `codec_type`, and the upstream connection settings
 * `circuit_breaker_thresholds.max_connections` and `dns_lookup_family`.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import * as http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import { rawHttp, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream } from '../fixtures/upstreams.js'

const pki = testPki()
const cert = makeServerCert(pki.ca, ['app.localhost'])

function route(to: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { from: 'https://app.localhost', to, allow_public_unauthenticated_access: true, ...extra }
}

function lastSeen(upstream: Upstream): EchoRecord {
  const r = upstream.requests.at(-1)
  assert.ok(r, 'the upstream received no request')
  return r
}

const GET = 'GET /who HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n'

describe('use_proxy_protocol', () => {
  let echo: Upstream
  let plain: PortcullisProcess
  let secure: PortcullisProcess
  before(async () => {
    echo = await startHttpEcho()
    plain = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, use_proxy_protocol: true, routes: [route(echo.url)] })
    secure = await startPortcullis({
      address: '127.0.0.1:0',
      use_proxy_protocol: true,
      certificate_file: cert.certFile,
      certificate_key_file: cert.keyFile,
      routes: [route(echo.url)],
    })
  })
  after(async () => {
    await Promise.all([plain.stop(), secure.stop()])
    await echo.close()
  })

  it('PROXY header then cleartext HTTP/1.1 (codec_type http1) or HTTP/2 (codec_type http2)', async () => {
    for (const codec of ['http1', 'http2'] as const) {
      const p = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, use_proxy_protocol: true, codec_type: codec, routes: [route(echo.url)] })
      try {
        if (codec === 'http1') {
          assert.match(await rawHttp(p.port, `PROXY TCP4 203.0.113.8 10.0.0.1 1 2\r\n${GET}`), /^HTTP\/1\.1 200/)
        } else {
          const session = http2.connect(`http://127.0.0.1:${p.port}`, {
            createConnection: () => {
              const socket = net.connect(p.port, '127.0.0.1')
              socket.write('PROXY TCP4 203.0.113.8 10.0.0.1 1 2\r\n')
              return socket
            },
          })
          try {
            const status = await new Promise<number>((resolve, reject) => {
              const req = session.request({ ':path': '/h2', ':authority': 'app.localhost' })
              req.on('response', (h) => resolve(Number(h[':status'])))
              req.on('error', reject)
              req.resume()
              req.end()
            })
            assert.equal(status, 200)
          } finally {
            session.close()
          }
        }
        assert.equal(lastSeen(echo).headers['x-forwarded-for'], '203.0.113.8', codec)
      } finally {
        await p.stop()
      }
    }
  })

  it('a PROXY v1 header sets the client address the upstream sees', async () => {
    const out = await rawHttp(plain.port, `PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n${GET}`)
    assert.match(out, /^HTTP\/1\.1 200/)
    assert.equal(lastSeen(echo).headers['x-forwarded-for'], '203.0.113.7')
    assert.equal(lastSeen(echo).headers['x-envoy-external-address'], '203.0.113.7')
  })

  it('a PROXY v2 header sets the client address the upstream sees', async () => {
    const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
    const header = Buffer.concat([sig, Buffer.from([0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb])])
    const out = await rawHttp(plain.port, Buffer.concat([header, Buffer.from(GET)]))
    assert.match(out, /^HTTP\/1\.1 200/)
    assert.equal(lastSeen(echo).headers['x-forwarded-for'], '198.51.100.9')
  })

  it('a connection without a PROXY header is closed without an answer and never forwarded', async () => {
    echo.requests.length = 0
    const out = await rawHttp(plain.port, GET, { timeoutMs: 2000 })
    assert.equal(out, '')
    assert.equal(echo.requests.length, 0)
  })

  it('PROXY header and TLS ClientHello in the same packet: TLS still completes and the address is used', async () => {
    const socket = net.connect(secure.port, '127.0.0.1')
    // Queue the header before the TLS layer writes its ClientHello, so both leave together.
    socket.write('PROXY TCP4 192.0.2.44 10.0.0.1 40000 443\r\n')
    const t = tls.connect({ socket, servername: 'app.localhost', ca: pki.ca.certPem, ALPNProtocols: ['http/1.1'] })
    const text = await new Promise<string>((resolve, reject) => {
      let data = ''
      t.on('secureConnect', () => t.write(GET))
      t.on('data', (d: Buffer) => (data += d.toString('latin1')))
      t.on('end', () => resolve(data))
      t.on('error', reject)
      setTimeout(() => resolve(data), 5000).unref()
    })
    t.destroy()
    assert.match(text, /^HTTP\/1\.1 200/)
    assert.equal(lastSeen(echo).headers['x-forwarded-for'], '192.0.2.44')
  })
})

describe('cleartext HTTP/2 and codec_type', () => {
  let echo: Upstream
  let auto: PortcullisProcess
  let h1only: PortcullisProcess
  let h2only: PortcullisProcess
  before(async () => {
    echo = await startHttpEcho()
    const tlsBase = { address: '127.0.0.1:0', certificate_file: cert.certFile, certificate_key_file: cert.keyFile, routes: [route(echo.url)] }
    auto = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, routes: [route(echo.url)] })
    h1only = await startPortcullis({ ...tlsBase, codec_type: 'http1' })
    h2only = await startPortcullis({ ...tlsBase, codec_type: 'http2' })
  })
  after(async () => {
    await Promise.all([auto.stop(), h1only.stop(), h2only.stop()])
    await echo.close()
  })

  it('an HTTP/2 client with prior knowledge is served on an insecure_server listener, and HTTP/1.1 still is', async () => {
    const session = http2.connect(`http://127.0.0.1:${auto.port}`)
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ':path': '/h2c', ':authority': 'app.localhost' })
        req.on('response', (h) => resolve(Number(h[':status'])))
        req.on('error', reject)
        req.resume()
        req.end()
      })
      assert.equal(status, 200)
      assert.equal(lastSeen(echo).url, '/h2c')
    } finally {
      session.close()
    }
    const h1 = await request(`${auto.url}/h1`, { host: 'app.localhost' })
    assert.equal(h1.status, 200)
    assert.equal(h1.httpVersion, '1.1')
  })

  function negotiated(port: number): Promise<string | false | null> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'app.localhost', ca: pki.ca.certPem, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve(s.alpnProtocol)
        s.destroy()
      })
      s.on('error', reject)
    })
  }

  it('codec_type http1 offers only HTTP/1.1 and http2 only HTTP/2', async () => {
    assert.equal(await negotiated(h1only.port), 'http/1.1')
    assert.equal(await negotiated(h2only.port), 'h2')
  })
})

describe('upstream connection settings', () => {
  let counting: Server
  let connections = 0
  let port = 0
  let proxy: PortcullisProcess
  let v6only: PortcullisProcess
  before(async () => {
    counting = createServer((req, res) => {
      setTimeout(() => res.end('ok'), req.url === '/slow' ? 200 : 0)
    })
    counting.on('connection', () => connections++)
    await new Promise<void>((r) => counting.listen(0, '127.0.0.1', r))
    port = (counting.address() as AddressInfo).port
    proxy = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      dns_lookup_family: 'V4_ONLY',
      routes: [route(`http://localhost:${port}`, { circuit_breaker_thresholds: { max_connections: 1 } })],
    })
    v6only = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, dns_lookup_family: 'V6_ONLY', routes: [route(`http://localhost:${port}`)] })
  })
  after(async () => {
    await Promise.all([proxy.stop(), v6only.stop()])
    await new Promise<void>((r) => counting.close(() => r()))
  })

  it('circuit_breaker_thresholds.max_connections caps the connections to an upstream', async () => {
    connections = 0
    const results = await Promise.all(Array.from({ length: 5 }, () => request(`${proxy.url}/slow`, { host: 'app.localhost' })))
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200])
    assert.equal(connections, 1)
  })

  it('dns_lookup_family decides which addresses of an upstream name are used', async () => {
    // The upstream listens on 127.0.0.1 only: IPv4 reaches it, IPv6-only cannot.
    assert.equal((await request(`${proxy.url}/`, { host: 'app.localhost' })).status, 200)
    assert.equal((await request(`${v6only.url}/`, { host: 'app.localhost' })).status, 503)
  })
})

describe('silent clients', () => {
  let echo: Upstream
  let proxy: PortcullisProcess
  before(async () => {
    echo = await startHttpEcho()
    proxy = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, routes: [route(echo.url)] })
  })
  after(async () => {
    await proxy.stop()
    await echo.close()
  })

  it('hostile: a client that connects to the cleartext listener and sends nothing is cut off', async () => {
    const started = Date.now()
    const socket = net.connect(proxy.port, '127.0.0.1')
    socket.on('error', () => {})
    const closedAfter = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 15_000)
      socket.on('close', () => {
        clearTimeout(timer)
        resolve(Date.now() - started)
      })
    })
    socket.destroy()
    assert.ok(closedAfter !== undefined, 'still open after 15 s')
  })
})
