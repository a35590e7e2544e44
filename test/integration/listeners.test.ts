/**
 * End-to-end tests of the listeners (Pomerium docs: Global settings, On every route host) and of shutdown:
 * TLS certificates from every config form, ALPN, the HTTP redirect listener, security headers,
 * header-size and slow-header limits, idle timeouts, health endpoints, and SIGTERM draining,
 * all against the built binary on loopback.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import {
  parseLogLine,
  parseRawResponses,
  rawHttp,
  request,
  startPortcullis,
} from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream } from '../fixtures/upstreams.js'
import { waitFor } from '../fixtures/wait.js'

/** How long a connection that must stay open is watched for an (unwanted) close. */
const STAYS_OPEN_WINDOW_MS = 2500

const pki = testPki()
/** Names Node's client accepts (it refuses a wildcard directly under `localhost`). */
const appCert = makeServerCert(pki.ca, ['app.localhost', 'other.localhost', 'localhost'])

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Resolves with `p`'s value, or undefined after `ms`; the timer never outlives the wait. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

function publicRoute(host: string, to: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { from: `https://${host}`, to, allow_public_unauthenticated_access: true, ...extra }
}

interface PeerInfo {
  readonly subject: string
  readonly san: string
  readonly alpn: string | false | null
}

/** Completes a TLS handshake with `servername` and reports the served certificate and ALPN. */
function peer(port: number, servername: string | undefined, alpn: string[] = ['h2', 'http/1.1']): Promise<PeerInfo> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      // peer() reports the certificate served for an SNI name (also the self-signed fallback);
      // the tests assert on its subject and SAN, so the handshake must not fail first.
      rejectUnauthorized: false,
      ALPNProtocols: alpn,
      ...(servername !== undefined ? { servername } : {}),
    })
    s.setTimeout(5000, () => {
      s.destroy()
      reject(new Error('TLS handshake timed out'))
    })
    s.once('secureConnect', () => {
      const raw = s.getPeerX509Certificate()
      const info = { subject: raw?.subject ?? '', san: raw?.subjectAltName ?? '', alpn: s.alpnProtocol }
      s.destroy()
      resolve(info)
    })
    s.once('error', reject)
  })
}

function header(res: { headers: Record<string, string | string[]> }, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/** Child processes whose parent is `ppid` (Linux /proc). */
function childPids(ppid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Fields after the parenthesised command name: state, ppid, ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(entry))
    } catch {
      // The process went away while we looked.
    }
  }
  return out
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.setTimeout(2000, () => {
      s.destroy()
      resolve('timeout')
    })
    s.once('connect', () => {
      // Accepted by the kernel; see whether the server keeps it or drops it at once.
      s.once('close', () => resolve('closed'))
      s.once('error', () => resolve('closed'))
      setTimeout(() => {
        s.destroy()
        resolve('connected')
      }, 300)
    })
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
}

