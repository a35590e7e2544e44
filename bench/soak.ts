/**
 * The endurance run (`npm run soak`; docs/performance.md): steady signed-in load through
 * Portcullis with `workers: 2` on PostgreSQL while things go wrong, then many idle connections.
 *
 * Phase 1, load with faults (SOAK_MINUTES, default 20; `--short` = 2): SOAK_CONCURRENCY (16)
 * keep-alive clients, each with its own signed-in user, request two routes in turn: `app` (any
 * signed-in user, an upstream that stays up) and `admin` (a group policy and identity headers, an
 * upstream this script kills and restarts). Meanwhile, spread over the run: 20 configuration
 * reloads (a route added and removed), the `admin` upstream killed for 3 s, the PostgreSQL server
 * (a private one, so nothing else is disturbed) stopped for 3 s, one worker killed with SIGKILL
 * (the primary starts another), and one user signed out. Every failed request is counted by cause;
 * the resident memory of every process is sampled every 10 s; the event-loop delay p99 is read
 * from the metrics at the end.
 *
 * Phase 2, held connections (SOAK_IDLE, 10,000; SOAK_WEBSOCKETS, 1,000): a one-worker Portcullis
 * with a public route holds that many idle keep-alive HTTP/1.1 connections, each having made one
 * request, then that many WebSockets through it; the memory added per connection is reported.
 *
 * The run fails (exit 1) when a request fails on a route that stayed configured for any cause
 * other than the `admin` upstream being down (and the seconds after the worker kill, reported
 * apart), when a signed-in user's session is lost, when the signed-out session works again, when
 * a held connection or WebSocket fails, or (full runs only) when a process ends more than 10% above
 * its resident memory after warm-up. Bounded: SOAK_MAX_REQUESTS (10,000,000) and the duration.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

import { request } from 'undici'
import WebSocket from 'ws'
import YAML from 'yaml'

import type { CookieJar } from '../test/fixtures/oidc-provider.js'
import { startPortcullis } from '../test/fixtures/portcullis.js'
import type { PortcullisProcess } from '../test/fixtures/portcullis.js'
import { startPrivatePostgres } from '../test/fixtures/private-postgres.js'
import { freePort, signIn, startSignInSetup } from '../test/fixtures/sign-in.js'
import type { SignInSetup } from '../test/fixtures/sign-in.js'
import { startHttpEcho, startWebSocketEcho } from '../test/fixtures/upstreams.js'

const short = process.argv.includes('--short')
const MINUTES = Number(process.env['SOAK_MINUTES'] ?? (short ? 2 : 20))
const CONCURRENCY = Number(process.env['SOAK_CONCURRENCY'] ?? 16)
const MAX_REQUESTS = Number(process.env['SOAK_MAX_REQUESTS'] ?? 10_000_000)
const IDLE = Number(process.env['SOAK_IDLE'] ?? 10_000)
const WEBSOCKETS = Number(process.env['SOAK_WEBSOCKETS'] ?? 1_000)
const DURATION_MS = MINUTES * 60_000
const WARM_UP_MS = Math.min(60_000, DURATION_MS * 0.2)
const SAMPLE_MS = 10_000

const problems: string[] = []
const log = (line: string): void => void process.stdout.write(`${line}\n`)

/** Resident memory of a process in MiB, from /proc (undefined once it is gone). */
function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/** The pids of a process's children (the cluster workers). */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** An upstream on a fixed port that can be killed and started again. */
async function restartableUpstream(): Promise<{ port: number; stop(): Promise<void>; start(): Promise<void> }> {
  const port = await freePort()
  let server: http.Server | undefined
  const start = async (): Promise<void> => {
    server = http.createServer((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
    })
    server.keepAliveTimeout = 60_000
    await new Promise<void>((resolve) => server?.listen(port, '127.0.0.1', resolve))
  }
  await start()
  return {
    port,
    start,
    stop: async () => {
      const s = server
      server = undefined
      if (!s) return
      s.closeAllConnections()
      await new Promise<void>((resolve) => s.close(() => resolve()))
    },
  }
}

interface Window {
  readonly cause: string
  from: number
  to: number
}

