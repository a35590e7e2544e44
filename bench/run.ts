/**
 * Throughput/latency benchmark: Portcullis against nginx, the yardstick used in
 * /work/shared/docs/performance.md (ratios to nginx measured in the same run are what is stable;
 * absolute req/s drift by about 25% between runs on these machines).
 *
 * Targets, each measured with `wrk -t1 -c1` and `wrk -t1 -c64` (--latency):
 *   direct          the upstream itself (nginx `return 200 "ok"`, 1 worker; node:http without nginx)
 *   nginx           nginx reverse proxy, 2 workers, keep-alive upstream pool (needs nginx)
 *   portcullis-1    Portcullis, workers: 1
 *   portcullis-2    Portcullis, workers: 2
 *   portcullis-10k  Portcullis, workers: 1, the benchmarked route last behind 10,000 others
 *   portcullis-log  Portcullis, workers: 1, access log on (log_level info, read through a pipe)
 *
 * Knobs (environment):
 *   BENCH_DURATION     per-run duration, e.g. `5s` (default), `10`, `500ms`
 *   BENCH_CONNECTIONS  comma list, default `1,64`
 *   BENCH_TARGETS      comma list of the targets above, default all
 *   BENCH_SKIP_PORTCULLIS=1 (or --skip-portcullis) measure only direct and nginx
 * Uses autocannon (from node_modules, as a child process) when wrk is missing.
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isBuilt, MAIN_SCRIPT, startPortcullis } from '../test/fixtures/portcullis.js'

const HOST = 'app.localhost'
const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url))
const TARGETS = ['direct', 'nginx', 'portcullis-1', 'portcullis-2', 'portcullis-10k', 'portcullis-log'] as const
type Target = (typeof TARGETS)[number]

interface Result {
  readonly target: Target
  readonly connections: number
  readonly rps: number
  readonly p50ms: number
  readonly p99ms: number
  /** Non-2xx responses and socket errors, which make a row suspect. */
  readonly errors: string | null
}

// ---------------------------------------------------------------------------------------------
// Configuration

function parseDurationSeconds(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(s)
  if (m === null) throw new Error(`BENCH_DURATION: cannot parse ${JSON.stringify(s)} (try 5s)`)
  const n = Number(m[1])
  const unit = m[2] ?? 's'
  const secs = unit === 'ms' ? n / 1000 : unit === 'm' ? n * 60 : n
  // wrk's -d has one-second granularity; anything shorter would measure nothing.
  return Math.max(1, Math.round(secs))
}

const durationS = parseDurationSeconds(process.env['BENCH_DURATION'] ?? '5s')
const connectionList = (process.env['BENCH_CONNECTIONS'] ?? '1,64')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n > 0)
const skipPortcullis =
  process.argv.includes('--skip-portcullis') || process.env['BENCH_SKIP_PORTCULLIS'] === '1'
const wantedTargets = new Set<string>(
  (process.env['BENCH_TARGETS'] ?? TARGETS.join(',')).split(',').map((s) => s.trim()),
)

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const haveWrk = which('wrk')
const haveNginx = which('nginx')

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

/** Kills a detached child's whole process group (nginx workers, cluster workers). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // Already gone.
  }
}

async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals,
  graceMs: number,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    killGroup(child, 'SIGKILL')
    return
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  killGroup(child, signal)
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
  killGroup(child, 'SIGKILL')
}

// ---------------------------------------------------------------------------------------------
// Servers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() =>
        typeof addr === 'object' && addr !== null
          ? resolve(addr.port)
          : reject(new Error('no port')),
      )
    })
  })
}

/** One GET with the benchmark Host header; resolves with the status (0 on connection error). */
function probe(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { headers: { host: HOST }, agent: false, timeout: 2000 }, (res) => {
      res.resume()
      res.once('end', () => resolve(res.statusCode ?? 0))
    })
    req.once('timeout', () => req.destroy())
    req.once('error', () => resolve(0))
  })
}

