/**
 * TCP tunnel benchmark (docs/tunnels.md): Portcullis' CONNECT tunnels against a direct loopback
 * TCP connection to the same upstream, measured in the same run.
 *
 *   throughput  one connection moves BENCH_TUNNEL_BYTES (default 1 GiB) each way: upload (client
 *               -> a sink that counts and answers the count when the client finishes) and
 *               download (a source sends that many bytes and finishes); MiB/s (median of
 *               BENCH_TUNNEL_REPEAT runs alternating with the direct copy), the ratio to the
 *               direct copy's median, and Portcullis' CPU seconds per GiB
 *   set-up      BENCH_TUNNEL_SETUPS (default 500) sequential new tunnels, each: TCP (+ TLS)
 *               connect, CONNECT, 200, one byte written and echoed back; against a direct TCP
 *               connect + one byte echoed. Public route (no token) and a signed-in route with the
 *               token a tunnel client keeps (the login on Portcullis' own address, made once)
 *   memory      BENCH_TUNNEL_IDLE (default 200) tunnels opened and held idle; Portcullis' RSS
 *               (VmRSS of its process) before and after, the delta per tunnel, and whether every
 *               tunnel still relays a byte afterwards
 *
 * The upstreams (sink, source, echo) run in a child process of their own, the client in this
 * process, Portcullis (workers: 1, log_level error) in a third: the direct copy is two processes,
 * the tunnel three, on the same cores. Each measurement is done for Portcullis with
 * `insecure_server: true` (cleartext CONNECT: the proxy itself) and, unless BENCH_TUNNEL_TLS=0,
 * with TLS on the main listener (the direct copy stays cleartext TCP; set-up includes a full TLS
 * handshake per tunnel, as a tunnel client makes one per connection).
 *
 * Knobs (environment):
 *   BENCH_TUNNEL_BYTES   bytes per direction, e.g. `1GiB` (default), `256M`, `1000000`
 *   BENCH_TUNNEL_SETUPS  sequential set-ups per path, default 500
 *   BENCH_TUNNEL_IDLE    idle tunnels held open at once, default 200
 *   BENCH_TUNNEL_REPEAT  throughput runs (direct and tunnel alternating), default 3; medians reported
 *   BENCH_TUNNEL_TLS=0   skip the TLS listener
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as net from 'node:net'
import { cpus, loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import * as tls from 'node:tls'
import { makeServerCert, testPki } from '../test/fixtures/certs.js'
import { loginWithForm, startTestIdp } from '../test/fixtures/oidc-provider.js'
import type { TestIdp } from '../test/fixtures/oidc-provider.js'
import { isBuilt, MAIN_SCRIPT, startPortcullis } from '../test/fixtures/portcullis.js'
import type { PortcullisProcess } from '../test/fixtures/portcullis.js'
import { freePort, localhostDispatcher } from '../test/fixtures/sign-in.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

// ---------------------------------------------------------------------------------------------
// Configuration

function parseBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(k|ki|m|mi|g|gi)?b?\s*$/i.exec(s)
  if (m === null) throw new Error(`BENCH_TUNNEL_BYTES: cannot parse ${JSON.stringify(s)} (try 1GiB or 256M)`)
  const unit = (m[2] ?? '').toLowerCase()
  const mult = unit.startsWith('k') ? 1024 : unit.startsWith('m') ? MiB : unit.startsWith('g') ? GiB : 1
  const n = Math.round(Number(m[1]) * mult)
  if (n < 1) throw new Error('BENCH_TUNNEL_BYTES must be at least 1 byte')
  return n
}

function parseCount(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(raw)}`)
  return n
}

const transferBytes = parseBytes(process.env['BENCH_TUNNEL_BYTES'] ?? '1GiB')
const setups = parseCount('BENCH_TUNNEL_SETUPS', 500)
const idleTunnels = parseCount('BENCH_TUNNEL_IDLE', 200)
const withTls = process.env['BENCH_TUNNEL_TLS'] !== '0'
const repeats = parseCount('BENCH_TUNNEL_REPEAT', 3)

/** The tunnel routes' names (CONNECT targets). */
const SINK = 'sink.localhost:9000'
const SOURCE = 'source.localhost:9001'
const ECHO = 'echo.localhost:9002'
const ECHO_AUTH = 'echo-auth.localhost:9003'

