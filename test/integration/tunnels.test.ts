/**
 * TCP tunnels on the main listener (docs/tunnels.md): HTTP/1.1 and HTTP/2 CONNECT to
 * `tcp+https` routes, decided by the route's policy before a single byte is relayed, with the
 * token a tunnel client gets from `/.pomerium/api/v1/login` on Portcullis' own address.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { connect as http2Connect } from 'node:http2'
import { connect as netConnect, createServer as createNetServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { ConnectionOptions, TLSSocket } from 'node:tls'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { request } from 'undici'
import { parse, stringify } from 'yaml'
import { loginWithForm } from '../fixtures/oidc-provider.js'
import { parseLogLine } from '../fixtures/portcullis.js'
import { freePort, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { waitFor } from '../fixtures/wait.js'
import { startUdpEcho } from '../fixtures/udp.js'
import type { UdpEcho } from '../fixtures/udp.js'
import { CapsuleParser, decodeDatagram, encodeCapsule, encodeDatagram } from '../../src/shared/capsule.js'

/** A TCP server that echoes, answers `bye` to the client's FIN and then finishes its side. */
interface Echo {
  readonly port: number
  readonly server: Server
  /** Every byte any connection received. */
  received: Buffer
  connections: number
  close(): Promise<void>
}

