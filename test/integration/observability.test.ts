/**
 * Metrics and health probes through the real process (issue 6, parts 1 and 4): `/metrics` on its
 * own listener only (hostile-input case: exposed endpoints / information leaks) with basic auth and mTLS, Pomerium's metric names checked
 * with `promtool check metrics`, counters that move with traffic, labels that do not grow with
 * it, config reload gauges, workers summed by the primary; `/healthz`, `/startupz`, `/readyz`
 * (store and provider discovery), `/status`, and SIGTERM turning readiness off before draining.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify as stringifyYaml } from 'yaml'
import { makeClientCert, makeServerCert, testPki } from '../fixtures/certs.js'
import { startTestIdp } from '../fixtures/oidc-provider.js'
import type { TestIdp } from '../fixtures/oidc-provider.js'
import { request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { freePort } from '../fixtures/sign-in.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { Upstream } from '../fixtures/upstreams.js'
import { waitFor } from '../fixtures/wait.js'

const promtool = spawnSync('promtool', ['--version']).status === 0
if (!promtool && process.env['CI'] === undefined) {
  console.warn('\n*** promtool is missing (Debian package prometheus): the exposition lint check is SKIPPED (it runs, and must pass, under CI) ***\n')
}

/**
 * What `promtool check metrics` may say about our exposition: Prometheus' naming advice that
 * Pomerium's own metric names (kept for compatibility) and prom-client's Node metrics do not follow.
 * Anything else (a parse error, a new problem) fails the test.
 */
const KNOWN_LINT = [
  /^pomerium_[a-z_]+_duration_ms metric names should not contain abbreviated units$/,
  /^pomerium_policy_count_total non-counter metrics should not have "_total" suffix$/,
  /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/,
]

function checkWithPromtool(text: string): void {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  assert.ok(r.status === 0 || r.status === 3, `promtool failed (exit ${r.status}): ${r.stderr}${r.stdout}`)
  const problems = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l !== '')
  const unknown = problems.filter((p) => !KNOWN_LINT.some((re) => re.test(p)))
  assert.deepEqual(unknown, [], 'promtool reports nothing beyond the known naming advice')
}

