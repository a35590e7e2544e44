/**
 * The tunnels with real clients against real servers (issue 13; docs/tunnels.md), all on
 * loopback: OpenSSH (ssh and scp) through `portcullis tcp --listen -` as its ProxyCommand, psql to
 * the machine's PostgreSQL and redis-cli to its Redis through a `portcullis tcp` listener, dig
 * through a `portcullis udp` listener (CONNECT-UDP over HTTP/1.1) to a small DNS server, and the
 * refusals as the real client reports them (no sign-in possible, 403, 404, 502, a session
 * signed out while an ssh session is open). The client is the built CLI (dist/cmd/main.js) in
 * child processes; its token is the one the login on Portcullis' address hands out, put in the
 * client's JWT cache under the key the client uses. (The sign-in through a real browser is in
 * tunnel-clients.browser.test.ts.)
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import { clientCommand } from '../../src/client/cli.js'
import { startDnsServer } from '../fixtures/dns-server.js'
import type { DnsServer } from '../fixtures/dns-server.js'
import { loginWithForm } from '../fixtures/oidc-provider.js'
import { isBuilt } from '../fixtures/portcullis.js'
import { freePort, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { startSshd } from '../fixtures/sshd.js'
import type { Sshd } from '../fixtures/sshd.js'
import { clientCache, clientCommandLine, run, runClient, serverFlags, start, startClientListener, writeCaFile } from '../fixtures/tunnel-client.js'
import type { ClientCache, ClientListener, Running } from '../fixtures/tunnel-client.js'
import { waitFor } from '../fixtures/wait.js'

/** The machine's shared servers (CI starts PostgreSQL; Redis is the distribution's service). */
const PG_PORT = 5432
const REDIS_PORT = 6379

let setup: SignInSetup
let sshd: Sshd
let dns: DnsServer
let caFile: string
let aliceJwt: string
let bobJwt: string
const caches: ClientCache[] = []
const children: Running[] = []
const tempDirs: string[] = []

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(2_000, () => done(false))
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

async function loginOnAddress(email: string, password: string): Promise<string> {
  const base = `https://127.0.0.1:${setup.port}`
  const res = await request(`${base}/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`, { dispatcher: setup.dispatcher })
  const signInUrl = await res.body.text()
  assert.equal(res.statusCode, 200, signInUrl)
  const r = await loginWithForm(signInUrl, email, password, { dispatcher: setup.dispatcher, stopAt: (u) => u.host === '127.0.0.1:9' })
  const jwt = r.url.searchParams.get('pomerium_jwt')
  assert.ok(jwt, `no pomerium_jwt in ${r.url.href}`)
  return jwt
}

/** A fresh JWT cache holding `jwt` for this Portcullis (the client forgets a token a server refused, so each run gets its own). */
function cacheWith(jwt?: string): ClientCache {
  const c = clientCache(setup.port, jwt)
  caches.push(c)
  return c
}

const flags = (): string[] => serverFlags(setup.port, caFile)

async function listener(kind: 'tcp' | 'udp', target: string, cache: ClientCache): Promise<ClientListener> {
  const l = await startClientListener(kind, [...flags(), target], cache.env)
  children.push(l)
  return l
}