async function waitReady(
  url: string,
  child: ChildProcess,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited during startup`)
    if ((await probe(url)) === 200) return
    if (Date.now() > deadline)
      throw new Error(`${what} did not answer 200 at ${url} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface Server {
  readonly url: string
  readonly port: number
}

/**
 * Runs nginx in the foreground with its own prefix directory, so it needs no system config, no
 * root-owned paths, and leaves nothing behind.
 */
async function startNginx(
  name: string,
  workers: number,
  httpBlock: (port: number) => string,
): Promise<Server> {
  const prefix = mkdtempSync(join(tmpdir(), `portcullis-bench-${name}-`))
  // nginx workers drop to `nobody` when started as root; they must be able to enter the prefix.
  chmodSync(prefix, 0o755)
  mkdirSync(join(prefix, 'tmp'))
  let lastErr: unknown
  // The free port can be taken between probing and nginx binding it; a retry covers that race.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const conf = join(prefix, 'nginx.conf')
    writeFileSync(
      conf,
      `daemon off;
master_process on;
worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  # Load generators keep connections open for the whole run; never make them reconnect.
  keepalive_requests 10000000;
  keepalive_timeout 120s;
${httpBlock(port)}
}
`,
    )
    const child = spawn('nginx', ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    })
    const stderr: string[] = []
    child.stderr.on('data', (c: Buffer) => stderr.push(c.toString()))
    const url = `http://127.0.0.1:${port}`
    try {
      await waitReady(url, child, `nginx (${name})`)
      cleanups.push(async () => {
        // SIGQUIT is nginx's graceful shutdown; the group kill afterwards catches stragglers.
        await stopChild(child, 'SIGQUIT', 3000)
        rmSync(prefix, { recursive: true, force: true })
      })
      return { url, port }
    } catch (err) {
      await stopChild(child, 'SIGKILL', 1000)
      const log = existsSync(join(prefix, 'error.log'))
        ? readFileSync(join(prefix, 'error.log'), 'utf8')
        : ''
      lastErr = new Error(
        `${String(err)}\n${stderr.join('')}${log.split('\n').slice(-5).join('\n')}`,
      )
    }
  }
  rmSync(prefix, { recursive: true, force: true })
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr))
}

/** Fallback upstream without nginx: a keep-alive node:http server in its own process. */
async function startNodeUpstream(): Promise<Server> {
  const port = await freePort()
  const code = `
    const http = require('node:http')
    const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }); res.end('ok') })
    s.keepAliveTimeout = 120000
    s.listen(${port}, '127.0.0.1')
    process.on('SIGTERM', () => process.exit(0))`
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore', detached: true })
  const url = `http://127.0.0.1:${port}`
  cleanups.push(() => stopChild(child, 'SIGTERM', 2000))
  await waitReady(url, child, 'node upstream')
  return { url, port }
}

async function startUpstream(): Promise<Server> {
  if (!haveNginx) return startNodeUpstream()
  return startNginx(
    'upstream',
    1,
    (port) => `  server {\n    listen 127.0.0.1:${port};\n    location / { return 200 "ok"; }\n  }`,
  )
}

async function startNginxProxy(upstream: Server): Promise<Server> {
  return startNginx(
    'proxy',
    2,
    (port) => `  upstream backend {
    server 127.0.0.1:${upstream.port};
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }`,
  )
}

interface PortcullisVariant {
  readonly workers: number
  /** Routes placed before the benchmarked one (distinct hosts), to show lookup cost is flat. */
  readonly extraRoutes?: number
  readonly logLevel?: string
}

async function startPortcullisTarget(upstream: Server, variant: PortcullisVariant): Promise<Server> {
  const workers = variant.workers
  // An explicit port (rather than 0) lets the fixture detect readiness by TCP even if
  // `log_level: error` hides the `listening` line.
  const port = await freePort()
  const filler = Array.from({ length: variant.extraRoutes ?? 0 }, (_, i) => ({
    from: `https://app${i}.example.com`,
    to: upstream.url,
    allow_public_unauthenticated_access: true,
  }))
  const px = await startPortcullis({
    address: `127.0.0.1:${port}`,
    insecure_server: true,
    workers,
    log_level: variant.logLevel ?? 'error',
    routes: [
      ...filler,
      { from: `https://${HOST}`, to: upstream.url, allow_public_unauthenticated_access: true },
    ],
  })
  cleanups.push(async () => {
    const code = await px.stop(5000)
    if (code !== 0)
      console.error(`portcullis (workers: ${workers}) exited with code ${String(code)}`)
  })
  // Cluster workers come up one by one; wait until requests actually succeed.
  await waitReady(px.url, px.process, `portcullis (workers: ${workers})`)
  return { url: px.url, port: px.port }
}