/** The value of one series (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const labelPart = /\{([^}]*)\}/.exec(line)?.[1] ?? ''
    const have = labelPart === '' ? [] : labelPart.split(',')
    if (want.every((w) => have.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

const AUTH = Buffer.from('prometheus:scrape-secret-9f2c').toString('base64')

async function scrape(p: PortcullisProcess, authorization = `Basic ${AUTH}`): Promise<{ status: number; body: string; type: string }> {
  const res = await request(`${p.listeners['metrics']}/metrics`, { headers: { authorization } })
  return { status: res.status, body: res.body, type: String(res.headers['content-type']) }
}

let upstream: Upstream
before(async () => {
  upstream = await startHttpEcho()
})
after(async () => {
  await upstream?.close()
})

function baseConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    address: '127.0.0.1:0',
    insecure_server: true,
    shared_secret: randomBytes(32).toString('base64'),
    cookie_secret: randomBytes(32).toString('base64'),
    metrics_address: '127.0.0.1:0',
    metrics_basic_auth: AUTH,
    routes: [
      { from: 'http://echo.localhost', to: upstream.url, name: 'echo', allow_public_unauthenticated_access: true },
      { from: 'http://other.localhost', to: upstream.url, allow_public_unauthenticated_access: true },
    ],
    ...extra,
  }
}

describe('metrics', () => {
  let p: PortcullisProcess
  before(async () => {
    p = await startPortcullis(baseConfig())
  })
  after(async () => {
    await p?.stop()
  })

  test('served on their own listener with basic auth, never on a route host', async () => {
    assert.ok(p.listeners['metrics'], 'a metrics listener is announced')
    assert.equal((await scrape(p, '')).status, 401)
    assert.equal((await scrape(p, `Basic ${Buffer.from('prometheus:wrong').toString('base64')}`)).status, 401)
    const ok = await scrape(p)
    assert.equal(ok.status, 200)
    assert.match(ok.type, /^text\/plain; version=0\.0\.4/)
    assert.match(ok.body, /^pomerium_build_info\{[^}]*version="\d+\.\d+\.\d+"[^}]*\} 1$/m)
    // The same path on a route host goes upstream like any other path.
    const onRoute = await request(`${p.url}/metrics`, { host: 'echo.localhost' })
    assert.equal(onRoute.status, 200)
    assert.doesNotMatch(onRoute.body, /# TYPE/)
    assert.equal((JSON.parse(onRoute.body) as { url: string }).url, '/metrics')
  })

  test('counters move with traffic; paths never become labels; promtool accepts the exposition', async () => {
    const labels = { service: 'proxy', route: 'echo', method: 'GET', status: '2xx' }
    const before = await scrape(p)
    const paths: string[] = []
    for (let i = 0; i < 7; i++) {
      const path = `/p-${randomBytes(6).toString('hex')}`
      paths.push(path)
      assert.equal((await request(`${p.url}${path}?q=${randomBytes(4).toString('hex')}`, { host: 'echo.localhost' })).status, 200)
    }
    assert.equal((await request(`${p.url}/x`, { host: 'nowhere.localhost' })).status, 404)
    const afterText = (await scrape(p)).body
    assert.equal(sample(afterText, 'pomerium_http_server_requests_total', labels) - sample(before.body, 'pomerium_http_server_requests_total', labels), 7)
    assert.equal(sample(afterText, 'pomerium_http_server_request_duration_ms_count', labels) - sample(before.body, 'pomerium_http_server_request_duration_ms_count', labels), 7)
    const client = { route: 'echo', status: '2xx' }
    assert.equal(sample(afterText, 'pomerium_http_client_requests_total', client) - sample(before.body, 'pomerium_http_client_requests_total', client), 7)
    assert.ok(sample(afterText, 'pomerium_http_server_requests_total', { route: '', status: '4xx' }) >= 1, 'no route: counted without a route label value')
    for (const path of paths) assert.ok(!afterText.includes(path.slice(1)), 'no path in the exposition')
    assert.ok(!afterText.includes('nowhere.localhost'), 'no client-chosen host in the exposition')
    assert.match(afterText, /^nodejs_eventloop_lag_seconds /m)
    assert.match(afterText, /^process_resident_memory_bytes /m)
    assert.match(afterText, /^pomerium_storage_operation_duration_ms_count\{backend="memory",operation="[a-zA-Z]+",result="ok"\} \d+/m)
    assert.match(afterText, /^pomerium_identity_manager_leader 1$/m)
    if (promtool || process.env['CI'] !== undefined) checkWithPromtool(afterText)
  })

  test('config reloads: the success gauge, its timestamp and the route count follow', async () => {
    const first = await scrape(p)
    assert.equal(sample(first.body, 'pomerium_config_last_reload_success', {}), 1)
    assert.equal(sample(first.body, 'pomerium_policy_count_total', {}), 2)
    writeFileSync(p.configFile, 'routes: 5\n')
    await p.waitForLog((e) => e['msg'] === 'configuration reload failed; keeping the previous configuration', 5000)
    assert.equal(sample((await scrape(p)).body, 'pomerium_config_last_reload_success', {}), 0)
    const config = baseConfig({ metrics_address: new URL(p.listeners['metrics'] as string).host })
    ;(config['routes'] as unknown[]).push({ from: 'http://third.localhost', to: upstream.url, allow_public_unauthenticated_access: true })
    writeFileSync(p.configFile, stringifyYaml({ ...config, address: `127.0.0.1:${p.port}`, shared_secret: undefined, cookie_secret: undefined }))
    const deadline = Date.now() + 5000
    let text = ''
    while (Date.now() < deadline) {
      text = (await scrape(p)).body
      if (sample(text, 'pomerium_config_last_reload_success', {}) === 1) break
      await sleep(50)
    }
    assert.equal(sample(text, 'pomerium_config_last_reload_success', {}), 1)
    assert.equal(sample(text, 'pomerium_policy_count_total', {}), 3)
    assert.ok(Math.abs(sample(text, 'pomerium_config_last_reload_success_timestamp', {}) - Date.now() / 1000) < 10)
  })
})

test('metrics over TLS with client certificates (metrics_client_ca)', async () => {
  const pki = testPki()
  const server = makeServerCert(pki.ca)
  const client = makeClientCert(pki.ca, 'prometheus')
  const p = await startPortcullis(
    baseConfig({
      metrics_basic_auth: undefined,
      metrics_certificate_file: server.certFile,
      metrics_certificate_key_file: server.keyFile,
      metrics_client_ca_file: pki.ca.certFile,
    }),
  )
  try {
    const url = `${(p.listeners['metrics'] as string).replace(/^http:/, 'https:')}/metrics`
    assert.match(p.listeners['metrics'] as string, /^https:/)
    await assert.rejects(request(url, { ca: pki.ca.certPem }), 'no client certificate: the handshake is refused')
    const ok = await request(url, { ca: pki.ca.certPem, clientCert: client })
    assert.equal(ok.status, 200)
    assert.match(ok.body, /pomerium_build_info/)
  } finally {
    await p.stop()
  }
})

test('workers: 2 — the primary serves one exposition summed over the workers', async () => {
  const p = await startPortcullis(baseConfig({ workers: 2 }))
  try {
    for (let i = 0; i < 10; i++) {
      assert.equal((await request(`${p.url}/w${i}`, { host: 'echo.localhost', headers: { connection: 'close' } })).status, 200)
    }
    const text = (await scrape(p)).body
    assert.equal(sample(text, 'pomerium_http_server_requests_total', { route: 'echo', status: '2xx' }), 10)
    assert.equal(sample(text, 'pomerium_build_info', {}), 1, 'build info is not summed')
    if (promtool || process.env['CI'] !== undefined) checkWithPromtool(text)
  } finally {
    await p.stop()
  }
})

describe('health probes', () => {
  let idp: TestIdp
  before(async () => {
    idp = await startTestIdp({ clients: [{ clientId: 'portcullis', clientSecret: 'secret', redirectUris: ['https://authn.localhost/oauth2/callback'] }] })
  })
  after(async () => {
    await idp?.close()
  })

  const withIdp = (issuer: string): Record<string, unknown> =>
    baseConfig({ metrics_address: undefined, idp_provider: 'oidc', idp_provider_url: issuer, idp_client_id: 'portcullis', idp_client_secret: 'secret', authenticate_service_url: 'https://authn.localhost' })

  test('/healthz, /startupz, /readyz and /status with the store and the provider reachable', async () => {
    const p = await startPortcullis(withIdp(idp.issuer))
    try {
      const base = p.listeners['health'] as string
      assert.ok(base, 'a health listener is announced')
      assert.equal((await request(`${base}/healthz`)).body, 'OK\n')
      assert.equal((await request(`${base}/startupz`)).status, 200)
      const ready = await request(`${base}/readyz`)
      assert.equal(ready.status, 200, ready.body)
      const checks = (JSON.parse(ready.body) as { checks: Record<string, string> }).checks
      assert.equal(checks['databroker'], 'ok')
      assert.deepEqual(Object.entries(checks).filter(([k]) => k.startsWith('idp:')).map(([, v]) => v), ['ok'])
      const status = JSON.parse((await request(`${base}/status`)).body) as Record<string, unknown>
      assert.equal(status['ready'], true)
      assert.deepEqual(status['services'], ['all'])
      assert.equal((await request(`${base}/readyz`, { method: 'POST' })).status, 405)
      // Not on route hosts: there /readyz is an upstream path like any other.
      assert.equal((JSON.parse((await request(`${p.url}/readyz`, { host: 'echo.localhost' })).body) as { url: string }).url, '/readyz')
    } finally {
      await p.stop()
    }
  })

  test('/readyz is 503 and names the check while the provider cannot be discovered; /healthz stays 200', async () => {
    const closedPort = await freePort()
    const p = await startPortcullis(withIdp(`http://127.0.0.1:${closedPort}`))
    try {
      const base = p.listeners['health'] as string
      const ready = await request(`${base}/readyz`)
      assert.equal(ready.status, 503)
      const body = JSON.parse(ready.body) as { status: string; checks: Record<string, string> }
      assert.equal(body.status, 'not ready')
      assert.equal(body.checks['databroker'], 'ok')
      assert.ok(Object.entries(body.checks).some(([k, v]) => k.startsWith('idp:') && v !== 'ok'), ready.body)
      assert.equal((await request(`${base}/healthz`)).status, 200)
    } finally {
      await p.stop()
    }
  })

  test('SIGTERM: readiness turns false first, then requests in flight finish', async () => {
    const p = await startPortcullis(baseConfig({ metrics_address: undefined }))
    const base = p.listeners['health'] as string
    assert.equal((await request(`${base}/readyz`)).status, 200)
    const reached = upstream.requests.length
    const slow = request(`${p.url}/delay/1500`, { host: 'echo.localhost' })
    await waitFor('the slow request to reach the upstream', () => upstream.requests.slice(reached).some((r) => r.url === '/delay/1500'))
    p.process.kill('SIGTERM')
    let draining = false
    const deadline = Date.now() + 1000
    while (Date.now() < deadline && !draining) {
      const r = await request(`${base}/readyz`).catch(() => undefined)
      draining = r?.status === 503 && (JSON.parse(r.body) as { status: string }).status === 'draining'
      if (!draining) await sleep(20)
    }
    assert.ok(draining, '/readyz answered 503 "draining" while a request was still in flight')
    const done = await slow
    assert.equal(done.status, 200, 'the request in flight finished')
    assert.equal((await p.exited).code, 0)
  })
})