async function startEcho(): Promise<Echo> {
  const state: { received: Buffer; connections: number } = { received: Buffer.alloc(0), connections: 0 }
  const sockets = new Set<Socket>()
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    state.connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.on('data', (chunk: Buffer) => {
      state.received = Buffer.concat([state.received, chunk])
      socket.write(chunk)
    })
    // Half-close: the client finished sending; this side can still answer.
    socket.on('end', () => socket.end('bye'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    server,
    get received() {
      return state.received
    },
    set received(v: Buffer) {
      state.received = v
    },
    get connections() {
      return state.connections
    },
    set connections(v: number) {
      state.connections = v
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

let setup: SignInSetup
let echo: Echo
/** The pool route's live upstream: its own server, so health probes do not count as connections to `echo`. */
let poolEcho: Echo
let udpEcho: UdpEcho
let deadPort: number
/** A token from the login on Portcullis' address, for alice (allowed) and bob (not on the admins route). */
let aliceJwt: string
let bobJwt: string

async function loginOnAddress(email: string, password: string): Promise<string> {
  const base = `https://127.0.0.1:${setup.port}`
  const res = await request(`${base}/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`, { dispatcher: setup.dispatcher })
  const signInUrl = await res.body.text()
  assert.equal(res.statusCode, 200, signInUrl)
  assert.equal(new URL(signInUrl).searchParams.get('pomerium_callback_uri'), `${base}/.pomerium/callback/`)
  const r = await loginWithForm(signInUrl, email, password, { dispatcher: setup.dispatcher, stopAt: (u) => u.host === '127.0.0.1:9' })
  const jwt = r.url.searchParams.get('pomerium_jwt')
  assert.ok(jwt, `no pomerium_jwt in ${r.url.href}`)
  return jwt
}

before(async () => {
  echo = await startEcho()
  poolEcho = await startEcho()
  udpEcho = await startUdpEcho({ reply: (d) => Buffer.concat([Buffer.from('echo:'), d]) })
  deadPort = await freePort()
  setup = await startSignInSetup({
    routes: () => [
      { from: 'tcp+https://db.localhost:5432', to: `tcp://127.0.0.1:${echo.port}`, allow_any_authenticated_user: true },
      { from: 'tcp+https://admin-db.localhost:5432', to: `tcp://127.0.0.1:${echo.port}`, allowed_users: ['alice@example.com'] },
      { from: 'tcp+https://dead.localhost:5432', to: `tcp://127.0.0.1:${deadPort}`, allow_any_authenticated_user: true },
      { from: 'udp+https://dns.localhost:53', to: `udp://127.0.0.1:${udpEcho.port}`, allowed_users: ['alice@example.com'] },
      // Health-checked: the dead upstream is taken out of the rotation; a route with none healthy answers 503.
      {
        from: 'tcp+https://pool.localhost:5432',
        to: [`tcp://127.0.0.1:${deadPort}`, `tcp://127.0.0.1:${poolEcho.port}`],
        health_checks: [{ tcp_health_check: {}, interval: '100ms', timeout: '1s', unhealthy_threshold: 1, healthy_threshold: 1 }],
        allow_any_authenticated_user: true,
      },
      {
        from: 'tcp+https://all-dead.localhost:5432',
        to: `tcp://127.0.0.1:${deadPort}`,
        // No panic routing (Envoy's default 50% would still try the unhealthy upstream).
        healthy_panic_threshold: 0,
        health_checks: [{ tcp_health_check: {}, interval: '100ms', timeout: '1s', unhealthy_threshold: 1, healthy_threshold: 1 }],
        allow_any_authenticated_user: true,
      },
    ],
  })
  aliceJwt = await loginOnAddress('alice@example.com', 'alice-password')
  bobJwt = await loginOnAddress('bob@example.com', 'bob-password')
})

after(async () => {
  await setup?.close()
  await echo?.close()
  await poolEcho?.close()
  await udpEcho?.close()
})

/** Opens TLS to Portcullis by address (as `pomerium-cli --pomerium-url https://127.0.0.1:PORT` does). */
function dial(alpn: string[] = ['http/1.1']): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    // Half-open, as a tunnel client is: its FIN ends one direction only.
    const options: ConnectionOptions & { allowHalfOpen: boolean } = { host: '127.0.0.1', port: setup.port, ca: setup.caPem, ALPNProtocols: alpn, allowHalfOpen: true }
    const socket = tlsConnect(options)
    socket.once('secureConnect', () => resolve(socket))
    socket.once('error', reject)
  })
}

/** Sends a CONNECT (and `early` bytes right behind it); resolves with the response head and what followed. */
async function connectTunnel(target: string, headers: Record<string, string>, early = ''): Promise<{ socket: TLSSocket; status: number; head: string; rest: Buffer }> {
  const socket = await dial()
  let text = `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n`
  for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`
  socket.write(`${text}\r\n${early}`)
  let buffered = Buffer.alloc(0)
  return await new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      const head = buffered.subarray(0, end).toString('latin1')
      resolve({ socket, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), head, rest: buffered.subarray(end + 4) })
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
}

/** Reads a socket to its end. */
function readAll(socket: Socket, initial: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks = [initial]
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.once('end', () => resolve(Buffer.concat(chunks)))
    socket.once('error', reject)
  })
}

describe('refusals come before any byte is relayed', () => {
  test('no session: 302 (the client signs in), and the bytes sent behind the CONNECT never reach the upstream', async () => {
    const before = echo.connections
    const r = await connectTunnel('db.localhost:5432', {}, 'SECRET-EARLY-BYTES')
    assert.equal(r.status, 302)
    assert.match(r.head, /\r\nlocation: /i)
    r.socket.destroy()
    assert.equal(echo.connections, before, 'no upstream connection was opened')
    assert.ok(!echo.received.includes('SECRET-EARLY-BYTES'))
  })

  test('an invalid token: 302 too (pomerium-cli signs in again on any 3xx)', async () => {
    const r = await connectTunnel('db.localhost:5432', { authorization: `Pomerium ${aliceJwt}x` })
    assert.equal(r.status, 302)
    r.socket.destroy()
  })

  test('denied by the route policy: 403 with the reason, nothing relayed', async () => {
    const before = echo.connections
    const r = await connectTunnel('admin-db.localhost:5432', { authorization: `Pomerium ${bobJwt}` }, 'EARLY-FROM-BOB')
    assert.equal(r.status, 403)
    const body = await readAll(r.socket, r.rest)
    assert.match(body.toString(), /not allowed/)
    assert.equal(echo.connections, before)
    assert.ok(!echo.received.includes('EARLY-FROM-BOB'))
  })

  test('no such tcp route: 404; an HTTP route host is not a tunnel route', async () => {
    for (const target of ['nowhere.localhost:5432', 'db.localhost:5433', 'app.localhost:443']) {
      const r = await connectTunnel(target, { authorization: `Pomerium ${aliceJwt}` })
      assert.equal(r.status, 404, target)
      r.socket.destroy()
    }
  })

  test('a CONNECT target without a port: 400', async () => {
    const r = await connectTunnel('db.localhost', { authorization: `Pomerium ${aliceJwt}` })
    assert.equal(r.status, 400)
    r.socket.destroy()
  })

  test('tcp_health_check: a dead upstream leaves the rotation; with no healthy upstream the answer is 503', async () => {
    // Once the checks have run, every tunnel of the pool reaches the live upstream.
    await waitFor('the dead upstream is marked unhealthy', async () => {
      const r = await connectTunnel('all-dead.localhost:5432', { authorization: `Pomerium ${aliceJwt}` })
      r.socket.destroy()
      return r.status === 503
    })
    for (let i = 0; i < 4; i++) {
      const r = await connectTunnel('pool.localhost:5432', { authorization: `Pomerium ${aliceJwt}` })
      assert.equal(r.status, 200, `tunnel ${i}: ${r.head}`)
      r.socket.destroy()
    }
  })

  test('an upstream that refuses the connection: 502', async () => {
    const r = await connectTunnel('dead.localhost:5432', { authorization: `Pomerium ${aliceJwt}` })
    assert.equal(r.status, 502)
    r.socket.destroy()
  })
})

describe('connections that are not tunnels', () => {
  test('a client that closes before sending a byte is closed at once (no half-open socket left behind)', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: setup.port })
    let closed = false
    socket.once('close', () => (closed = true))
    socket.once('connect', () => socket.end())
    socket.on('error', () => undefined)
    // Well within the 10 s handshake timeout, which would otherwise be what closes it.
    await waitFor('Portcullis closes its side', () => closed, { timeoutMs: 3_000 })
  })
})

describe('the tunnel login', () => {
  test('answers on route hosts and on Portcullis\' own address only: any other name could receive the session', async () => {
    const socket = await dial()
    socket.write('GET /.pomerium/api/v1/login?pomerium_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n')
    const answer = (await readAll(socket)).toString('latin1')
    assert.match(answer, /^HTTP\/1\.1 404 /)
    assert.ok(!answer.includes('pomerium_callback_uri'))
  })
})

describe('an allowed tunnel', () => {
  test('HTTP/1.1 CONNECT: 200, early bytes then the rest relayed both ways, half-close passed on', async () => {
    const r = await connectTunnel('db.localhost:5432', { authorization: `Pomerium ${aliceJwt}` }, 'early-')
    assert.equal(r.status, 200, r.head)
    const all = readAll(r.socket, r.rest)
    r.socket.write('hello')
    await waitFor('the upstream received the early bytes and the rest, in order', () => echo.received.includes('early-hello'))
    // The client finishes sending; the upstream still answers ("bye") before finishing its side.
    r.socket.end()
    assert.equal((await all).toString(), 'early-hellobye')
  })

  test('the token from a login on a route host works too (its audience), and a session cookie is not needed', async () => {
    const login = await request(`${setup.app}/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`, { dispatcher: setup.dispatcher })
    const r0 = await loginWithForm(await login.body.text(), 'alice@example.com', 'alice-password', { dispatcher: setup.dispatcher, stopAt: (u) => u.host === '127.0.0.1:9' })
    const jwt = r0.url.searchParams.get('pomerium_jwt') as string
    const r = await connectTunnel('db.localhost:5432', { authorization: `Pomerium ${jwt}` })
    assert.equal(r.status, 200)
    r.socket.destroy()
  })

  test('HTTP/2 CONNECT (RFC 9113 8.5): 200 and the stream is the tunnel', async () => {
    const client = http2Connect(`https://127.0.0.1:${setup.port}`, { ca: setup.caPem })
    try {
      const stream = client.request({ ':method': 'CONNECT', ':authority': 'db.localhost:5432', authorization: `Pomerium ${aliceJwt}` })
      const status = await new Promise<number>((resolve, reject) => {
        stream.once('response', (h) => resolve(Number(h[':status'])))
        stream.once('error', reject)
      })
      if (status !== 200) {
        const body: Buffer[] = []
        stream.on('data', (c: Buffer) => body.push(c))
        await new Promise((r) => stream.once('end', r))
        assert.fail(`status ${status}: ${Buffer.concat(body).toString()}`)
      }
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      const ended = new Promise<void>((resolve) => stream.once('end', resolve))
      stream.write('over-h2')
      await waitFor('the echo over the HTTP/2 stream', () => Buffer.concat(chunks).toString() === 'over-h2')
      stream.end()
      await ended
      assert.equal(Buffer.concat(chunks).toString(), 'over-h2bye')
      const denied = client.request({ ':method': 'CONNECT', ':authority': 'admin-db.localhost:5432', authorization: `Pomerium ${bobJwt}` })
      const deniedStatus = await new Promise<number>((resolve) => denied.once('response', (h) => resolve(Number(h[':status']))))
      assert.equal(deniedStatus, 403)
      denied.destroy()
    } finally {
      client.close()
    }
  })

  test('each tunnel gets an access-log line and a tunnel line with route, user, bytes each way and the close reason', async () => {
    const r = await connectTunnel('db.localhost:5432', { authorization: `Pomerium ${aliceJwt}` })
    assert.equal(r.status, 200)
    const all = readAll(r.socket, r.rest)
    r.socket.end('12345')
    await all
    const find = (): Record<string, unknown> | undefined => setup.portcullis.logs.map(parseLogLine).find((l) => l['msg'] === 'tunnel closed' && l['bytesFromClient'] === 5)
    await waitFor('the tunnel log line', () => find() !== undefined)
    const line = find() as Record<string, unknown>
    assert.equal(line['user'], 'alice@example.com')
    assert.equal(line['bytesToClient'], 8)
    assert.equal(line['reason'], 'closed')
    assert.equal(line['kind'], 'tcp')
    const access = setup.portcullis.logs.map(parseLogLine).find((l) => l['request-id'] === line['requestId'] && l['msg'] === 'http-request')
    assert.ok(access, 'the access-log line of the tunnel')
    assert.equal(access['method'], 'CONNECT')
    assert.equal(access['response-code'], 200)
    assert.equal(access['response-code-details'], 'closed')
    assert.equal(access['size'], 8)
  })
})