void describe('TLS listener certificates', () => {
  const procs: PortcullisProcess[] = []
  let up: Upstream | undefined
  before(async () => {
    up = await startHttpEcho()
  })
  after(async () => {
    for (const p of procs) await p.stop()
    await up?.close()
  })
  const start = async (config: Record<string, unknown>): Promise<PortcullisProcess> => {
    assert.ok(up)
    const p = await startPortcullis({
      address: '127.0.0.1:0',
      log_level: 'warn',
      routes: [publicRoute('app.localhost', up.url), publicRoute('one.localhost', up.url), publicRoute('x.two.localhost', up.url)],
      ...config,
    })
    procs.push(p)
    return p
  }

  void it('serves HTTPS with certificate_file/certificate_key_file (verified by the CA)', async () => {
    const px = await start({ certificate_file: appCert.certFile, certificate_key_file: appCert.keyFile })
    assert.match(px.url, /^https:\/\//)
    const r = await request(`${px.url}/f`, { host: 'app.localhost', ca: pki.ca.certPem })
    assert.equal(r.status, 200)
    assert.equal(r.json<EchoRecord>().url, '/f')
    const info = await peer(px.port, 'app.localhost')
    assert.equal(info.subject, new X509Certificate(appCert.certPem).subject)
    // A client that sends no SNI (connecting by IP address) gets the same certificate.
    assert.equal((await peer(px.port, undefined)).subject, info.subject)
  })

  void it('serves HTTPS with inline base64 certificate/certificate_key', async () => {
    const px = await start({
      certificate: Buffer.from(appCert.certPem).toString('base64'),
      certificate_key: Buffer.from(appCert.keyPem).toString('base64'),
    })
    const r = await request(`${px.url}/inline`, { host: 'app.localhost', ca: pki.ca.certPem })
    assert.equal(r.status, 200)
    assert.match((await peer(px.port, 'app.localhost')).san, /DNS:app\.localhost/)
  })

  void it('certificates: [{cert, key}, ...] are chosen by SNI (exact and wildcard names)', async () => {
    const one = makeServerCert(pki.ca, ['one.localhost'], { commonName: 'cert-one' })
    const two = makeServerCert(pki.ca, ['*.two.localhost'], { commonName: 'cert-two' })
    const px = await start({
      certificates: [
        { cert: one.certFile, key: one.keyFile },
        { cert: two.certFile, key: two.keyFile },
      ],
    })
    const p1 = await peer(px.port, 'one.localhost')
    assert.match(p1.subject, /CN=cert-one/)
    assert.equal(p1.san, 'DNS:one.localhost')
    const p2 = await peer(px.port, 'x.two.localhost')
    assert.match(p2.subject, /CN=cert-two/)
    assert.equal(p2.san, 'DNS:*.two.localhost')
    // Both verify for their own names and serve the routes.
    const r1 = await request(`${px.url}/one`, { host: 'one.localhost', ca: pki.ca.certPem })
    assert.equal(r1.status, 200)
    const r2 = await request(`${px.url}/two`, { host: 'x.two.localhost', ca: pki.ca.certPem, http2: true })
    assert.equal(r2.status, 200)
    // A name no certificate covers still gets a certificate (the first one).
    assert.match((await peer(px.port, 'unknown.localhost')).subject, /CN=cert-one/)
    assert.match((await peer(px.port, undefined)).subject, /CN=cert-one/)
  })

  void it('without any certificate a self-signed fallback still serves TLS', async () => {
    const px = await start({})
    const info = await peer(px.port, 'app.localhost')
    assert.match(info.subject, /self-signed/i)
    assert.match((await peer(px.port, undefined)).subject, /self-signed/i)
    // Not trusted by our CA, but it works with verification off.
    await assert.rejects(request(`${px.url}/`, { host: 'app.localhost', ca: pki.ca.certPem }))
    const r = await request(`${px.url}/fallback`, { host: 'app.localhost', rejectUnauthorized: false })
    assert.equal(r.status, 200)
    assert.equal(r.json<EchoRecord>().url, '/fallback')
  })
})

void describe('TLS listener protocols, redirect listener and security headers', () => {
  let up: Upstream | undefined
  let px: PortcullisProcess | undefined
  let insecure: PortcullisProcess | undefined
  before(async () => {
    up = await startHttpEcho()
    const routes = [publicRoute('app.localhost', up.url)]
    px = await startPortcullis({
      address: '127.0.0.1:0',
      http_redirect_addr: '127.0.0.1:0',
      certificate_file: appCert.certFile,
      certificate_key_file: appCert.keyFile,
      log_level: 'warn',
      routes,
    })
    insecure = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, log_level: 'warn', routes })
  })
  after(async () => {
    await px?.stop()
    await insecure?.stop()
    await up?.close()
  })

  void it('HTTP/1.1 and HTTP/2 are both served on the TLS listener, chosen by ALPN, with the same routes', async () => {
    assert.ok(px && up)
    assert.equal((await peer(px.port, 'app.localhost', ['h2', 'http/1.1'])).alpn, 'h2')
    assert.equal((await peer(px.port, 'app.localhost', ['http/1.1'])).alpn, 'http/1.1')
    const h1 = await request(`${px.url}/proto?x=1`, { host: 'app.localhost', ca: pki.ca.certPem })
    const h2 = await request(`${px.url}/proto?x=1`, { host: 'app.localhost', ca: pki.ca.certPem, http2: true })
    assert.equal(h1.httpVersion, '1.1')
    assert.equal(h2.httpVersion, '2')
    assert.equal(h1.status, 200)
    assert.equal(h2.status, 200)
    assert.equal(h1.json<EchoRecord>().url, '/proto?x=1')
    assert.equal(h2.json<EchoRecord>().url, '/proto?x=1')
    // Unknown hosts are 404 on both protocols.
    const n1 = await request(`${px.url}/`, { host: 'other.localhost', ca: pki.ca.certPem })
    const n2 = await request(`${px.url}/`, { host: 'other.localhost', ca: pki.ca.certPem, http2: true })
    assert.deepEqual([n1.status, n2.status], [404, 404])
  })

  void it('http_redirect_addr answers 301 to https://<host><path+query> with Connection: close', async () => {
    assert.ok(px)
    const redirect = px.listeners['http_redirect']
    assert.ok(redirect, 'the redirect listener is announced')
    const port = Number(new URL(redirect).port)
    const res = parseRawResponses(
      await rawHttp(port, 'GET /some/path?a=1&b=%2F HTTP/1.1\r\nHost: app.localhost:8080\r\n\r\n'),
    )
    assert.equal(res[0]?.status, 301)
    const h = (n: string): string | undefined => res[0]?.headers.find(([k]) => k.toLowerCase() === n)?.[1]
    assert.equal(h('location'), 'https://app.localhost/some/path?a=1&b=%2F')
    assert.equal(h('connection')?.toLowerCase(), 'close')
    const viaClient = await request(`${redirect}/x`, { host: 'APP.localhost' })
    assert.equal(viaClient.status, 301)
    assert.equal(header(viaClient, 'location'), 'https://app.localhost/x')
    assert.equal(up?.requests.some((r) => r.url === '/some/path?a=1&b=%2F'), false, 'never proxied')
  })

  void it('HSTS is sent on the TLS listener (proxied and local answers) and not on insecure_server', async () => {
    assert.ok(px && insecure)
    const tlsOk = await request(`${px.url}/h`, { host: 'app.localhost', ca: pki.ca.certPem })
    // No certificate covers an unknown host (the default one is served): only the 404's headers matter here.
    const tls404 = await request(`${px.url}/h`, { host: 'nobody.localhost', rejectUnauthorized: false })
    for (const r of [tlsOk, tls404]) {
      assert.match(header(r, 'strict-transport-security') ?? '', /max-age=31536000/)
      assert.equal(header(r, 'x-frame-options'), 'SAMEORIGIN')
    }
    const plainOk = await request(`${insecure.url}/h`, { host: 'app.localhost' })
    const plain404 = await request(`${insecure.url}/h`, { host: 'nobody.localhost' })
    for (const r of [plainOk, plain404]) {
      assert.equal(header(r, 'strict-transport-security'), undefined)
      assert.equal(header(r, 'x-frame-options'), 'SAMEORIGIN')
    }
  })
})

