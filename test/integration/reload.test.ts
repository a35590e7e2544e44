/**
 * End-to-end hot reload (Pomerium docs: Config sources and hot reload) and the command line: the running binary picks
 * up edits of its config file and of files the config references, on its own and on SIGHUP,
 * keeps serving the old config when the new one is invalid, and never drops requests or
 * WebSocket connections that are in flight. `portcullis validate` and start-up errors are
 * checked through the real CLI.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { WebSocket } from 'ws'
import { stringify } from 'yaml'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import { MAIN_SCRIPT, parseLogLine, REPO_ROOT, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho, startWebSocketEcho } from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream, WebSocketUpstream } from '../fixtures/upstreams.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
/** How long a change the proxy must not notice is given to (wrongly) take effect. */
const NO_RELOAD_WINDOW_MS = 600

function route(host: string, to: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { from: `https://${host}`, to, allow_public_unauthenticated_access: true, ...extra }
}

function baseConfig(routes: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { address: '127.0.0.1:0', insecure_server: true, log_level: 'info', ...extra, routes }
}

/** Replaces `file` atomically (write to a temp name, rename), as editors and ConfigMaps do. */
function replaceFile(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}

const count = (px: PortcullisProcess, msg: string): number =>
  px.logs.map(parseLogLine).filter((e) => e['msg'] === msg).length

/** Waits until more than `seen` log lines with message `msg` exist. */
async function waitForCount(px: PortcullisProcess, msg: string, seen: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (count(px, msg) <= seen) {
    if (Date.now() > deadline) {
      throw new Error(`no new "${msg}" log line within ${timeoutMs} ms\n${px.logs.slice(-10).join('\n')}`)
    }
    await sleep(25)
  }
}

async function statusOf(px: PortcullisProcess, host: string, path = '/'): Promise<number> {
  return (await request(`${px.url}${path}`, { host })).status
}

