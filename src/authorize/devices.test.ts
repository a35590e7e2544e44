/**
 * The authorizer on routes with device rules: it reads the session's device records on each
 * request, sends a browser without a device of the type to the signed device page of the route's
 * host, tells a script what is missing, says when a device waits for approval, and fails closed
 * when the device store does not answer.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { loadYaml } from '../config/test-helpers.js'
import type { RouteConfig } from '../config/types.js'
import { MemoryRecordStore } from '../databroker/memory.js'
import type { DataRecord, RecordStore } from '../databroker/index.js'
import { DeviceStore } from '../session/devices.js'
import { oidcSettingsYaml } from '../session/test-helpers.js'
import type { DeviceCredential } from '../session/devices.js'
import type { SessionRefresher } from '../session/refresher.js'
import { signSessionHandle } from '../session/session-handle.js'
import { SessionStore } from '../session/session-store.js'
import type { Session } from '../session/session-store.js'
import { buildAuthSettings } from '../session/settings.js'
import { verifySignedUrl } from '../session/signed-url.js'
import { createLogger } from '../shared/log.js'
import { buildAuthorizePlans } from './plans.js'
import { createPolicyAuthorizer } from './policy-authorizer.js'
import type { CheckRequest, CheckResult } from './types.js'

const sharedSecret = randomBytes(32)
const { config } = loadYaml(
  [
    ...oidcSettingsYaml(sharedSecret),
    'device_types: [{id: kiosk, approval_required: true}]',
    'routes:',
    '  - from: https://app.example.com',
    '    to: http://127.0.0.1:1',
    '    policy: {allow: {and: [{authenticated_user: true}, {device: {type: kiosk}}]}}',
  ].join('\n'),
)
assert.ok(config)
const settings = buildAuthSettings(config)
const [route] = config.routes as [RouteConfig]
const idpId = settings.providerFor(route)?.id ?? ''

function credential(id: string, userId: string, extra: Partial<DeviceCredential> = {}): DeviceCredential {
  return { id, typeId: 'kiosk', userId, publicKey: 'pk', counter: 0, aaguid: '', format: 'none', transports: [], createdAt: 1, approved: false, ...extra }
}

async function world(store: RecordStore = new MemoryRecordStore(), deviceStore?: DeviceStore): Promise<{ check: (session: Session, accept?: string) => Promise<CheckResult>; sessions: SessionStore; devices: DeviceStore; alice: Session }> {
  const sessions = new SessionStore(store, { lifetimeMs: 3600_000 })
  const devices = deviceStore ?? new DeviceStore(store)
  const plans = buildAuthorizePlans(config as NonNullable<typeof config>, { logger: createLogger('disabled') })
  const authorizer = createPolicyAuthorizer({
    settings: () => settings,
    plans: () => plans,
    secrets: { sharedSecret, cookieSecret: randomBytes(32) },
    sessions,
    devices,
    refresher: { current: (s: Session) => Promise.resolve(s) } as unknown as SessionRefresher,
    logger: createLogger('disabled'),
  })
  const { session: alice } = await sessions.create({ userId: 'alice', idpId, accessToken: undefined, refreshToken: undefined, idToken: undefined, tokenExpiresAt: undefined, claims: { email: 'alice@example.com' } })
  const check = async (session: Session, accept = 'text/html'): Promise<CheckResult> => {
    const now = Math.floor(Date.now() / 1000)
    const handle = signSessionHandle({ iss: 'authn.example.com', sub: session.userId, aud: ['app.example.com'], iat: now, exp: now + 3600, jti: session.id, idp_id: session.idpId }, sharedSecret)
    const request: CheckRequest = {
      requestId: 'r1',
      route,
      method: 'GET',
      host: 'app.example.com',
      authority: 'app.example.com',
      path: '/reports',
      query: '?q=1',
      headers: { cookie: `_pomerium=${handle}`, accept },
      clientIp: '192.0.2.1',
      scheme: 'https',
    }
    return await authorizer.check(request)
  }
  return { check, sessions, devices, alice }
}

describe('authorize: routes with device rules', () => {
  it('a browser without a device of the type goes to the signed device page of this host, and comes back', async () => {
    const { check, alice } = await world()
    const result = await check(alice)
    assert.equal(result.allow, false)
    assert.ok(!result.allow)
    assert.equal(result.status, 302)
    assert.equal(result.code, 'device-enrollment')
    const location = new URL(result.location ?? '')
    assert.equal(`${location.origin}${location.pathname}`, 'https://app.example.com/.pomerium/webauthn')
    assert.equal(location.searchParams.get('pomerium_device_type'), 'kiosk')
    assert.equal(location.searchParams.get('pomerium_redirect_uri'), 'https://app.example.com/reports?q=1')
    assert.equal(verifySignedUrl(location, sharedSecret), undefined, 'signed')
    const script = await check(alice, 'application/json')
    assert.ok(!script.allow)
    assert.equal(script.status, 403)
    assert.equal(script.code, 'device-enrollment')
    assert.equal(script.location, undefined)
  })

  it("reads the devices on every request: pending → 450 saying so, approved → allow, removed → enroll again; another user's device counts for nothing", async () => {
    const { check, sessions, devices, alice } = await world()
    await devices.put(credential('mine', 'alice'))
    await devices.put(credential('bobs', 'bob', { approved: true }))
    const bound = { ...alice, deviceCredentialIds: ['mine', 'bobs'] }
    await sessions.update(bound)
    const pending = await check(bound)
    assert.ok(!pending.allow)
    assert.equal(pending.status, 450)
    assert.equal(pending.code, 'device-denied')
    assert.ok(pending.reasons?.some((r) => /waits for an approver/.test(r)), JSON.stringify(pending.reasons))
    await devices.setApproved('mine', true, 'admin')
    assert.equal((await check(bound)).allow, true)
    await devices.delete('mine')
    const removed = await check(bound)
    assert.ok(!removed.allow)
    assert.equal(removed.code, 'device-enrollment', "Bob's approved kiosk in Alice's session does not count")
  })

  it('fails closed when the device store does not answer', async () => {
    const store = new MemoryRecordStore()
    const broken = new DeviceStore(
      new Proxy(store, {
        get(target, name) {
          if (name === 'get') return (): Promise<DataRecord | undefined> => Promise.reject(new Error('connection refused'))
          const value: unknown = Reflect.get(target, name, target)
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
        },
      }),
    )
    const { check, sessions, alice } = await world(store, broken)
    const bound = { ...alice, deviceCredentialIds: ['mine'] }
    await sessions.update(bound)
    const result = await check(bound)
    assert.ok(!result.allow)
    assert.equal(result.status, 503)
    assert.equal(result.code, 'unavailable')
  })
})
