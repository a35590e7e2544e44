/**
 * The device endpoints as plain functions: every refusal a browser cannot easily produce (another
 * site's post, a forged or replayed ceremony state, another session's page, forms without their
 * token, non-approvers). The ceremonies themselves run in Chromium (test/devices.browser.test.ts).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { loadYaml } from '../config/test-helpers.js'
import { MemoryRecordStore } from '../databroker/memory.js'
import { compilePolicy } from '../policy/index.js'
import { DeviceStore } from '../session/devices.js'
import { oidcSettingsYaml } from '../session/test-helpers.js'
import { SessionStore } from '../session/session-store.js'
import type { Session } from '../session/session-store.js'
import { buildAuthSettings } from '../session/settings.js'
import { signUrl } from '../session/signed-url.js'
import { createLogger } from '../shared/log.js'
import type { EndpointRequest, EndpointResponse } from './endpoint.js'
import { WebAuthnEndpoints } from './webauthn.js'
import type { WebAuthnContext } from './webauthn.js'

const sharedSecret = randomBytes(32)
const { config } = loadYaml(
  [
    ...oidcSettingsYaml(sharedSecret),
    'routes:',
    '  - from: https://app.example.com',
    '    to: http://127.0.0.1:1',
    '    allow_any_authenticated_user: true',
  ].join('\n'),
)
assert.ok(config)
const settings = buildAuthSettings(config)
const ORIGIN = 'https://app.example.com'

function setup(options: { approvers?: unknown } = {}): { endpoints: WebAuthnEndpoints; devices: DeviceStore; sessions: SessionStore } {
  const store = new MemoryRecordStore()
  const sessions = new SessionStore(store, { lifetimeMs: 3600_000 })
  const devices = new DeviceStore(store)
  const approvers = options.approvers === undefined ? undefined : compilePolicy(options.approvers).policy
  const endpoints = new WebAuthnEndpoints({
    settings: () => settings,
    secrets: { sharedSecret, cookieSecret: randomBytes(32) },
    sessions,
    devices,
    deviceTypes: () => config?.deviceTypes ?? [],
    approvers: () => approvers,
    logger: createLogger('disabled'),
  })
  return { endpoints, devices, sessions }
}

async function newSession(sessions: SessionStore, userId = 'alice', email = 'alice@example.com'): Promise<Session> {
  const { session } = await sessions.create({ userId, idpId: 'idp', accessToken: undefined, refreshToken: undefined, idToken: undefined, tokenExpiresAt: undefined, claims: { email, email_verified: true } })
  return session
}

function request(path: string, extra: Partial<EndpointRequest> = {}): EndpointRequest {
  const [p, q] = path.split('?')
  return { requestId: 'r1', method: 'GET', host: 'app.example.com', authority: 'app.example.com', path: p ?? path, query: q === undefined ? '' : `?${q}`, headers: {}, body: Buffer.alloc(0), clientIp: '192.0.2.1', scheme: 'https', ...extra }
}

function context(session: Session | undefined): WebAuthnContext {
  return {
    origin: ORIGIN,
    session: () => Promise.resolve(session),
    signIn: (returnTo) => ({ status: 302, headers: { location: `https://authn.example.com/sign_in?to=${encodeURIComponent(returnTo)}` }, body: '' }),
    error: (status, title, message) => ({ status, headers: { 'content-type': 'text/plain' }, body: `${title}: ${message}` }),
  }
}

function signedPagePath(type: string, redirect = `${ORIGIN}/app`): string {
  const url = new URL(`${ORIGIN}/.pomerium/webauthn`)
  url.searchParams.set('pomerium_device_type', type)
  url.searchParams.set('pomerium_redirect_uri', redirect)
  const signed = signUrl(url, sharedSecret)
  return `${signed.pathname}${signed.search}`
}

/** The sealed state of a rendered page (from its JSON data block). */
function stateOf(answer: EndpointResponse): string {
  const m = /<script type="application\/json" id="page-data">(.*?)<\/script>/.exec(answer.body)
  assert.ok(m, 'the page carries its data')
  return (JSON.parse(m[1] as string) as { state: string }).state
}

