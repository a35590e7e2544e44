/**
 * The authorizer with directory data (docs/directory.md): `groups` matches the directory's group
 * ids and names, `email` the directory's email, the assertion's `groups` carries ids and names
 * (after `jwt_groups_filter`), `claim/groups` still reads the token; a membership removed in the
 * directory is refused on the next request of the same session; a provider the directory does not
 * manage keeps the token's `groups`.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'

import { decodeJwt } from 'jose'

import { loadYaml } from '../config/test-helpers.js'
import type { RouteConfig } from '../config/types.js'
import { MemoryRecordStore } from '../databroker/memory.js'
import { DIRECTORY_GROUP_TYPE, DIRECTORY_USER_TYPE, DirectoryCopy } from '../session/directory.js'
import type { SessionRefresher } from '../session/refresher.js'
import { signSessionHandle } from '../session/session-handle.js'
import { SessionStore } from '../session/session-store.js'
import { oidcSettingsYaml } from '../session/test-helpers.js'
import type { Session } from '../session/session-store.js'
import { buildAuthSettings } from '../session/settings.js'
import { loadSigningKeys } from '../shared/signing-keys.js'
import { createLogger } from '../shared/log.js'
import { buildAuthorizePlans } from './plans.js'
import { createPolicyAuthorizer } from './policy-authorizer.js'
import { createUpstreamHeaderFactory } from './upstream-headers.js'
import type { CheckRequest, CheckResult } from './types.js'

const sharedSecret = randomBytes(32)
const { config } = loadYaml(
  [
    ...oidcSettingsYaml(sharedSecret),
    'jwt_groups_filter: [g-admins, admins, g-ops]',
    'routes:',
    '  - from: https://admins.example.com',
    '    to: http://127.0.0.1:1',
    '    pass_identity_headers: true',
    '    policy: {allow: {and: [{groups: {has: admins}}]}}',
    '  - from: https://corp.example.com',
    '    to: http://127.0.0.1:1',
    '    policy: {allow: {and: [{email: {is: alice@corp.example}}]}}',
    '  - from: https://claims.example.com',
    '    to: http://127.0.0.1:1',
    "    policy: {allow: {and: [{'claim/groups': token-admins}]}}",
  ].join('\n'),
)
assert.ok(config)
const settings = buildAuthSettings(config)
const [adminsRoute, corpRoute, claimsRoute] = config.routes as [RouteConfig, RouteConfig, RouteConfig]
const idpId = settings.providerFor(adminsRoute)?.id ?? ''
const logger = createLogger('disabled')
const stores: MemoryRecordStore[] = []
const copies: DirectoryCopy[] = []

after(async () => {
  for (const c of copies) await c.stop()
  for (const s of stores) await s.close()
})

async function world(manages: boolean | (() => boolean)): Promise<{ check: (route: RouteConfig) => Promise<CheckResult>; store: MemoryRecordStore; copy: DirectoryCopy; alice: Session }> {
  const store = new MemoryRecordStore()
  stores.push(store)
  const copy = new DirectoryCopy(store, logger, { manages: typeof manages === 'function' ? manages : () => manages })
  copies.push(copy)
  copy.start()
  await copy.whenReady()
  const sessions = new SessionStore(store, { lifetimeMs: 3600_000 })
  const keys = loadSigningKeys(undefined, sharedSecret)
  const plans = buildAuthorizePlans(config as NonNullable<typeof config>, { logger, headers: createUpstreamHeaderFactory({ keys: () => keys }) })
  const authorizer = createPolicyAuthorizer({
    settings: () => settings,
    plans: () => plans,
    secrets: { sharedSecret, cookieSecret: randomBytes(32) },
    sessions,
    refresher: { current: (s: Session) => Promise.resolve(s) } as unknown as SessionRefresher,
    logger,
    directory: copy,
  })
  const { session: alice } = await sessions.create({
    userId: 'alice-sub',
    idpId,
    accessToken: undefined,
    refreshToken: undefined,
    idToken: undefined,
    tokenExpiresAt: undefined,
    claims: { email: 'alice@example.com', email_verified: true, groups: ['token-admins', 'admins'] },
  })
  const check = async (route: RouteConfig): Promise<CheckResult> => {
    const now = Math.floor(Date.now() / 1000)
    const host = route.from.host
    const handle = signSessionHandle({ iss: 'authn.example.com', sub: alice.userId, aud: [host], iat: now, exp: now + 3600, jti: alice.id, idp_id: alice.idpId }, sharedSecret)
    const request: CheckRequest = { requestId: 'r1', route, method: 'GET', host, authority: host, path: '/', query: '', headers: { cookie: `_pomerium=${handle}`, accept: 'text/html' }, clientIp: '192.0.2.1', scheme: 'https' }
    return await authorizer.check(request)
  }
  return { check, store, copy, alice }
}

async function until(what: string, condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await condition()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  assert.fail(`timed out waiting for: ${what}`)
}

describe('authorize with directory data', () => {
  it('a managed provider: groups come from the directory only (the token claim no longer counts)', async () => {
    const { check } = await world(true)
    assert.equal((await check(adminsRoute)).allow, false)
    // claim/groups keeps reading the token.
    assert.equal((await check(claimsRoute)).allow, true)
  })

  it('a directory group (by name) allows; the assertion carries ids and names after jwt_groups_filter; a removed membership is refused on the next request', async () => {
    const { check, store } = await world(true)
    await store.put([
      { type: DIRECTORY_USER_TYPE, id: 'alice-sub', data: { id: 'alice-sub', source: 'sync', active: true, email: 'alice@corp.example', emailVerified: true } },
      { type: DIRECTORY_GROUP_TYPE, id: 'g-admins', data: { id: 'g-admins', source: 'sync', name: 'admins', memberIds: ['alice-sub'] } },
      { type: DIRECTORY_GROUP_TYPE, id: 'g-ops', data: { id: 'g-ops', source: 'sync', name: 'ops', memberIds: [], nestedGroupIds: ['g-admins'] } },
      { type: DIRECTORY_GROUP_TYPE, id: 'g-sales', data: { id: 'g-sales', source: 'sync', name: 'sales', memberIds: ['alice-sub'] } },
    ])
    await until('the directory allows alice', async () => (await check(adminsRoute)).allow)
    const allowed = await check(adminsRoute)
    assert.ok(allowed.allow)
    const assertion = allowed.setHeaders?.['x-pomerium-jwt-assertion']
    assert.ok(assertion)
    const payload = decodeJwt(assertion)
    // Nested: g-admins is a member of g-ops. Filtered: sales is not in jwt_groups_filter.
    assert.deepEqual([...(payload['groups'] as string[])].sort(), ['admins', 'g-admins', 'g-ops'])
    assert.equal(payload['email'], 'alice@corp.example')
    await store.put([{ type: DIRECTORY_GROUP_TYPE, id: 'g-admins', data: { id: 'g-admins', source: 'sync', name: 'admins', memberIds: [] } }])
    await until('the removal is seen', async () => !(await check(adminsRoute)).allow)
    const denied = await check(adminsRoute)
    assert.equal(denied.allow, false)
    if (!denied.allow) assert.equal(denied.status, 403)
  })

  it('the email criterion matches the directory email', async () => {
    const { check, store } = await world(true)
    assert.equal((await check(corpRoute)).allow, false)
    // An email the directory does not vouch for (a self-registered, unverified one) does not pass.
    await store.put([{ type: DIRECTORY_USER_TYPE, id: 'alice-sub', data: { id: 'alice-sub', source: 'sync', active: true, email: 'alice@corp.example', emailVerified: false } }])
    await new Promise((r) => setTimeout(r, 50))
    assert.equal((await check(corpRoute)).allow, false)
    await store.put([{ type: DIRECTORY_USER_TYPE, id: 'alice-sub', data: { id: 'alice-sub', source: 'scim', active: true, email: 'alice@corp.example', emailVerified: true, userName: 'alice@corp.example', userNameKey: 'alice@corp.example' } }])
    await until('the directory email is used', async () => (await check(corpRoute)).allow)
  })

  it('a deactivated user has no directory groups', async () => {
    const { check, store } = await world(true)
    await store.put([
      { type: DIRECTORY_USER_TYPE, id: 'alice-sub', data: { id: 'alice-sub', source: 'scim', active: false } },
      { type: DIRECTORY_GROUP_TYPE, id: 'g-admins', data: { id: 'g-admins', source: 'scim', name: 'admins', memberIds: ['alice-sub'] } },
    ])
    await new Promise((r) => setTimeout(r, 50))
    assert.equal((await check(adminsRoute)).allow, false)
  })

  it('turning the directory on (a reload) rebuilds views made without it: the token groups stop counting', async () => {
    let on = false
    const { check } = await world(() => on)
    assert.equal((await check(adminsRoute)).allow, true)
    on = true
    assert.equal((await check(adminsRoute)).allow, false)
  })

  it('a provider the directory does not manage keeps the token groups', async () => {
    const { check } = await world(false)
    assert.equal((await check(adminsRoute)).allow, true)
  })
})
