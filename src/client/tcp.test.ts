/**
 * The tunnel client against a stand-in server on loopback (test-helpers.ts): the CONNECT relay,
 * the sign-in on a 3xx, the shared sign-in, what 503 and 403 do to the cached token, and
 * `--listen -` through the real command line.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { testPki } from '../../test/fixtures/certs.js'
import { startTunnelClient, type ClientIo } from './cli.js'
import { defaultJwtCacheDir, JwtCache, jwtCacheKey } from './jwt-cache.js'
import type { TcpListener } from './tcp.js'
import { fakeJwt, followSignIn, startFakeServer, type FakeServer } from './test-helpers.js'

const roots: string[] = []
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

interface Harness {
  readonly io: ClientIo
  readonly stderr: () => string
  readonly cache: JwtCache
  readonly browserVisits: () => number
}

/** A client environment: a fresh cache directory, captured stderr, the in-process "browser". */
function harness(): Harness {
  const root = mkdtempSync(join(tmpdir(), 'portcullis-client-'))
  roots.push(root)
  const env = { XDG_CACHE_HOME: root }
  let stderr = ''
  const err = new PassThrough()
  err.on('data', (c: Buffer) => (stderr += c.toString()))
  let visits = 0
  const io: ClientIo = {
    stdin: new PassThrough(),
    stdout: new PassThrough(),
    stderr: err,
    env,
    home: root,
    browser: async (url) => {
      visits++
      await followSignIn(url)
    },
    signInTimeoutMs: 20_000,
  }
  return { io, stderr: () => stderr, cache: new JwtCache(defaultJwtCacheDir(env, root)), browserVisits: () => visits }
}

function keyOf(server: FakeServer): string {
  return jwtCacheKey(`127.0.0.1:${server.port}`, false)
}

async function tcpClient(server: FakeServer, h: Harness, dest = 'db.example.com:5432'): Promise<TcpListener> {
  return (await startTunnelClient('tcp', [dest, '--pomerium-url', server.url], h.io))
}

/** Connects to the client, sends `data`, half-closes, and collects everything until the other side's FIN. */
function roundTrip(port: number, data: Buffer): Promise<{ received: Buffer; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => resolve({ received: Buffer.concat(chunks), socket }))
    socket.end(data)
  })
}

/** Connects and resolves once the client closes the connection (a refused tunnel). */
function refusedConnection(port: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => undefined)
    socket.on('close', () => resolve(Buffer.concat(chunks)))
  })
}

test('a 200 tunnel relays bytes exactly both ways, keeps bytes that came with the head, and passes a half-close through', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  h.cache.set(keyOf(server), server.token)
  server.early = Buffer.from('early bytes|')
  const client = await tcpClient(server, h)
  t.after(() => client.close())
  assert.match(h.stderr(), new RegExp(`listening on 127\\.0\\.0\\.1:${client.port}`))

  const payload = randomBytes(3 * 1024 * 1024 + 17)
  const { received } = await roundTrip(client.port, payload)
  // The server echoes only after it saw the client's FIN: the half-close went through, and the
  // client still read the answer afterwards.
  assert.equal(received.length, server.early.length + payload.length)
  assert.ok(received.subarray(0, server.early.length).equals(server.early))
  assert.ok(received.subarray(server.early.length).equals(payload), 'byte-exact')
  const seen = server.tunnels[0]
  assert.equal(seen?.method, 'CONNECT')
  assert.equal(seen?.url, 'db.example.com:5432')
  assert.equal(seen?.headers.host, 'db.example.com:5432')
  assert.equal(seen?.headers.authorization, `Pomerium ${server.token}`)
  assert.equal(server.logins(), 0, 'a cached token needs no sign-in')
})

test('a 302 signs in through the login endpoint and the loopback listener, then retries once with the token', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  const client = await tcpClient(server, h)
  t.after(() => client.close())

  const { received } = await roundTrip(client.port, Buffer.from('ping'))
  assert.equal(received.toString(), 'ping')
  assert.equal(server.logins(), 1)
  assert.equal(h.browserVisits(), 1)
  assert.equal(server.tunnels.length, 2)
  assert.equal(server.tunnels[0]?.headers.authorization, undefined, 'first try without a token')
  assert.equal(server.tunnels[1]?.headers.authorization, `Pomerium ${server.token}`)
  assert.equal(h.cache.get(keyOf(server)), server.token, 'the token is cached for the server')
  assert.match(h.stderr(), /Your browser has been opened to visit:\s+http:\/\/127\.0\.0\.1:\d+\/fake-idp\?redirect=/)

  // A stale cached token gets the same treatment: replaced by the new sign-in's.
  server.token = fakeJwt('alice-again')
  const again = await roundTrip(client.port, Buffer.from('pong'))
  assert.equal(again.received.toString(), 'pong')
  assert.equal(server.logins(), 2)
  assert.equal(h.cache.get(keyOf(server)), server.token)
})

