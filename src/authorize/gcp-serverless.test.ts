import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'

import { createLocalJWKSet, jwtVerify } from 'jose'

import { startFakeGceMetadata } from '../../test/fixtures/gce-metadata.js'
import type { FakeGceMetadata } from '../../test/fixtures/gce-metadata.js'
import { routeConfig } from '../../test/fixtures/route-config.js'
import { PortcullisError } from '../shared/errors.js'
import {
  GcpIdentityTokenError,
  createGcpIdentityTokenSource,
  gcpAudience,
  gcpServerlessHeaders,
  jwtPayload,
  metadataBaseUrl,
} from './gcp-serverless.js'
import type { GcpIdentityTokenSourceOptions } from './gcp-serverless.js'

const AUD = 'https://hello-abc123-uc.a.run.app'
const MIN = 60_000

let clock = Date.UTC(2026, 0, 1)
let metadata: FakeGceMetadata

before(async () => {
  metadata = await startFakeGceMetadata({ now: () => clock })
})
after(async () => {
  await metadata.close()
})

function source(options: GcpIdentityTokenSourceOptions = {}) {
  return createGcpIdentityTokenSource({ metadataHost: metadata.host, now: () => clock, env: {}, ...options })
}

function reset(): void {
  metadata.reset()
}

function assertFailure(err: unknown, failure: GcpIdentityTokenError['failure']): GcpIdentityTokenError {
  assert.ok(err instanceof GcpIdentityTokenError, `expected GcpIdentityTokenError, got ${String(err)}`)
  assert.equal(err.failure, failure, err.message)
  return err
}

async function rejectsWith(promise: Promise<unknown>, failure: GcpIdentityTokenError['failure']): Promise<GcpIdentityTokenError> {
  try {
    await promise
  } catch (err) {
    return assertFailure(err, failure)
  }
  assert.fail('expected a rejection')
}

test('audience: https:// + hostname of the (last) to URL, no port, path or trailing slash', () => {
  const route = (...to: string[]) => routeConfig({ to: to.map((u) => ({ url: new URL(u), weight: 1 })) })
  assert.equal(gcpAudience(route('https://hello-abc123-uc.a.run.app')), AUD)
  assert.equal(gcpAudience(route('http://Hello-ABC123-uc.a.run.app:8080/api/v1?x=1')), AUD)
  assert.equal(gcpAudience(route('https://first.a.run.app', 'https://second.a.run.app/')), 'https://second.a.run.app')
  assert.throws(() => gcpAudience(route()), TypeError)
})

test('route without the setting: no headers, no fetch', async () => {
  reset()
  assert.equal(await gcpServerlessHeaders(routeConfig(), source()), undefined)
  assert.equal(await gcpServerlessHeaders(routeConfig({ enableGoogleCloudServerlessAuthentication: false }), source()), undefined)
  assert.equal(metadata.identityRequestCount(), 0)
})

test('route with the setting: Authorization replaced by a Google-signed ID token for the upstream', async () => {
  reset()
  const route = routeConfig({ to: [{ url: new URL('https://hello-abc123-uc.a.run.app/'), weight: 1 }], enableGoogleCloudServerlessAuthentication: true })
  const changes = await gcpServerlessHeaders(route, source())
  assert.ok(changes)
  assert.deepEqual(changes.remove, ['authorization'])
  assert.deepEqual(changes.setMulti, {})
  const token = changes.set['authorization']?.replace(/^Bearer /, '') ?? ''
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(metadata.jwks), {
    issuer: 'https://accounts.google.com',
    audience: AUD,
    currentDate: new Date(clock),
  })
  assert.equal(protectedHeader.alg, 'RS256')
  assert.equal(payload['email'], metadata.serviceAccountEmail, 'format=full carries the email')

  const req = metadata.requests[0]
  assert.ok(req)
  assert.equal(req.method, 'GET')
  assert.equal(req.path, `/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(AUD)}&format=full`)
  assert.equal(req.headers['metadata-flavor'], 'Google')
  assert.equal(req.headers['x-forwarded-for'], undefined)
})

