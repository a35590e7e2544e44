import assert from 'node:assert/strict'
import { test } from 'node:test'
import { routeConfig } from '../../test/fixtures/route-config.js'
import { buildHeaderPlan, buildResponseHeaders, buildUpstreamHeaders, stripCookie } from './headers.js'
import type { UpstreamHeaderInput } from './headers.js'

function upstream(raw: string[], overrides: Partial<UpstreamHeaderInput> = {}, routeOverrides = {}): Map<string, string[]> {
  const plan = buildHeaderPlan(routeConfig(routeOverrides), false)
  const flat = buildUpstreamHeaders({
    rawHeaders: raw,
    plan,
    upstreamHost: 'backend:8080',
    originalHost: undefined,
    requestId: 'rid',
    remoteAddress: '10.0.0.1',
    clientIp: '10.0.0.1',
    scheme: 'https',
    skipXffAppend: false,
    trustForwardedHeaders: false,
    dropUnderscoreHeaders: false,
    cookieName: '_pomerium',
    authzSet: undefined,
    authzRemove: undefined,
    upgrade: undefined,
    ...overrides,
  })
  const m = new Map<string, string[]>()
  for (let i = 0; i < flat.length; i += 2) m.set(flat[i] as string, [...(m.get(flat[i] as string) ?? []), flat[i + 1] as string])
  return m
}

test('hop-by-hop headers and headers named in Connection are dropped, but never the ones the proxy adds', () => {
  const h = upstream(['Connection', 'close, X-Request-Id, X-Forwarded-For, X-Custom', 'Keep-Alive', '5', 'X-Custom', '1', 'Upgrade', 'x', 'TE', 'gzip', 'Accept', '*/*'])
  assert.equal(h.has('Connection'), false)
  assert.equal(h.has('Keep-Alive'), false)
  assert.equal(h.has('X-Custom'), false)
  assert.equal(h.has('te'), false)
  assert.deepEqual(h.get('x-request-id'), ['rid'])
  assert.deepEqual(h.get('x-forwarded-for'), ['10.0.0.1'])
  assert.deepEqual(h.get('Accept'), ['*/*'])
  assert.deepEqual(upstream(['TE', 'trailers']).get('te'), ['trailers'])
})

test('client copies of proxy-owned and identity headers are stripped whatever their case or underscores', () => {
  const h = upstream([
    'X-Pomerium-Jwt-Assertion', 'forged',
    'X_Pomerium_Jwt_Assertion', 'forged2',
    'x-pomerium-claim_email', 'admin@corp',
    'X-POMERIUM-CLAIM-EMAIL', 'admin@corp',
    'X-Pomerium-Authorization', 'x',
    'Authorization', 'Pomerium abc',
    'X-Envoy-Original-Path', '/x',
    'X-Request-Id', 'client',
    'X-Pomerium-Original-Host', 'evil',
  ])
  for (const name of h.keys()) assert.ok(!name.toLowerCase().startsWith('x-pomerium') && !name.toLowerCase().startsWith('x_pomerium'), name)
  assert.equal(h.has('Authorization'), false)
  assert.equal(h.has('X-Envoy-Original-Path'), false)
  assert.deepEqual(h.get('x-request-id'), ['rid'])
})

test('a plain bearer Authorization passes through', () => {
  assert.deepEqual(upstream(['Authorization', 'Bearer abc']).get('Authorization'), ['Bearer abc'])
})

test('with identity headers on, an incoming assertion moves to X-Pomerium-Jwt-Assertion-For', () => {
  const h = upstream(['X-Pomerium-Jwt-Assertion', 'upstream-jwt'], {}, { passIdentityHeaders: true })
  assert.deepEqual(h.get('x-pomerium-jwt-assertion-for'), ['upstream-jwt'])
  assert.equal(h.has('X-Pomerium-Jwt-Assertion'), false)
})

test('X-Forwarded-For is appended unless skipped; X-Forwarded-Proto is trusted only with trusted hops', () => {
  assert.deepEqual(upstream(['X-Forwarded-For', '1.2.3.4']).get('x-forwarded-for'), ['1.2.3.4, 10.0.0.1'])
  assert.deepEqual(upstream(['X-Forwarded-For', '1.2.3.4'], { skipXffAppend: true }).get('x-forwarded-for'), ['1.2.3.4'])
  assert.deepEqual(upstream(['X-Forwarded-Proto', 'http']).get('x-forwarded-proto'), ['https'])
  assert.deepEqual(upstream(['X-Forwarded-Proto', 'http'], { trustForwardedHeaders: true }).get('x-forwarded-proto'), ['http'])
})

