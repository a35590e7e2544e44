/**
 * Where the request handlers draw their lines (issue 11): `100 Continue` only after the request
 * is allowed, on HTTP/1.1 and HTTP/2, against the real sign-in setup (a protected route, a real
 * OpenID provider, an echo upstream), driven with exact bytes; and the error boundary around the
 * request and upgrade handlers, shown with the test-only fault injection
 * (`PORTCULLIS_TEST_FAULT_PATH`, src/proxy/fault.ts).
 */
import assert from 'node:assert/strict'
import { connect as http2Connect } from 'node:http2'
import { connect as tlsConnect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { parseRawResponses, rawHttp, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess, RawResponse } from '../fixtures/portcullis.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { startWebSocketEcho } from '../fixtures/upstreams.js'
import type { WebSocketUpstream } from '../fixtures/upstreams.js'

const BODY = 'hello, upstream'

/**
 * POSTs `BODY` over HTTP/1.1 with `Expect: 100-continue`, sending the body only once a
 * `100 Continue` arrives, as curl does. Returns every response, interim ones included, in order.
 */
function postExpectingContinue(setup: SignInSetup, host: string, path: string, cookie?: string): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: setup.port, servername: host, ca: setup.caPem, ALPNProtocols: ['http/1.1'] })
    let text = ''
    let bodySent = false
    const timer = setTimeout(() => socket.destroy(), 10_000)
    socket.once('secureConnect', () => {
      const headers = [`Host: ${host}:${setup.port}`, `Content-Length: ${BODY.length}`, 'Content-Type: text/plain', 'Expect: 100-continue', 'Connection: close']
      if (cookie !== undefined) headers.push(`Cookie: ${cookie}`)
      socket.write(`POST ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`)
    })
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (!bodySent && /^HTTP\/1\.1 100 [^\r\n]*\r\n\r\n/.test(text)) {
        bodySent = true
        socket.write(BODY)
      }
    })
    socket.once('error', reject)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(parseRawResponses(text))
    })
  })
}

/** The same over HTTP/2: whether the stream saw `100 Continue`, and the final status. */
function postExpectingContinueH2(setup: SignInSetup, host: string, path: string, cookie?: string): Promise<{ continued: boolean; status: number }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://127.0.0.1:${setup.port}`, { servername: host, ca: setup.caPem })
    session.once('error', reject)
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      ':authority': `${host}:${setup.port}`,
      'content-length': String(BODY.length),
      expect: '100-continue',
      ...(cookie !== undefined ? { cookie } : {}),
    })
    let continued = false
    let status = 0
    stream.once('continue', () => {
      continued = true
      stream.end(BODY)
    })
    stream.once('response', (headers) => {
      status = Number(headers[':status'])
    })
    stream.resume()
    stream.once('error', reject)
    stream.once('close', () => {
      session.close()
      resolve({ continued, status })
    })
  })
}

void describe('Expect: 100-continue is answered only after authorisation', () => {
  let setup: SignInSetup
  let cookie: string
  before(async () => {
    setup = await startSignInSetup()
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    cookie = jar.header(new URL(`${setup.app}/`)) ?? ''
    assert.notEqual(cookie, '', 'signed in')
  })
  after(async () => {
    await setup.close()
  })

  void it('HTTP/1.1 without a session: the sign-in redirect, never 100 Continue, nothing upstream', async () => {
    const before = setup.upstream.requests.length
    const res = await postExpectingContinue(setup, 'app.localhost', '/upload')
    assert.deepEqual(res.map((r) => r.status), [302], res.map((r) => r.statusLine).join(' | '))
    assert.match(res[0]?.headers.find(([k]) => k.toLowerCase() === 'location')?.[1] ?? '', /authn\.localhost/)
    assert.equal(setup.upstream.requests.length, before)
  })

  void it('HTTP/1.1 with a session: 100 Continue, then the upstream answer with the whole body', async () => {
    const res = await postExpectingContinue(setup, 'app.localhost', '/upload', cookie)
    assert.deepEqual(res.map((r) => r.status), [100, 200], res.map((r) => r.statusLine).join(' | '))
    const rec = setup.upstream.requests.at(-1)
    assert.equal(rec?.url, '/upload')
    assert.equal(rec?.bodyLength, BODY.length)
  })

  void it('HTTP/1.1 on a public route: 100 Continue, then the answer', async () => {
    const res = await postExpectingContinue(setup, 'public.localhost', '/p')
    assert.deepEqual(res.map((r) => r.status), [100, 200])
  })

  void it('HTTP/2 without a session: the sign-in redirect, never 100 Continue', async () => {
    const before = setup.upstream.requests.length
    assert.deepEqual(await postExpectingContinueH2(setup, 'app.localhost', '/upload'), { continued: false, status: 302 })
    assert.equal(setup.upstream.requests.length, before)
  })

  void it('HTTP/2 with a session: 100 Continue, then the upstream answer', async () => {
    assert.deepEqual(await postExpectingContinueH2(setup, 'app.localhost', '/upload2', cookie), { continued: true, status: 200 })
    assert.equal(setup.upstream.requests.at(-1)?.bodyLength, BODY.length)
  })
})