async function loadPhase(): Promise<void> {
  const pg = await startPrivatePostgres()
  const admin = await restartableUpstream()
  const metricsPort = await freePort()
  const userCount = CONCURRENCY + 1
  const users: Record<string, { password: string; groups: string[] }> = {}
  for (let i = 0; i < userCount; i++) users[`user${i}@example.com`] = { password: `pw-${i}`, groups: ['admins'] }
  const churnUpstream = await startHttpEcho()
  let setup: SignInSetup | undefined
  const windows: Window[] = []
  try {
    setup = await startSignInSetup({
      idp: { users, tokenLifetimes: { accessToken: 3600, idToken: 3600 } },
      settings: {
        workers: 2,
        databroker_storage_type: 'postgres',
        databroker_storage_connection_string: pg.url,
        log_level: 'warn',
        metrics_address: `127.0.0.1:${metricsPort}`,
      },
      routes: () => [
        { from: 'https://admin.localhost', to: `http://127.0.0.1:${admin.port}`, pass_identity_headers: true, policy: { allow: { and: [{ 'claim/groups': 'admins' }] } } },
      ],
    })
    const s = setup
    const primary = s.portcullis.process.pid as number
    const appUrl = `${s.app}/`
    const adminUrl = `https://admin.localhost:${s.port}/`
    log(`soak: Portcullis pid ${primary} (workers ${childrenOf(primary).join(', ')}), PostgreSQL on ${pg.port}, ${MINUTES} min, ${CONCURRENCY} clients`)

    // Each client signs in once, on both route hosts.
    const jars: CookieJar[] = []
    for (let i = 0; i < userCount; i++) {
      const jar = (await signIn(s, appUrl, `user${i}@example.com`, `pw-${i}`)).jar
      await signIn(s, adminUrl, `user${i}@example.com`, `pw-${i}`, jar).catch(() => undefined)
      jars.push(jar)
    }
    const leaver = jars[CONCURRENCY] as CookieJar
    const leaverCookie = leaver.header(new URL(appUrl)) ?? ''

    const started = Date.now()
    const deadline = started + DURATION_MS
    let completed = 0
    const failures = new Map<string, number>()
    const excused = new Map<string, number>()
    const statusOf = async (url: string, jar: CookieJar): Promise<number> => {
      const cookie = jar.header(new URL(url))
      const res = await request(url, { dispatcher: s.dispatcher, headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) }, headersTimeout: 30_000, bodyTimeout: 30_000 })
      await res.body.dump()
      return res.statusCode
    }
    const count = (map: Map<string, number>, key: string): void => void map.set(key, (map.get(key) ?? 0) + 1)
    const client = async (jar: CookieJar): Promise<void> => {
      for (let n = 0; Date.now() < deadline && completed < MAX_REQUESTS; n++) {
        const route = n % 2 === 0 ? 'app' : 'admin'
        const at = Date.now()
        let outcome: string
        try {
          const status = await statusOf(route === 'app' ? appUrl : adminUrl, jar)
          outcome = status === 200 ? 'ok' : `${route}: HTTP ${status}`
        } catch (err) {
          outcome = `${route}: ${(err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err))}`
        }
        completed++
        if (outcome === 'ok') continue
        const end = Date.now()
        const excuse = windows.find((w) => (route === 'admin' || w.cause !== 'admin upstream down') && at <= w.to && end >= w.from)
        if (excuse) count(excused, `${outcome} (${excuse.cause})`)
        else count(failures, outcome)
      }
    }

    // Memory samples: every process, every 10 s.
    const samples = new Map<number, Array<{ t: number; mib: number }>>()
    const sampler = setInterval(() => {
      for (const pid of [primary, ...childrenOf(primary)]) {
        const mib = rssMiB(pid)
        if (mib === undefined) continue
        const list = samples.get(pid) ?? []
        list.push({ t: Date.now() - started, mib })
        samples.set(pid, list)
      }
    }, SAMPLE_MS)

    const at = (fraction: number): number => started + WARM_UP_MS + (DURATION_MS - WARM_UP_MS - 15_000) * fraction
    const until = async (time: number): Promise<void> => {
      if (time > Date.now()) await sleep(time - Date.now())
    }
    const faults = (async () => {
      const events: Array<{ time: number; run: () => Promise<void> }> = []
      // 20 reloads: a route added, then removed, alternately.
      for (let i = 0; i < 20; i++) {
        events.push({
          time: at(i / 20),
          run: () => {
            const file = s.portcullis.configFile
            const config = YAML.parse(readFileSync(file, 'utf8')) as { routes: Array<Record<string, unknown>> }
            const routes = config.routes.filter((r) => r['from'] !== 'https://users.localhost')
            if (i % 2 === 0) routes.push({ from: 'https://users.localhost', to: churnUpstream.url, allow_any_authenticated_user: true, name: `churn-${i}` })
            writeFileSync(file, YAML.stringify({ ...config, routes }))
            return Promise.resolve()
          },
        })
      }
      events.push({
        time: at(0.3),
        run: async () => {
          const w: Window = { cause: 'admin upstream down', from: Date.now(), to: Number.POSITIVE_INFINITY }
          windows.push(w)
          await admin.stop()
          await sleep(3_000)
          await admin.start()
          // Connections pooled by Portcullis to the old process fail once; allow a second.
          w.to = Date.now() + 1_000
          log('soak: admin upstream killed and restarted')
        },
      })
      events.push({
        time: at(0.45),
        run: async () => {
          const page = await request(`${s.authn}/.pomerium/sign_out`, { dispatcher: s.dispatcher, headers: { cookie: leaver.header(new URL(s.authn)) ?? '' } })
          const csrf = /name="csrf" value="([^"]+)"/.exec(await page.body.text())?.[1] ?? ''
          const out = await request(`${s.authn}/.pomerium/sign_out`, {
            dispatcher: s.dispatcher,
            method: 'POST',
            headers: { cookie: leaver.header(new URL(s.authn)) ?? '', 'content-type': 'application/x-www-form-urlencoded' },
            body: `csrf=${encodeURIComponent(csrf)}`,
          })
          await out.body.dump()
          if (out.statusCode !== 302) problems.push(`sign-out answered ${out.statusCode}`)
          log('soak: one user signed out')
        },
      })
      events.push({
        time: at(0.55),
        run: async () => {
          await pg.stop()
          await sleep(3_000)
          await pg.start()
          log('soak: PostgreSQL stopped for 3 s and started again')
        },
      })
      events.push({
        time: at(0.75),
        run: () => {
          const worker = childrenOf(primary)[0]
          if (worker === undefined) {
            problems.push('no worker to kill')
            return Promise.resolve()
          }
          const w: Window = { cause: 'worker killed', from: Date.now(), to: Date.now() + 2_000 }
          windows.push(w)
          process.kill(worker, 'SIGKILL')
          log(`soak: worker ${worker} killed`)
          return Promise.resolve()
        },
      })
      events.sort((a, b) => a.time - b.time)
      for (const e of events) {
        await until(e.time)
        await e.run().catch((err: unknown) => problems.push(`fault step failed: ${String(err)}`))
      }
    })()
    await Promise.all([...jars.slice(0, CONCURRENCY).map(client), faults])
    clearInterval(sampler)

    // No session lost: every client's session still works; the signed-out one does not.
    for (const [i, jar] of jars.slice(0, CONCURRENCY).entries()) {
      const status = await statusOf(appUrl, jar)
      if (status !== 200) problems.push(`client ${i}'s session is lost (HTTP ${status})`)
    }
    const again = await request(appUrl, { dispatcher: s.dispatcher, headers: { cookie: leaverCookie, accept: 'text/html' } })
    await again.body.dump()
    if (again.statusCode === 200) problems.push('the signed-out session works again')

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    const lag = [...metrics.matchAll(/^nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? ([\d.e+-]+)$/gm)].map((m) => Number(m[1]) * 1000)

    const seconds = (Date.now() - started) / 1000
    log(`\nsoak: ${completed} requests in ${seconds.toFixed(0)} s (${(completed / seconds).toFixed(0)}/s)`)
    log(`failed on routes that stayed configured: ${[...failures.values()].reduce((a, b) => a + b, 0)}`)
    for (const [cause, n] of failures) log(`  ${n}  ${cause}`)
    log(`failed while excused: ${[...excused.values()].reduce((a, b) => a + b, 0)}`)
    for (const [cause, n] of excused) log(`  ${n}  ${cause}`)
    for (const [cause, n] of failures) problems.push(`${n} requests failed: ${cause}`)
    log(`event-loop delay p99 at the end: ${lag.map((l) => `${l.toFixed(1)} ms`).join(', ') || 'not reported'}`)
    log('resident memory (MiB), after warm-up → end:')
    for (const [pid, list] of samples) {
      const warm = list.find((x) => x.t >= WARM_UP_MS) ?? list[0]
      const end = list[list.length - 1]
      if (!warm || !end) continue
      const growth = (end.mib - warm.mib) / warm.mib
      const role = pid === primary ? 'primary' : 'worker'
      log(`  ${role} ${pid}: ${warm.mib.toFixed(1)} → ${end.mib.toFixed(1)} (${(growth * 100).toFixed(1)}%), ${list.length} samples, max ${Math.max(...list.map((x) => x.mib)).toFixed(1)}`)
      if (!short && list.length >= 6 && growth > 0.1) problems.push(`${role} ${pid} grew ${(growth * 100).toFixed(1)}% after warm-up`)
    }
  } finally {
    await setup?.close()
    await churnUpstream.close()
    await admin.stop()
    await pg.destroy()
  }
}

