/**
 * Upstream credentials through the running proxy (Pomerium docs: Headers): Kubernetes impersonation with
 * the route's service account token, and a Google ID token from a faithful local copy of the GCE
 * metadata server (chosen with GCE_METADATA_HOST, as Google's libraries do).
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { request } from 'undici'
import { startFakeGceMetadata } from '../fixtures/gce-metadata.js'
import type { FakeGceMetadata } from '../fixtures/gce-metadata.js'
import type { CookieJar } from '../fixtures/oidc-provider.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import type { EchoRecord } from '../fixtures/upstreams.js'

let setup: SignInSetup
let metadata: FakeGceMetadata
let kube: string
let gcp: string
let alice: CookieJar

before(async () => {
  metadata = await startFakeGceMetadata()
  setup = await startSignInSetup({
    env: { GCE_METADATA_HOST: metadata.host },
    routes: (upstream) => [
      { from: 'https://kube.localhost', to: upstream, allow_any_authenticated_user: true, kubernetes_service_account_token: 'sa-token-123' },
      { from: 'https://gcp.localhost', to: upstream, allow_any_authenticated_user: true, enable_google_cloud_serverless_authentication: true },
      // Same upstream under another name: another audience, so its own token fetch.
      { from: 'https://users.localhost', to: upstream.replace('127.0.0.1', 'localhost'), allow_any_authenticated_user: true, enable_google_cloud_serverless_authentication: true },
    ],
  })
  kube = `https://kube.localhost:${setup.port}`
  gcp = `https://gcp.localhost:${setup.port}`
  alice = (await signIn(setup, `${kube}/`, 'alice@example.com', 'alice-password')).jar
  await signIn(setup, `${gcp}/`, 'alice@example.com', 'x', alice)
  await signIn(setup, `https://users.localhost:${setup.port}/`, 'alice@example.com', 'x', alice)
})
after(async () => {
  await setup.close()
  await metadata.close()
})

async function echo(url: string, headers: Record<string, string>): Promise<{ status: number; record: EchoRecord }> {
  const u = new URL(url)
  const res = await request(u, { dispatcher: setup.dispatcher, headers: { ...headers, cookie: alice.header(u) ?? '' } })
  const text = await res.body.text()
  return { status: res.statusCode, record: JSON.parse(text) as EchoRecord }
}

test('Kubernetes routes impersonate the signed-in user with the service account token; client impersonation is removed', async () => {
  const { status, record } = await echo(`${kube}/api/v1/pods`, {
    authorization: 'Bearer client-token',
    'impersonate-user': 'system:admin',
    'Impersonate-Group': 'system:masters',
    'impersonate-extra-scopes': 'all',
  })
  assert.equal(status, 200)
  const values = (name: string): string[] => record.rawHeaders.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
  assert.deepEqual(values('authorization'), ['Bearer sa-token-123'])
  assert.deepEqual(values('impersonate-user'), ['alice@example.com'])
  assert.deepEqual(values('impersonate-group'), ['admins', 'staff'])
  assert.deepEqual(values('impersonate-extra-scopes'), [])
})

test('Google Cloud serverless routes carry a Google ID token for the upstream audience, fetched once and cached', async () => {
  const before = metadata.identityRequestCount()
  const first = await echo(`${gcp}/`, { authorization: 'Bearer client-token' })
  const second = await echo(`${gcp}/again`, {})
  assert.equal(first.status, 200)
  const auth = (first.record.headers as Record<string, string>)['authorization'] ?? ''
  assert.match(auth, /^Bearer ey/)
  assert.equal((second.record.headers as Record<string, string>)['authorization'], auth)
  assert.equal(metadata.identityRequestCount(), before + 1, 'cached')
  const { payload } = await jwtVerify(auth.slice('Bearer '.length), createLocalJWKSet(metadata.jwks), { audience: 'https://127.0.0.1' })
  assert.equal(payload.iss, 'https://accounts.google.com')
})

test('a metadata server failure is a 502 with a clear message, never a request without the token', async () => {
  metadata.fail({ status: 500 })
  const u = new URL(`https://users.localhost:${setup.port}/`)
  const before = setup.upstream.requests.length
  const res = await request(u, { dispatcher: setup.dispatcher, headers: { accept: 'application/json', cookie: alice.header(u) ?? '' } })
  const body = await res.body.text()
  assert.equal(res.statusCode, 502)
  assert.match(body, /Google/)
  assert.equal(setup.upstream.requests.length, before, 'nothing reached the upstream')
  metadata.reset()
  const ok = await request(u, { dispatcher: setup.dispatcher, headers: { cookie: alice.header(u) ?? '' } })
  await ok.body.dump()
  assert.equal(ok.statusCode, 200)
})
