/**
 * Throughput/latency benchmark: Portcullis against nginx as the yardstick (ratios to nginx
 * measured in the same run are what is stable; absolute req/s drift by about 25% between runs on
 * these machines).
 *
 * Targets, each measured with `wrk -t1 -c1` and `wrk -t1 -c64` (--latency):
 *   direct          the upstream itself (nginx `return 200 "ok"`, 1 worker; node:http without nginx)
 *   nginx           nginx reverse proxy, 2 workers, keep-alive upstream pool (needs nginx)
 *   portcullis-1    Portcullis, workers: 1
 *   portcullis-2    Portcullis, workers: 2
 *   portcullis-10k  Portcullis, workers: 1, the benchmarked route last behind 10,000 others
 *   portcullis-log  Portcullis, workers: 1, access log on (log_level info, read through a pipe)
 *   portcullis-auth Portcullis, workers: 1, sign-in required: the test OpenID provider
 *                   (test/fixtures/oidc-provider.ts) on loopback, a policy with several rules,
 *                   pass_identity_headers; signed in once before measuring, every request carries
 *                   the `_pomerium` session cookie
 *   portcullis-auth-2  the same with workers: 2 (the primary serves the databroker; each worker
 *                   keeps a synced copy of the sessions)
 *   nginx-authreq-static  nginx (2 workers) with `auth_request` to a static `return 200` server
 *                   (the cost floor of a subrequest, as an oauth2-proxy-style answer would cost)
 *   nginx-authreq-portcullis  the same nginx with `auth_request` to Portcullis' forward-auth
 *                   listener (workers: 1, or BENCH_FORWARD_AUTH_WORKERS; the recipe of
 *                   docs/delegated-authorization.md), signed
 *                   in: every request carries the session cookie and gets the assertion
 *   apache-oidc     Apache httpd + mod_auth_openidc (server-cache sessions in shm, claims passed as
 *                   headers) in front of the same upstream, against the same provider; signed in
 *                   once, every request carries the `mod_auth_openidc_session` cookie (needs
 *                   apache2 and libapache2-mod-auth-openidc; runs as our own child process)
 *
 * The signed-in targets must answer 200 "ok" from the upstream with their cookie (and not 200
 * without it) before they are measured. When the upstream is nginx, its stub_status counter is
 * read around every run: a run in which fewer requests reached the upstream than the load
 * generator completed (e.g. redirects to sign-in, which wrk does not count as errors) is flagged.
 *
 * Knobs (environment):
 *   BENCH_DURATION     per-run duration, e.g. `5s` (default), `10`, `500ms`
 *   BENCH_CONNECTIONS  comma list, default `1,64`
 *   BENCH_TARGETS      comma list of the targets above, default all
 *   BENCH_SKIP_PORTCULLIS=1 (or --skip-portcullis) measure only direct, nginx and apache-oidc
 *   BENCH_APACHE_MODULES  Apache module directory, default /usr/lib/apache2/modules
 * Uses autocannon (from node_modules, as a child process) when wrk is missing.
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
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
import type { Dispatcher } from 'undici'
import { loginWithForm, startTestIdp } from '../test/fixtures/oidc-provider.js'
import type { TestIdp } from '../test/fixtures/oidc-provider.js'
import { isBuilt, MAIN_SCRIPT, startPortcullis } from '../test/fixtures/portcullis.js'
import { localhostDispatcher } from '../test/fixtures/sign-in.js'

const HOST = 'app.localhost'
const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url))
const TARGETS = [
  'direct',
  'nginx',
  'portcullis-1',
  'portcullis-2',
  'portcullis-10k',
  'portcullis-log',
  'portcullis-auth',
  'portcullis-auth-2',
  'nginx-authreq-static',
  'nginx-authreq-portcullis',
  'apache-oidc',
] as const
type Target = (typeof TARGETS)[number]
/** Targets that sign in at the test provider before measuring (slower to start). */
const SIGN_IN_TARGETS: ReadonlySet<Target> = new Set<Target>(['portcullis-auth', 'portcullis-auth-2', 'nginx-authreq-portcullis', 'apache-oidc'])

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
const APACHE_MODULES = process.env['BENCH_APACHE_MODULES'] ?? '/usr/lib/apache2/modules'
const APACHE_MODULE_FILES = [
  'mod_mpm_event.so',
  'mod_authn_core.so',
  'mod_authz_core.so',
  'mod_authz_user.so',
  'mod_auth_openidc.so',
  'mod_proxy.so',
  'mod_proxy_http.so',
] as const
/** Why apache-oidc cannot run here, or null when it can. */
function whyNoApache(): string | null {
  if (!which('apache2'))
    return 'apache2 not installed (apt-get install apache2 libapache2-mod-auth-openidc)'
  const missing = APACHE_MODULE_FILES.find((f) => !existsSync(join(APACHE_MODULES, f)))
  return missing === undefined ? null : `${APACHE_MODULES}/${missing} missing`
}
const apacheMissing = whyNoApache()

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