const BENCH_USER = { email: 'bench@example.com', password: randomBytes(12).toString('base64url') } as const

// ---------------------------------------------------------------------------------------------
// Cleanup: everything started registers a stop function; they run in reverse on any exit path.

const cleanups: Array<() => Promise<void>> = []
let cleaning: Promise<void> | undefined

function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn()
      } catch (err) {
        console.error('cleanup failed:', err)
      }
    }
  })()
  return cleaning
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping everything`)
    void cleanupAll().finally(() => process.exit(130))
  })
}

/** Rejects with a clear message when `promise` takes longer than `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------------------------
// Upstreams: one child process with three TCP servers.

interface Upstreams {
  readonly sink: number
  readonly source: number
  readonly echo: number
  readonly pid: number
}

/**
 * sink: counts what it receives; on the client's FIN answers the count (8 bytes, big-endian) and
 * finishes. source: reads an 8-byte count, sends that many bytes, finishes. echo: echoes, holds
 * connections open until the client goes.
 */
const UPSTREAM_CODE = `
const net = require('node:net')
const CHUNK = Buffer.alloc(64 * 1024, 0x61)
const sink = net.createServer({ allowHalfOpen: true }, (s) => {
  let n = 0
  s.on('data', (c) => { n += c.length })
  s.on('end', () => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); s.end(b) })
  s.on('error', () => s.destroy())
})
const source = net.createServer({ allowHalfOpen: true }, (s) => {
  let head = Buffer.alloc(0)
  let started = false
  s.on('data', (c) => {
    if (started) return
    head = Buffer.concat([head, c])
    if (head.length < 8) return
    started = true
    let left = Number(head.readBigUInt64BE(0))
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length)
        left -= n
        if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) { s.once('drain', pump); return }
      }
      s.end()
    }
    pump()
  })
  s.on('end', () => { if (!started) s.end() })
  s.on('error', () => s.destroy())
})
const echo = net.createServer((s) => {
  s.on('data', (c) => s.write(c))
  s.on('error', () => s.destroy())
})
const listen = (srv) => new Promise((r) => srv.listen(0, '127.0.0.1', 1024, () => r(srv.address().port)))
Promise.all([listen(sink), listen(source), listen(echo)]).then(([sink, source, echo]) => {
  process.stdout.write(JSON.stringify({ sink, source, echo }) + '\\n')
})
process.on('SIGTERM', () => process.exit(0))
`

/**
 * The floor for any Node.js relay: ten lines that accept a connection, dial the upstream and
 * `pipe()` both ways, in a process of their own as Portcullis is. Listens once per upstream.
 */
const BARE_RELAY_CODE = `
const net = require('node:net')
const targets = JSON.parse(process.argv[1])
const listen = (target) => new Promise((r) => {
  const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
    const u = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true, noDelay: true })
    c.pipe(u)
    u.pipe(c)
    c.on('error', () => u.destroy())
    u.on('error', () => c.destroy())
  })
  srv.listen(0, '127.0.0.1', 1024, () => r(srv.address().port))
})
Promise.all(targets.map(listen)).then((ports) => process.stdout.write(JSON.stringify(ports) + '\\n'))
process.on('SIGTERM', () => process.exit(0))
`

/** The bare relay's ports for the sink and the source. */
async function startBareRelay(up: Upstreams): Promise<{ sink: number; source: number }> {
  const child: ChildProcess = spawn(process.execPath, ['-e', BARE_RELAY_CODE, JSON.stringify([up.sink, up.source])], { stdio: ['ignore', 'pipe', 'inherit'] })
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    await exited
  })
  const line = await withTimeout(
    new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString()
        const nl = out.indexOf('\n')
        if (nl !== -1) resolve(out.slice(0, nl))
      })
      child.once('exit', () => reject(new Error('the bare relay exited during startup')))
    }),
    10_000,
    'starting the bare relay',
  )
  const [sink, source] = JSON.parse(line) as [number, number]
  return { sink, source }
}

