/**
 * Forwarding integration tests: request and response header handling (Pomerium docs: Headers, Other upstream headers, Stripped from client requests).
 *
 * Two Portcullis instances: one with default global settings, one that trusts one proxy hop
 * (`xff_num_trusted_hops: 1`), does not append to X-Forwarded-For (`skip_xff_append`) and allows
 * header names with underscores, so the underscore spellings of identity headers can be sent.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { parseRawResponses, rawHttp, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream } from '../fixtures/upstreams.js'
import { startNamedUpstream } from './forwarding-helpers.js'
import type { NamedUpstream } from './forwarding-helpers.js'

const PUBLIC = { allow_public_unauthenticated_access: true }
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Identity headers only Portcullis may set, in the spellings a client might try. */
const SPOOFED: Record<string, string> = {
  'X-Pomerium-Jwt-Assertion': 'forged.jwt.value',
  'X-Pomerium-Jwt-Assertion-For': 'forged.jwt.for',
  'X-Pomerium-Claim-Email': 'admin@example.com',
  'X-Pomerium-Claim-Groups': 'admins',
  'X-Pomerium-Authorization': 'forged-session',
  'X-Pomerium-Reproxy-Policy': 'forged',
}

function pomeriumHeaders(e: EchoRecord): string[] {
  return Object.keys(e.headers).filter((k) => k.startsWith('x-pomerium-') || k.replace(/_/g, '-').startsWith('x-pomerium-'))
}