/**
 * One GET with the benchmark Host header (plus `headers`); resolves with the status (0 on
 * connection error) and the start of the body.
 */
function probe(
  url: string,
  headers: Readonly<Record<string, string>> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(
      url,
      { headers: { host: HOST, ...headers }, agent: false, timeout: 2000 },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => {
          if (body.length < 500) body += c
        })
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }))
        res.once('error', () => resolve({ status: 0, body }))
      },
    )
    req.once('timeout', () => req.destroy())
    req.once('error', () => resolve({ status: 0, body: '' }))
  })
}

/** Waits until `url` answers with a status `ready` accepts (default: 200). */
async function waitReady(
  url: string,
  child: ChildProcess,
  what: string,
  timeoutMs = 10_000,
  ready: (status: number) => boolean = (status) => status === 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 0
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited during startup`)
    last = (await probe(url)).status
    if (ready(last)) return
    if (Date.now() > deadline)
      throw new Error(
        `${what} was not ready at ${url} within ${timeoutMs} ms (last status ${last || 'none'})`,
      )
    await new Promise((r) => setTimeout(r, 100))
  }
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

interface Server {
  readonly url: string
  readonly port: number
  /** Extra request headers every measured request carries (the session cookie of a sign-in). */
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * Runs nginx in the foreground with its own prefix directory, so it needs no system config, no
 * root-owned paths, and leaves nothing behind.
 */
async function startNginx(
  name: string,
  workers: number,
  httpBlock: (port: number) => string,
  /** Which answer means started (default 200); a server that asks for sign-in answers 401. */
  ready?: (status: number) => boolean,
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
      await waitReady(url, child, `nginx (${name})`, 10_000, ready)
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
    (port) =>
      `  server {\n    listen 127.0.0.1:${port};\n    location / { return 200 "ok"; }\n` +
      `    location = ${UPSTREAM_STATUS_PATH} { stub_status; }\n  }`,
  )
}

/** nginx stub_status on the upstream: counts the requests that reached it. */
const UPSTREAM_STATUS_PATH = '/__bench_upstream_status'

/** Total requests the nginx upstream has handled (its own status requests included), or null. */
async function upstreamRequests(upstream: Server): Promise<number | null> {
  if (!haveNginx) return null
  const { status, body } = await probe(`${upstream.url}${UPSTREAM_STATUS_PATH}`)
  // "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \nReading: ..."
  const m = /accepts handled requests\s+\d+\s+\d+\s+(\d+)/.exec(body)
  return status === 200 && m?.[1] !== undefined ? Number(m[1]) : null
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

/**
 * nginx with `auth_request` in front of the upstream; the subrequest goes to `auth` (host:port,
 * path) over a keep-alive pool with the forward-auth headers of docs/delegated-authorization.md.
 */
async function startNginxAuthRequest(name: string, upstream: Server, auth: { port: number; path: string }, extraServer = '', ready?: (status: number) => boolean): Promise<Server> {
  return startNginx(
    name,
    2,
    (port) => `  upstream backend {
    server 127.0.0.1:${upstream.port};
    keepalive 64;
    keepalive_requests 10000000;
  }
  upstream auth_backend {
    server 127.0.0.1:${auth.port};
    keepalive 64;
    keepalive_requests 10000000;
  }
${extraServer}
  server {
    listen 127.0.0.1:${port};
    location = /_auth {
      internal;
      proxy_pass http://auth_backend${auth.path};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location / {
      auth_request /_auth;
      auth_request_set $pomerium_jwt $upstream_http_x_pomerium_jwt_assertion;
      proxy_set_header X-Pomerium-Jwt-Assertion $pomerium_jwt;
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }`,
    ready,
  )
}

/** The cost floor: the subrequest answered `200` by a separate nginx server block. */
async function startNginxAuthStatic(upstream: Server): Promise<Server> {
  const authPort = await freePort()
  return startNginxAuthRequest('authreq-static', upstream, { port: authPort, path: '/' }, `  server {
    listen 127.0.0.1:${authPort};
    location / { return 200; }
  }`)
}

/** nginx asking Portcullis' forward-auth listener, with a signed-in session. */
async function startNginxAuthPortcullis(upstream: Server): Promise<Server> {
  const idp = await benchIdp()
  const port = await freePort()
  const forwardAuthPort = await freePort()
  const authn = `http://authn.localhost:${port}`
  const client = await idp.registerClient({ clientId: `portcullis-fa-${port}`, redirectUris: [`${authn}/oauth2/callback`] })
  const px = await startPortcullis({
    address: `127.0.0.1:${port}`,
    insecure_server: true,
    workers: Number(process.env['BENCH_FORWARD_AUTH_WORKERS'] ?? '1'),
    log_level: 'error',
    shared_secret: randomBytes(32).toString('base64'),
    cookie_secret: randomBytes(32).toString('base64'),
    authenticate_service_url: authn,
    idp_provider: 'oidc',
    idp_provider_url: idp.issuer,
    idp_client_id: client.clientId,
    idp_client_secret: client.clientSecret,
    forward_auth: { address: `127.0.0.1:${forwardAuthPort}`, trusted_proxies: ['127.0.0.1/32'] },
    routes: [{ from: `https://${HOST}`, to: upstream.url, pass_identity_headers: true, policy: AUTH_POLICY }],
  })
  cleanups.push(async () => {
    const code = await px.stop(5000)
    if (code !== 0) console.error(`portcullis (forward-auth) exited with code ${String(code)}`)
  })
  await waitReady(px.url, px.process, 'portcullis (forward-auth)', 10_000, (st) => st !== 0)
  const cookie = await signInCookie(`http://app.localhost:${port}`, '_pomerium')
  const nginx = await startNginxAuthRequest('authreq-portcullis', upstream, { port: forwardAuthPort, path: '/auth' }, '', (st) => st !== 0)
  const server: Server = { url: nginx.url, port: nginx.port, headers: { cookie } }
  await checkSignedIn(server, 'nginx-authreq-portcullis')
  return server
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
// Signed-in targets: one test OpenID provider (in this process, idle while measuring) serves
// both; each target registers its own client, signs in once like a browser, and is measured
// with the session cookie it got.

const BENCH_USER = {
  email: 'bench@example.com',
  password: randomBytes(12).toString('base64url'),
  name: 'Bench User',
  groups: ['admins', 'staff'],
} as const

let idpStarted: Promise<TestIdp> | undefined

function benchIdp(): Promise<TestIdp> {
  idpStarted ??= (async () => {
    const idp = await startTestIdp({
      users: {
        [BENCH_USER.email]: {
          password: BENCH_USER.password,
          name: BENCH_USER.name,
          groups: [...BENCH_USER.groups],
        },
      },
      // Each target registers its client once it knows its port.
      clients: [],
    })
    cleanups.push(() => idp.close())
    return idp
  })()
  return idpStarted
}

/**
 * Signs in at `origin` (e.g. `http://app.localhost:PORT`) through the provider's form, following
 * redirects with a cookie jar as a browser would, until the flow comes back to `origin/`; returns
 * the `Cookie` header value carrying the session cookie `cookieName` set for that host.
 */
async function signInCookie(origin: string, cookieName: string): Promise<string> {
  const appHost = new URL(origin).host
  // Plain http everywhere: the CA argument is unused, the dispatcher only resolves *.localhost.
  const agent = localhostDispatcher('')
  // Browsers announce HTML on navigations; mod_auth_openidc answers 401 instead of redirecting
  // to the provider when a request has no Accept header (it takes it for a script).
  const dispatcher = agent.compose(
    (dispatch) => (opts, handler) =>
      dispatch({ ...opts, headers: withHeader(opts.headers, 'accept', BROWSER_ACCEPT) }, handler),
  )
  try {
    let first = true
    const result = await withTimeout(
      loginWithForm(`${origin}/`, BENCH_USER.email, BENCH_USER.password, {
        dispatcher,
        stopAt: (u) => {
          if (first) {
            first = false
            return false
          }
          return u.host === appHost && u.pathname === '/'
        },
        maxSteps: 30,
      }),
      20_000,
      `sign-in at ${origin}`,
    )
    const cookies = result.jar.forHost(appHost)
    const value = cookies[cookieName]
    if (value === undefined)
      throw new Error(
        `sign-in at ${origin} came back without a ${cookieName} cookie (cookies: ${Object.keys(cookies).join(', ') || 'none'}); visited:\n  ${result.visited.join('\n  ')}`,
      )
    return `${cookieName}=${value}`
  } finally {
    await agent.close()
  }
}

const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'

/** `headers` (any of undici's shapes) plus `name: value`, unless a header of that name is set. */
function withHeader(
  headers: Dispatcher.DispatchOptions['headers'],
  name: string,
  value: string,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  if (Array.isArray(headers)) {
    // Flat [name, value, name, value, ...].
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const k = headers[i]
      const v = headers[i + 1]
      if (typeof k === 'string' && v !== undefined) out[k] = v
    }
  } else if (headers !== null && headers !== undefined) {
    const entries: Iterable<[string, string | string[] | undefined]> =
      Symbol.iterator in headers
        ? (headers as Iterable<[string, string | string[] | undefined]>)
        : Object.entries(headers)
    for (const [k, v] of entries) if (v !== undefined) out[k] = v
  }
  if (!Object.keys(out).some((k) => k.toLowerCase() === name)) out[name] = value
  return out
}

/**
 * Before measuring a signed-in target: with its cookie it must answer 200 "ok" from the upstream,
 * and without it must not (otherwise the run would measure something other than a guarded route).
 */
async function checkSignedIn(server: Server, what: string): Promise<void> {
  const anonymous = await probe(server.url)
  if (anonymous.status === 200)
    throw new Error(`${what}: answered 200 without a session; it is not guarding the route`)
  const signedIn = await probe(server.url, server.headers)
  if (signedIn.status !== 200 || signedIn.body !== 'ok')
    throw new Error(
      `${what}: a request with Host: ${HOST} and the session cookie answered ${signedIn.status || 'nothing'} ` +
        `${JSON.stringify(signedIn.body.slice(0, 200))}, expected 200 "ok" from the upstream; not measured`,
    )
}

/** The benchmarked route's policy: several rules, all satisfied by BENCH_USER. */
const AUTH_POLICY = [
  {
    allow: {
      or: [{ email: { ends_with: '@example.com' } }, { 'claim/groups': 'admins' }],
    },
    deny: { or: [{ http_method: { is: 'TRACE' } }] },
  },
  {
    allow: {
      and: [{ domain: { is: 'example.com' } }, { http_path: { starts_with: '/' } }],
    },
  },
]

async function startPortcullisAuth(upstream: Server, workers = 1): Promise<Server> {
  const idp = await benchIdp()
  const port = await freePort()
  const authn = `http://authn.localhost:${port}`
  const client = await idp.registerClient({
    clientId: `portcullis-${port}`,
    redirectUris: [`${authn}/oauth2/callback`],
  })
  const px = await startPortcullis({
    address: `127.0.0.1:${port}`,
    insecure_server: true,
    workers,
    log_level: 'error',
    shared_secret: randomBytes(32).toString('base64'),
    cookie_secret: randomBytes(32).toString('base64'),
    authenticate_service_url: authn,
    idp_provider: 'oidc',
    idp_provider_url: idp.issuer,
    idp_client_id: client.clientId,
    idp_client_secret: client.clientSecret,
    routes: [
      { from: `https://${HOST}`, to: upstream.url, pass_identity_headers: true, policy: AUTH_POLICY },
    ],
  })
  cleanups.push(async () => {
    const code = await px.stop(5000)
    if (code !== 0) console.error(`portcullis-auth exited with code ${String(code)}`)
  })
  try {
    // Without a session it redirects to sign-in (or answers 401): any HTTP answer means ready.
    await waitReady(px.url, px.process, 'portcullis-auth', 10_000, (s) => s !== 0)
    const cookie = await signInCookie(`http://app.localhost:${port}`, '_pomerium')
    const server: Server = { url: px.url, port: px.port, headers: { cookie } }
    await checkSignedIn(server, 'portcullis-auth')
    return server
  } catch (err) {
    const errors = px.stderr.concat(px.logs).slice(-10).join('\n')
    throw new Error(`${err instanceof Error ? err.message : String(err)}${errors ? `\n${errors}` : ''}`)
  }
}

/** The unprivileged user Apache's children switch to when we run as root. */
function apacheUser(): string {
  const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : ''
  return /^www-data:/m.test(passwd) ? 'www-data' : 'nobody'
}

function apacheGroup(user: string): string {
  const group = existsSync('/etc/group') ? readFileSync('/etc/group', 'utf8') : ''
  if (user === 'www-data' && /^www-data:/m.test(group)) return 'www-data'
  return /^nogroup:/m.test(group) ? 'nogroup' : 'nobody'
}

/**
 * Apache httpd with mod_auth_openidc as our own foreground child: its own ServerRoot, pid file,
 * mutexes and error log in a temp dir, listening on 127.0.0.1 only.
 */
async function startApacheOidc(upstream: Server): Promise<Server> {
  const idp = await benchIdp()
  const root = mkdtempSync(join(tmpdir(), 'portcullis-bench-apache-'))
  // Apache's children drop to www-data when started as root; they must be able to enter it.
  chmodSync(root, 0o755)
  const asRoot = process.getuid?.() === 0
  const user = asRoot ? apacheUser() : ''
  let lastErr: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const origin = `http://app.localhost:${port}`
    const client = await idp.registerClient({
      clientId: `apache-${port}`,
      redirectUris: [`${origin}/redirect_uri`],
    })
    const conf = join(root, 'httpd.conf')
    const load = (name: string, file: string): string =>
      `LoadModule ${name}_module ${APACHE_MODULES}/${file}`
    writeFileSync(
      conf,
      `ServerRoot "${root}"
ServerName app.localhost
Listen 127.0.0.1:${port}
PidFile "${root}/httpd.pid"
Mutex file:${root} default
ErrorLog "${root}/error.log"
LogLevel warn
${load('mpm_event', 'mod_mpm_event.so')}
${load('authn_core', 'mod_authn_core.so')}
${load('authz_core', 'mod_authz_core.so')}
${load('authz_user', 'mod_authz_user.so')}
${load('auth_openidc', 'mod_auth_openidc.so')}
${load('proxy', 'mod_proxy.so')}
${load('proxy_http', 'mod_proxy_http.so')}
${asRoot ? `User ${user}\nGroup ${apacheGroup(user)}\n` : ''}
# Two processes of 64 threads, all started up front and never reaped during a run: 64
# concurrent requests always find a thread (nginx runs 2 workers too).
StartServers 2
ServerLimit 2
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 128
MinSpareThreads 64
MaxSpareThreads 128
MaxConnectionsPerChild 0
# Load generators keep connections open for the whole run; never make them reconnect.
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120
Timeout 30

OIDCProviderMetadataURL ${idp.issuer}/.well-known/openid-configuration
OIDCClientID ${client.clientId}
OIDCClientSecret ${client.clientSecret ?? ''}
OIDCRedirectURI ${origin}/redirect_uri
OIDCCryptoPassphrase ${randomBytes(32).toString('hex')}
OIDCScope "openid email profile"
OIDCSessionType server-cache
OIDCCacheType shm
# Claims reach the upstream as OIDC_CLAIM_* request headers, comparable to Portcullis' identity headers.
OIDCPassClaimsAs headers

ProxyPreserveHost On
ProxyPass / ${upstream.url}/
<Location />
  AuthType openid-connect
  Require valid-user
</Location>
`,
    )
    const child = spawn('apache2', ['-f', conf, '-DFOREGROUND'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    })
    const stderr: string[] = []
    child.stderr.on('data', (c: Buffer) => stderr.push(c.toString()))
    try {
      // Without a session it redirects to the provider: any HTTP answer means ready.
      await waitReady(`http://127.0.0.1:${port}`, child, 'apache-oidc', 10_000, (s) => s !== 0)
    } catch (err) {
      // The free port can be taken between probing and Apache binding it; a retry covers that.
      await stopChild(child, 'SIGKILL', 1000)
      lastErr = new Error(`${String(err)}\n${stderr.join('')}${apacheLogTail(root)}`)
      continue
    }
    cleanups.push(async () => {
      // SIGTERM: the parent stops its children and releases its shared memory and mutexes.
      await stopChild(child, 'SIGTERM', 5000)
      rmSync(root, { recursive: true, force: true })
    })
    try {
      const cookie = await signInCookie(origin, 'mod_auth_openidc_session')
      const server: Server = { url: `http://127.0.0.1:${port}`, port, headers: { cookie } }
      await checkSignedIn(server, 'apache-oidc')
      return server
    } catch (err) {
      throw new Error(
        `${err instanceof Error ? err.message : String(err)}\n${stderr.join('')}${apacheLogTail(root)}`,
      )
    }
  }
  rmSync(root, { recursive: true, force: true })
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr))
}