// ---------------------------------------------------------------------------------------------
// Load generation

function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      const stdout = Buffer.concat(out).toString()
      if (code === 0) resolve(stdout)
      else
        reject(
          new Error(
            `${cmd} exited with ${String(code ?? signal)}\n${stdout}${Buffer.concat(err).toString()}`,
          ),
        )
    })
  })
}

const TIME_UNITS_MS: Readonly<Record<string, number>> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
}

function toMs(value: string, unit: string): number {
  const f = TIME_UNITS_MS[unit]
  if (f === undefined) throw new Error(`unknown wrk time unit ${unit}`)
  return Number(value) * f
}

/** Parses `wrk --latency` output: Requests/sec, the Latency Distribution, and error lines. */
export function parseWrk(out: string): {
  rps: number
  p50ms: number
  p99ms: number
  errors: string | null
} {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out)
  const pct = new Map<string, number>()
  const dist = out.split(/Latency Distribution/)[1] ?? ''
  for (const m of dist.matchAll(/^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$/gm)) {
    if (m[1] !== undefined && m[2] !== undefined && m[3] !== undefined)
      pct.set(String(Number(m[1])), toMs(m[2], m[3]))
  }
  const p50 = pct.get('50')
  const p99 = pct.get('99')
  if (rps?.[1] === undefined || p50 === undefined || p99 === undefined) {
    throw new Error(`cannot parse wrk output:\n${out}`)
  }
  const errors: string[] = []
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out)
  if (non2xx?.[1] !== undefined) errors.push(`${non2xx[1]} non-2xx`)
  const sock = /Socket errors:\s+(.*)/.exec(out)
  if (sock?.[1] !== undefined) errors.push(`socket errors: ${sock[1].trim()}`)
  return {
    rps: Number(rps[1]),
    p50ms: p50,
    p99ms: p99,
    errors: errors.length > 0 ? errors.join('; ') : null,
  }
}