async function startUpstreams(): Promise<Upstreams> {
  const child: ChildProcess = spawn(process.execPath, ['-e', UPSTREAM_CODE], { stdio: ['ignore', 'pipe', 'inherit'] })
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    await exited
  })
  const line = await withTimeout(
    new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString()
        const nl = out.indexOf('\n')
        if (nl !== -1) resolve(out.slice(0, nl))
      })
      child.once('exit', () => reject(new Error('the upstream process exited during startup')))
    }),
    10_000,
    'starting the upstreams',
  )
  const ports = JSON.parse(line) as { sink: number; source: number; echo: number }
  return { ...ports, pid: child.pid ?? 0 }
}

// ---------------------------------------------------------------------------------------------
// Portcullis with the tunnel routes, and the token of a signed-in user.

interface Proxy {
  readonly px: PortcullisProcess
  readonly port: number
  /** The CA to trust, when the main listener speaks TLS. */
  readonly ca: string | undefined
  /** The token a tunnel client keeps (`Authorization: Pomerium <token>`). */
  readonly token: string
}

let idpStarted: Promise<TestIdp> | undefined

function benchIdp(): Promise<TestIdp> {
  idpStarted ??= (async () => {
    const idp = await startTestIdp({
      users: { [BENCH_USER.email]: { password: BENCH_USER.password, name: 'Bench User', groups: ['staff'] } },
      clients: [],
    })
    cleanups.push(() => idp.close())
    return idp
  })()
  return idpStarted
}

async function startProxy(up: Upstreams, useTls: boolean): Promise<Proxy> {
  const idp = await benchIdp()
  const port = await freePort()
  const scheme = useTls ? 'https' : 'http'
  const authn = `${scheme}://authn.localhost:${port}`
  const client = await idp.registerClient({ clientId: `portcullis-${port}`, redirectUris: [`${authn}/oauth2/callback`] })
  const ca = useTls ? testPki().ca : undefined
  // Node matches no `*.localhost` wildcard (too few labels): the names themselves.
  const cert = ca ? makeServerCert(ca, ['authn.localhost', 'localhost', '127.0.0.1']) : undefined
  const tcp = (from: string, to: number, access: Record<string, unknown>): Record<string, unknown> => ({
    from: `tcp+https://${from}`,
    to: `tcp://127.0.0.1:${to}`,
    ...access,
  })
  const open = { allow_public_unauthenticated_access: true }
  const px = await startPortcullis({
    address: `127.0.0.1:${port}`,
    ...(cert ? { certificate_file: cert.certFile, certificate_key_file: cert.keyFile } : { insecure_server: true }),
    workers: 1,
    log_level: 'error',
    shared_secret: randomBytes(32).toString('base64'),
    cookie_secret: randomBytes(32).toString('base64'),
    authenticate_service_url: authn,
    idp_provider: 'oidc',
    idp_provider_url: idp.issuer,
    idp_client_id: client.clientId,
    idp_client_secret: client.clientSecret,
    routes: [
      tcp(SINK, up.sink, open),
      tcp(SOURCE, up.source, open),
      tcp(ECHO, up.echo, open),
      tcp(ECHO_AUTH, up.echo, { allow_any_authenticated_user: true }),
    ],
  })
  cleanups.push(() => stopProxy(px))
  // The login a tunnel client runs on Portcullis' own address (docs/tunnels.md), made once: its
  // token is the cached credential every measured tunnel carries.
  const dispatcher = localhostDispatcher(ca?.certPem ?? '')
  try {
    const base = `${scheme}://127.0.0.1:${port}`
    const res = await dispatcher.request({
      origin: base,
      method: 'GET',
      path: `/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent('http://127.0.0.1:9/cb')}`,
    })
    const signInUrl = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`login on ${base} answered ${res.statusCode}: ${signInUrl.slice(0, 200)}`)
    const r = await withTimeout(
      loginWithForm(signInUrl, BENCH_USER.email, BENCH_USER.password, { dispatcher, stopAt: (u) => u.host === '127.0.0.1:9', maxSteps: 30 }),
      20_000,
      `sign-in at ${base}`,
    )
    const token = r.url.searchParams.get('pomerium_jwt')
    if (!token) throw new Error(`the login came back without pomerium_jwt: ${r.url.href}`)
    return { px, port, ca: ca?.certPem, token }
  } catch (err) {
    const errors = px.stderr.concat(px.logs).slice(-10).join('\n')
    throw new Error(`${err instanceof Error ? err.message : String(err)}${errors ? `\n${errors}` : ''}`)
  } finally {
    await dispatcher.close()
  }
}