void describe('hot reload of the config file', () => {
  let one: Upstream | undefined
  let two: Upstream | undefined
  const procs: PortcullisProcess[] = []
  const dirs: string[] = []
  before(async () => {
    one = await startHttpEcho()
    two = await startHttpEcho()
  })
  after(async () => {
    for (const p of procs) await p.stop()
    await one?.close()
    await two?.close()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })
  const start = async (config: Record<string, unknown>, args?: string[]): Promise<PortcullisProcess> => {
    const p = await startPortcullis(config, args ? { args } : {})
    procs.push(p)
    return p
  }

  void it('a route added to the config file is served without a restart', async () => {
    assert.ok(one && two)
    const px = await start(baseConfig([route('one.localhost', one.url)]))
    const pid = px.process.pid
    assert.equal(await statusOf(px, 'one.localhost'), 200)
    assert.equal(await statusOf(px, 'two.localhost'), 404)
    const seen = count(px, 'config reloaded')
    replaceFile(px.configFile, stringify(baseConfig([route('one.localhost', one.url), route('two.localhost', two.url)])))
    await waitForCount(px, 'config reloaded', seen)
    const r = await request(`${px.url}/new`, { host: 'two.localhost' })
    assert.equal(r.status, 200)
    assert.equal(two.requests.at(-1)?.url, '/new')
    assert.equal(await statusOf(px, 'one.localhost'), 200)
    assert.equal(px.process.pid, pid)
    assert.equal(px.process.exitCode, null, 'same process, still running')

    // An in-place write (no rename) is picked up too, here removing the first route again.
    const seen2 = count(px, 'config reloaded')
    writeFileSync(px.configFile, stringify(baseConfig([route('two.localhost', two.url)])))
    await waitForCount(px, 'config reloaded', seen2)
    assert.equal(await statusOf(px, 'one.localhost'), 404)
    assert.equal(await statusOf(px, 'two.localhost'), 200)
  })

  void it('SIGHUP reloads an edit the file watcher cannot see', async () => {
    assert.ok(one && two)
    // The config is reached through a symlink in another directory. Editing the target changes
    // nothing in the watched directory, so only SIGHUP can make the proxy notice.
    const realDir = mkdtempSync(join(tmpdir(), 'portcullis-real-'))
    const linkDir = mkdtempSync(join(tmpdir(), 'portcullis-link-'))
    dirs.push(realDir, linkDir)
    const real = join(realDir, 'config.yaml')
    const link = join(linkDir, 'config.yaml')
    writeFileSync(real, stringify(baseConfig([route('one.localhost', one.url)])))
    symlinkSync(real, link)
    const px = await start(baseConfig([]), ['--config', link])
    assert.equal(await statusOf(px, 'one.localhost'), 200)
    writeFileSync(real, stringify(baseConfig([route('one.localhost', one.url), route('two.localhost', two.url)])))
    // Proving that nothing happens: a watcher that did notice would have reloaded within this window.
    await sleep(NO_RELOAD_WINDOW_MS)
    assert.equal(await statusOf(px, 'two.localhost'), 404, 'not reloaded before SIGHUP')
    const seen = count(px, 'config reloaded')
    px.process.kill('SIGHUP')
    await px.waitForLog((e) => e['msg'] === 'SIGHUP received: reloading configuration')
    await waitForCount(px, 'config reloaded', seen)
    assert.equal(await statusOf(px, 'two.localhost'), 200)
    assert.equal(px.process.exitCode, null, 'SIGHUP does not stop the process')
  })

  void it('an invalid new config keeps the old routes running and logs why', async () => {
    assert.ok(one && two)
    const px = await start(baseConfig([route('one.localhost', one.url)]))
    const failedBefore = count(px, 'configuration reload failed; keeping the previous configuration')
    replaceFile(
      px.configFile,
      stringify(baseConfig([route('two.localhost', two.url), { from: 'not a url', to: two.url }])),
    )
    await waitForCount(px, 'configuration reload failed; keeping the previous configuration', failedBefore)
    const why = px.logs
      .map(parseLogLine)
      .filter((e) => e['level'] === 'error' && typeof e['msg'] === 'string' && e['msg'].includes('routes[1].from'))
    assert.ok(why.length > 0, `an error line names the key path\n${px.logs.slice(-6).join('\n')}`)
    const msg = String(why[0]?.['msg'])
    assert.ok(msg.includes(px.configFile), `the error names the file: ${msg}`)
    assert.match(msg, /:\d+:\d+: error: routes\[1\]\.from/)
    // The old config is still in force, the new one is not.
    assert.equal(await statusOf(px, 'one.localhost'), 200)
    assert.equal(await statusOf(px, 'two.localhost'), 404)
    // YAML that does not parse at all is refused the same way.
    const failed2 = count(px, 'configuration reload failed; keeping the previous configuration')
    replaceFile(px.configFile, 'routes: [\n  - from: {{{\n')
    await waitForCount(px, 'configuration reload failed; keeping the previous configuration', failed2)
    assert.equal(await statusOf(px, 'one.localhost'), 200)
    // Fixing the file recovers.
    const seen = count(px, 'config reloaded')
    replaceFile(px.configFile, stringify(baseConfig([route('two.localhost', two.url)])))
    await waitForCount(px, 'config reloaded', seen)
    assert.equal(await statusOf(px, 'two.localhost'), 200)
    assert.equal(await statusOf(px, 'one.localhost'), 404)
  })
})

void describe('hot reload of referenced files', () => {
  let up: Upstream | undefined
  let px: PortcullisProcess | undefined
  let dir: string | undefined
  const pki = testPki()
  const first = makeServerCert(pki.ca, ['app.localhost', 'localhost'], { commonName: 'first-cert' })
  const second = makeServerCert(pki.ca, ['app.localhost', 'localhost'], { commonName: 'second-cert' })

  before(async () => {
    up = await startHttpEcho()
    dir = mkdtempSync(join(tmpdir(), 'portcullis-certs-'))
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'tls.crt'), first.certPem)
    writeFileSync(join(dir, 'tls.key'), first.keyPem)
    px = await startPortcullis({
      address: '127.0.0.1:0',
      log_level: 'info',
      certificate_file: join(dir, 'tls.crt'),
      certificate_key_file: join(dir, 'tls.key'),
      routes: [route('app.localhost', up.url)],
    })
  })
  after(async () => {
    await px?.stop()
    await up?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  const servedCn = (port: number, servername: string | undefined): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        ca: pki.ca.certPem,
        // The test reads which certificate is served after a reload; it checks the subject itself.
        rejectUnauthorized: false,
        ...(servername !== undefined ? { servername } : {}),
      })
      s.once('secureConnect', () => {
        const cn = s.getPeerCertificate().subject?.CN
        s.destroy()
        resolve(typeof cn === 'string' ? cn : '')
      })
      s.once('error', reject)
    })

  void it('replacing the certificate_file and key on disk switches the served certificate', async () => {
    assert.ok(px && dir)
    assert.equal(await servedCn(px.port, 'app.localhost'), 'first-cert')
    assert.equal(await servedCn(px.port, undefined), 'first-cert')
    const seen = count(px, 'config reloaded')
    // Key first, then certificate: an intermediate mismatched pair must not take effect.
    replaceFile(join(dir, 'tls.key'), second.keyPem)
    replaceFile(join(dir, 'tls.crt'), second.certPem)
    await waitForCount(px, 'config reloaded', seen)
    const deadline = Date.now() + 5000
    while ((await servedCn(px.port, 'app.localhost')) !== 'second-cert' && Date.now() < deadline) await sleep(100)
    assert.equal(await servedCn(px.port, 'app.localhost'), 'second-cert')
    // Clients that send no SNI get the new certificate too.
    assert.equal(await servedCn(px.port, undefined), 'second-cert')
    const r = await request(`${px.url}/after-cert`, { host: 'app.localhost', ca: pki.ca.certPem })
    assert.equal(r.status, 200)
  })
})