function post(body: unknown, headers: Record<string, string> = { origin: ORIGIN, 'content-type': 'application/json' }): EndpointRequest {
  return request('/.pomerium/webauthn', { method: 'POST', headers, body: Buffer.from(JSON.stringify(body)) })
}

describe('/.pomerium/webauthn', () => {
  it('shows the page for a signed link: the script is allowed by nonce only, and the options name this host', async () => {
    const { endpoints, sessions } = setup()
    const session = await newSession(sessions)
    const answer = await endpoints.handle(request(signedPagePath('any')), context(session))
    assert.equal(answer.status, 200)
    assert.match(answer.headers['content-security-policy'] ?? '', /script-src 'nonce-[^']+'; connect-src 'self'/)
    assert.doesNotMatch(answer.headers['content-security-policy'] ?? '', /unsafe/)
    const data = JSON.parse(/id="page-data">(.*?)<\/script>/.exec(answer.body)?.[1] ?? '{}') as { registration: { rp: { id: string }; attestation: string; authenticatorSelection: Record<string, string> } }
    assert.equal(data.registration.rp.id, 'app.example.com')
    assert.equal(data.registration.attestation, 'none')
    const enclave = await endpoints.handle(request(signedPagePath('enclave_only')), context(session))
    const enclaveData = JSON.parse(/id="page-data">(.*?)<\/script>/.exec(enclave.body)?.[1] ?? '{}') as typeof data
    assert.equal(enclaveData.registration.authenticatorSelection['authenticatorAttachment'], 'platform')
    assert.equal(enclaveData.registration.authenticatorSelection['userVerification'], 'required')
    assert.equal(enclaveData.registration.attestation, 'direct')
  })

  it('refuses unsigned, tampered and foreign-redirect links, and unknown types', async () => {
    const { endpoints, sessions } = setup()
    const session = await newSession(sessions)
    const ctx = context(session)
    assert.equal((await endpoints.handle(request('/.pomerium/webauthn?pomerium_device_type=any'), ctx)).status, 400)
    assert.equal((await endpoints.handle(request(signedPagePath('any').replace('type=any', 'type=enclave_only')), ctx)).status, 400)
    assert.equal((await endpoints.handle(request(signedPagePath('any', 'https://evil.example/')), ctx)).status, 400)
    assert.equal((await endpoints.handle(request(signedPagePath('laptop')), ctx)).status, 400)
  })

  it('without a session, signs in and comes back to the same link', async () => {
    const { endpoints } = setup()
    const path = signedPagePath('any')
    const answer = await endpoints.handle(request(path), context(undefined))
    assert.equal(answer.status, 302)
    assert.equal(new URL(answer.headers['location'] ?? '').searchParams.get('to'), `${ORIGIN}${path}`)
  })

  it("refuses a post from another site, a forged state, another session's page and a replay", async () => {
    const { endpoints, sessions } = setup()
    const alice = await newSession(sessions)
    const state = stateOf(await endpoints.handle(request(signedPagePath('any')), context(alice)))
    const credential = { id: 'x', rawId: 'x', type: 'public-key', response: { clientDataJSON: 'e30', attestationObject: 'AA' }, clientExtensionResults: {} }
    const foreign = await endpoints.handle(post({ action: 'register', state, credential }, { origin: 'https://evil.example', 'content-type': 'application/json' }), context(alice))
    assert.equal(foreign.status, 403)
    assert.match(foreign.body, /did not come from this site/)
    const form = await endpoints.handle(post({ action: 'register', state, credential }, { origin: ORIGIN, 'content-type': 'application/x-www-form-urlencoded' }), context(alice))
    assert.equal(form.status, 400)
    const forged = await endpoints.handle(post({ action: 'register', state: `${state.slice(0, -2)}AA`, credential }), context(alice))
    assert.equal(forged.status, 400)
    const bob = await newSession(sessions, 'bob', 'bob@example.com')
    const stolen = await endpoints.handle(post({ action: 'register', state, credential }), context(bob))
    assert.equal(stolen.status, 403)
    assert.match(stolen.body, /another session/)
    // The first real attempt uses the state up (here it fails to verify: not a real credential)...
    const first = await endpoints.handle(post({ action: 'register', state, credential }), context(alice))
    assert.equal(first.status, 400)
    assert.match(first.body, /could not be verified/)
    // ...and the same page cannot be posted again.
    const again = await endpoints.handle(post({ action: 'register', state, credential }), context(alice))
    assert.equal(again.status, 400)
    assert.match(again.body, /already used/)
    // Authenticating where the page offered no registered device.
    const fresh = stateOf(await endpoints.handle(request(signedPagePath('any')), context(alice)))
    const noDevice = await endpoints.handle(post({ action: 'authenticate', state: fresh, credential: { id: 'x' } }), context(alice))
    assert.equal(noDevice.status, 400)
  })
})