async function measure(
  url: string,
  connections: number,
  seconds: number,
): Promise<{ rps: number; p50ms: number; p99ms: number; errors: string | null }> {
  const timeoutMs = (seconds + 15) * 1000
  if (haveWrk) {
    const out = await run(
      'wrk',
      [
        '-t1',
        `-c${connections}`,
        `-d${seconds}s`,
        '--timeout',
        '5s',
        '--latency',
        '-H',
        `Host: ${HOST}`,
        `${url}/`,
      ],
      timeoutMs,
    )
    return parseWrk(out)
  }
  // autocannon in its own process so it does not share an event loop with anything measured.
  const out = await run(
    process.execPath,
    [
      join(REPO_ROOT, 'node_modules', 'autocannon', 'autocannon.js'),
      '-c',
      String(connections),
      '-d',
      String(seconds),
      '-j',
      '-H',
      `host=${HOST}`,
      `${url}/`,
    ],
    timeoutMs,
  )
  const line = out.trim().split('\n').pop() ?? '{}'
  const j = JSON.parse(line) as {
    requests?: { average?: number }
    latency?: { p50?: number; p99?: number }
    non2xx?: number
    errors?: number
  }
  const errors = [j.non2xx ? `${j.non2xx} non-2xx` : '', j.errors ? `${j.errors} errors` : '']
    .filter((s) => s !== '')
    .join('; ')
  return {
    rps: j.requests?.average ?? 0,
    p50ms: j.latency?.p50 ?? 0,
    p99ms: j.latency?.p99 ?? 0,
    errors: errors === '' ? null : errors,
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(n: number | undefined, digits: number): string {
  return n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits)
}

function table(results: readonly Result[]): string {
  const rows = [
    '| target | connections | req/s | p50 ms | p99 ms | req/s ÷ nginx | req/s ÷ direct | p50 Δ vs nginx (ms) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const c of connectionList) {
    const nginx = results.find((r) => r.target === 'nginx' && r.connections === c)
    const direct = results.find((r) => r.target === 'direct' && r.connections === c)
    for (const r of results.filter((x) => x.connections === c)) {
      rows.push(
        `| ${r.target}${r.errors !== null ? ' ⚠' : ''} | ${c} | ${fmt(r.rps, 0)} | ${fmt(r.p50ms, 3)} | ${fmt(r.p99ms, 3)} | ` +
          `${nginx ? fmt(r.rps / nginx.rps, 2) : 'n/a'} | ${direct ? fmt(r.rps / direct.rps, 2) : 'n/a'} | ` +
          `${nginx ? (r.p50ms - nginx.p50ms >= 0 ? '+' : '') + fmt(r.p50ms - nginx.p50ms, 3) : 'n/a'} |`,
      )
    }
  }
  return rows.join('\n')
}

function versionOf(cmd: string, args: readonly string[]): string {
  try {
    // nginx prints its version on stderr, wrk on stdout (and exits 1); capture both.
    return (
      execFileSync('sh', ['-c', `${cmd} ${args.join(' ')} 2>&1 || true`])
        .toString()
        .split('\n')[0]
        ?.trim() ?? ''
    )
  } catch {
    return 'unknown'
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const targets = TARGETS.filter((t) => wantedTargets.has(t))
  const plannedRuns = targets.length * connectionList.length
  // Bound the whole run: measurements, one warm-up per target, startup, and slack.
  const budgetMs = (plannedRuns * (durationS + 2) + targets.length * 8 + 30) * 1000
  const watchdog = setTimeout(() => {
    console.error(
      `bench: exceeded its ${Math.round(budgetMs / 1000)} s budget; stopping everything`,
    )
    void cleanupAll().finally(() => process.exit(2))
  }, budgetMs)

  console.log('# Portcullis benchmark')
  console.log()
  console.log(
    `- node ${process.version}, ${cpus().length} CPUs, duration ${durationS}s per run, connections ${connectionList.join(', ')}`,
  )
  console.log(
    `- load generator: ${haveWrk ? `wrk -t1 (${versionOf('wrk', ['-v'])})` : 'autocannon (wrk not installed)'}`,
  )
  console.log(
    `- upstream: ${haveNginx ? `nginx return 200, 1 worker (${versionOf('nginx', ['-v'])})` : 'node:http (nginx not installed)'}`,
  )

  let portcullisNote: string | null = null
  if (skipPortcullis)
    portcullisNote = 'Portcullis skipped (--skip-portcullis / BENCH_SKIP_PORTCULLIS=1).'
  else if (!isBuilt())
    portcullisNote = `Portcullis skipped: ${MAIN_SCRIPT} does not exist (run \`npm run build\`).`
  if (portcullisNote !== null) console.log(`- ${portcullisNote}`)
  console.log()

  const upstream = await startUpstream()
  const results: Result[] = []
  const failures: string[] = []

  for (const target of targets) {
    let server: Server
    try {
      switch (target) {
        case 'direct':
          server = upstream
          break
        case 'nginx':
          if (!haveNginx) {
            console.log('nginx: skipped (not installed)')
            continue
          }
          server = await startNginxProxy(upstream)
          break
        case 'portcullis-1':
        case 'portcullis-2':
        case 'portcullis-10k':
        case 'portcullis-log':
          if (portcullisNote !== null) continue
          server = await startPortcullisTarget(upstream, {
            workers: target === 'portcullis-2' ? 2 : 1,
            ...(target === 'portcullis-10k' ? { extraRoutes: 10_000 } : {}),
            ...(target === 'portcullis-log' ? { logLevel: 'info' } : {}),
          })
          break
      }
      // Warm-up: JIT, connection pools, cluster workers; not recorded.
      await measure(server.url, Math.max(...connectionList), 1)
      for (const c of connectionList) {
        const m = await measure(server.url, c, durationS)
        results.push({ target, connections: c, ...m })
        console.error(
          `${target} c=${c}: ${m.rps.toFixed(0)} req/s, p50 ${m.p50ms.toFixed(3)} ms, p99 ${m.p99ms.toFixed(3)} ms${m.errors ? ` (${m.errors})` : ''}`,
        )
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err)
      failures.push(`${target}: ${msg}`)
      console.error(`${target}: FAILED: ${msg}`)
    }
  }

  console.log(table(results))
  console.log()
  for (const r of results)
    if (r.errors !== null) console.log(`⚠ ${r.target} c=${r.connections}: ${r.errors}`)
  for (const f of failures) console.log(`✗ ${f.split('\n')[0] ?? f}`)
  clearTimeout(watchdog)
  return failures.length > 0 ? 1 : 0
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