void describe('limits and timeouts', () => {
  let big: http.Server | undefined
  let bigPort = 0
  const received: number[] = []
  let up: Upstream | undefined
  let px: PortcullisProcess | undefined
  let idle: PortcullisProcess | undefined

  before(async () => {
    // An upstream that accepts large header blocks, so only the proxy's limit is under test.
    big = http.createServer({ maxHeaderSize: 512 * 1024 }, (req, res) => {
      received.push(String(req.headers['x-big'] ?? '').length)
      res.end('ok')
    })
    await new Promise<void>((r) => big?.listen(0, '127.0.0.1', r))
    bigPort = (big.address() as AddressInfo).port
    up = await startHttpEcho()
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [publicRoute('big.localhost', `http://127.0.0.1:${bigPort}`), publicRoute('app.localhost', up.url)],
    })
    idle = await startPortcullis({
      address: '127.0.0.1:0',
      certificate_file: appCert.certFile,
      certificate_key_file: appCert.keyFile,
      timeout_idle: '1s',
      log_level: 'warn',
      routes: [publicRoute('app.localhost', up.url)],
    })
  })
  after(async () => {
    await px?.stop()
    await idle?.stop()
    await up?.close()
    big?.closeAllConnections()
    await new Promise<void>((r) => (big ? big.close(() => r()) : r()))
  })

  const withHeader = (bytes: number): string =>
    `GET /h HTTP/1.1\r\nHost: big.localhost\r\nX-Big: ${'a'.repeat(bytes)}\r\nConnection: close\r\n\r\n`

  void it('a request header block over 128 KiB is 431; about 100 KiB passes to the upstream', async () => {
    assert.ok(px)
    const ok = parseRawResponses(await rawHttp(px.port, withHeader(100 * 1024)))
    assert.equal(ok[0]?.status, 200)
    assert.deepEqual(received, [100 * 1024])
    const tooBig = parseRawResponses(await rawHttp(px.port, withHeader(129 * 1024)))
    assert.equal(tooBig[0]?.status, 431)
    // Many smaller headers add up the same way.
    const many = Array.from({ length: 140 }, (_, i) => `X-H${i}: ${'b'.repeat(1000)}`).join('\r\n')
    const tooMany = parseRawResponses(
      await rawHttp(px.port, `GET /h HTTP/1.1\r\nHost: big.localhost\r\n${many}\r\nConnection: close\r\n\r\n`),
    )
    assert.equal(tooMany[0]?.status, 431)
    assert.deepEqual(received, [100 * 1024], 'oversized requests are not forwarded')
  })

  void it('slow headers: a client trickling its header block is cut off within about 10 s', { timeout: 20_000 }, async () => {
    assert.ok(px && up)
    const before = up.requests.length
    const started = Date.now()
    const result = await new Promise<{ closedAfter: number; data: string }>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: px?.port ?? 0 })
      let data = ''
      let n = 0
      const timer = setInterval(() => {
        if (!s.destroyed) s.write(`X-Slow-${n++}: a\r\n`)
      }, 500)
      const hardStop = setTimeout(() => s.destroy(), 15_000)
      s.once('connect', () => s.write('GET /slow HTTP/1.1\r\nHost: app.localhost\r\n'))
      s.on('data', (c: Buffer) => (data += c.toString('latin1')))
      s.on('error', () => undefined)
      s.once('close', () => {
        clearInterval(timer)
        clearTimeout(hardStop)
        resolve({ closedAfter: Date.now() - started, data })
      })
    })
    assert.ok(result.closedAfter < 13_500, `cut off after ${result.closedAfter} ms`)
    assert.ok(result.closedAfter >= 9_000, `not before the 10 s limit (${result.closedAfter} ms)`)
    if (result.data !== '') assert.match(result.data, /^HTTP\/1\.1 408 /)
    assert.equal(up.requests.length, before, 'the slow request never reaches the upstream')
  })

  void it('timeout_idle closes idle keep-alive connections (HTTP/1.1 and HTTP/2)', async () => {
    assert.ok(idle && px)
    // HTTP/1.1 keep-alive over TLS: one request, then silence.
    const h1 = await new Promise<{ status: string; closedAfter: number }>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: idle?.port ?? 0, ca: pki.ca.certPem, servername: 'app.localhost', ALPNProtocols: ['http/1.1'] })
      let data = ''
      let answeredAt = 0
      const hardStop = setTimeout(() => s.destroy(), 8000)
      s.once('secureConnect', () => s.write('GET /idle HTTP/1.1\r\nHost: app.localhost\r\n\r\n'))
      s.on('data', (c: Buffer) => {
        data += c.toString('latin1')
        if (answeredAt === 0) answeredAt = Date.now()
      })
      s.on('error', reject)
      s.once('close', () => {
        clearTimeout(hardStop)
        resolve({ status: data.split('\r\n')[0] ?? '', closedAfter: Date.now() - answeredAt })
      })
    })
    assert.match(h1.status, /^HTTP\/1\.1 200 /)
    assert.ok(h1.closedAfter >= 500 && h1.closedAfter < 4000, `HTTP/1.1 idle close after ${h1.closedAfter} ms`)

    // HTTP/2: one stream, then an idle session.
    const session = http2.connect(idle.url, { ca: pki.ca.certPem, servername: 'app.localhost' })
    try {
      const closedAfter = await new Promise<number>((resolve, reject) => {
        let doneAt = 0
        const hardStop = setTimeout(() => resolve(Number.POSITIVE_INFINITY), 8000)
        session.on('error', () => undefined)
        session.once('close', () => {
          clearTimeout(hardStop)
          resolve(Date.now() - doneAt)
        })
        const stream = session.request({ ':path': '/idle2', ':authority': 'app.localhost' })
        stream.on('response', (h) => {
          if (h[':status'] !== 200) reject(new Error(`status ${String(h[':status'])}`))
        })
        stream.resume()
        stream.once('end', () => {
          doneAt = Date.now()
        })
      })
      assert.ok(closedAfter < 4000, `HTTP/2 idle session closed after ${closedAfter} ms`)
    } finally {
      session.destroy()
    }

    // Control: with the default timeout_idle (5m) the same connection stays open.
    const outcome = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: px?.port ?? 0 })
      s.once('connect', () => s.write('GET /idle HTTP/1.1\r\nHost: app.localhost\r\n\r\n'))
      s.on('data', () => undefined)
      s.on('error', () => undefined)
      s.once('close', () => resolve('closed'))
      // Proving that nothing happens: the short idle timeout above closed its connection well within this.
      setTimeout(() => {
        s.destroy()
        resolve('open')
      }, STAYS_OPEN_WINDOW_MS)
    })
    assert.equal(outcome, 'open')
  })
})