describe('open tunnels follow the session and the configuration', () => {
  /** Opens a tunnel and resolves `closed` when Portcullis ends it. */
  async function openTunnel(target: string, jwt: string): Promise<{ socket: TLSSocket; closed: Promise<void> }> {
    const r = await connectTunnel(target, { authorization: `Pomerium ${jwt}` })
    assert.equal(r.status, 200, r.head)
    const closed = new Promise<void>((resolve) => r.socket.once('close', () => resolve()))
    // The test's socket is half-open: finish our side once Portcullis has finished its own.
    r.socket.once('end', () => r.socket.end())
    r.socket.on('error', () => undefined)
    r.socket.resume()
    return { socket: r.socket, closed }
  }

  const tunnelLines = (reason: string): number => setup.portcullis.logs.map(parseLogLine).filter((l) => l['msg'] === 'tunnel closed' && l['reason'] === reason).length

  test('a reload keeps the tunnels of routes that still exist and ends those whose route is gone', async () => {
    const kept = await openTunnel('db.localhost:5432', aliceJwt)
    const removed = await openTunnel('admin-db.localhost:5432', aliceJwt)
    const config = parse(readFileSync(setup.portcullis.configFile, 'utf8')) as { routes: { from: string }[] }
    const reloads = setup.portcullis.logs.map(parseLogLine).filter((e) => e['msg'] === 'config reloaded').length
    config.routes = config.routes.filter((r) => r.from !== 'tcp+https://admin-db.localhost:5432')
    const tmp = `${setup.portcullis.configFile}.tmp`
    writeFileSync(tmp, stringify(config))
    renameSync(tmp, setup.portcullis.configFile)
    await waitFor('the reload', () => setup.portcullis.logs.map(parseLogLine).filter((e) => e['msg'] === 'config reloaded').length > reloads)
    await waitFor('the tunnel of the removed route is ended', () => tunnelLines('route_removed') === 1)
    await removed.closed
    // The tunnel of the route that is still there still relays.
    kept.socket.write('still-here')
    await waitFor('the kept tunnel still relays', () => echo.received.includes('still-here'))
    assert.ok(!kept.socket.destroyed)
    kept.socket.destroy()
  })

  test('signing out ends the open tunnels of that session within seconds', async () => {
    const jwt = await loginOnAddress('alice@example.com', 'alice-password')
    const tunnel = await openTunnel('db.localhost:5432', jwt)
    // The client's sign-out: the route sign-out with its token, then the authenticate host's.
    const first = await request(`https://127.0.0.1:${setup.port}/.pomerium/sign_out`, { dispatcher: setup.dispatcher, headers: { authorization: `Pomerium ${jwt}` } })
    await first.body.dump()
    assert.equal(first.statusCode, 302)
    const second = await request(String(first.headers['location']), { dispatcher: setup.dispatcher })
    await second.body.dump()
    const startedAt = Date.now()
    await tunnel.closed
    assert.ok(Date.now() - startedAt < 10_000)
    await waitFor('the tunnel line says why', () => tunnelLines('access_revoked') >= 1)
    // And a new tunnel with that token is refused (sign in again).
    const again = await connectTunnel('db.localhost:5432', { authorization: `Pomerium ${jwt}` })
    assert.equal(again.status, 302)
    again.socket.destroy()
  })
})