describe('device forms', () => {
  it('removing a device needs the session-bound token and the device to be the user’s own', async () => {
    const { endpoints, devices, sessions } = setup()
    const alice = await newSession(sessions)
    await devices.put({ id: 'k1', typeId: 'any', userId: 'alice', publicKey: 'pk', counter: 0, aaguid: '', format: 'none', transports: [], createdAt: 1, approved: false })
    await devices.put({ id: 'k2', typeId: 'any', userId: 'bob', publicKey: 'pk', counter: 0, aaguid: '', format: 'none', transports: [], createdAt: 1, approved: false })
    const form = (fields: Record<string, string>): EndpointRequest =>
      request('/.pomerium/devices/remove', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(new URLSearchParams(fields).toString()) })
    const { csrfToken } = await endpoints.userDevices(alice)
    const otherToken = endpoints.formToken('another-session')
    assert.equal((await endpoints.handle(form({ id: 'k1', csrf: otherToken }), context(alice))).status, 403)
    assert.equal((await endpoints.handle(form({ id: 'k1' }), context(alice))).status, 403)
    assert.equal((await endpoints.handle(form({ id: 'k2', csrf: csrfToken }), context(alice))).status, 400, "Bob's device")
    assert.ok(await devices.get('k2'))
    const removed = await endpoints.handle(form({ id: 'k1', csrf: csrfToken }), context(alice))
    assert.equal(removed.status, 302)
    assert.equal(await devices.get('k1'), undefined)
  })

  it('the approvers’ page is only for people device_approvers allows', async () => {
    const nobody = setup()
    const alice = await newSession(nobody.sessions)
    const none = await nobody.endpoints.handle(request('/.pomerium/devices'), context(alice))
    assert.equal(none.status, 403)
    assert.match(none.body, /No device approvers are configured/)
    const only = setup({ approvers: { allow: { or: [{ email: { is: 'admin@example.com' } }] } } })
    const notAdmin = await newSession(only.sessions)
    assert.equal((await only.endpoints.handle(request('/.pomerium/devices'), context(notAdmin))).status, 403)
    const admin = await newSession(only.sessions, 'admin', 'admin@example.com')
    await only.devices.put({ id: 'k1', typeId: 'any', userId: 'alice', userName: 'alice@example.com', publicKey: 'pk', counter: 0, aaguid: '', format: 'none', transports: [], createdAt: 1, approved: false })
    const listed = await only.endpoints.handle(request('/.pomerium/devices'), context(admin))
    assert.equal(listed.status, 200, listed.body)
    assert.match(listed.body, /alice@example\.com/)
    const approve = (csrf: string): EndpointRequest =>
      request('/.pomerium/devices', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(new URLSearchParams({ op: 'approve', id: 'k1', csrf }).toString()) })
    assert.equal((await only.endpoints.handle(approve(only.endpoints.formToken(notAdmin.id)), context(notAdmin))).status, 403)
    assert.equal((await only.endpoints.handle(approve(only.endpoints.formToken(notAdmin.id)), context(admin))).status, 403, "another session's token")
    assert.equal((await only.endpoints.handle(approve(only.endpoints.formToken(admin.id)), context(admin))).status, 302)
    assert.equal((await only.devices.get('k1'))?.approvedBy, 'admin@example.com')
  })
})
