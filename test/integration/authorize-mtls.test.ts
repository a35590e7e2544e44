/**
 * Client certificates and policy through the running proxy (Pomerium docs: Downstream mTLS, conformance 35, 36):
 * with `downstream_mtls` and the default enforcement, a request without a valid certificate gets
 * 495 and no sign-in redirect, while `/.pomerium/*` and `/healthz` stay reachable; the
 * `client_certificate` criterion pins a certificate by fingerprint.
 */
import assert from 'node:assert/strict'
import { createHash, X509Certificate } from 'node:crypto'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import type { Dispatcher } from 'undici'
import { makeCa, makeClientCert, testPki } from '../fixtures/certs.js'
import type { CertKeyPair } from '../fixtures/certs.js'
import { CookieJar, loginWithForm } from '../fixtures/oidc-provider.js'
import { localhostDispatcher, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let alice: CertKeyPair
let other: CertKeyPair
let withAlice: Dispatcher
let withOther: Dispatcher
let withStranger: Dispatcher
let admin: string

function fingerprint(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')
}

before(async () => {
  const pki = testPki()
  alice = makeClientCert(pki.ca, 'alice-laptop')
  other = makeClientCert(pki.ca, 'other-laptop')
  const stranger = makeClientCert(makeCa('Stranger CA'), 'stranger')
  setup = await startSignInSetup({
    settings: { downstream_mtls: { ca_file: pki.ca.certFile } },
    routes: (upstream) => [
      {
        from: 'https://admin.localhost',
        to: upstream,
        policy: { allow: { and: [{ authenticated_user: true }, { client_certificate: { fingerprint: fingerprint(alice.certPem) } }] } },
      },
    ],
  })
  admin = `https://admin.localhost:${setup.port}`
  withAlice = localhostDispatcher(setup.caPem, alice)
  withOther = localhostDispatcher(setup.caPem, other)
  withStranger = localhostDispatcher(setup.caPem, stranger)
})
after(async () => {
  await Promise.all([withAlice, withOther, withStranger].map((d) => d.close()))
  await setup.close()
})

async function get(url: string, dispatcher: Dispatcher, jar?: CookieJar, accept = 'text/html'): Promise<{ status: number; body: string; location: string | undefined }> {
  const u = new URL(url)
  const cookie = jar?.header(u)
  const res = await request(u, { dispatcher, headers: { accept, ...(cookie ? { cookie } : {}) } })
  const loc = res.headers['location']
  return { status: res.statusCode, body: await res.body.text(), location: typeof loc === 'string' ? loc : undefined }
}

test('no valid client certificate: 495 without a sign-in redirect; health and Portcullis pages stay reachable', async () => {
  for (const d of [setup.dispatcher, withStranger]) {
    const r = await get(`${setup.app}/`, d)
    assert.equal(r.status, 495)
    assert.equal(r.location, undefined)
    assert.match(r.body, /client certificate/)
  }
  assert.equal((await get(`${setup.app}/healthz`, setup.dispatcher)).status, 200)
  assert.equal((await get(`${setup.app}/.well-known/pomerium`, setup.dispatcher)).status, 200)
  assert.equal((await get(`${setup.app}/.pomerium/`, setup.dispatcher)).status, 302, 'the user page still asks to sign in')
})

test('a valid certificate leads on to sign-in and access; a fingerprint pin admits only that certificate', async () => {
  const anon = await get(`${setup.app}/`, withAlice)
  assert.equal(anon.status, 302, 'with a good certificate, the usual sign-in')
  const jar = new CookieJar()
  let first = true
  await loginWithForm(`${admin}/`, 'alice@example.com', 'alice-password', {
    jar,
    dispatcher: withAlice,
    stopAt: (u) => {
      if (first) {
        first = false
        return false
      }
      return u.href === `${admin}/`
    },
  })
  assert.equal((await get(`${admin}/`, withAlice, jar)).status, 200)
  const pinned = await get(`${admin}/`, withOther, jar)
  assert.equal(pinned.status, 403)
  assert.match(pinned.body, /certificate/)
})