async function heldConnectionsPhase(): Promise<void> {
  const upstream = await startWebSocketEcho()
  const port = await freePort()
  let proc: PortcullisProcess | undefined
  const sockets: net.Socket[] = []
  const websockets: WebSocket[] = []
  try {
    proc = await startPortcullis({
      address: `127.0.0.1:${port}`,
      insecure_server: true,
      workers: 1,
      log_level: 'warn',
      shared_secret: randomBytes(32).toString('base64'),
      cookie_secret: randomBytes(32).toString('base64'),
      routes: [{ from: 'http://idle.localhost', to: upstream.url, allow_public_unauthenticated_access: true, allow_websockets: true }],
    })
    const pid = proc.process.pid as number
    const settle = async (): Promise<number> => {
      await sleep(2_000)
      return rssMiB(pid) ?? 0
    }
    const base = await settle()
    // Idle keep-alive connections, each after one request.
    let failed = 0
    const open = (): Promise<void> =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1')
        socket.setNoDelay(true)
        let got = ''
        const done = (ok: boolean): void => {
          if (!ok) failed++
          resolve()
        }
        socket.once('error', () => done(false))
        socket.on('data', (d: Buffer) => {
          got += d.toString('latin1')
          if (got.includes('\r\n\r\n') && /content-length: 0|\r\n\r\n[\s\S]+/i.test(got)) {
            socket.removeAllListeners('data')
            done(got.startsWith('HTTP/1.1 200'))
          }
        })
        socket.write('GET / HTTP/1.1\r\nHost: idle.localhost\r\nConnection: keep-alive\r\n\r\n')
        sockets.push(socket)
      })
    for (let i = 0; i < IDLE; i += 200) await Promise.all(Array.from({ length: Math.min(200, IDLE - i) }, open))
    const withIdle = await settle()
    const closedEarly = sockets.filter((s) => s.destroyed || s.readyState !== 'open').length
    log(`\nheld: ${IDLE} idle keep-alive connections: ${failed} failed, ${closedEarly} closed; RSS ${base.toFixed(1)} → ${withIdle.toFixed(1)} MiB, ${(((withIdle - base) * 1024 * 1024) / IDLE / 1024).toFixed(1)} KiB per connection`)
    if (failed > 0 || closedEarly > 0) problems.push(`${failed} idle connections failed and ${closedEarly} were closed`)
    for (const s of sockets.splice(0)) s.destroy()
    const afterIdle = await settle()
    // WebSockets through the same route.
    let wsFailed = 0
    const openWs = (): Promise<void> =>
      new Promise((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { host: 'idle.localhost' } })
        websockets.push(ws)
        ws.once('open', () => {
          ws.send('ping')
          ws.once('message', () => resolve())
        })
        ws.once('error', () => {
          wsFailed++
          resolve()
        })
      })
    for (let i = 0; i < WEBSOCKETS; i += 100) await Promise.all(Array.from({ length: Math.min(100, WEBSOCKETS - i) }, openWs))
    const withWs = await settle()
    const wsClosed = websockets.filter((w) => w.readyState !== WebSocket.OPEN).length
    log(`held: ${WEBSOCKETS} WebSockets: ${wsFailed} failed, ${wsClosed} not open; RSS ${afterIdle.toFixed(1)} → ${withWs.toFixed(1)} MiB, ${(((withWs - afterIdle) * 1024 * 1024) / WEBSOCKETS / 1024).toFixed(1)} KiB per WebSocket`)
    if (wsFailed > 0 || wsClosed > 0) problems.push(`${wsFailed} WebSockets failed and ${wsClosed} were not open`)
  } finally {
    for (const s of sockets) s.destroy()
    for (const w of websockets) w.terminate()
    await proc?.stop()
    await upstream.close()
  }
}

await loadPhase()
await heldConnectionsPhase()
if (problems.length > 0) {
  log(`\nsoak: FAILED\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
log('\nsoak: passed')
process.exit(0)