/**
 * SIGTERM and wait. Portcullis gives connections in flight up to 10 s; a cleartext connection
 * whose client left without sending a byte (the fixture's readiness probe) is held until then.
 */
async function stopProxy(px: PortcullisProcess): Promise<void> {
  const t0 = Date.now()
  const code = await px.stop(15_000)
  const ms = Date.now() - t0
  if (code !== 0) console.error(`portcullis exited with code ${String(code)} after ${ms} ms`)
  else if (ms > 2000) console.error(`(portcullis took ${ms} ms to stop)`)
}

// ---------------------------------------------------------------------------------------------
// Client side

interface Opened {
  readonly socket: net.Socket
  /** Bytes that arrived behind the CONNECT response head. */
  readonly rest: Buffer
}

/** A direct cleartext TCP connection, half-open like a tunnel client's. */
function openDirect(port: number): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true })
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve({ socket, rest: Buffer.alloc(0) })
    })
    socket.once('error', reject)
  })
}

/** Reads a response head; resolves with its status line's code, the head and what followed (socket paused). */
function readHead(socket: net.Socket): Promise<{ status: number; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      socket.off('error', reject)
      socket.off('end', onEnd)
      socket.pause()
      const head = buffered.subarray(0, end).toString('latin1')
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, rest: buffered.subarray(end + 4) })
    }
    const onEnd = (): void => reject(new Error('the proxy closed the connection without answering the CONNECT'))
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('end', onEnd)
  })
}