test('concurrent connections that need a sign-in share one', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  const client = await tcpClient(server, h)
  t.after(() => client.close())
  const results = await Promise.all(Array.from({ length: 4 }, (_, i) => roundTrip(client.port, Buffer.from(`conn ${i}`))))
  assert.deepEqual(
    results.map((r) => r.received.toString()),
    ['conn 0', 'conn 1', 'conn 2', 'conn 3'],
  )
  assert.equal(server.logins(), 1, 'one sign-in for all')
  assert.equal(h.browserVisits(), 1)
})

test('a 503 is an error that keeps the cached token; a 403 is an error that forgets it', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  h.cache.set(keyOf(server), server.token)
  const client = await tcpClient(server, h)
  t.after(() => client.close())

  server.status = () => 503
  assert.equal((await refusedConnection(client.port)).length, 0, 'nothing relayed')
  assert.match(h.stderr(), /refused the tcp tunnel to db\.example\.com:5432: 503 503 from the fake server/)
  assert.doesNotMatch(h.stderr(), /second line/, 'the body\'s first line only')
  assert.equal(h.cache.get(keyOf(server)), server.token, '503: token kept')

  server.status = () => 403
  await refusedConnection(client.port)
  assert.match(h.stderr(), /: 403 403 from the fake server/)
  assert.equal(h.cache.get(keyOf(server)), undefined, '403: token forgotten')
  assert.equal(server.logins(), 0)
})

test('the loopback listener answers 400 to requests without pomerium_jwt and keeps waiting', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  const statuses: number[] = []
  const io: ClientIo = {
    ...h.io,
    browser: async (url) => {
      const res = await fetch(url, { redirect: 'manual' })
      const loopback = new URL(res.headers.get('location') ?? '')
      for (const bad of ['/', '/?pomerium_jwt=', '/?pomerium_jwt=not-a-jwt', '/favicon.ico']) {
        const r = await fetch(new URL(bad, loopback))
        statuses.push(r.status)
        await r.text()
      }
      const done = await fetch(loopback)
      statuses.push(done.status)
      assert.match(await done.text(), /you may close this window/)
    },
  }
  const client = (await startTunnelClient('tcp', ['db.example.com:5432', '--pomerium-url', server.url], io))
  t.after(() => client.close())
  const { received } = await roundTrip(client.port, Buffer.from('x'))
  assert.equal(received.toString(), 'x')
  assert.deepEqual(statuses, [400, 400, 400, 400, 200])
})

test('--listen - relays stdin and stdout (OpenSSH ProxyCommand), through the real command line', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  h.cache.set(keyOf(server), server.token)
  const main = fileURLToPath(new URL('../cmd/main.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'tcp', '--listen', '-', '--pomerium-url', server.url, 'ssh.example.com:22'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', XDG_CACHE_HOME: h.io.env['XDG_CACHE_HOME'] ?? '' },
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  t.after(() => clearTimeout(timer))
  const out: Buffer[] = []
  let err = ''
  child.stdout.on('data', (c: Buffer) => out.push(c))
  child.stderr.on('data', (c: Buffer) => (err += c.toString()))
  const payload = randomBytes(200_000)
  child.stdin.end(payload)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  assert.equal(code, 0, err)
  assert.ok(Buffer.concat(out).equals(payload), 'stdout carries the tunnel, byte-exact')
  assert.equal(server.tunnels[0]?.url, 'ssh.example.com:22')
})

test('over TLS: verified against --alternate-ca-path, with a client certificate, half-close included; an unknown CA is refused unless --disable-tls-verification', async (t) => {
  const pki = testPki()
  const server = await startFakeServer({ cert: pki.server.certPem, key: pki.server.keyPem, clientCa: pki.ca.certPem })
  t.after(() => server.close())
  const h = harness()
  h.cache.set(jwtCacheKey(`localhost:${server.port}`, true), server.token)
  const mtls = ['--client-cert', pki.client.certFile, '--client-key', pki.client.keyFile]
  const client = (await startTunnelClient('tcp', ['db.example.com:5432', '--pomerium-url', server.url, '--alternate-ca-path', pki.ca.certFile, ...mtls], h.io))
  t.after(() => client.close())
  const payload = randomBytes(512 * 1024)
  const { received } = await roundTrip(client.port, payload)
  assert.ok(received.equals(payload), 'byte-exact through TLS, after the half-close')
  assert.equal(server.tunnels[0]?.clientCn, 'test-client')

  // Without the CA the server's certificate is not trusted: nothing reaches the server.
  const strict = (await startTunnelClient('tcp', ['db.example.com:5432', '--pomerium-url', server.url, ...mtls], h.io))
  t.after(() => strict.close())
  await refusedConnection(strict.port)
  assert.match(h.stderr(), /cannot reach https:\/\/localhost:\d+: .*(self-signed|unable to verify|issuer)/i)
  assert.equal(server.tunnels.length, 1)
  const lax = (await startTunnelClient('tcp', ['db.example.com:5432', '--pomerium-url', server.url, '--disable-tls-verification', ...mtls], h.io))
  t.after(() => lax.close())
  assert.equal((await roundTrip(lax.port, Buffer.from('lax'))).received.toString(), 'lax')
})