function apacheLogTail(root: string): string {
  const file = join(root, 'error.log')
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-8).join('\n') : ''
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
export function parseWrk(out: string): Measurement {
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
  const total = /^\s*(\d+) requests in /m.exec(out)
  return {
    rps: Number(rps[1]),
    p50ms: p50,
    p99ms: p99,
    errors: errors.length > 0 ? errors.join('; ') : null,
    requests: total?.[1] !== undefined ? Number(total[1]) : null,
  }
}

interface Measurement {
  readonly rps: number
  readonly p50ms: number
  readonly p99ms: number
  readonly errors: string | null
  /** Completed requests in the run, when the load generator reports it. */
  readonly requests: number | null
}

async function measure(
  url: string,
  connections: number,
  seconds: number,
  headers: Readonly<Record<string, string>> = {},
): Promise<Measurement> {
  const timeoutMs = (seconds + 15) * 1000
  const extra = Object.entries(headers)
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
        ...extra.flatMap(([name, value]) => ['-H', `${name}: ${value}`]),
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
      // autocannon splits `-H` at the first `=` or `:`, so values may contain either.
      ...extra.flatMap(([name, value]) => ['-H', `${name}=${value}`]),
      `${url}/`,
    ],
    timeoutMs,
  )
  const line = out.trim().split('\n').pop() ?? '{}'
  const j = JSON.parse(line) as {
    requests?: { average?: number; total?: number }
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
    requests: j.requests?.total ?? null,
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(n: number | undefined, digits: number): string {
  return n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits)
}