void describe('forwarding: headers', () => {
  let px: PortcullisProcess
  let trusted: PortcullisProcess
  let echo: Upstream
  let named: NamedUpstream

  const via = async (
    proxy: PortcullisProcess,
    host: string,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ echo: EchoRecord; headers: Record<string, string | string[]> }> => {
    const r = await request(`${proxy.url}${path}`, { host, headers })
    assert.equal(r.status, 200, r.body)
    return { echo: r.json<EchoRecord>(), headers: r.headers }
  }

  before(async () => {
    echo = await startHttpEcho()
    named = await startNamedUpstream('hdr')
    const to = echo.url
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [
        {
          from: 'https://set.localhost',
          to,
          set_request_headers: { 'X-Custom': 'from-config', 'X-Price': '$$5' },
          remove_request_headers: ['X-Remove-Me', 'user-agent'],
          ...PUBLIC,
        },
        { from: 'https://resp.localhost', to, set_response_headers: { 'X-Route': 'route-value' }, ...PUBLIC },
        {
          from: 'https://override.localhost',
          to,
          set_response_headers: { 'X-Frame-Options': 'DENY' },
          ...PUBLIC,
        },
        { from: 'https://nodefaults.localhost', to, set_response_headers: { disable: true, 'X-Only': 'this' }, ...PUBLIC },
        {
          from: 'https://rewrite.localhost',
          to: named.url,
          rewrite_response_headers: [{ header: 'Location', prefix: 'http://internal.example:8080/', value: 'https://rewrite.localhost/' }],
          ...PUBLIC,
        },
        { from: 'https://app.localhost', to, ...PUBLIC },
        { from: 'https://hop.localhost', to: named.url, ...PUBLIC },
      ],
    })
    trusted = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      xff_num_trusted_hops: 1,
      skip_xff_append: true,
      headers_with_underscores_action: 'allow',
      routes: [{ from: 'https://app.localhost', to, ...PUBLIC }],
    })
  })
  after(async () => {
    await px?.stop()
    await trusted?.stop()
    await echo?.close()
    await named?.close()
  })

  void it('set_request_headers overwrites client values ($$ is a literal $); remove_request_headers drops headers', async () => {
    const { echo: e } = await via(px, 'set.localhost', '/', {
      'X-Custom': 'from-client',
      'X-Remove-Me': 'bye',
      'User-Agent': 'test-agent',
      'X-Kept': 'yes',
    })
    assert.equal(e.headers['x-custom'], 'from-config')
    assert.equal(e.headers['x-price'], '$5')
    assert.equal(e.headers['x-remove-me'], undefined)
    assert.equal(e.headers['user-agent'], undefined)
    assert.equal(e.headers['x-kept'], 'yes')
    assert.equal(e.rawHeaders.filter(([k]) => k.toLowerCase() === 'x-custom').length, 1)
  })

  void it('adds the default security headers without HSTS on a plain-HTTP listener, plus route set_response_headers', async () => {
    const { headers } = await via(px, 'resp.localhost', '/')
    assert.equal(headers['x-frame-options'], 'SAMEORIGIN')
    assert.equal(headers['x-xss-protection'], '1; mode=block')
    assert.equal(headers['strict-transport-security'], undefined)
    assert.equal(headers['x-route'], 'route-value')
    // Pages Portcullis answers itself carry them too.
    const notFound = await request(`${px.url}/`, { host: 'nowhere.localhost' })
    assert.equal(notFound.status, 404)
    assert.equal(notFound.headers['x-frame-options'], 'SAMEORIGIN')
  })

  void it('a route set_response_headers value overrides a default; a route `disable` key sends none at all (as Pomerium)', async () => {
    const o = await via(px, 'override.localhost', '/')
    assert.equal(o.headers['x-frame-options'], 'DENY')
    assert.equal(o.headers['x-xss-protection'], '1; mode=block')
    const d = await via(px, 'nodefaults.localhost', '/')
    assert.equal(d.headers['x-frame-options'], undefined)
    assert.equal(d.headers['x-xss-protection'], undefined)
    assert.equal(d.headers['x-only'], undefined)
  })

  void it('rewrite_response_headers replaces a matching prefix of an upstream response header', async () => {
    const r = await request(`${px.url}/location`, { host: 'rewrite.localhost' })
    assert.equal(r.status, 200)
    assert.equal(r.headers['location'], 'https://rewrite.localhost/next')
  })

  void it('appends the peer to X-Forwarded-For and sets X-Forwarded-Proto from the connection (no trusted hops)', async () => {
    const { echo: e } = await via(px, 'app.localhost', '/', {
      'X-Forwarded-For': '203.0.113.9',
      'X-Forwarded-Proto': 'https',
      'X-Envoy-External-Address': '192.0.2.66',
    })
    assert.equal(e.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1')
    assert.equal(e.headers['x-forwarded-proto'], 'http')
    assert.equal(e.headers['x-envoy-external-address'], '127.0.0.1')
    const { echo: plain } = await via(px, 'app.localhost', '/')
    assert.equal(plain.headers['x-forwarded-for'], '127.0.0.1')
  })

  void it('with xff_num_trusted_hops: 1 and skip_xff_append the client chain and proto are kept as sent', async () => {
    const { echo: e } = await via(trusted, 'app.localhost', '/', {
      'X-Forwarded-For': '198.51.100.1, 203.0.113.9',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'front.example',
    })
    assert.equal(e.headers['x-forwarded-for'], '198.51.100.1, 203.0.113.9')
    assert.equal(e.headers['x-forwarded-proto'], 'https')
    // The trusted front proxy's X-Forwarded-Host is kept and the Host we rewrote is appended.
    assert.equal(e.headers['x-forwarded-host'], 'front.example, app.localhost')
    assert.equal(e.headers['x-envoy-external-address'], '203.0.113.9')
  })

  void it('generates x-request-id, sends it upstream and returns the same value (client values ignored)', async () => {
    const r = await request(`${px.url}/`, { host: 'app.localhost', headers: { 'X-Request-Id': 'client-chosen' } })
    assert.equal(r.status, 200)
    const sent = r.json<EchoRecord>().headers['x-request-id']
    assert.match(String(sent), UUID)
    assert.equal(r.headers['x-request-id'], sent)
    const again = await request(`${px.url}/`, { host: 'app.localhost' })
    assert.notEqual(again.headers['x-request-id'], sent)
  })

  void it('removes hop-by-hop request headers, including those named in Connection', async () => {
    const raw = await rawHttp(
      px.port,
      'GET /hop-req HTTP/1.1\r\nHost: app.localhost\r\nConnection: keep-alive, X-Custom-Hop\r\n' +
        'X-Custom-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\n' +
        'Trailer: X-Sum\r\nX-Normal: kept\r\n\r\n',
    )
    const [res] = parseRawResponses(raw)
    assert.equal(res?.status, 200, raw)
    const e = JSON.parse(res?.body ?? '{}') as EchoRecord
    assert.equal(e.headers['x-normal'], 'kept')
    for (const h of ['x-custom-hop', 'keep-alive', 'proxy-connection', 'te', 'trailer']) assert.equal(e.headers[h], undefined, h)
    // The proxy's own upstream connection header is its business; the client's tokens never pass.
    assert.doesNotMatch(String(e.headers['connection'] ?? ''), /x-custom-hop/i)
  })

  void it('removes hop-by-hop response headers, including those the upstream lists in Connection', async () => {
    const raw = await rawHttp(px.port, 'GET /hop HTTP/1.1\r\nHost: hop.localhost\r\nConnection: close\r\n\r\n')
    const [res] = parseRawResponses(raw)
    assert.equal(res?.status, 200, raw)
    const names = (res?.headers ?? []).map(([k]) => k.toLowerCase())
    const value = (n: string): string | undefined => res?.headers.find(([k]) => k.toLowerCase() === n)?.[1]
    assert.equal(value('x-normal'), 'kept')
    assert.ok(!names.includes('x-resp-hop'), names.join(','))
    assert.ok(!names.includes('proxy-connection'), names.join(','))
    assert.notEqual(value('keep-alive'), 'timeout=7, max=99')
    assert.equal(res?.body, 'hop')
  })

  void it('never forwards spoofed identity headers or Pomerium credentials from the client', async () => {
    const { echo: e } = await via(px, 'app.localhost', '/', {
      ...SPOOFED,
      Authorization: 'Pomerium forged-session',
    })
    assert.deepEqual(pomeriumHeaders(e), ['x-pomerium-original-host'])
    assert.equal(e.headers['authorization'], undefined)
    // A plain bearer token is the application's business and passes through.
    const { echo: bearer } = await via(px, 'app.localhost', '/', { Authorization: 'Bearer app-token' })
    assert.equal(bearer.headers['authorization'], 'Bearer app-token')
  })

  void it('never forwards underscore spellings of identity headers when underscores are allowed', async () => {
    const { echo: e } = await via(trusted, 'app.localhost', '/', {
      X_Pomerium_Jwt_Assertion: 'forged.jwt.value',
      X_Pomerium_Claim_Email: 'admin@example.com',
      'x-pomerium_claim-groups': 'admins',
      X_Custom_Underscore: 'allowed',
    })
    assert.deepEqual(pomeriumHeaders(e), ['x-pomerium-original-host'])
    assert.equal(e.headers['x_custom_underscore'], 'allowed')
  })

  void it('strips the _pomerium session cookie (and its chunks) but keeps other cookies', async () => {
    const { echo: e } = await via(px, 'app.localhost', '/', {
      Cookie: 'a=1; _pomerium=session-secret; b=2; _pomerium_0=chunk; _pomerium_other=kept',
    })
    assert.equal(e.headers['cookie'], 'a=1; b=2; _pomerium_other=kept')
    const { echo: only } = await via(px, 'app.localhost', '/', { Cookie: '_pomerium=session-secret' })
    assert.equal(only.headers['cookie'], undefined)
  })
})