test('a rewritten Host adds X-Forwarded-Host and x-pomerium-original-host, unless X-Forwarded-Host is removed', () => {
  const h = upstream([], { originalHost: 'app.example.com' })
  assert.deepEqual(h.get('host'), ['backend:8080'])
  assert.deepEqual(h.get('x-forwarded-host'), ['app.example.com'])
  assert.deepEqual(h.get('x-pomerium-original-host'), ['app.example.com'])
  const r = upstream([], { originalHost: 'app.example.com' }, { removeRequestHeaders: ['X-Forwarded-Host'] })
  assert.equal(r.has('x-forwarded-host'), false)
})

test('set_request_headers override client values and win over remove_request_headers; $$ is a literal $', () => {
  const h = upstream(['X-Team', 'client', 'X-Drop', '1', 'X-Both', 'client'], {}, {
    setRequestHeaders: { 'X-Team': 'platform', 'X-Both': 'set', 'X-Price': '$$5' },
    removeRequestHeaders: ['x-drop', 'X-Both'],
  })
  assert.deepEqual(h.get('x-team'), ['platform'])
  assert.equal(h.has('X-Drop'), false)
  assert.deepEqual(h.get('x-both'), ['set'])
  assert.deepEqual(h.get('x-price'), ['$5'])
})

test('our session cookie never reaches the upstream; other cookies do', () => {
  assert.equal(stripCookie('a=1; _pomerium=secret; b=2', '_pomerium'), 'a=1; b=2')
  assert.equal(stripCookie('_pomerium_0=x; _pomerium_1=y; _pomerium_csrf=z', '_pomerium'), '_pomerium_csrf=z')
  assert.equal(upstream(['Cookie', '_pomerium=secret']).has('Cookie'), false)
})

test('response headers: hop-by-hop dropped, security headers set, rewrite applied, request id added', () => {
  const plan = buildHeaderPlan(
    routeConfig({
      setResponseHeaders: { 'X-Frame-Options': 'SAMEORIGIN' },
      rewriteResponseHeaders: [{ header: 'Location', prefix: 'http://backend/', value: 'https://app.example.com/' }],
    }),
    false,
  )
  const out = buildResponseHeaders({ connection: 'x-secret', 'x-secret': '1', 'keep-alive': 't', location: 'http://backend/a', 'set-cookie': ['a=1', 'b=2'] }, plan, 'rid')
  assert.deepEqual(out, { location: 'https://app.example.com/a', 'set-cookie': ['a=1', 'b=2'], 'x-frame-options': 'SAMEORIGIN', 'x-request-id': 'rid' })
})

test('client X-Forwarded-Host is trusted only behind trusted hops; X-Forwarded-Client-Cert never', () => {
  assert.equal(upstream(['X-Forwarded-Host', 'evil.com']).has('x-forwarded-host'), false)
  assert.deepEqual(upstream(['X-Forwarded-Host', 'evil.com'], { originalHost: 'app.example.com' }).get('x-forwarded-host'), ['app.example.com'])
  assert.deepEqual(
    upstream(['X-Forwarded-Host', 'front.example.com'], { originalHost: 'app.example.com', trustForwardedHeaders: true }).get('x-forwarded-host'),
    ['front.example.com, app.example.com'],
  )
  assert.equal(upstream(['X-Forwarded-Client-Cert', 'By=spiffe://admin']).has('X-Forwarded-Client-Cert'), false)
})

test('several cookie headers (HTTP/2) become one Cookie line, without our session cookie', () => {
  assert.deepEqual(upstream(['cookie', 'a=1', 'cookie', '_pomerium=s', 'cookie', 'b=2']).get('cookie'), ['a=1; b=2'])
  assert.equal(upstream(['cookie', 'a=1'], {}, { removeRequestHeaders: ['Cookie'] }).has('cookie'), false)
})

test('headers authorize sets replace the client copies (any case or underscore spelling); multi-valued and prefix removal', () => {
  const h = upstream(
    ['X-Email', 'forged@evil.com', 'x_email', 'forged2', 'Authorization', 'Bearer client', 'Impersonate-Group', 'system:masters', 'Impersonate-Extra-Scopes', 'x', 'Accept', '*/*'],
    {
      authzSet: { 'x-email': 'alice@example.com', authorization: 'Bearer sa-token' },
      authzSetMulti: { 'impersonate-group': ['admins', 'eng'] },
      authzRemovePrefixes: ['impersonate-extra-'],
    },
  )
  assert.deepEqual(h.get('x-email'), ['alice@example.com'])
  assert.equal(h.has('X-Email'), false)
  assert.equal(h.has('x_email'), false)
  assert.deepEqual(h.get('authorization'), ['Bearer sa-token'])
  assert.equal(h.has('Authorization'), false)
  assert.deepEqual(h.get('impersonate-group'), ['admins', 'eng'])
  assert.equal(h.has('Impersonate-Group'), false)
  assert.equal(h.has('Impersonate-Extra-Scopes'), false)
  assert.deepEqual(h.get('Accept'), ['*/*'])
})
