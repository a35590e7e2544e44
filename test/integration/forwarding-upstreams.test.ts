/**
 * Forwarding integration tests: upstream schemes (http, https, h2c, gRPC over h2c behind a TLS
 * listener), upstream TLS settings (Pomerium docs: Upstream TLS), HSTS on TLS listeners, and upgrades
 * (`allow_websockets`, `allow_spdy`, `allow_upgrades`). Hosts on the TLS listener live under
 * app.localhost because TLS clients do not accept `*.localhost` (a wildcard over one label).
 */
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { WebSocket } from 'ws'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import { parseRawResponses, rawHttp, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import {
  grpcClient,
  startGrpcEcho,
  startH2cEcho,
  startHttpEcho,
  startHttpsEcho,
  startWebSocketEcho,
} from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream, WebSocketUpstream } from '../fixtures/upstreams.js'
import { startNamedUpstream, startRawUpgradeUpstream } from './forwarding-helpers.js'
import type { NamedUpstream, RawUpgradeUpstream } from './forwarding-helpers.js'

const PUBLIC = { allow_public_unauthenticated_access: true }
const b64 = (pem: string): string => Buffer.from(pem).toString('base64')

void describe('forwarding: upstream schemes and upstream TLS (TLS listener)', () => {
  const pki = testPki()
  let px: PortcullisProcess
  let plain: Upstream
  let h2c: Upstream
  let grpcUp: Awaited<ReturnType<typeof startGrpcEcho>>
  let trusted: Upstream
  let untrusted: Upstream
  let named: Upstream
  let mtls: Upstream
  let hop: NamedUpstream

  const get = (host: string, path = '/'): ReturnType<typeof request> =>
    request(`${px.url}${path}`, { host, ca: pki.ca.certPem })

  before(async () => {
    plain = await startHttpEcho()
    h2c = await startH2cEcho()
    grpcUp = await startGrpcEcho()
    trusted = await startHttpsEcho()
    untrusted = await startHttpsEcho({ cert: pki.untrustedServer })
    named = await startHttpsEcho({ cert: makeServerCert(pki.ca, ['upstream.internal']) })
    mtls = await startHttpsEcho({ requireClientCertFrom: pki.ca })
    hop = await startNamedUpstream('hop')
    px = await startPortcullis({
      address: '127.0.0.1:0',
      certificate_file: pki.server.certFile,
      certificate_key_file: pki.server.keyFile,
      log_level: 'warn',
      routes: [
        { from: 'https://http.app.localhost', to: plain.url, ...PUBLIC },
        { from: 'https://hop.app.localhost', to: hop.url, ...PUBLIC },
        { from: 'https://h2c.app.localhost', to: h2c.url.replace(/^http:/, 'h2c:'), ...PUBLIC },
        { from: 'https://app.localhost', to: `h2c://${grpcUp.target}`, ...PUBLIC },
        { from: 'https://ca.app.localhost', to: trusted.url, tls_custom_ca: b64(pki.ca.certPem), ...PUBLIC },
        { from: 'https://ca-file.app.localhost', to: trusted.url, tls_custom_ca_file: pki.ca.certFile, ...PUBLIC },
        { from: 'https://verify.app.localhost', to: trusted.url, ...PUBLIC },
        { from: 'https://untrusted.app.localhost', to: untrusted.url, tls_custom_ca: b64(pki.ca.certPem), ...PUBLIC },
        { from: 'https://skip.app.localhost', to: untrusted.url, tls_skip_verify: true, ...PUBLIC },
        {
          from: 'https://sni.app.localhost',
          to: named.url,
          tls_upstream_server_name: 'upstream.internal',
          tls_custom_ca: b64(pki.ca.certPem),
          ...PUBLIC,
        },
        {
          from: 'https://sni-alias.app.localhost',
          to: named.url,
          tls_server_name: 'upstream.internal',
          tls_custom_ca: b64(pki.ca.certPem),
          ...PUBLIC,
        },
        { from: 'https://sni-missing.app.localhost', to: named.url, tls_custom_ca: b64(pki.ca.certPem), ...PUBLIC },
        {
          from: 'https://mtls.app.localhost',
          to: mtls.url,
          tls_custom_ca: b64(pki.ca.certPem),
          tls_client_cert: b64(pki.client.certPem),
          tls_client_key: b64(pki.client.keyPem),
          ...PUBLIC,
        },
        {
          from: 'https://mtls-file.app.localhost',
          to: mtls.url,
          tls_custom_ca_file: pki.ca.certFile,
          tls_client_cert_file: pki.client.certFile,
          tls_client_key_file: pki.client.keyFile,
          ...PUBLIC,
        },
        { from: 'https://mtls-none.app.localhost', to: mtls.url, tls_custom_ca: b64(pki.ca.certPem), ...PUBLIC },
      ],
    })
  })
  after(async () => {
    await px?.stop()
    for (const up of [plain, h2c, grpcUp, trusted, untrusted, named, mtls, hop]) await up?.close()
  })

  void it('serves HTTPS with HSTS and the other security headers; forwards to an http upstream', async () => {
    assert.match(px.url, /^https:/)
    const r = await get('http.app.localhost', '/x')
    assert.equal(r.status, 200)
    assert.equal(r.json<EchoRecord>().url, '/x')
    assert.equal(r.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains; preload')
    assert.equal(r.headers['x-frame-options'], 'SAMEORIGIN')
    // X-Forwarded-Proto reflects the TLS listener.
    assert.equal(r.json<EchoRecord>().headers['x-forwarded-proto'], 'https')
  })

  void it('HTTP/2 clients are forwarded to HTTP/1.1 upstreams, bodies and hop-by-hop-free headers included', async () => {
    const r = await request(`${px.url}/h2-in?x=1`, {
      host: 'http.app.localhost',
      ca: pki.ca.certPem,
      http2: true,
      method: 'POST',
      body: 'from h2',
    })
    assert.equal(r.httpVersion, '2')
    assert.equal(r.status, 200)
    const e = r.json<EchoRecord>()
    assert.equal(e.httpVersion, '1.1')
    assert.equal(e.url, '/h2-in?x=1')
    assert.equal(e.bodyLength, 7)
    assert.equal(e.headers['x-forwarded-host'], 'http.app.localhost')
    // An HTTP/1.1 upstream's connection-specific headers must not break the HTTP/2 answer.
    const h = await request(`${px.url}/hop`, { host: 'hop.app.localhost', ca: pki.ca.certPem, http2: true })
    assert.equal(h.status, 200)
    assert.equal(h.body, 'hop')
    assert.equal(h.headers['x-resp-hop'], undefined)
    assert.equal(h.headers['x-normal'], 'kept')
  })

  void it('forwards to an h2c upstream over cleartext HTTP/2, with request bodies', async () => {
    const r = await request(`${px.url}/h2c-path?a=1`, {
      host: 'h2c.app.localhost',
      ca: pki.ca.certPem,
      method: 'POST',
      body: 'hello h2c',
    })
    assert.equal(r.status, 200)
    const e = r.json<EchoRecord>()
    assert.equal(e.httpVersion, '2.0')
    assert.equal(e.url, '/h2c-path?a=1')
    assert.equal(e.bodyLength, 9)
    assert.equal(e.headers[':authority'], `127.0.0.1:${h2c.port}`)
  })

  void it('gRPC unary and server-streaming calls work through an h2c route (client speaks h2 over TLS)', async () => {
    const client = grpcClient(px.url, { ca: pki.ca.certPem, serverName: 'app.localhost' })
    try {
      const r = await client.say('hello', { 'x-test': 'grpc' })
      assert.equal(r.text, 'hello')
      assert.equal(r.metadata['x-test'], 'grpc')
      assert.equal(r.metadata['x-forwarded-host'], 'app.localhost')
      const stream = await client.count('n', 25)
      assert.equal(stream.length, 25)
      assert.deepEqual(
        stream.slice(0, 3).map((m) => m.text),
        ['n-0', 'n-1', 'n-2'],
      )
      assert.equal(stream[24]?.text, 'n-24')
      assert.deepEqual(
        grpcUp.requests.map((c) => c.method),
        ['Say', 'Count'],
      )
    } finally {
      client.close()
    }
  })

  void it('verifies an https upstream against tls_custom_ca (inline base64 PEM) and tls_custom_ca_file', async () => {
    for (const host of ['ca.app.localhost', 'ca-file.app.localhost']) {
      const r = await get(host)
      assert.equal(r.status, 200, `${host}: ${r.body}`)
      assert.equal(r.json<EchoRecord>().tls?.authorized, false) // no client cert on this upstream
    }
  })

  void it('verification is on by default: an untrusted upstream certificate gives 503', async () => {
    assert.equal((await get('verify.app.localhost')).status, 503)
    assert.equal((await get('untrusted.app.localhost')).status, 503)
  })

  void it('tls_skip_verify accepts an untrusted upstream certificate', async () => {
    const r = await get('skip.app.localhost', '/skipped')
    assert.equal(r.status, 200)
    assert.equal(r.json<EchoRecord>().url, '/skipped')
  })

  void it('tls_upstream_server_name (and the tls_server_name alias) sets SNI and the expected name', async () => {
    for (const host of ['sni.app.localhost', 'sni-alias.app.localhost']) {
      const r = await get(host)
      assert.equal(r.status, 200, `${host}: ${r.body}`)
      assert.equal(r.json<EchoRecord>().tls?.servername, 'upstream.internal')
    }
    // Without it the certificate does not match 127.0.0.1.
    assert.equal((await get('sni-missing.app.localhost')).status, 503)
  })

  void it('tls_client_cert/key (inline and _file) authenticate to an upstream requiring client certificates', async () => {
    for (const host of ['mtls.app.localhost', 'mtls-file.app.localhost']) {
      const r = await get(host)
      assert.equal(r.status, 200, `${host}: ${r.body}`)
      assert.equal(r.json<EchoRecord>().tls?.clientCertCN, 'test-client')
    }
    const none = await get('mtls-none.app.localhost')
    assert.ok(none.status === 502 || none.status === 503, `without a client cert: ${none.status}`)
  })
})

void describe('forwarding: upgrades', () => {
  let px: PortcullisProcess
  let ws: WebSocketUpstream
  let raw: RawUpgradeUpstream

  before(async () => {
    ws = await startWebSocketEcho()
    raw = await startRawUpgradeUpstream()
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [
        { from: 'https://ws.localhost', to: ws.url, allow_websockets: true, ...PUBLIC },
        { from: 'https://nows.localhost', to: ws.url, ...PUBLIC },
        { from: 'https://spdy.localhost', to: raw.url, allow_spdy: true, ...PUBLIC },
        { from: 'https://custom.localhost', to: raw.url, allow_upgrades: ['x-custom-proto'], ...PUBLIC },
        { from: 'https://noupgrade.localhost', to: raw.url, ...PUBLIC },
      ],
    })
  })
  after(async () => {
    await px?.stop()
    await ws?.close()
    await raw?.close()
  })

  const wsUrl = (): string => px.url.replace(/^http:/, 'ws:')

  void it('allow_websockets: the upgrade is forwarded (101) and messages echo both ways', async () => {
    const sock = new WebSocket(`${wsUrl()}/chat?room=1`, { headers: { host: 'ws.localhost' } })
    try {
      const replies = await new Promise<string[]>((resolve, reject) => {
        const got: string[] = []
        sock.once('open', () => {
          sock.send('one')
          sock.send('two')
        })
        sock.on('message', (d: Buffer) => {
          got.push(d.toString())
          if (got.length === 2) resolve(got)
        })
        sock.once('error', reject)
        sock.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)))
      })
      assert.deepEqual(replies, ['one', 'two'])
      const up = ws.upgrades.at(-1)
      assert.equal(up?.url, '/chat?room=1')
      assert.equal(up?.headers['host'], `127.0.0.1:${ws.port}`)
    } finally {
      sock.terminate()
    }
  })

  void it('a WebSocket upgrade on a route without allow_websockets gets 403 and never reaches the upstream', async () => {
    const before = ws.upgrades.length
    const status = await new Promise<number>((resolve, reject) => {
      const sock = new WebSocket(`${wsUrl()}/chat`, { headers: { host: 'nows.localhost' } })
      sock.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0)
        sock.terminate()
      })
      sock.once('open', () => {
        sock.terminate()
        reject(new Error('upgrade was allowed'))
      })
      sock.once('error', () => undefined)
    })
    assert.equal(status, 403)
    assert.equal(ws.upgrades.length, before)
  })

  /** Sends an upgrade request and one payload line after the 101; returns what came back. */
  const upgrade = async (host: string, token: string): Promise<{ status: number; echoed: string }> =>
    new Promise((resolve, reject) => {
      const sock = net.connect(px.port, '127.0.0.1')
      let buf = ''
      let sentPayload = false
      const timer = setTimeout(() => {
        sock.destroy()
        reject(new Error(`no complete answer: ${JSON.stringify(buf)}`))
      }, 5000)
      sock.setEncoding('latin1')
      sock.once('connect', () =>
        sock.write(`GET /up HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: ${token}\r\n\r\n`),
      )
      sock.on('data', (chunk: string) => {
        buf += chunk
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? 0)
        if (status !== 101) {
          clearTimeout(timer)
          sock.destroy()
          resolve({ status, echoed: '' })
          return
        }
        if (!sentPayload) {
          sentPayload = true
          sock.write('payload-through-tunnel\n')
        }
        const rest = buf.slice(end + 4)
        if (rest.includes('\n')) {
          clearTimeout(timer)
          sock.destroy()
          resolve({ status, echoed: rest })
        }
      })
      sock.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
    })

  void it('allow_spdy forwards an SPDY/3.1 upgrade; other routes refuse it with 403', async () => {
    const ok = await upgrade('spdy.localhost', 'SPDY/3.1')
    assert.equal(ok.status, 101)
    assert.equal(ok.echoed, 'payload-through-tunnel\n')
    assert.equal(raw.upgrades.at(-1), 'SPDY/3.1')
    assert.equal((await upgrade('noupgrade.localhost', 'SPDY/3.1')).status, 403)
    // allow_spdy does not open the route to other upgrade types.
    assert.equal((await upgrade('spdy.localhost', 'websocket')).status, 403)
  })

  void it('allow_upgrades forwards the listed upgrade types only', async () => {
    const before = raw.upgrades.length
    const ok = await upgrade('custom.localhost', 'x-custom-proto')
    assert.equal(ok.status, 101)
    assert.equal(ok.echoed, 'payload-through-tunnel\n')
    assert.equal((await upgrade('custom.localhost', 'SPDY/3.1')).status, 403)
    assert.equal((await upgrade('noupgrade.localhost', 'x-custom-proto')).status, 403)
    assert.equal(raw.upgrades.length, before + 1)
  })

  void it('a refused upgrade answer carries the request id', async () => {
    const res = parseRawResponses(
      await rawHttp(px.port, 'GET / HTTP/1.1\r\nHost: nows.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
    )[0]
    assert.equal(res?.status, 403)
    const id = res?.headers.find(([k]) => k.toLowerCase() === 'x-request-id')?.[1] ?? ''
    assert.ok(id !== '' && res?.body.includes(id), JSON.stringify(res))
  })
})