/** Opens a tunnel through Portcullis to `target`; `token` goes in `Authorization: Pomerium`. */
async function openTunnel(proxy: Proxy, target: string, token?: string, expect = 200): Promise<Opened> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    if (proxy.ca !== undefined) {
      const options: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
        host: '127.0.0.1',
        port: proxy.port,
        ca: proxy.ca,
        ALPNProtocols: ['http/1.1'],
        allowHalfOpen: true,
      }
      const s = tls.connect(options)
      s.setNoDelay(true)
      s.once('secureConnect', () => {
        s.off('error', reject)
        resolve(s)
      })
      s.once('error', reject)
    } else {
      const s = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true, noDelay: true })
      s.once('connect', () => {
        s.off('error', reject)
        resolve(s)
      })
      s.once('error', reject)
    }
  })
  const auth = token !== undefined ? `Authorization: Pomerium ${token}\r\n` : ''
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`)
  const { status, head, rest } = await readHead(socket)
  if (status !== expect) {
    socket.destroy()
    throw new Error(`CONNECT ${target} answered ${status || 'nothing'}, expected ${expect}: ${head.split('\r\n')[0] ?? ''}`)
  }
  return { socket, rest }
}

/**
 * Upload: writes `bytes` (64 KiB at a time, honouring back-pressure), finishes, and waits for the
 * sink's count. Resolves with the seconds from the first byte written to the count received.
 */
function upload({ socket, rest }: Opened, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x62)
  return new Promise((resolve, reject) => {
    let answer: Buffer = rest
    socket.on('data', (c: Buffer) => {
      answer = Buffer.concat([answer, c])
    })
    socket.once('end', () => {
      const seconds = (performance.now() - t0) / 1000
      socket.destroy()
      if (answer.length !== 8) return reject(new Error(`the sink answered ${answer.length} bytes, expected an 8-byte count`))
      const got = Number(answer.readBigUInt64BE(0))
      if (got !== bytes) return reject(new Error(`the sink received ${got} bytes of ${bytes}`))
      resolve(seconds)
    })
    socket.once('error', reject)
    socket.resume()
    let left = bytes
    const t0 = performance.now()
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          socket.once('drain', pump)
          return
        }
      }
      socket.end()
    }
    pump()
  })
}

/** Download: asks the source for `bytes` and reads to its end. Resolves with the seconds taken. */
function download({ socket, rest }: Opened, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = rest.length
    socket.on('data', (c: Buffer) => {
      got += c.length
    })
    socket.once('end', () => {
      const seconds = (performance.now() - t0) / 1000
      socket.destroy()
      if (got !== bytes) return reject(new Error(`received ${got} bytes of ${bytes}`))
      resolve(seconds)
    })
    socket.once('error', reject)
    const ask = Buffer.alloc(8)
    ask.writeBigUInt64BE(BigInt(bytes))
    const t0 = performance.now()
    socket.write(ask)
    socket.resume()
  })
}

/** Writes one byte and waits for it to come back. */
function echoByte(socket: net.Socket, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const byte = randomBytes(1)
    const timer = setTimeout(() => done(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs)
    const onData = (c: Buffer): void => {
      done(c.length === 1 && c[0] === byte[0] ? undefined : new Error(`echoed ${c.length} unexpected bytes`))
    }
    const onEnd = (): void => done(new Error('the connection ended before the echo'))
    const done = (err: Error | undefined): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('error', done)
      socket.off('end', onEnd)
      socket.pause()
      if (err) reject(err)
      else resolve()
    }
    socket.on('data', onData)
    socket.once('error', done)
    socket.once('end', onEnd)
    socket.write(byte)
    socket.resume()
  })
}

// ---------------------------------------------------------------------------------------------
// Process figures

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
  } catch {
    return 100
  }
})()

/** Resident set size of `pid` in bytes (VmRSS in /proc/<pid>/status). */
function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m?.[1] === undefined) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(m[1]) * 1024
}

/** User + system CPU seconds `pid` has used. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** The process that serves the main listener: with `workers: 1` Portcullis itself, no children. */
function serverPid(px: PortcullisProcess): number {
  const pid = px.process.pid
  if (pid === undefined) throw new Error('portcullis has no pid')
  let children = ''
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
  } catch {
    // Not every kernel exposes it; the process itself is then what we measure.
  }
  if (children !== '') throw new Error(`portcullis (pid ${pid}) has child processes (${children}); expected one process with workers: 1`)
  return pid
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] ?? NaN
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Throughput {
  readonly label: string
  readonly upMiBs: number
  readonly downMiBs: number
  /** Portcullis CPU seconds per GiB moved (both directions together), tunnels only. */
  readonly cpuPerGiB?: number
  /** The direct copy this is compared with. */
  readonly direct?: Throughput
}

interface Setup {
  readonly label: string
  readonly p50: number
  readonly p99: number
  readonly mean: number
  readonly direct?: Setup
}

interface Memory {
  readonly label: string
  readonly tunnels: number
  readonly before: number
  readonly after: number
  readonly afterClose: number
  readonly relayed: number
}

const mibs = (bytes: number, seconds: number): number => bytes / MiB / seconds
const fmt = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a')
const signed = (n: number, digits: number): string => (n >= 0 ? '+' : '') + fmt(n, digits)

async function measureDirectThroughput(up: Upstreams, label: string): Promise<Throughput> {
  const upS = await upload(await openDirect(up.sink), transferBytes)
  const downS = await download(await openDirect(up.source), transferBytes)
  const r = { label, upMiBs: mibs(transferBytes, upS), downMiBs: mibs(transferBytes, downS) }
  console.error(`${label}: upload ${r.upMiBs.toFixed(0)} MiB/s, download ${r.downMiBs.toFixed(0)} MiB/s`)
  return r
}

async function measureBareThroughput(bare: { sink: number; source: number }, label: string, direct: Throughput): Promise<Throughput> {
  const upS = await upload(await openDirect(bare.sink), transferBytes)
  const downS = await download(await openDirect(bare.source), transferBytes)
  const r = { label, upMiBs: mibs(transferBytes, upS), downMiBs: mibs(transferBytes, downS), direct }
  console.error(`${label}: upload ${r.upMiBs.toFixed(0)} MiB/s (${(r.upMiBs / direct.upMiBs).toFixed(2)} of direct), download ${r.downMiBs.toFixed(0)} MiB/s (${(r.downMiBs / direct.downMiBs).toFixed(2)} of direct)`)
  return r
}

async function measureTunnelThroughput(proxy: Proxy, pid: number, label: string, direct: Throughput): Promise<Throughput> {
  const cpu0 = cpuSeconds(pid)
  const upS = await upload(await openTunnel(proxy, SINK), transferBytes)
  const downS = await download(await openTunnel(proxy, SOURCE), transferBytes)
  const cpu = cpuSeconds(pid) - cpu0
  const r = {
    label,
    upMiBs: mibs(transferBytes, upS),
    downMiBs: mibs(transferBytes, downS),
    cpuPerGiB: cpu / ((2 * transferBytes) / GiB),
    direct,
  }
  console.error(
    `${label}: upload ${r.upMiBs.toFixed(0)} MiB/s (${(r.upMiBs / direct.upMiBs).toFixed(2)} of direct), ` +
      `download ${r.downMiBs.toFixed(0)} MiB/s (${(r.downMiBs / direct.downMiBs).toFixed(2)} of direct), ` +
      `Portcullis CPU ${r.cpuPerGiB.toFixed(2)} s/GiB`,
  )
  return r
}

/** `n` sequential set-ups, each: open (`open`), one byte echoed, closed. Milliseconds each. */
async function measureSetups(n: number, open: () => Promise<Opened>): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const o = await open()
    await echoByte(o.socket)
    times.push(performance.now() - t0)
    o.socket.destroy()
  }
  return times
}

function summarise(label: string, times: readonly number[], direct?: Setup): Setup {
  const sorted = [...times].sort((a, b) => a - b)
  const r: Setup = {
    label,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
    ...(direct ? { direct } : {}),
  }
  console.error(
    `${label}: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms` +
      (direct ? ` (${signed(r.p50 - direct.p50, 3)} / ${signed(r.p99 - direct.p99, 3)} ms vs direct)` : ''),
  )
  return r
}

async function measureMemory(proxy: Proxy, pid: number, label: string): Promise<Memory> {
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000))
  await settle()
  const before = rssBytes(pid)
  const open: Opened[] = []
  // Opened 20 at a time (bounded load), each proven with an echoed byte before it counts.
  try {
    while (open.length < idleTunnels) {
      const batch = Math.min(20, idleTunnels - open.length)
      const opened = await Promise.all(
        Array.from({ length: batch }, async () => {
          const o = await openTunnel(proxy, ECHO)
          await echoByte(o.socket)
          return o
        }),
      )
      open.push(...opened)
    }
    await settle()
    const after = rssBytes(pid)
    // Every tunnel, after the RSS was read, still relays a byte each way.
    const results = await Promise.allSettled(open.map((o) => echoByte(o.socket)))
    const relayed = results.filter((r) => r.status === 'fulfilled').length
    for (const o of open) o.socket.destroy()
    open.length = 0
    await settle()
    const afterClose = rssBytes(pid)
    const r = { label, tunnels: idleTunnels, before, after, afterClose, relayed }
    console.error(
      `${label}: RSS ${(before / MiB).toFixed(1)} -> ${(after / MiB).toFixed(1)} MiB with ${idleTunnels} idle tunnels ` +
        `(${((after - before) / idleTunnels / 1024).toFixed(1)} KiB each), ${relayed}/${idleTunnels} relayed a byte, ` +
        `${(afterClose / MiB).toFixed(1)} MiB after closing them`,
    )
    return r
  } finally {
    for (const o of open) o.socket.destroy()
  }
}

// ---------------------------------------------------------------------------------------------
// Report


function report(throughputs: readonly Throughput[], setupRows: readonly Setup[], memories: readonly Memory[]): string {
  const out: string[] = []
  out.push(`Throughput, one connection, ${fmtBytes(transferBytes)} each way (median of ${repeats}):`)
  out.push('')
  out.push('| path | upload MiB/s | download MiB/s | upload ÷ direct | download ÷ direct | Portcullis CPU s/GiB |')
  out.push('|---|---:|---:|---:|---:|---:|')
  for (const t of throughputs) {
    const d = t.direct
    out.push(
      `| ${t.label} | ${fmt(t.upMiBs, 0)} | ${fmt(t.downMiBs, 0)} | ${d ? fmt(t.upMiBs / d.upMiBs, 2) : ''} | ` +
        `${d ? fmt(t.downMiBs / d.downMiBs, 2) : ''} | ${t.cpuPerGiB !== undefined ? fmt(t.cpuPerGiB, 2) : ''} |`,
    )
  }
  out.push('')
  out.push(`Set-up of a new connection until one byte is echoed, ${setups} sequential:`)
  out.push('')
  out.push('| path | p50 ms | p99 ms | mean ms | p50 added ms | p99 added ms |')
  out.push('|---|---:|---:|---:|---:|---:|')
  for (const s of setupRows) {
    const d = s.direct
    out.push(
      `| ${s.label} | ${fmt(s.p50, 3)} | ${fmt(s.p99, 3)} | ${fmt(s.mean, 3)} | ${d ? signed(s.p50 - d.p50, 3) : ''} | ${d ? signed(s.p99 - d.p99, 3) : ''} |`,
    )
  }
  out.push('')
  out.push('Idle tunnels held open (Portcullis VmRSS):')
  out.push('')
  out.push('| listener | tunnels | RSS before MiB | RSS with tunnels MiB | Δ MiB | per tunnel KiB | relayed a byte after | RSS after closing MiB |')
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const m of memories) {
    out.push(
      `| ${m.label} | ${m.tunnels} | ${fmt(m.before / MiB, 1)} | ${fmt(m.after / MiB, 1)} | ${signed((m.after - m.before) / MiB, 1)} | ` +
        `${fmt((m.after - m.before) / m.tunnels / 1024, 1)} | ${m.relayed}/${m.tunnels} | ${fmt(m.afterClose / MiB, 1)} |`,
    )
  }
  return out.join('\n')
}

function fmtBytes(n: number): string {
  if (n % GiB === 0) return `${n / GiB} GiB`
  if (n % MiB === 0) return `${n / MiB} MiB`
  return `${n} bytes`
}

// ---------------------------------------------------------------------------------------------
// Main

async function runMode(up: Upstreams, bare: { sink: number; source: number }, useTls: boolean, results: { t: Throughput[]; s: Setup[]; m: Memory[] }): Promise<void> {
  const name = useTls ? 'TLS' : 'cleartext'
  const proxy = await startProxy(up, useTls)
  const pid = serverPid(proxy.px)

  // The routes are what they claim: the signed-in one refuses a CONNECT without the token.
  const anonymous = await openTunnel(proxy, ECHO_AUTH, undefined, 302)
  anonymous.socket.destroy()

  // Warm-up (JIT, the session cache): not recorded.
  await measureSetups(50, () => openTunnel(proxy, ECHO))
  await measureSetups(50, () => openTunnel(proxy, ECHO_AUTH, proxy.token))
  await measureSetups(50, () => openDirect(up.echo))

  // Memory first: after the bulk transfers the heap has room to spare that would hide the cost.
  results.m.push(await measureMemory(proxy, pid, name))

  const warm = Math.min(transferBytes, 64 * MiB)
  await upload(await openDirect(up.sink), warm)
  await upload(await openTunnel(proxy, SINK), warm)
  await download(await openTunnel(proxy, SOURCE), warm)

  // Direct and tunnel alternate, `repeats` times; the medians are reported (other work on a
  // shared machine moves single transfers by a factor of two).
  const directs: Throughput[] = []
  const tunnels: Throughput[] = []
  const bares: Throughput[] = []
  for (let i = 0; i < repeats; i++) {
    const d = await measureDirectThroughput(up, `direct TCP #${i + 1}`)
    directs.push(d)
    tunnels.push(await measureTunnelThroughput(proxy, pid, `tunnel, ${name} #${i + 1}`, d))
    if (!useTls) bares.push(await measureBareThroughput(bare, `bare Node.js relay #${i + 1}`, d))
  }
  const median = (xs: readonly number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5)
  const direct: Throughput = {
    label: `direct TCP (paired with ${name})`,
    upMiBs: median(directs.map((d) => d.upMiBs)),
    downMiBs: median(directs.map((d) => d.downMiBs)),
  }
  results.t.push(direct, {
    label: `tunnel, ${name}`,
    upMiBs: median(tunnels.map((t) => t.upMiBs)),
    downMiBs: median(tunnels.map((t) => t.downMiBs)),
    cpuPerGiB: median(tunnels.map((t) => t.cpuPerGiB ?? NaN)),
    direct,
  })
  if (bares.length > 0) {
    results.t.push({
      label: 'bare Node.js relay (net pipe, cleartext; the floor)',
      upMiBs: median(bares.map((t) => t.upMiBs)),
      downMiBs: median(bares.map((t) => t.downMiBs)),
      direct,
    })
  }

  const directSetup = summarise(`direct TCP connect (paired with ${name})`, await measureSetups(setups, () => openDirect(up.echo)))
  results.s.push(directSetup)
  results.s.push(summarise(`tunnel, ${name}, public route`, await measureSetups(setups, () => openTunnel(proxy, ECHO)), directSetup))
  results.s.push(
    summarise(`tunnel, ${name}, signed-in route (token)`, await measureSetups(setups, () => openTunnel(proxy, ECHO_AUTH, proxy.token)), directSetup),
  )

  await stopProxy(proxy.px)
}

