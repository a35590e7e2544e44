/**
 * The Envoy ext_authz gRPC service (docs/delegated-authorization.md), called as Envoy calls it:
 * a gRPC client built from Envoy's proto definitions (the subset written out below, in protobuf
 * syntax, independently of the server's own descriptor) sends CheckRequests for an allowed
 * user, a denied one, an unauthenticated browser, an unauthenticated API client, and without the
 * caller token; the assertion an OK carries is checked as Istio's RequestAuthentication would.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { JSONWebKeySet } from 'jose'
import { request } from 'undici'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import { freePort, signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { waitFor } from '../fixtures/wait.js'

/** Envoy's messages, as published (envoy/service/auth/v3, envoy/config/core/v3, envoy/type/v3, google/rpc), reduced to the fields used. */
const PROTO = `syntax = "proto3";
package envoy.service.auth.v3;
service Authorization { rpc Check(CheckRequest) returns (CheckResponse); }
message SocketAddress { string address = 2; uint32 port_value = 3; }
message Address { oneof address { SocketAddress socket_address = 1; } }
message AttributeContext {
  message Peer { Address address = 1; string principal = 4; }
  message HttpRequest { string id = 1; string method = 2; map<string, string> headers = 3; string path = 4; string host = 5; string scheme = 6; string protocol = 10; }
  message Request { HttpRequest http = 2; }
  Peer source = 1; Peer destination = 2; Request request = 4;
}
message CheckRequest { AttributeContext attributes = 1; }
message HeaderValue { string key = 1; string value = 2; }
message HeaderValueOption { HeaderValue header = 1; int32 append_action = 3; }
message HttpStatus { int32 code = 1; }
message RpcStatus { int32 code = 1; string message = 2; }
message DeniedHttpResponse { HttpStatus status = 1; repeated HeaderValueOption headers = 2; string body = 3; }
message OkHttpResponse { repeated HeaderValueOption headers = 2; repeated string headers_to_remove = 5; }
message CheckResponse { RpcStatus status = 1; oneof http_response { DeniedHttpResponse denied_response = 2; OkHttpResponse ok_response = 3; } }
`

interface Header { header: { key: string; value: string } }
interface CheckResponse {
  status: { code: number; message: string }
  deniedResponse?: { status: { code: number }; headers: Header[]; body: string }
  okResponse?: { headers: Header[]; headersToRemove: string[] }
}
type CheckClient = grpc.Client & { Check(req: unknown, metadata: grpc.Metadata, callback: (err: grpc.ServiceError | null, res: CheckResponse) => void): void }

const header = (headers: Header[] | undefined, name: string): string | undefined => headers?.find((h) => h.header.key.toLowerCase() === name)?.header.value

