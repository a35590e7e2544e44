/**
 * Forwarding integration tests: timeouts, unreachable upstreams, error pages, non-public routes,
 * and routes Portcullis answers itself (`redirect`, `response`).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess, Response } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { Upstream } from '../fixtures/upstreams.js'
import { closedPort } from './forwarding-helpers.js'

const PUBLIC = { allow_public_unauthenticated_access: true }
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

async function timed(p: Promise<Response>): Promise<{ r: Response; ms: number }> {
  const t0 = Date.now()
  const r = await p
  return { r, ms: Date.now() - t0 }
}

void describe('forwarding: timeouts, errors and direct responses', () => {
  let px: PortcullisProcess
  let echo: Upstream
  let dead = 0

  before(async () => {
    echo = await startHttpEcho()
    dead = await closedPort()
    const to = echo.url
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      default_upstream_timeout: '1s',
      routes: [
        { from: 'https://default-timeout.localhost', to, ...PUBLIC },
        { from: 'https://route-timeout.localhost', to, timeout: '500ms', ...PUBLIC },
        { from: 'https://long-timeout.localhost', to, timeout: '5s', ...PUBLIC },
        { from: 'https://idle.localhost', to, timeout: '10s', idle_timeout: '500ms', ...PUBLIC },
        { from: 'https://dead.localhost', to: `http://127.0.0.1:${dead}`, ...PUBLIC },
        { from: 'https://dead-h2c.localhost', to: `h2c://127.0.0.1:${dead}`, ...PUBLIC },
        { from: 'https://private.localhost', to },
        { from: 'https://https-redirect.localhost', redirect: { https_redirect: true }, ...PUBLIC },
        {
          from: 'https://host-redirect.localhost',
          redirect: { host_redirect: 'elsewhere.localhost', response_code: 302 },
          ...PUBLIC,
        },
        { from: 'https://path-redirect.localhost', redirect: { path_redirect: '/new/place', strip_query: true }, ...PUBLIC },
        {
          from: 'https://prefix-redirect.localhost',
          prefix: '/old/',
          redirect: { prefix_rewrite: '/new/', response_code: 308 },
          ...PUBLIC,
        },
        { from: 'https://teapot.localhost', response: { status: 418, body: "I'm a teapot" }, ...PUBLIC },
      ],
    })
  })
  after(async () => {
    await px?.stop()
    await echo?.close()
  })

  void it('default_upstream_timeout gives 504 for a route without its own timeout', async () => {
    const { r, ms } = await timed(request(`${px.url}/delay/4000`, { host: 'default-timeout.localhost' }))
    assert.equal(r.status, 504)
    assert.ok(ms >= 900 && ms < 3000, `answered after ${ms} ms`)
    assert.equal((await request(`${px.url}/delay/200`, { host: 'default-timeout.localhost' })).status, 200)
  })

  void it('route timeout overrides the default in both directions (500ms -> 504, 5s -> 200)', async () => {
    const short = await timed(request(`${px.url}/delay/3000`, { host: 'route-timeout.localhost' }))
    assert.equal(short.r.status, 504)
    assert.ok(short.ms >= 400 && short.ms < 1500, `answered after ${short.ms} ms`)
    const long = await request(`${px.url}/delay/1500`, { host: 'long-timeout.localhost' })
    assert.equal(long.status, 200)
  })

  void it('idle_timeout gives 504 when the upstream stays silent', async () => {
    const { r, ms } = await timed(request(`${px.url}/delay/3000`, { host: 'idle.localhost' }))
    assert.equal(r.status, 504)
    assert.ok(ms >= 400 && ms < 2000, `answered after ${ms} ms`)
    assert.equal((await request(`${px.url}/delay/100`, { host: 'idle.localhost' })).status, 200)
  })

  void it('an unreachable upstream gives 503 with an HTML page carrying the request id', async () => {
    const r = await request(`${px.url}/`, { host: 'dead.localhost', headers: { accept: 'text/html,*/*;q=0.8' } })
    assert.equal(r.status, 503)
    assert.match(String(r.headers['content-type']), /^text\/html/)
    const id = String(r.headers['x-request-id'])
    assert.match(id, UUID)
    assert.ok(r.body.includes(id), 'the page shows the request id')
    assert.match(r.body, /<html/i)
  })

  void it('an unreachable h2c upstream gives 503 too (not 502)', async () => {
    const r = await request(`${px.url}/`, { host: 'dead-h2c.localhost' })
    assert.equal(r.status, 503)
  })

  void it('error pages are JSON {error, request_id} when Accept prefers application/json', async () => {
    const r = await request(`${px.url}/delay/3000`, {
      host: 'route-timeout.localhost',
      headers: { accept: 'application/json, text/html;q=0.5' },
    })
    assert.equal(r.status, 504)
    assert.match(String(r.headers['content-type']), /^application\/json/)
    const body = r.json<{ error: string; request_id: string }>()
    assert.deepEqual(Object.keys(body).sort(), ['error', 'request_id'])
    assert.equal(typeof body.error, 'string')
    assert.equal(body.request_id, r.headers['x-request-id'])
  })

  void it('a route without allow_public_unauthenticated_access is refused with 403 and never forwarded', async () => {
    const before = echo.requests.length
    const r = await request(`${px.url}/secret`, { host: 'private.localhost' })
    assert.equal(r.status, 403)
    assert.equal(echo.requests.length, before)
  })

  void it('redirect with https_redirect sends 301 to the https URL, keeping path and query', async () => {
    const r = await request(`${px.url}/a/b?x=1`, { host: 'https-redirect.localhost' })
    assert.equal(r.status, 301)
    assert.equal(r.headers['location'], 'https://https-redirect.localhost/a/b?x=1')
  })

  void it('redirect with host_redirect and response_code', async () => {
    const r = await request(`${px.url}/p?q=2`, { host: 'host-redirect.localhost' })
    assert.equal(r.status, 302)
    assert.equal(r.headers['location'], `http://elsewhere.localhost/p?q=2`)
  })

  void it('redirect with path_redirect and strip_query', async () => {
    const r = await request(`${px.url}/anything?drop=me`, { host: 'path-redirect.localhost' })
    assert.equal(r.status, 301)
    assert.equal(r.headers['location'], 'http://path-redirect.localhost/new/place')
  })

  void it('redirect with prefix_rewrite replaces the matched prefix', async () => {
    const r = await request(`${px.url}/old/page?k=v`, { host: 'prefix-redirect.localhost' })
    assert.equal(r.status, 308)
    assert.equal(r.headers['location'], 'http://prefix-redirect.localhost/new/page?k=v')
  })

  void it('a response route answers with its status and body without an upstream', async () => {
    const r = await request(`${px.url}/whatever`, { host: 'teapot.localhost' })
    assert.equal(r.status, 418)
    assert.equal(r.body, "I'm a teapot")
    assert.match(String(r.headers['x-request-id']), UUID)
  })
})