void describe('health endpoints, unknown hosts and internal paths', () => {
  let up: Upstream | undefined
  let px: PortcullisProcess | undefined
  before(async () => {
    up = await startHttpEcho()
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'info',
      routes: [publicRoute('app.localhost', up.url)],
    })
  })
  after(async () => {
    await px?.stop()
    await up?.close()
  })

  void it('/ping and /healthz answer OK on every host with GET and HEAD, 405 for POST, and are not access-logged', async () => {
    assert.ok(px && up)
    for (const path of ['/ping', '/healthz']) {
      for (const host of ['app.localhost', 'unknown.localhost', 'localhost', '127.0.0.1']) {
        const get = await request(`${px.url}${path}`, { host })
        assert.equal(get.status, 200, `${host}${path}`)
        assert.equal(get.body, 'OK\n')
        assert.match(header(get, 'content-type') ?? '', /^text\/plain/)
        const head = await request(`${px.url}${path}`, { host, method: 'HEAD' })
        assert.equal(head.status, 200)
        assert.equal(head.body, '')
        const post = await request(`${px.url}${path}`, { host, method: 'POST', body: 'x' })
        assert.equal(post.status, 405, `POST ${host}${path}`)
        assert.equal(header(post, 'allow'), 'GET, HEAD')
      }
    }
    assert.equal(up.requests.length, 0, 'health checks are never forwarded')
    // A normal request afterwards is logged; none of the health checks before it was.
    const marker = await request(`${px.url}/logged-marker`, { host: 'app.localhost' })
    assert.equal(marker.status, 200)
    await px.waitForLog((e) => e['msg'] === 'http-request' && e['path'] === '/logged-marker')
    const accessLines = px.logs.map(parseLogLine).filter((e) => e['msg'] === 'http-request')
    assert.deepEqual(
      accessLines.filter((e) => e['path'] === '/ping' || e['path'] === '/healthz'),
      [],
    )
    assert.ok(accessLines.some((e) => e['path'] === '/logged-marker' && e['response-code'] === 200))
  })

  void it('an unknown host gets a 404 HTML page carrying the request id, and is access-logged', async () => {
    assert.ok(px)
    const r = await request(`${px.url}/anything`, { host: 'nobody.localhost' })
    assert.equal(r.status, 404)
    assert.match(header(r, 'content-type') ?? '', /^text\/html/)
    const id = header(r, 'x-request-id')
    assert.match(id ?? '', /^[0-9a-f-]{36}$/)
    assert.ok(r.body.includes(id ?? '<none>'), 'the page shows the request id')
    assert.match(r.body, /404 Not Found/)
    await px.waitForLog((e) => e['msg'] === 'http-request' && e['request-id'] === id && e['response-code'] === 404)
    const json = await request(`${px.url}/anything`, { host: 'nobody.localhost', headers: { accept: 'application/json' } })
    assert.equal(json.status, 404)
    assert.equal(json.json<{ request_id: string }>().request_id, header(json, 'x-request-id'))
  })

  void it('/.pomerium/ and /.well-known/pomerium paths are never forwarded upstream', async () => {
    assert.ok(px && up)
    const before = up.requests.length
    const targets = [
      '/.pomerium',
      '/.pomerium/',
      '/.pomerium/user',
      '/.pomerium/sign_out',
      '/.pomerium/callback/?pomerium_redirect_uri=https://evil.localhost/',
      '/.well-known/pomerium',
      '/.well-known/pomerium/jwks.json',
      '/%2epomerium/user',
      '/x/../.pomerium/user',
      '//.pomerium/user',
      '/.well-known/%70omerium/jwks.json',
    ]
    for (const t of targets) {
      const res = parseRawResponses(await rawHttp(px.port, `GET ${t} HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n`))
      // Answered by Portcullis itself (discovery 200, the /.pomerium redirect, 404s), never by the app.
      assert.ok([200, 302, 404].includes(res[0]?.status ?? 0), `${t}: ${res[0]?.statusLine}`)
      if (res[0]?.status === 200) assert.match(res[0].body, /"jwks_uri"|"keys"/, t)
    }
    assert.deepEqual(up.requests.slice(before).map((r) => r.url), [])
    // Lookalikes that are not internal paths are ordinary route traffic.
    assert.equal((await request(`${px.url}/.pomeriumx`, { host: 'app.localhost' })).status, 200)
    assert.equal(up.requests.at(-1)?.url, '/.pomeriumx')
  })
})