describe('ext_authz (Envoy Authorization/Check)', () => {
  let setup: SignInSetup
  let client: CheckClient
  const token = randomBytes(32).toString('base64url')
  let kubeCookie: string
  let gcpCookie: string
  let adminCookie: string

  before(async () => {
    const port = await freePort()
    setup = await startSignInSetup({
      settings: { ext_authz: { address: `127.0.0.1:${port}`, caller_token: token } },
      routes: (upstream) => [
        { from: 'https://kube.localhost', to: upstream, allowed_users: ['alice@example.com'], pass_identity_headers: true },
        { from: 'https://gcp.localhost', to: upstream, allowed_users: ['nobody@example.com'] },
        { from: 'https://admin.localhost', to: upstream, allow_any_authenticated_user: true },
      ],
    })
    // The ext_authz listener may come up just after the main one (cluster workers).
    await waitFor('the ext_authz listener', () => setup.portcullis.listeners['ext_authz'] !== undefined)
    const file = join(mkdtempSync(join(tmpdir(), 'ext-authz-')), 'envoy.proto')
    writeFileSync(file, PROTO)
    const pkg = grpc.loadPackageDefinition(loadSync(file, { keepCase: false, defaults: true, oneofs: true })) as unknown as { envoy: { service: { auth: { v3: { Authorization: new (address: string, creds: grpc.ChannelCredentials) => CheckClient } } } } }
    client = new pkg.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
    const cookieOf = async (host: string): Promise<string> => {
      const { jar } = await signIn(setup, `https://${host}:${setup.port}/`, 'alice@example.com', 'alice-password')
      const value = jar.header(new URL(`https://${host}:${setup.port}/`))
      assert.ok(value)
      return value
    }
    kubeCookie = await cookieOf('kube.localhost')
    gcpCookie = await cookieOf('gcp.localhost')
    adminCookie = await cookieOf('admin.localhost')
  })
  after(async () => {
    client?.close()
    await setup?.close()
  })

  function check(http: Record<string, unknown>, metadata: Record<string, string> = { authorization: `Bearer ${token}` }): Promise<CheckResponse> {
    const md = new grpc.Metadata()
    for (const [k, v] of Object.entries(metadata)) md.set(k, v)
    const body = { attributes: { source: { address: { socketAddress: { address: '203.0.113.7', portValue: 51000 } } }, request: { http: { id: 'envoy-req-1', method: 'GET', scheme: 'https', path: '/', protocol: 'HTTP/1.1', ...http } } } }
    return new Promise((resolve, reject) => client.Check(body, md, (err, res) => (err ? reject(err) : resolve(res))))
  }

  it('allows a signed-in user: OK with the assertion to set upstream, verifiable as Istio would verify it', async () => {
    const res = await check({ host: 'kube.localhost', path: '/reports?q=1', headers: { cookie: kubeCookie, accept: 'text/html', 'x-pomerium-jwt-assertion': 'forged' } })
    assert.equal(res.status.code, 0)
    const assertion = header(res.okResponse?.headers, 'x-pomerium-jwt-assertion')
    assert.ok(assertion)
    // Istio's RequestAuthentication: jwksUri = our JWKS, issuer and audience the route host.
    const jwks = (await (await request(`${setup.app}/.well-known/pomerium/jwks.json`, { dispatcher: setup.dispatcher })).body.json()) as JSONWebKeySet
    const { payload } = await jwtVerify(assertion, createLocalJWKSet(jwks), { issuer: 'kube.localhost', audience: 'kube.localhost' })
    assert.equal(payload['email'], 'alice@example.com')
  })

  it('a client’s own assertion is removed when Portcullis sets none', async () => {
    const res = await check({ host: 'admin.localhost', path: '/x', headers: { cookie: adminCookie, 'x-pomerium-jwt-assertion': 'forged' } })
    assert.equal(res.status.code, 0)
    assert.equal(header(res.okResponse?.headers, 'x-pomerium-jwt-assertion'), undefined)
    assert.ok(res.okResponse?.headersToRemove.includes('x-pomerium-jwt-assertion'))
  })

  it('denies a user the policy refuses: PERMISSION_DENIED with the 403 page', async () => {
    const res = await check({ host: 'gcp.localhost', path: '/', headers: { cookie: gcpCookie, accept: 'text/html' } })
    assert.equal(res.status.code, 7)
    assert.equal(res.deniedResponse?.status.code, 403)
    assert.match(res.deniedResponse?.body ?? '', /403 Forbidden[\s\S]*Why:[\s\S]*Request ID/)
    assert.equal(header(res.deniedResponse?.headers, 'x-request-id'), 'envoy-req-1', "Envoy's request id is the page's")
  })

  it('sends an unauthenticated browser to sign in, and answers an API client 401', async () => {
    const browser = await check({ host: 'kube.localhost', path: '/x?y=2', headers: { accept: 'text/html,application/xhtml+xml' } })
    assert.equal(browser.status.code, 16)
    assert.equal(browser.deniedResponse?.status.code, 302)
    const location = new URL(header(browser.deniedResponse?.headers, 'location') ?? '')
    assert.equal(location.pathname, '/.pomerium/sign_in')
    assert.equal(new URL(location.searchParams.get('pomerium_redirect_uri') ?? '').href, 'https://kube.localhost/x?y=2')
    const api = await check({ host: 'kube.localhost', path: '/api', headers: { accept: 'application/json' } })
    assert.equal(api.status.code, 16)
    assert.equal(api.deniedResponse?.status.code, 401)
    assert.equal((JSON.parse(api.deniedResponse?.body ?? '{}') as { request_id?: string }).request_id, 'envoy-req-1')
  })

  it('applies the proxy’s path hygiene and routing to the checked request', async () => {
    const bad = await check({ host: 'kube.localhost', path: '/a/%00', headers: { cookie: kubeCookie } })
    assert.equal(bad.deniedResponse?.status.code, 400)
    const unknown = await check({ host: 'unknown.localhost', path: '/', headers: {} })
    assert.equal(unknown.deniedResponse?.status.code, 404)
  })

  it('refuses a caller without the token (UNAUTHENTICATED), and logs it', async () => {
    await assert.rejects(check({ host: 'kube.localhost', path: '/', headers: { cookie: kubeCookie } }, {}), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED)
    await assert.rejects(check({ host: 'kube.localhost', path: '/', headers: { cookie: kubeCookie } }, { authorization: `Bearer ${token}x` }), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED)
    await waitFor('the refusal to be logged', () => setup.portcullis.logs.some((l) => l.includes('ext_authz call refused')))
  })
})