function table(results: readonly Result[]): string {
  // Signed-in Portcullis against the signed-in yardstick, when both ran.
  const vsApache =
    results.some((r) => r.target === 'apache-oidc') &&
    results.some((r) => r.target === 'portcullis-auth' || r.target === 'portcullis-auth-2')
  const rows = [
    '| target | connections | req/s | p50 ms | p99 ms | req/s ÷ nginx | req/s ÷ direct | p50 Δ vs nginx (ms) |' +
      (vsApache ? ' req/s ÷ apache-oidc |' : ''),
    '|---|---:|---:|---:|---:|---:|---:|---:|' + (vsApache ? '---:|' : ''),
  ]
  for (const c of connectionList) {
    const nginx = results.find((r) => r.target === 'nginx' && r.connections === c)
    const direct = results.find((r) => r.target === 'direct' && r.connections === c)
    const apache = results.find((r) => r.target === 'apache-oidc' && r.connections === c)
    for (const r of results.filter((x) => x.connections === c)) {
      const apacheCell = !vsApache
        ? ''
        : (r.target === 'portcullis-auth' || r.target === 'portcullis-auth-2') && apache
          ? ` ${fmt(r.rps / apache.rps, 2)} |`
          : ' |'
      rows.push(
        `| ${r.target}${r.errors !== null ? ' ⚠' : ''} | ${c} | ${fmt(r.rps, 0)} | ${fmt(r.p50ms, 3)} | ${fmt(r.p99ms, 3)} | ` +
          `${nginx ? fmt(r.rps / nginx.rps, 2) : 'n/a'} | ${direct ? fmt(r.rps / direct.rps, 2) : 'n/a'} | ` +
          `${nginx ? (r.p50ms - nginx.p50ms >= 0 ? '+' : '') + fmt(r.p50ms - nginx.p50ms, 3) : 'n/a'} |` +
          apacheCell,
      )
    }
  }
  return rows.join('\n')
}