void describe('shutdown', () => {
  let up: Upstream | undefined
  before(async () => {
    up = await startHttpEcho()
  })
  after(async () => {
    await up?.close()
  })

  void it('SIGTERM lets an in-flight slow request finish, refuses new connections and exits promptly', async () => {
    assert.ok(up)
    const px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [publicRoute('app.localhost', up.url)],
    })
    try {
      const slow = request(`${px.url}/delay/2000`, { host: 'app.localhost' })
      // Wait until the upstream has the request, so it is certainly in flight.
      const deadline = Date.now() + 5000
      while (!up.requests.some((r) => r.url === '/delay/2000') && Date.now() < deadline) await sleep(20)
      assert.ok(up.requests.some((r) => r.url === '/delay/2000'), 'slow request reached the upstream')
      const signalledAt = Date.now()
      let slowSettled = false
      void slow.then(
        () => (slowSettled = true),
        () => (slowSettled = true),
      )
      px.process.kill('SIGTERM')
      await waitFor('new connections to be refused', async () => (await connectOutcome(px.port)) === 'ECONNREFUSED', { timeoutMs: 5_000 })
      assert.equal(slowSettled, false, 'new connections are refused while draining (the request in flight is not done yet)')
      const res = await slow
      assert.equal(res.status, 200)
      assert.equal(res.json<EchoRecord>().url, '/delay/2000')
      const exit = await within(px.exited, 15_000)
      assert.ok(exit, 'the process exits within 15 s')
      assert.equal(exit.code, 0)
      assert.ok(Date.now() - signalledAt < 15_000)
    } finally {
      await px.stop()
    }
  })

  void it('SIGTERM with nothing in flight exits at once, even with an idle keep-alive connection open', async () => {
    assert.ok(up)
    const px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [publicRoute('app.localhost', up.url)],
    })
    const s = net.connect({ host: '127.0.0.1', port: px.port })
    try {
      await new Promise<void>((resolve) => {
        s.once('connect', () => s.write('GET /k HTTP/1.1\r\nHost: app.localhost\r\n\r\n'))
        s.once('data', () => resolve())
        s.on('error', () => undefined)
      })
      const t0 = Date.now()
      px.process.kill('SIGTERM')
      const exit = await within(px.exited, 5000)
      assert.ok(exit, 'exits within 5 s')
      assert.equal(exit.code, 0)
      assert.ok(Date.now() - t0 < 5000)
    } finally {
      s.destroy()
      await px.stop()
    }
  })

  void it('workers: 2 serves requests from worker processes and SIGTERM stops every process', async () => {
    assert.ok(up)
    const px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'info',
      workers: 2,
      routes: [publicRoute('app.localhost', up.url)],
    })
    try {
      const primary = px.process.pid ?? 0
      const workers = childPids(primary)
      assert.equal(workers.length, 2, `two workers under the primary ${primary}: ${workers.join(',')}`)
      for (let i = 0; i < 6; i++) {
        const r = await request(`${px.url}/w${i}`, { host: 'app.localhost' })
        assert.equal(r.status, 200)
      }
      await px.waitForLog((e) => e['msg'] === 'http-request' && e['path'] === '/w5')
      const servedBy = new Set(
        px.logs
          .map(parseLogLine)
          .filter((e) => e['msg'] === 'http-request')
          .map((e) => Number(e['pid'])),
      )
      for (const pid of servedBy) assert.ok(workers.includes(pid), `request served by worker pid ${pid}`)
      const t0 = Date.now()
      px.process.kill('SIGTERM')
      // The primary exits with 0 only after every worker has exited (supervise() waits for them).
      const exit = await within(px.exited, 15_000)
      assert.ok(exit, 'the primary exits within 15 s')
      assert.equal(exit.code, 0)
      assert.ok(Date.now() - t0 < 15_000)
      assert.ok(workers.every((p) => !alive(p)), 'no worker outlives the primary')
      const shutdownLogs = px.logs.map(parseLogLine).filter((e) => e['msg'] === 'shutting down')
      assert.deepEqual(
        new Set(shutdownLogs.map((e) => Number(e['pid']))),
        new Set(workers),
        'each worker logged its own shutdown',
      )
    } finally {
      await px.stop()
    }
  })
})