describe('UDP tunnels (CONNECT-UDP, RFC 9298)', () => {
  const MASQUE = '/.well-known/masque/udp/dns.localhost/53/'

  /** Collects the DATAGRAM payloads (context 0) that arrive on a capsule stream. */
  function datagrams(stream: NodeJS.ReadableStream, initial: Buffer = Buffer.alloc(0)): Buffer[] {
    const parser = new CapsuleParser()
    const out: Buffer[] = []
    const take = (chunk: Buffer): void => {
      for (const c of parser.push(chunk)) if (c.type === 0) out.push(decodeDatagram(c.value).payload)
    }
    if (initial.length > 0) take(initial)
    stream.on('data', take)
    return out
  }

  async function upgrade(headers: Record<string, string>, path = MASQUE): Promise<{ socket: TLSSocket; status: number; head: string; rest: Buffer }> {
    const socket = await dial()
    let text = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${setup.port}\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n`
    for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`
    socket.write(`${text}\r\n`)
    let buffered = Buffer.alloc(0)
    return await new Promise((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        buffered = Buffer.concat([buffered, chunk])
        const end = buffered.indexOf('\r\n\r\n')
        if (end === -1) return
        socket.off('data', onData)
        const head = buffered.subarray(0, end).toString('latin1')
        resolve({ socket, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), head, rest: buffered.subarray(end + 4) })
      }
      socket.on('data', onData)
      socket.once('error', reject)
    })
  }

  test('HTTP/1.1 Upgrade: connect-udp: 101, datagrams both ways as DATAGRAM capsules; other context ids are dropped', async () => {
    const r = await upgrade({ authorization: `Pomerium ${aliceJwt}` })
    assert.equal(r.status, 101, r.head)
    assert.match(r.head, /\r\nupgrade: connect-udp/i)
    assert.match(r.head, /\r\ncapsule-protocol: \?1/i)
    const got = datagrams(r.socket, r.rest)
    // A context id other than 0 is not UDP payload: dropped, never sent to the target.
    r.socket.write(encodeCapsule(0, Buffer.concat([Buffer.from([0x02]), Buffer.from('not-udp')])))
    r.socket.write(encodeDatagram(Buffer.from('query-1')))
    r.socket.write(encodeDatagram(Buffer.from('query-2')))
    await waitFor('both answers', () => got.length === 2)
    assert.deepEqual(got.map(String).sort(), ['echo:query-1', 'echo:query-2'])
    assert.ok(!udpEcho.received.some((d) => d.toString() === 'not-udp'))
    r.socket.destroy()
  })

  test('refusals: no token 302, a user the policy denies 403, an unknown target 404, a malformed path 400', async () => {
    const none = await upgrade({})
    assert.equal(none.status, 302)
    none.socket.destroy()
    const bob = await upgrade({ authorization: `Pomerium ${bobJwt}` })
    assert.equal(bob.status, 403)
    bob.socket.destroy()
    const unknown = await upgrade({ authorization: `Pomerium ${aliceJwt}` }, '/.well-known/masque/udp/other.localhost/53/')
    assert.equal(unknown.status, 404)
    unknown.socket.destroy()
    const bad = await upgrade({ authorization: `Pomerium ${aliceJwt}` }, '/.well-known/masque/udp/dns.localhost/99999/')
    assert.equal(bad.status, 400)
    bad.socket.destroy()
  })

  test('HTTP/2 extended CONNECT (RFC 8441) with :protocol connect-udp: 200 and the stream carries capsules', async () => {
    const client = http2Connect(`https://127.0.0.1:${setup.port}`, { ca: setup.caPem })
    try {
      await new Promise<void>((resolve) => client.once('remoteSettings', () => resolve()))
      const stream = client.request({
        ':method': 'CONNECT',
        ':protocol': 'connect-udp',
        ':scheme': 'https',
        ':path': MASQUE,
        ':authority': `127.0.0.1:${setup.port}`,
        'capsule-protocol': '?1',
        authorization: `Pomerium ${aliceJwt}`,
      })
      const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
        stream.once('response', (h) => resolve(h))
        stream.once('error', reject)
      })
      assert.equal(headers[':status'], 200)
      assert.equal(headers['capsule-protocol'], '?1')
      const got = datagrams(stream)
      stream.write(encodeDatagram(Buffer.from('over-h2')))
      await waitFor('the answer over HTTP/2', () => got.length === 1)
      assert.equal(got[0]?.toString(), 'echo:over-h2')
      stream.close()
    } finally {
      client.close()
    }
  })
})