void describe('error boundary: a failing handler costs one request a 500, not the process', () => {
  const HOST = 'app.localhost'
  let px: PortcullisProcess | undefined
  let ws: WebSocketUpstream | undefined
  before(async () => {
    ws = await startWebSocketEcho()
    px = await startPortcullis(
      {
        address: '127.0.0.1:0',
        insecure_server: true,
        http_redirect_addr: '127.0.0.1:0',
        log_level: 'warn',
        routes: [{ from: `https://${HOST}`, to: ws.url, allow_public_unauthenticated_access: true, allow_websockets: true }],
      },
      { env: { PORTCULLIS_TEST_FAULT_PATH: '/__fault' } },
    )
  })
  after(async () => {
    await px?.stop()
    await ws?.close()
  })

  const header = (r: RawResponse | undefined, name: string): string | undefined => r?.headers.find(([k]) => k.toLowerCase() === name)?.[1]
  const upgrade = (path: string): string =>
    `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`

  /** The 500 carries its request id (header and page), and the error is logged under that id. */
  async function assertAnswered500(res: RawResponse | undefined, what: string): Promise<void> {
    assert.ok(px)
    assert.equal(res?.status, 500, `${what}: ${res?.statusLine}`)
    const id = header(res, 'x-request-id') ?? ''
    assert.match(id, /^[0-9a-f-]{36}$/, what)
    assert.ok(res?.body.includes(id), `${what}: the page names the request id`)
    await px.waitForLog((e) => e['requestId'] === id && /handling failed/.test(String(e['msg'])) && e['level'] === 'error')
  }

  void it('a synchronous throw and an async rejection in a request each get a 500; the next request on the same connection is served', async () => {
    assert.ok(px && ws)
    for (const path of ['/__fault/throw', '/__fault/reject']) {
      const text = await rawHttp(px.port, `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /after HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
      const res = parseRawResponses(text)
      assert.deepEqual(res.map((r) => r.status), [500, 200], `${path}: ${res.map((r) => r.statusLine).join(' | ')}`)
      await assertAnswered500(res[0], path)
      assert.equal(ws.requests.at(-1)?.url, '/after')
    }
    assert.equal(ws.requests.filter((r) => r.url.startsWith('/__fault')).length, 0, 'a failed request is never forwarded')
  })

  void it('the JSON form of the 500 for clients that ask for it', async () => {
    assert.ok(px)
    const res = parseRawResponses(await rawHttp(px.port, `GET /__fault/reject HTTP/1.1\r\nHost: ${HOST}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`))
    assert.equal(res[0]?.status, 500)
    const body = JSON.parse(res[0]?.body ?? '{}') as { error?: string; request_id?: string }
    assert.equal(body.request_id, header(res[0], 'x-request-id'))
  })

  void it('a throw and an async rejection in an upgrade each get a 500; upgrades still work afterwards', async () => {
    assert.ok(px && ws)
    for (const path of ['/__fault/throw', '/__fault/reject']) {
      const res = parseRawResponses(await rawHttp(px.port, upgrade(path)))
      await assertAnswered500(res[0], `upgrade ${path}`)
    }
    const ok = parseRawResponses(await rawHttp(px.port, upgrade('/ws')))
    assert.equal(ok[0]?.status, 101, ok[0]?.statusLine)
    assert.equal(ws.upgrades.at(-1)?.url, '/ws')
    assert.equal(ws.upgrades.filter((r) => r.url.startsWith('/__fault')).length, 0)
  })

  void it('HTTP/2: a throw and an async rejection each cost their stream a 500; the next stream of the session is served', async () => {
    assert.ok(px && ws)
    const session = http2Connect(`http://127.0.0.1:${px.port}`)
    const get = (path: string): Promise<RawResponse> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': path, ':authority': HOST })
        let status = 0
        const headers: [string, string][] = []
        let body = ''
        stream.once('response', (h) => {
          status = Number(h[':status'])
          for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) headers.push([k, String(v)])
        })
        stream.setEncoding('utf8')
        stream.on('data', (chunk: string) => (body += chunk))
        stream.once('end', () => resolve({ status, statusLine: `HTTP/2 ${status}`, headers, body }))
        stream.once('error', reject)
      })
    try {
      for (const path of ['/__fault/throw', '/__fault/reject']) await assertAnswered500(await get(path), `HTTP/2 ${path}`)
      assert.equal((await get('/after-h2')).status, 200)
      assert.equal(ws.requests.at(-1)?.url, '/after-h2')
    } finally {
      session.close()
    }
  })

  void it('the http_redirect listener: a throw and an async rejection each get a 500; it goes on redirecting', async () => {
    assert.ok(px)
    const port = Number(new URL(px.listeners['http_redirect'] ?? '').port)
    for (const path of ['/__fault/throw', '/__fault/reject']) {
      const res = parseRawResponses(await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`))
      await assertAnswered500(res[0], `http_redirect ${path}`)
    }
    const ok = parseRawResponses(await rawHttp(port, `GET /x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`))
    assert.equal(ok[0]?.status, 301)
    assert.equal(header(ok[0], 'location'), `https://${HOST}/x`)
  })

  void it('the process is still the one that started, and says why faults happen', async () => {
    assert.ok(px)
    assert.equal(px.process.exitCode, null)
    await px.waitForLog((e) => /PORTCULLIS_TEST_FAULT_PATH is set/.test(String(e['msg'])))
    const res = parseRawResponses(await rawHttp(px.port, `GET /still-here HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`))
    assert.equal(res[0]?.status, 200)
  })
})