async function main(): Promise<number> {
  if (!isBuilt()) {
    console.error(`${MAIN_SCRIPT} does not exist (run \`npm run build\`)`)
    return 1
  }
  const modes = withTls ? [false, true] : [false]
  // Bound the whole run: transfers at 20 MiB/s at worst, set-ups at 20 ms, startup and slack.
  const budgetMs = modes.length * (((4 * repeats * transferBytes) / (20 * MiB)) * 1000 + setups * 3 * 20 + 90_000)
  const watchdog = setTimeout(() => {
    console.error(`bench: exceeded its ${Math.round(budgetMs / 1000)} s budget; stopping everything`)
    void cleanupAll().finally(() => process.exit(2))
  }, budgetMs)

  console.log('# Portcullis tunnel benchmark')
  console.log()
  console.log(
    `- node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at start, ${new Date().toISOString().slice(0, 10)}`,
  )
  console.log(
    `- ${fmtBytes(transferBytes)} each way, ${setups} sequential set-ups per path, ${idleTunnels} idle tunnels; ` +
      'Portcullis workers: 1, log_level error; upstreams in one child process, the client in this one',
  )
  console.log()

  const up = await startUpstreams()
  const bare = await startBareRelay(up)
  const results = { t: [] as Throughput[], s: [] as Setup[], m: [] as Memory[] }
  const failures: string[] = []
  for (const useTls of modes) {
    try {
      await runMode(up, bare, useTls, results)
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err)
      failures.push(`${useTls ? 'TLS' : 'cleartext'}: ${msg}`)
      console.error(`${useTls ? 'TLS' : 'cleartext'}: FAILED: ${msg}`)
    }
  }
  console.log(report(results.t, results.s, results.m))
  console.log()
  for (const m of results.m) if (m.relayed !== m.tunnels) console.log(`⚠ ${m.label}: only ${m.relayed} of ${m.tunnels} idle tunnels relayed a byte`)
  for (const f of failures) console.log(`✗ ${f.split('\n')[0] ?? f}`)
  clearTimeout(watchdog)
  return failures.length > 0 || results.m.some((m) => m.relayed !== m.tunnels) ? 1 : 0
}

let exitCode = 1
try {
  exitCode = await main()
} catch (err) {
  console.error('bench failed:', err)
} finally {
  await cleanupAll()
}
process.exit(exitCode)
