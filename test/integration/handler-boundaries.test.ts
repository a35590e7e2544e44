/**
 * Where the request handlers draw their lines (issue 11): `100 Continue` only after the request
 * is allowed, on HTTP/1.1 and HTTP/2, against the real sign-in setup (a protected route, a real
 * OpenID provider, an echo upstream), driven with exact bytes.
 */
import assert from 'node:assert/strict'
import { connect as http2Connect } from 'node:http2'
import { connect as tlsConnect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { parseRawResponses } from '../fixtures/portcullis.js'
import type { RawResponse } from '../fixtures/portcullis.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

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