/** mod_auth_openidc's version from the Debian package, when dpkg knows it. */
function apacheOidcVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libapache2-mod-auth-openidc'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim()
  } catch {
    return '(version unknown)'
  }
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
  // Signed-in targets also start the provider, register a client and sign in (about 2 s here).
  const signInTargets = targets.filter((t) => SIGN_IN_TARGETS.has(t)).length
  const budgetMs =
    (plannedRuns * (durationS + 2) + targets.length * 8 + signInTargets * 25 + 30) * 1000
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
  if (targets.includes('apache-oidc'))
    console.log(
      `- apache-oidc: ${apacheMissing === null ? `${versionOf('apache2', ['-v'])}, mod_auth_openidc ${apacheOidcVersion()}, mpm_event 2×64 threads` : `skipped: ${apacheMissing}`}`,
    )
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
        case 'portcullis-auth':
        case 'portcullis-auth-2':
          if (portcullisNote !== null) continue
          server = await startPortcullisAuth(upstream, target === 'portcullis-auth-2' ? 2 : 1)
          break
        case 'nginx-authreq-static':
        case 'nginx-authreq-portcullis':
          if (!haveNginx) {
            console.log(`${target}: skipped (nginx not installed)`)
            continue
          }
          if (target === 'nginx-authreq-portcullis' && portcullisNote !== null) continue
          server = target === 'nginx-authreq-static' ? await startNginxAuthStatic(upstream) : await startNginxAuthPortcullis(upstream)
          break
        case 'apache-oidc':
          if (apacheMissing !== null) {
            console.log(`apache-oidc: skipped (${apacheMissing})`)
            continue
          }
          server = await startApacheOidc(upstream)
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
      await measure(server.url, Math.max(...connectionList), 1, server.headers)
      for (const c of connectionList) {
        const before = await upstreamRequests(upstream)
        const m = await measure(server.url, c, durationS, server.headers)
        const after = await upstreamRequests(upstream)
        const problems = m.errors !== null ? [m.errors] : []
        if (before !== null && after !== null && m.requests !== null) {
          // Minus our own status request; requests in flight at the end make `reached` larger.
          const reached = after - before - 1
          if (reached < m.requests * 0.99)
            problems.push(`only ${reached} of ${m.requests} requests reached the upstream`)
        }
        if (server.headers !== undefined) {
          // The session must have lasted the whole run (wrk does not count 3xx as errors).
          const still = await probe(server.url, server.headers)
          if (still.status !== 200) problems.push(`session cookie answered ${still.status} after the run`)
        }
        results.push({
          target,
          connections: c,
          rps: m.rps,
          p50ms: m.p50ms,
          p99ms: m.p99ms,
          errors: problems.length > 0 ? problems.join('; ') : null,
        })
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