test('cached until 5 minutes before exp, then refreshed', async () => {
  reset()
  const start = clock
  const s = source()
  const first = await s.token(AUD)
  assert.equal(await s.token(AUD), first)
  clock = start + 54 * MIN
  assert.equal(await s.token(AUD), first, 'still 6 minutes left')
  assert.equal(metadata.identityRequestCount(), 1)
  clock = start + 55 * MIN
  const second = await s.token(AUD)
  assert.notEqual(second, first)
  assert.equal(metadata.identityRequestCount(), 2)
  assert.equal(jwtPayload(second)?.['iat'], Math.floor(clock / 1000))
  clock = start + 60 * MIN
  assert.equal(await s.token(AUD), second)
  assert.equal(metadata.identityRequestCount(), 2)
})

test('one fetch for concurrent calls; one per audience', async () => {
  reset()
  metadata.delay(50)
  const s = source()
  const tokens = await Promise.all([s.token(AUD), s.token(AUD), s.token(AUD), s.token('https://other.a.run.app'), s.token(AUD)])
  assert.equal(metadata.identityRequestCount(), 2)
  assert.equal(new Set(tokens).size, 2)
  assert.equal(jwtPayload(tokens[3])?.['aud'], 'https://other.a.run.app')
})

test('a short-lived token is refreshed at half its lifetime at the latest', async () => {
  const short = await startFakeGceMetadata({ now: () => clock, tokenLifetimeSeconds: 120 })
  try {
    const s = createGcpIdentityTokenSource({ metadataHost: short.host, now: () => clock, env: {} })
    const start = clock
    const first = await s.token(AUD)
    clock = start + 59_000
    assert.equal(await s.token(AUD), first)
    clock = start + 60_000
    assert.notEqual(await s.token(AUD), first)
    assert.equal(short.identityRequestCount(), 2)
  } finally {
    await short.close()
  }
})

test('the lifetime is counted from iat, so a skewed local clock still caches', async () => {
  reset()
  let local = clock + 2 * 60 * MIN // two hours ahead of the metadata server
  const s = source({ now: () => local })
  const first = await s.token(AUD)
  local += 30 * MIN
  assert.equal(await s.token(AUD), first)
  assert.equal(metadata.identityRequestCount(), 1)
})

test('failures are typed (502), not cached, and shared by concurrent callers', async () => {
  reset()
  const s = source()
  metadata.fail({ status: 500, body: '<html><body>Internal error</body></html>' })
  const results = await Promise.allSettled([s.token(AUD), s.token(AUD), s.token(AUD)])
  assert.equal(metadata.identityRequestCount(), 1)
  assert.ok(results.every((r) => r.status === 'rejected'))
  const [first] = results
  assert.ok(first?.status === 'rejected')
  const err = assertFailure(first.reason, 'status')
  assert.ok(err instanceof PortcullisError)
  assert.equal(err.status, 502)
  assert.equal(err.code, 'ERR_UPSTREAM_BAD_RESPONSE')
  assert.equal(err.upstreamStatus, 500)
  assert.equal(err.audience, AUD)
  assert.match(err.publicMessage, /Google Cloud identity token for https:\/\/hello-abc123-uc\.a\.run\.app .*answered 500: Internal error/)

  metadata.fail(undefined)
  assert.ok(jwtPayload(await s.token(AUD)))
  assert.equal(metadata.identityRequestCount(), 2)
})

test('timeouts are bounded', async () => {
  reset()
  metadata.fail('hang')
  const started = Date.now()
  await rejectsWith(source({ timeoutMs: 200 }).token(AUD), 'timeout')
  assert.ok(Date.now() - started < 5_000)
})

test('a body that is not a JWT, an oversized body, a reset connection, a closed port', async () => {
  reset()
  metadata.fail('garbage')
  await rejectsWith(source().token(AUD), 'malformed')
  metadata.fail({ status: 200, body: 'x'.repeat(100_000) })
  assert.match((await rejectsWith(source().token(AUD), 'malformed')).publicMessage, /larger than 65536 bytes/)
  metadata.fail('reset')
  await rejectsWith(source().token(AUD), 'unreachable')

  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const err = await rejectsWith(source({ metadataHost: `127.0.0.1:${port}` }).token(AUD), 'unreachable')
  assert.match(err.publicMessage, /ECONNREFUSED/)
})