void describe('connections in flight during a reload', () => {
  let up: Upstream | undefined
  let other: Upstream | undefined
  let ws: WebSocketUpstream | undefined
  let px: PortcullisProcess | undefined
  before(async () => {
    up = await startHttpEcho()
    other = await startHttpEcho()
    ws = await startWebSocketEcho()
  })
  after(async () => {
    await px?.stop()
    await up?.close()
    await other?.close()
    await ws?.close()
  })

  void it('a slow request and an open WebSocket survive reloads, including one that moves their route', async () => {
    assert.ok(up && other && ws)
    const routes = [route('app.localhost', up.url), route('ws.localhost', ws.url, { allow_websockets: true })]
    px = await startPortcullis(baseConfig(routes))
    const proxy = px

    const socket = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`, { headers: { host: 'ws.localhost' } })
    const messages: string[] = []
    socket.on('message', (d: Buffer) => messages.push(d.toString()))
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    })
    const echo = async (text: string): Promise<void> => {
      const n = messages.length
      socket.send(text)
      const deadline = Date.now() + 3000
      while (messages.length === n && Date.now() < deadline) await sleep(10)
      assert.equal(messages.at(-1), text)
    }
    try {
      await echo('before')
      const slow = request(`${proxy.url}/delay/1500`, { host: 'app.localhost' })
      const deadline = Date.now() + 3000
      while (!up.requests.some((r) => r.url === '/delay/1500') && Date.now() < deadline) await sleep(10)

      // Reload 1: an unrelated route is added.
      let seen = count(proxy, 'config reloaded')
      replaceFile(proxy.configFile, stringify(baseConfig([...routes, route('new.localhost', other.url)])))
      await waitForCount(proxy, 'config reloaded', seen)
      assert.equal(await statusOf(proxy, 'new.localhost'), 200)
      await echo('after-reload-1')

      // Reload 2: both routes now point elsewhere; what is open keeps its old upstream.
      seen = count(proxy, 'config reloaded')
      replaceFile(
        proxy.configFile,
        stringify(baseConfig([route('app.localhost', other.url), route('ws.localhost', other.url, { allow_websockets: true })])),
      )
      await waitForCount(proxy, 'config reloaded', seen)
      await echo('after-reload-2')

      const res = await slow
      assert.equal(res.status, 200)
      assert.equal(res.json<EchoRecord>().url, '/delay/1500')
      assert.equal(socket.readyState, WebSocket.OPEN)
      // New requests follow the new config.
      const fresh = await request(`${proxy.url}/fresh`, { host: 'app.localhost' })
      assert.equal(fresh.status, 200)
      assert.equal(other.requests.at(-1)?.url, '/fresh')
      assert.ok(!up.requests.some((r) => r.url === '/fresh'))
    } finally {
      socket.terminate()
    }
  })
})

interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function cli(args: readonly string[], timeoutMs = 10_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN_SCRIPT, ...args], { cwd: REPO_ROOT, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

void describe('command line', () => {
  let dir: string | undefined
  let good = ''
  let bad = ''
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'))
    good = join(dir, 'good.yaml')
    bad = join(dir, 'bad.yaml')
    writeFileSync(
      good,
      [
        'address: 127.0.0.1:0',
        'insecure_server: true',
        'routes:',
        '  - from: https://app.localhost',
        '    prefix: /api',
        '    to: http://127.0.0.1:9',
        '    allow_public_unauthenticated_access: true',
        '  - from: https://admin.localhost',
        '    to: http://127.0.0.1:9',
        '    allowed_domains: [example.com]',
        '',
      ].join('\n'),
    )
    writeFileSync(
      bad,
      [
        'address: 127.0.0.1:0',
        'insecure_server: true',
        'routes:',
        '  - from: https://app.localhost',
        '    to: http://127.0.0.1:9',
        '  - from: not a url',
        '    to: http://127.0.0.1:9',
        '    timeout: banana',
        '',
      ].join('\n'),
    )
  })
  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  void it('validate prints each problem with file:line:column and key path, and exits 1', async () => {
    const r = await cli(['validate', '--config', bad])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    const out = r.stdout + r.stderr
    assert.ok(out.includes(`${bad}:6:11: error: routes[1].from`), out)
    assert.ok(out.includes(`${bad}:8:14: error: routes[1].timeout`), out)
    assert.match(out, /2 errors/)
  })

  void it('validate prints a route summary and exits 0 for a good config', async () => {
    const r = await cli(['validate', '--config', good])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /valid, 2 routes/)
    assert.match(r.stdout, /routes\[0\] https:\/\/app\.localhost prefix \/api -> http:\/\/127\.0\.0\.1:9\/ \(public\)/)
    assert.match(r.stdout, /routes\[1\] https:\/\/admin\.localhost -> .* \(protected\)/)
  })

  void it('the Go-style single-dash -config FILE (and -config=FILE) is accepted', async () => {
    const a = await cli(['validate', '-config', good])
    assert.equal(a.code, 0, a.stdout + a.stderr)
    assert.match(a.stdout, /valid, 2 routes/)
    const b = await cli(['validate', `-config=${bad}`])
    assert.equal(b.code, 1)
    assert.match(b.stdout + b.stderr, /routes\[1\]\.from/)
    // And a server started with -config serves.
    const px = await startPortcullis(baseConfig([]), { args: ['-config', good] })
    try {
      assert.equal((await request(`${px.url}/api/x`, { host: 'app.localhost' })).status, 503)
      assert.equal((await request(`${px.url}/`, { host: 'admin.localhost' })).status, 403)
    } finally {
      await px.stop()
    }
  })

  void it('a typo, inactive settings and no sign-in: start-up warns and serves; validate fails unless --allow-unknown', async () => {
    const yaml = [
      'address: 127.0.0.1:0',
      'insecure_server: true',
      'proxy_log_level: debug',
      'routes:',
      '  - from: https://public.localhost',
      '    to: http://127.0.0.1:9',
      '    allow_public_unauthenticated_acess: true',
      '',
    ].join('\n')
    const file = join(dir ?? '', 'typo.yaml')
    writeFileSync(file, yaml)
    const strict = await cli(['validate', '--config', file])
    assert.equal(strict.code, 1, strict.stdout + strict.stderr)
    assert.match(strict.stdout, /error: routes\[0\]\.allow_public_unauthenticated_acess: unknown setting, ignored \(did you mean allow_public_unauthenticated_access\?\)/)
    assert.match(strict.stdout, /--allow-unknown/)
    const lenient = await cli(['validate', '--allow-unknown', '--config', file])
    assert.equal(lenient.code, 0, lenient.stdout + lenient.stderr)
    for (const out of [strict.stdout, lenient.stdout]) {
      assert.match(out, /warning: accepted but not in effect yet.*: proxy_log_level/)
      assert.match(out, /warning: idp_provider: not set, so nobody can sign in: 1 of 1 route .* will answer 403 to everyone/)
    }
    const px = await startPortcullis(yaml)
    try {
      const stderr = px.stderr.join('\n')
      assert.match(stderr, /warning: routes\[0\]\.allow_public_unauthenticated_acess: unknown setting/)
      assert.match(stderr, /accepted but not in effect yet.*: proxy_log_level/)
      assert.match(stderr, /will answer 403 to everyone/)
      assert.equal((await request(`${px.url}/`, { host: 'public.localhost' })).status, 403)
    } finally {
      await px.stop()
    }
  })

  void it('an invalid config at startup exits 1 with the problems on stderr and listens nowhere', async () => {
    const r = await cli(['--config', bad])
    assert.equal(r.code, 1)
    assert.ok(r.stderr.includes(`${bad}:6:11: error: routes[1].from`), r.stderr)
    assert.ok(r.stderr.includes(`${bad}:8:14: error: routes[1].timeout`), r.stderr)
    assert.doesNotMatch(r.stdout, /"msg":"listening"/)
    const missing = await cli(['--config', join(dir ?? '', 'does-not-exist.yaml')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /does-not-exist\.yaml/)
  })
})
