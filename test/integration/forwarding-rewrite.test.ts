/**
 * Forwarding integration tests: path and Host rewriting (Pomerium docs: Destination, Rewriting).
 *
 * The echo upstream answers with the request it received, so each test asserts on the path and
 * Host the upstream saw and on the X-Forwarded-Host / x-pomerium-original-host headers.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream } from '../fixtures/upstreams.js'

const PUBLIC = { allow_public_unauthenticated_access: true }

void describe('forwarding: rewrites', () => {
  let px: PortcullisProcess
  let echo: Upstream

  const via = async (host: string, path: string, headers: Record<string, string> = {}): Promise<EchoRecord> => {
    const r = await request(`${px.url}${path}`, { host, headers })
    assert.equal(r.status, 200, r.body)
    return r.json<EchoRecord>()
  }

  before(async () => {
    echo = await startHttpEcho()
    const to = echo.url
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [
        { from: 'https://prefix.localhost', prefix: '/api/', prefix_rewrite: '/v2/', to, ...PUBLIC },
        {
          from: 'https://regex.localhost',
          regex_rewrite_pattern: '^/service/([^/]+)(/.*)$',
          regex_rewrite_substitution: '\\2/instance/\\1',
          to,
          ...PUBLIC,
        },
        { from: 'https://topath.localhost', to: `${to}/anything`, ...PUBLIC },
        { from: 'https://topath-slash.localhost', to: `${to}/base/`, ...PUBLIC },
        { from: 'https://hostrw.localhost', host_rewrite: 'backend.internal', to, ...PUBLIC },
        { from: 'https://hostheader.localhost', host_rewrite_header: 'X-Backend-Host', to, ...PUBLIC },
        {
          from: 'https://hostpath.localhost',
          host_path_regex_rewrite_pattern: '^/([^/]+)/.*$',
          host_path_regex_rewrite_substitution: '\\1.backend.internal',
          to,
          ...PUBLIC,
        },
        { from: 'https://preserve.localhost', preserve_host_header: true, to, ...PUBLIC },
        { from: 'https://auto.localhost', to, ...PUBLIC },
        { from: 'https://noxfh.localhost', remove_request_headers: ['X-Forwarded-Host'], to, ...PUBLIC },
      ],
    })
  })
  after(async () => {
    await px?.stop()
    await echo?.close()
  })

  void it('prefix_rewrite replaces the matched prefix and keeps the query', async () => {
    const e = await via('prefix.localhost', '/api/users/7?q=1')
    assert.equal(e.url, '/v2/users/7?q=1')
  })

  void it('regex_rewrite_pattern/substitution rewrites the path with Envoy \\N groups', async () => {
    const e = await via('regex.localhost', '/service/alpha/status/x?z=9')
    assert.equal(e.url, '/status/x/instance/alpha?z=9')
  })

  void it('a path on the `to` URL is prepended as a prefix rewrite (/anything + /foo = /anythingfoo)', async () => {
    assert.equal((await via('topath.localhost', '/foo')).url, '/anythingfoo')
    assert.equal((await via('topath-slash.localhost', '/foo/bar')).url, '/base/foo/bar')
  })

  void it('host_rewrite sends a literal Host and records the original', async () => {
    const e = await via('hostrw.localhost', '/')
    assert.equal(e.headers['host'], 'backend.internal')
    assert.equal(e.headers['x-forwarded-host'], 'hostrw.localhost')
    assert.equal(e.headers['x-pomerium-original-host'], 'hostrw.localhost')
  })

  void it('host_rewrite_header takes the Host from another request header', async () => {
    const e = await via('hostheader.localhost', '/', { 'X-Backend-Host': 'from-header.internal' })
    assert.equal(e.headers['host'], 'from-header.internal')
    assert.equal(e.headers['x-pomerium-original-host'], 'hostheader.localhost')
  })

  void it('host_path_regex_rewrite_pattern/substitution derives the Host from the path', async () => {
    const e = await via('hostpath.localhost', '/tenant42/page')
    assert.equal(e.headers['host'], 'tenant42.backend.internal')
    assert.equal(e.url, '/tenant42/page')
    assert.equal(e.headers['x-forwarded-host'], 'hostpath.localhost')
  })

  void it('preserve_host_header keeps the client Host without forwarded-host headers', async () => {
    const e = await via('preserve.localhost', '/p')
    assert.equal(e.headers['host'], 'preserve.localhost')
    assert.equal(e.headers['x-forwarded-host'], undefined)
    assert.equal(e.headers['x-pomerium-original-host'], undefined)
  })

  void it('by default the Host becomes the `to` host:port, with X-Forwarded-Host and x-pomerium-original-host', async () => {
    const e = await via('auto.localhost', '/a', { 'X-Pomerium-Original-Host': 'spoofed.example' })
    assert.equal(e.headers['host'], `127.0.0.1:${echo.port}`)
    assert.equal(e.headers['x-forwarded-host'], 'auto.localhost')
    // A client-supplied copy is overwritten, never passed along.
    assert.equal(e.headers['x-pomerium-original-host'], 'auto.localhost')
    // Without trusted hops (xff_num_trusted_hops: 0) a client X-Forwarded-Host is dropped: apps
    // read its first entry as their host. Behind trusted hops it is kept and appended to (below).
    const spoofed = await via('auto.localhost', '/b', { 'X-Forwarded-Host': 'outer.example' })
    assert.equal(spoofed.headers['x-forwarded-host'], 'auto.localhost')
  })

  void it('X-Forwarded-Host is omitted when x-forwarded-host is in remove_request_headers', async () => {
    const e = await via('noxfh.localhost', '/', { 'X-Forwarded-Host': 'client.example' })
    assert.equal(e.headers['host'], `127.0.0.1:${echo.port}`)
    assert.equal(e.headers['x-forwarded-host'], undefined)
    assert.equal(e.headers['x-pomerium-original-host'], 'noxfh.localhost')
  })
})