test('a token for another audience is refused', async () => {
  reset()
  const s = source({
    fetch: async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input))
      url.searchParams.set('audience', 'https://evil.example.com')
      return fetch(url, init)
    },
  })
  await rejectsWith(s.token(AUD), 'malformed')
})

test('a failed refresh keeps using the cached token while it is still valid', async () => {
  reset()
  const start = clock
  const s = source()
  const first = await s.token(AUD)
  metadata.fail({ status: 503 })
  clock = start + 56 * MIN
  assert.equal(await s.token(AUD), first)
  clock = start + 60 * MIN
  await rejectsWith(s.token(AUD), 'status')
})

test('GCE_METADATA_HOST is honoured; the option wins; the default is metadata.google.internal', async () => {
  reset()
  const fromEnv = createGcpIdentityTokenSource({ env: { GCE_METADATA_HOST: metadata.host }, now: () => clock })
  assert.equal(fromEnv.metadataUrl, metadata.url)
  assert.ok(jwtPayload(await fromEnv.token(AUD)))
  assert.equal(metadata.identityRequestCount(), 1)

  assert.equal(createGcpIdentityTokenSource({ env: { GCE_METADATA_HOST: 'elsewhere:1' }, metadataHost: metadata.host }).metadataUrl, metadata.url)
  assert.equal(createGcpIdentityTokenSource({ env: {} }).metadataUrl, 'http://metadata.google.internal')
  assert.equal(metadataBaseUrl('http://127.0.0.1:8080'), 'http://127.0.0.1:8080')
  assert.equal(metadataBaseUrl('169.254.169.254'), 'http://169.254.169.254')
  assert.throws(() => metadataBaseUrl('127.0.0.1:8080/computeMetadata'), TypeError)
  assert.throws(() => metadataBaseUrl('not a host'), TypeError)
})

test('fixture: behaves like the metadata server', async () => {
  reset()
  const identity = `${metadata.url}/computeMetadata/v1/instance/service-accounts/default/identity`
  const noFlavor = await fetch(`${identity}?audience=${AUD}`)
  assert.equal(noFlavor.status, 403)
  assert.equal(noFlavor.headers.get('metadata-flavor'), 'Google')
  const proxied = await fetch(`${identity}?audience=${AUD}`, { headers: { 'Metadata-Flavor': 'Google', 'X-Forwarded-For': '10.0.0.1' } })
  assert.equal(proxied.status, 403)
  const noAudience = await fetch(identity, { headers: { 'Metadata-Flavor': 'Google' } })
  assert.equal(noAudience.status, 400)
  assert.match(await noAudience.text(), /non-empty audience parameter required/)
  const standard = await fetch(`${identity}?audience=${AUD}`, { headers: { 'Metadata-Flavor': 'Google' } })
  assert.equal(standard.status, 200)
  assert.equal(standard.headers.get('metadata-flavor'), 'Google')
  const claims = jwtPayload(await standard.text())
  assert.equal(claims?.['email'], undefined, 'standard format: no email')
  assert.equal(claims?.['iss'], 'https://accounts.google.com')
  const email = await fetch(`${metadata.url}/computeMetadata/v1/instance/service-accounts/default/email`, { headers: { 'Metadata-Flavor': 'Google' } })
  assert.equal(await email.text(), metadata.serviceAccountEmail)
  assert.equal((await fetch(`${metadata.url}/computeMetadata/v1/instance/service-accounts/nobody/identity?audience=x`, { headers: { 'Metadata-Flavor': 'Google' } })).status, 404)
  assert.equal(metadata.identityRequestCount(), 2, 'refused requests do not reach the identity handler')
  assert.deepEqual(metadata.requests.map((r) => r.status), [403, 403, 400, 200, 200, 404])
})