/** ssh/scp options: the fixture's (key, pinned host key under its alias) and the client as ProxyCommand. */
function sshArgs(): string[] {
  return [...sshd.sshOptions, '-o', `ProxyCommand=${clientCommandLine(['tcp', '--listen', '-', ...flags(), '%h:%p'])}`]
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

before(async () => {
  assert.ok(isBuilt(), 'dist/cmd/main.js is missing: run `npm run build` first')
  // Not skipped under CI or anywhere else: a machine without them fails here, saying which.
  assert.ok(await answers(PG_PORT), `PostgreSQL does not answer on 127.0.0.1:${PG_PORT} (start it: .ci/run does)`)
  assert.ok(await answers(REDIS_PORT), `Redis does not answer on 127.0.0.1:${REDIS_PORT} (Debian: redis-server)`)
  sshd = await startSshd()
  dns = await startDnsServer({ 'one.example.test': '192.0.2.1', 'two.example.test': ['198.51.100.7', '198.51.100.8'], 'Mixed.Example.Test': '203.0.113.9' })
  const deadPort = await freePort()
  setup = await startSignInSetup({
    routes: () => [
      { from: 'tcp+https://ssh.localhost:22', to: `tcp://127.0.0.1:${sshd.port}`, allow_any_authenticated_user: true },
      { from: `tcp+https://pg.localhost:${PG_PORT}`, to: `tcp://127.0.0.1:${PG_PORT}`, allow_any_authenticated_user: true },
      { from: `tcp+https://redis.localhost:${REDIS_PORT}`, to: `tcp://127.0.0.1:${REDIS_PORT}`, allow_any_authenticated_user: true },
      { from: 'udp+https://dns.localhost:53', to: `udp://127.0.0.1:${dns.port}`, allow_any_authenticated_user: true },
      { from: `tcp+https://admin-pg.localhost:${PG_PORT}`, to: `tcp://127.0.0.1:${PG_PORT}`, allowed_users: ['alice@example.com'] },
      { from: 'tcp+https://dead.localhost:5432', to: `tcp://127.0.0.1:${deadPort}`, allow_any_authenticated_user: true },
    ],
  })
  caFile = writeCaFile(setup.caPem)
  aliceJwt = await loginOnAddress('alice@example.com', 'alice-password')
  bobJwt = await loginOnAddress('bob@example.com', 'bob-password')
})

after(async () => {
  for (const c of children) await c.stop()
  await setup?.close()
  await sshd?.stop()
  await dns?.close()
  for (const c of caches) c.remove()
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
  if (caFile !== undefined) rmSync(join(caFile, '..'), { recursive: true, force: true })
})

describe('OpenSSH through portcullis tcp --listen - as ProxyCommand', () => {
  test('a command runs on the server and its output comes back', async () => {
    const cache = cacheWith(aliceJwt)
    const r = await run('ssh', [...sshArgs(), '-p', '22', `${sshd.user}@ssh.localhost`, 'echo tunnel-ok; id -un'], { env: cache.env, timeoutMs: 30_000 })
    assert.equal(r.code, 0, `ssh failed (${r.code}): ${r.stderr}\nsshd: ${sshd.log().slice(-2000)}`)
    assert.equal(r.stdout, `tunnel-ok\n${sshd.user}\n`)
  })

  test('scp carries a 20 MB random file up and back byte for byte', async () => {
    const cache = cacheWith(aliceJwt)
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-scp-'))
    tempDirs.push(dir)
    const original = randomBytes(20 * 1024 * 1024)
    const up = join(dir, 'up.bin')
    const back = join(dir, 'back.bin')
    writeFileSync(up, original)
    // A relative remote path: the login user's home.
    const remote = `portcullis-e2e-${randomBytes(6).toString('hex')}.bin`
    const target = `${sshd.user}@ssh.localhost`
    try {
      const put = await run('scp', [...sshArgs(), '-P', '22', up, `${target}:${remote}`], { env: cache.env, timeoutMs: 120_000 })
      assert.equal(put.code, 0, `scp up failed: ${put.stderr}`)
      const get = await run('scp', [...sshArgs(), '-P', '22', `${target}:${remote}`, back], { env: cache.env, timeoutMs: 120_000 })
      assert.equal(get.code, 0, `scp back failed: ${get.stderr}`)
      const returned = readFileSync(back)
      assert.equal(returned.length, original.length)
      assert.equal(sha256(returned), sha256(original))
    } finally {
      await run('ssh', [...sshArgs(), '-p', '22', target, `rm -f ${remote}`], { env: cache.env, timeoutMs: 30_000 })
    }
  })
})

describe('database clients through a portcullis tcp listener', () => {
  test('psql to PostgreSQL: select 40+2 prints 42', async () => {
    const l = await listener('tcp', `pg.localhost:${PG_PORT}`, cacheWith(aliceJwt))
    const r = await run('psql', ['-h', '127.0.0.1', '-p', String(l.port), '-U', 'postgres', '-d', 'postgres', '-w', '-tAc', 'select 40+2'], { env: { PGCONNECT_TIMEOUT: '15' }, timeoutMs: 30_000 })
    assert.equal(r.code, 0, `psql failed: ${r.stderr}\nclient: ${l.stderr()}`)
    assert.equal(r.stdout.trim(), '42')
    await l.stop()
  })

  test('redis-cli to Redis: SET, GET and DEL of a random key', async () => {
    const l = await listener('tcp', `redis.localhost:${REDIS_PORT}`, cacheWith(aliceJwt))
    const key = `portcullis-e2e:${randomBytes(8).toString('hex')}`
    const value = randomBytes(12).toString('hex')
    const cli = (...args: string[]): ReturnType<typeof run> => run('redis-cli', ['-h', '127.0.0.1', '-p', String(l.port), ...args], { timeoutMs: 20_000 })
    try {
      const set = await cli('SET', key, value)
      assert.equal(set.code, 0, set.stderr)
      assert.equal(set.stdout.trim(), 'OK', `${set.stdout}${set.stderr}\nclient: ${l.stderr()}`)
      const got = await cli('GET', key)
      assert.equal(got.stdout.trim(), value)
    } finally {
      const del = await cli('DEL', key)
      assert.equal(del.stdout.trim(), '1')
      await l.stop()
    }
  })
})

describe('dig through a portcullis udp listener (CONNECT-UDP over HTTP/1.1)', () => {
  test('several queries through one tunnel: the right answers, NXDOMAIN for an unknown name', async () => {
    const l = await listener('udp', 'dns.localhost:53', cacheWith(aliceJwt))
    const dig = (name: string, ...extra: string[]): ReturnType<typeof run> =>
      run('dig', [`@127.0.0.1`, '-p', String(l.port), name, 'A', '+time=5', '+tries=2', ...extra], { timeoutMs: 30_000 })
    const short = async (name: string): Promise<string[]> => {
      const r = await dig(name, '+short')
      assert.equal(r.code, 0, `dig ${name}: ${r.stdout}${r.stderr}\nclient: ${l.stderr()}`)
      return r.stdout.trim().split('\n').filter((line) => line !== '').sort()
    }
    assert.deepEqual(await short('one.example.test'), ['192.0.2.1'])
    assert.deepEqual(await short('two.example.test'), ['198.51.100.7', '198.51.100.8'])
    assert.deepEqual(await short('mixed.example.test'), ['203.0.113.9'])
    assert.deepEqual(await short('one.example.test'), ['192.0.2.1'])
    const missing = await dig('nowhere.example.test')
    assert.match(missing.stdout, /status: NXDOMAIN/)
    // Every query reached the DNS server through the tunnel, and one tunnel carried them all.
    assert.deepEqual(dns.queries.filter((q) => q.name.endsWith('example.test')).map((q) => q.name), ['one.example.test', 'two.example.test', 'mixed.example.test', 'one.example.test', 'nowhere.example.test'])
    assert.doesNotMatch(l.stderr(), /portcullis: /, 'no error from the client')
    await l.stop()
  })
})

describe('refusals as the real client reports them', () => {
  test('no session and no browser: the client says it could not open one and shows the sign-in URL; no tunnel opens', async () => {
    const cache = cacheWith()
    const c = start(process.execPath, [join('dist', 'cmd', 'main.js'), 'tcp', '--listen', '-', ...flags(), '--browser-cmd', '/nonexistent/browser', `pg.localhost:${PG_PORT}`], { env: cache.env, timeoutMs: 30_000 })
    children.push(c)
    await waitFor('the client prints the sign-in URL', () => /Open this URL in a browser to sign in:\s+https:\/\/\S+/.test(c.stderr()))
    const url = new URL(/Open this URL in a browser to sign in:\s+(\S+)/.exec(c.stderr())?.[1] as string)
    assert.equal(url.origin, setup.authn)
    assert.match(url.searchParams.get('pomerium_redirect_uri') ?? '', /^http:\/\/127\.0\.0\.1:\d+\//)
    assert.equal(c.stdout(), '', 'nothing relayed')
    assert.equal(cache.token(setup.port), undefined)
    await c.stop()
  })

  for (const [command, expected] of [
    ['true', /sign-in was not completed within 2 s/],
    ['false', /the browser command \(false\) exited with status 1 before the sign-in completed/],
  ] as const) {
  test(`no session and a browser command that ${command === 'true' ? 'never completes the sign-in' : 'fails'}: the client fails (exit 1) saying so`, async () => {
    // In-process, to shorten the five-minute wait for the browser (the CLI has no flag for it).
    const cache = cacheWith()
    const stdin = new PassThrough()
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    let err = ''
    stderr.on('data', (c: Buffer) => (err += c.toString()))
    const code = await clientCommand('tcp', ['--listen', '-', ...flags(), '--browser-cmd', command, `pg.localhost:${PG_PORT}`], {
      stdin,
      stdout,
      stderr,
      env: cache.env,
      home: '/nonexistent',
      signInTimeoutMs: 1_500,
    })
    assert.equal(code, 1, err)
    assert.match(err, expected)
    assert.equal(cache.token(setup.port), undefined)
  })
  }

  test('a user the route denies: 403 from the client, exit 1 (stdio), the local connection closed (listener)', async () => {
    const r = await runClient(['tcp', '--listen', '-', ...flags(), '--browser-cmd', 'false', `admin-pg.localhost:${PG_PORT}`], { env: cacheWith(bobJwt).env, input: 'x', timeoutMs: 30_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /refused the tcp tunnel to admin-pg\.localhost:5432: 403/)
    assert.equal(r.stdout, '')
    const l = await listener('tcp', `admin-pg.localhost:${PG_PORT}`, cacheWith(bobJwt))
    const psql = await run('psql', ['-h', '127.0.0.1', '-p', String(l.port), '-U', 'postgres', '-d', 'postgres', '-w', '-tAc', 'select 1'], { env: { PGCONNECT_TIMEOUT: '15' }, timeoutMs: 30_000 })
    assert.notEqual(psql.code, 0)
    assert.match(psql.stderr, /server closed the connection unexpectedly|connection to server .* failed/)
    await waitFor('the client reports the 403', () => / 403 /.test(l.stderr()))
    // alice may.
    const ok = await runClient(['tcp', '--listen', '-', ...flags(), `admin-pg.localhost:${PG_PORT}`], { env: cacheWith(aliceJwt).env, input: '', timeoutMs: 30_000 })
    assert.equal(ok.code, 0, ok.stderr)
    await l.stop()
  })

  test('no such route: 404, exit 1', async () => {
    const r = await runClient(['tcp', '--listen', '-', ...flags(), 'nowhere.localhost:5432'], { env: cacheWith(aliceJwt).env, input: 'x', timeoutMs: 30_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /refused the tcp tunnel to nowhere\.localhost:5432: 404/)
    const udp = await listener('udp', 'nodns.localhost:53', cacheWith(aliceJwt))
    const dig = await run('dig', ['@127.0.0.1', '-p', String(udp.port), 'one.example.test', 'A', '+time=1', '+tries=1'], { timeoutMs: 15_000 })
    assert.notEqual(dig.code, 0, 'no answer through a refused UDP tunnel')
    await waitFor('the udp client reports the 404', () => /refused the udp tunnel to nodns\.localhost:53: 404/.test(udp.stderr()))
    await udp.stop()
  })

  test('an upstream that refuses connections: 502, exit 1', async () => {
    const r = await runClient(['tcp', '--listen', '-', ...flags(), 'dead.localhost:5432'], { env: cacheWith(aliceJwt).env, input: 'x', timeoutMs: 30_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /refused the tcp tunnel to dead\.localhost:5432: 502/)
  })

  // Last: it signs a session out.
  test('signing out ends an open ssh session within seconds', async () => {
    const jwt = await loginOnAddress('alice@example.com', 'alice-password')
    const cache = cacheWith(jwt)
    const ssh = start('ssh', [...sshArgs(), '-p', '22', `${sshd.user}@ssh.localhost`, 'echo ready; exec sleep 60'], { env: cache.env, timeoutMs: 90_000 })
    children.push(ssh)
    await waitFor('the ssh session is up', () => ssh.stdout().includes('ready'), { timeoutMs: 30_000 })
    const first = await request(`https://127.0.0.1:${setup.port}/.pomerium/sign_out`, { dispatcher: setup.dispatcher, headers: { authorization: `Pomerium ${jwt}` } })
    await first.body.dump()
    assert.equal(first.statusCode, 302)
    const second = await request(String(first.headers['location']), { dispatcher: setup.dispatcher })
    await second.body.dump()
    const signedOutAt = Date.now()
    const exit = await Promise.race([ssh.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 15_000).unref())])
    const tunnelLines = (): string => setup.portcullis.logs.filter((l) => l.includes('tunnel')).slice(-5).join('\n')
    assert.notEqual(exit, 'still running', `ssh is still connected 15 s after the sign-out\nssh: ${ssh.stderr()}\nportcullis: ${tunnelLines()}`)
    const ms = Date.now() - signedOutAt
    assert.ok(ms < 10_000, `ssh ended ${ms} ms after the sign-out`)
    assert.notEqual((exit as { code: number | null }).code, 0)
    // The next connection with that token needs a sign-in again (and the browser command fails).
    const again = await runClient(['tcp', '--listen', '-', ...flags(), '--browser-cmd', '/nonexistent/browser', 'ssh.localhost:22'], { env: cache.env, timeoutMs: 10_000 })
    assert.match(again.stderr, /Open this URL in a browser to sign in/)
  })
})
