/**
 * The client's other commands and parts: the CONNECT-UDP request and its sign-in, `routes list`,
 * `logout`, `k8s exec-credential`, the flags, and the response-head reader.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { clientCommand, execCredential, listenAddress, parseClientFlags, routeRows, table, type ClientIo } from './cli.js'
import { parseHead } from './http-head.js'
import { defaultJwtCacheDir, JwtCache, jwtCacheKey } from './jwt-cache.js'
import { proxyEndpoint } from './proxy.js'
import { browserCommand, SignIn } from './sign-in.js'
import { openTunnel, tunnelRequest } from './tunnel.js'
import { fakeJwt, followSignIn, startFakeServer, type FakeServer } from './test-helpers.js'

const roots: string[] = []
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

function harness(extraEnv: Record<string, string> = {}): { io: ClientIo; out: () => string; err: () => string; cache: JwtCache; dir: string } {
  const root = mkdtempSync(join(tmpdir(), 'portcullis-cli-'))
  roots.push(root)
  const env = { XDG_CACHE_HOME: root, ...extraEnv }
  let out = ''
  let err = ''
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  stderr.on('data', (c: Buffer) => (err += c.toString()))
  const io: ClientIo = { stdin: new PassThrough(), stdout, stderr, env, home: root, browser: followSignIn, signInTimeoutMs: 20_000 }
  const dir = defaultJwtCacheDir(env, root)
  return { io, out: () => out, err: () => err, cache: new JwtCache(dir), dir }
}

const keyOf = (server: FakeServer): string => jwtCacheKey(`127.0.0.1:${server.port}`, false)

test('the CONNECT-UDP request is RFC 9298\'s HTTP/1.1 upgrade; a 302 signs in and the retry gets the 101 with the tunnel bytes kept', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  const endpoint = proxyEndpoint(server.url, undefined, {})
  assert.equal(
    tunnelRequest('udp', endpoint, 'dns.example.com', 53, 'T'),
    `GET /.well-known/masque/udp/dns.example.com/53/ HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\nAuthorization: Pomerium T\r\n\r\n`,
  )
  assert.match(tunnelRequest('udp', endpoint, '::1', 53, undefined), /^GET \/\.well-known\/masque\/udp\/%3A%3A1\/53\/ HTTP\/1\.1\r\n/)

  const ctx = { endpoint, cache: h.cache, signIn: new SignIn({ cache: h.cache, say: () => undefined, browser: followSignIn }) }
  server.early = Buffer.from([0x00, 0x03, 0x00, 0x61, 0x62]) // a DATAGRAM capsule in the head's packet
  const socket = await openTunnel('udp', ctx, 'dns.example.com', 53)
  const first = await new Promise<Buffer>((resolve) => {
    socket.once('data', resolve)
    socket.resume()
  })
  assert.ok(first.equals(server.early), 'the bytes after the 101 head are the stream\'s first bytes')
  socket.destroy()
  assert.equal(server.logins(), 1)
  assert.deepEqual(
    server.tunnels.map((r) => [r.method, r.url, r.headers.upgrade, r.headers['capsule-protocol'], r.headers.authorization]),
    [
      ['GET', '/.well-known/masque/udp/dns.example.com/53/', 'connect-udp', '?1', undefined],
      ['GET', '/.well-known/masque/udp/dns.example.com/53/', 'connect-udp', '?1', `Pomerium ${server.token}`],
    ],
  )
  // A 200 is not a CONNECT-UDP success over HTTP/1.1 (101 is): an error, the token forgotten.
  server.status = () => 200
  await assert.rejects(openTunnel('udp', ctx, 'dns.example.com', 53), /refused the udp tunnel to dns\.example\.com:53: 200/)
})

test('routes list signs in on a 302, then prints a table (name, type, from, connect command) or the JSON', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const h = harness()
  assert.equal(await clientCommand('routes', ['list', '--pomerium-url', server.url], h.io), 0, h.err())
  assert.equal(server.logins(), 1)
  assert.equal(
    h.out(),
    'NAME      TYPE  FROM                             CONNECT\n' +
      'Database  tcp   tcp+https://db.example.com:5432  portcullis tcp db.example.com:5432\n' +
      'Wiki      http  https://wiki.example.com\n',
  )
  const j = harness()
  j.cache.set(keyOf(server), server.token)
  assert.equal(await clientCommand('routes', ['list', `--pomerium-url=${server.url}`, '--json'], j.io), 0, j.err())
  assert.equal(server.logins(), 1, 'the cached token was enough')
  const parsed = JSON.parse(j.out()) as { routes: { name: string }[] }
  assert.deepEqual(
    parsed.routes.map((r) => r.name),
    ['Database', 'Wiki'],
  )
  assert.throws(() => routeRows('{"nope": 1}'), /routes/)
  assert.equal(table(['A', 'B'], [['long value', 'x']]), 'A           B\nlong value  x')
})

test('logout clears the whole cache, or only the named server\'s token', async () => {
  const h = harness()
  h.cache.set(jwtCacheKey('a.example.com:443', true), fakeJwt('a'))
  h.cache.set(jwtCacheKey('b.example.com:443', true), fakeJwt('b'))
  assert.equal(await clientCommand('logout', ['--pomerium-url', 'https://a.example.com'], h.io), 0, h.err())
  assert.equal(h.cache.get('a.example.com:443|true'), undefined)
  assert.notEqual(h.cache.get('b.example.com:443|true'), undefined)
  assert.equal(await clientCommand('logout', [], h.io), 0)
  assert.deepEqual(
    readdirSync(h.dir).filter((f) => f.endsWith('.jwt')),
    [],
  )
  assert.match(h.err(), /signed out of https:\/\/a\.example\.com:443[\s\S]*removed 1 cached sign-in\n/)
})

test('k8s exec-credential prints an ExecCredential with Pomerium-<jwt> and the JWT\'s expiry, signing in when needed', async (t) => {
  const server = await startFakeServer()
  t.after(() => server.close())
  const exp = 1_900_000_000
  server.token = fakeJwt('alice', exp)
  const h = harness()
  assert.equal(await clientCommand('k8s', ['exec-credential', `${server.url}/some/path`], h.io), 0, h.err())
  assert.equal(server.logins(), 1)
  assert.deepEqual(JSON.parse(h.out()), {
    apiVersion: 'client.authentication.k8s.io/v1',
    kind: 'ExecCredential',
    status: { expirationTimestamp: new Date(exp * 1000).toISOString().replace('.000Z', 'Z'), token: `Pomerium-${server.token}` },
  })
  // The second run uses the cache; kubectl's requested apiVersion is echoed back.
  const again = { ...h.io, env: { ...h.io.env, KUBERNETES_EXEC_INFO: JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1beta1', kind: 'ExecCredential' }) } }
  const out: string[] = []
  const stdout = new PassThrough()
  stdout.on('data', (c: Buffer) => out.push(c.toString()))
  assert.equal(await clientCommand('k8s', ['exec-credential', server.url], { ...again, stdout }), 0)
  assert.equal(server.logins(), 1)
  assert.equal((JSON.parse(out.join('')) as { apiVersion: string }).apiVersion, 'client.authentication.k8s.io/v1beta1')
  assert.equal((execCredential('a.b.c', {}) as { status: object }).status.constructor, Object)
})

test('flags: pomerium-cli\'s spellings, --listen forms, usage errors exit 2', async () => {
  const { flags, errors } = parseClientFlags(['db:5432', '--listen=:2202', '-pomerium-url', 'https://p', '--disable-tls-verification', '--browser-cmd', 'firefox --new-window'], ['listen', 'pomerium-url', 'disable-tls-verification', 'browser-cmd'])
  assert.deepEqual(errors, [])
  assert.deepEqual(flags.positional, ['db:5432'])
  assert.equal(flags.listen, ':2202')
  assert.equal(flags.pomeriumUrl, 'https://p')
  assert.equal(flags.disableTlsVerification, true)
  assert.deepEqual(listenAddress(':2202'), { host: '127.0.0.1', port: 2202 })
  assert.deepEqual(listenAddress(undefined), { host: '127.0.0.1', port: 0 })
  assert.deepEqual(listenAddress('[::1]:0'), { host: '::1', port: 0 })
  assert.equal(listenAddress('-'), 'stdio')
  assert.deepEqual(browserCommand('firefox --new-window', 'https://x/?a=b c'), { file: 'firefox', args: ['--new-window', 'https://x/?a=b c'] })
  const h = harness()
  assert.equal(await clientCommand('tcp', ['db.example.com:5432', '--bogus'], h.io), 2)
  assert.match(h.err(), /unknown flag "--bogus"[\s\S]*Usage: portcullis tcp/)
  assert.equal(await clientCommand('udp', ['--listen', '-', 'dns.example.com:53'], h.io), 2)
  // The default server is https://<destination host>:443, with TLS.
  const ep = proxyEndpoint(undefined, 'db.example.com', {})
  assert.equal(ep.origin, 'https://db.example.com:443')
  assert.equal(ep.cacheKey, 'db.example.com:443|true')
  assert.equal(ep.tlsOptions?.rejectUnauthorized, true)
  assert.equal(proxyEndpoint('https://p.example.com:8443', 'db', { disableTlsVerification: true }).tlsOptions?.rejectUnauthorized, false)
})

test('the response head parser: status, headers, and refusal of what is not HTTP/1.1', () => {
  const head = parseHead('HTTP/1.1 302 Found\r\nLocation: https://a/\r\nSet-Cookie: a\r\nset-cookie: b')
  assert.equal(head.status, 302)
  assert.equal(head.headers.get('location'), 'https://a/')
  assert.equal(head.headers.get('set-cookie'), 'a, b')
  assert.throws(() => parseHead('SSH-2.0-OpenSSH'), /not an HTTP\/1\.1 response/)
  assert.throws(() => parseHead('HTTP/1.1 200 OK\r\nno colon'), /malformed/)
})