describe('ext_authz over mTLS', () => {
  let setup: SignInSetup
  let port: number
  const pki = testPki()
  const serverCert = makeServerCert(pki.ca, ['127.0.0.1', 'localhost'])

  before(async () => {
    port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), 'ext-authz-tls-'))
    const caFile = join(dir, 'clients-ca.pem')
    writeFileSync(caFile, pki.ca.certPem)
    setup = await startSignInSetup({
      settings: { ext_authz: { address: `127.0.0.1:${port}`, tls: { cert_file: serverCert.certFile, key_file: serverCert.keyFile, client_ca_file: caFile } } },
      routes: (upstream) => [{ from: 'https://public.localhost', to: upstream, allow_public_unauthenticated_access: true }],
    })
    // The ext_authz listener may come up just after the main one (cluster workers).
    await waitFor('the ext_authz listener', () => setup.portcullis.listeners['ext_authz'] !== undefined)
  })
  after(async () => {
    await setup?.close()
  })

  function checkWith(credentials: grpc.ChannelCredentials): Promise<CheckResponse> {
    const file = join(mkdtempSync(join(tmpdir(), 'ext-authz-')), 'envoy.proto')
    writeFileSync(file, PROTO)
    const pkg = grpc.loadPackageDefinition(loadSync(file, { defaults: true, oneofs: true })) as unknown as { envoy: { service: { auth: { v3: { Authorization: new (address: string, creds: grpc.ChannelCredentials, options?: object) => CheckClient } } } } }
    const c = new pkg.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, credentials, { 'grpc.ssl_target_name_override': 'localhost' })
    const body = { attributes: { request: { http: { method: 'GET', scheme: 'https', host: 'public.localhost', path: '/', headers: {} } } } }
    return new Promise<CheckResponse>((resolve, reject) =>
      c.Check(body, new grpc.Metadata(), (err, res) => {
        c.close()
        if (err) reject(err)
        else resolve(res)
      }),
    )
  }

  it('a caller with a client certificate from client_ca_file is answered; one without is refused at the handshake', async () => {
    const ok = await checkWith(grpc.credentials.createSsl(Buffer.from(pki.ca.certPem), Buffer.from(pki.client.keyPem), Buffer.from(pki.client.certPem)))
    assert.equal(ok.status.code, 0)
    await assert.rejects(checkWith(grpc.credentials.createSsl(Buffer.from(pki.ca.certPem))), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE)
    await assert.rejects(checkWith(grpc.credentials.createSsl(Buffer.from(pki.ca.certPem), Buffer.from(pki.untrustedClient.keyPem), Buffer.from(pki.untrustedClient.certPem))), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE)
  })
})

describe('ext_authz with downstream_mtls: the client certificate Envoy terminated', () => {
  let setup: SignInSetup
  let client: CheckClient
  const token = randomBytes(32).toString('base64url')
  const pki = testPki()

  before(async () => {
    const port = await freePort()
    setup = await startSignInSetup({
      settings: { ext_authz: { address: `127.0.0.1:${port}`, caller_token: token }, downstream_mtls: { ca: Buffer.from(pki.ca.certPem).toString('base64') } },
      routes: (upstream) => [{ from: 'https://public.localhost', to: upstream, allow_public_unauthenticated_access: true }],
    })
    // The ext_authz listener may come up just after the main one (cluster workers).
    await waitFor('the ext_authz listener', () => setup.portcullis.listeners['ext_authz'] !== undefined)
    const file = join(mkdtempSync(join(tmpdir(), 'ext-authz-')), 'envoy.proto')
    writeFileSync(file, PROTO.replace('message Peer { Address address = 1; string principal = 4; }', 'message Peer { Address address = 1; string principal = 4; string certificate = 5; }'))
    const pkg = grpc.loadPackageDefinition(loadSync(file, { defaults: true, oneofs: true })) as unknown as { envoy: { service: { auth: { v3: { Authorization: new (address: string, creds: grpc.ChannelCredentials) => CheckClient } } } } }
    client = new pkg.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  })
  after(async () => {
    client?.close()
    await setup?.close()
  })

  function check(certificatePem: string | undefined): Promise<CheckResponse> {
    const md = new grpc.Metadata()
    md.set('authorization', `Bearer ${token}`)
    const source = { address: { socketAddress: { address: '203.0.113.7', portValue: 51000 } }, ...(certificatePem ? { certificate: encodeURIComponent(certificatePem) } : {}) }
    const body = { attributes: { source, request: { http: { method: 'GET', scheme: 'https', host: 'public.localhost', path: '/', headers: { accept: 'application/json' } } } } }
    return new Promise((resolve, reject) => client.Check(body, md, (err, res) => (err ? reject(err) : resolve(res))))
  }

  it('a certificate from the downstream_mtls CA is allowed; none, or another CA’s, is refused (495, sent as 403)', async () => {
    assert.equal((await check(pki.client.certPem)).status.code, 0)
    const none = await check(undefined)
    assert.equal(none.status.code, 7)
    assert.equal(none.deniedResponse?.status.code, 403)
    assert.match(none.status.message, /^495 /)
    const untrusted = await check(pki.untrustedClient.certPem)
    assert.equal(untrusted.status.code, 7)
    assert.match(untrusted.status.message, /^495 /)
    assert.equal((await check('not a certificate')).status.code, 7)
  })
})
