/**
 * forward_auth over mutual TLS (docs/delegated-authorization.md): the client certificate vouches
 * for the fronting proxy instead of (or with) `trusted_proxies`.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import { freePort, startSignInSetup } from '../fixtures/sign-in.js'
import { waitFor } from '../fixtures/wait.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

describe('forward_auth over mTLS', () => {
  let setup: SignInSetup
  let port: number
  const pki = testPki()

  before(async () => {
    port = await freePort()
    const serverCert = makeServerCert(pki.ca, ['127.0.0.1', 'localhost'])
    const caFile = join(mkdtempSync(join(tmpdir(), 'fa-mtls-')), 'proxies-ca.pem')
    writeFileSync(caFile, pki.ca.certPem)
    setup = await startSignInSetup({
      settings: { forward_auth: { address: `127.0.0.1:${port}`, tls: { cert_file: serverCert.certFile, key_file: serverCert.keyFile, client_ca_file: caFile } } },
      routes: (upstream) => [{ from: 'https://kube.localhost', to: upstream, allowed_users: ['alice@example.com'] }],
    })
    // The forward_auth listener may come up just after the main one (cluster workers).
    await waitFor('the forward_auth listener', () => setup.portcullis.listeners['forward_auth'] !== undefined)
  })
  after(async () => {
    await setup?.close()
  })

  function verify(client?: { certPem: string; keyPem: string }): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/verify',
          ca: pki.ca.certPem,
          servername: 'localhost',
          ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
          headers: { 'x-forwarded-host': 'kube.localhost', 'x-forwarded-uri': '/x', 'x-forwarded-proto': 'https', accept: 'application/json' },
        },
        (res) => (res.resume(), resolve(res.statusCode ?? 0)),
      )
      req.on('error', reject)
      req.end()
    })
  }

  it('a proxy with a certificate from client_ca_file is answered; without one, or with another CA’s, the handshake fails', async () => {
    assert.equal(await verify(pki.client), 401, 'decided: sign-in needed (an API client)')
    await assert.rejects(verify())
    await assert.rejects(verify(pki.untrustedClient))
  })
})

describe('forward-auth with downstream_mtls: the client certificate the fronting proxy terminated', () => {
  let setup: SignInSetup
  let port: number
  const pki = testPki()

  before(async () => {
    port = await freePort()
    setup = await startSignInSetup({
      settings: { forward_auth: { address: `127.0.0.1:${port}`, trusted_proxies: ['127.0.0.1/32'] }, downstream_mtls: { ca: Buffer.from(pki.ca.certPem).toString('base64') } },
      routes: (upstream) => [{ from: 'https://public.localhost', to: upstream, allow_public_unauthenticated_access: true }],
    })
    // The forward_auth listener may come up just after the main one (cluster workers).
    await waitFor('the forward_auth listener', () => setup.portcullis.listeners['forward_auth'] !== undefined)
  })
  after(async () => {
    await setup?.close()
  })

  async function verify(certPem?: string, raw?: string): Promise<number> {
    const headers: Record<string, string> = { 'x-forwarded-host': 'public.localhost', 'x-forwarded-uri': '/', 'x-forwarded-proto': 'https', accept: 'application/json' }
    if (certPem !== undefined) headers['x-client-cert'] = encodeURIComponent(certPem)
    if (raw !== undefined) headers['x-client-cert'] = raw
    const res = await request(`http://127.0.0.1:${port}/verify`, { headers })
    await res.body.dump()
    return res.statusCode
  }

  it('X-Client-Cert from the downstream_mtls CA is allowed; none, another CA’s or a malformed one is refused', async () => {
    assert.equal(await verify(pki.client.certPem), 200)
    assert.equal(await verify(), 495)
    assert.equal(await verify(pki.untrustedClient.certPem), 495)
    assert.equal(await verify(undefined, '%E0%A4%A'), 400)
    // Base64 DER, as Caddy's certificate_der_base64 placeholder gives it.
    const der = new X509Certificate(pki.client.certPem).raw.toString('base64')
    assert.equal(await verify(undefined, der), 200)
  })
})
