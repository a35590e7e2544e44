/**
 * Group membership from the directory through the running server (docs/directory.md), with real
 * sessions from the real OpenID provider:
 *
 * - SCIM push: a provider creates the user and a group over `/scim/v2`; the `groups` rule allows,
 *   the upstream's assertion carries the group's id and name; the member removed over SCIM is
 *   refused on the next request, without signing out. The token's own `groups` claim no longer
 *   grants directory groups once a directory is configured; `claim/groups` still reads it.
 * - Pull sync (an Okta directory stand-in): the member found by the sync is allowed; removed at
 *   the provider, refused after the next sync; `/status` reports the sync.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'

import { decodeJwt } from 'jose'
import { request } from 'undici'
import YAML from 'yaml'

import { startFakeDirectory } from '../fixtures/directory-apis.js'
import type { FakeDirectory } from '../fixtures/directory-apis.js'
import type { CookieJar } from '../fixtures/oidc-provider.js'
import { freePort, signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import type { EchoRecord } from '../fixtures/upstreams.js'
import { startPortcullis } from '../fixtures/portcullis.js'
import { waitFor } from '../fixtures/wait.js'

const SCIM_TOKEN = randomBytes(24).toString('base64url')

async function get(setup: SignInSetup, url: string, jar: CookieJar): Promise<{ status: number; body: string }> {
  const u = new URL(url)
  const cookie = jar.header(u)
  const res = await request(u, { dispatcher: setup.dispatcher, headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) } })
  return { status: res.statusCode, body: await res.body.text() }
}

function adminRoutes(upstream: string): Record<string, unknown>[] {
  return [
    { from: 'https://admin.localhost', to: upstream, pass_identity_headers: true, policy: { allow: { and: [{ groups: { has: 'admins' } }] } } },
    { from: 'https://api.localhost', to: upstream, policy: { allow: { and: [{ 'claim/groups': 'admins' }] } } },
  ]
}

describe('directory: SCIM push', () => {
  let setup: SignInSetup
  let scim: string
  let alice: CookieJar
  let admin: string

  async function scimCall(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const res = await fetch(`${scim}${path}`, {
      method,
      headers: { authorization: `Bearer ${SCIM_TOKEN}`, 'content-type': 'application/scim+json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    const text = await res.text()
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${text}`)
    return text === '' ? {} : (JSON.parse(text) as Record<string, unknown>)
  }

  before(async () => {
    const scimPort = await freePort()
    setup = await startSignInSetup({
      settings: { scim: { address: `127.0.0.1:${scimPort}`, bearer_token_sha256: [createHash('sha256').update(SCIM_TOKEN).digest('hex')] } },
      routes: adminRoutes,
    })
    // Its own `listening` line may come just after the main listener's.
    await waitFor('the scim listener', () => setup.portcullis.listeners['scim'] !== undefined)
    scim = setup.portcullis.listeners['scim'] ?? ''
    assert.match(scim, /\/scim\/v2$/)
    admin = `https://admin.localhost:${setup.port}`
    alice = (await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')).jar
    for (const host of [admin, `https://api.localhost:${setup.port}`]) await signIn(setup, `${host}/`, 'alice@example.com', 'x', alice).catch(() => undefined)
  })
  after(async () => {
    await setup.close()
  })

  it('the token groups claim no longer grants a directory group; claim/groups still reads it', async () => {
    assert.equal((await get(setup, `${admin}/`, alice)).status, 403)
    assert.equal((await get(setup, `https://api.localhost:${setup.port}/`, alice)).status, 200)
  })

  it('a group pushed over SCIM allows, the assertion carries its id and name, and its removal is refused on the next request', async () => {
    const user = await scimCall('POST', '/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'alice@example.com', emails: [{ value: 'alice@example.com', primary: true }], active: true })
    const group = await scimCall('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'admins', members: [{ value: user['id'] }] })
    await waitFor('the pushed group allows alice', async () => (await get(setup, `${admin}/`, alice)).status === 200)
    const echo = JSON.parse((await get(setup, `${admin}/`, alice)).body) as EchoRecord
    const assertion = echo.headers['x-pomerium-jwt-assertion']
    assert.equal(typeof assertion, 'string')
    const groups = decodeJwt(String(assertion))['groups'] as string[]
    assert.ok(groups.includes('admins') && groups.includes(String(group['id'])), JSON.stringify(groups))
    await scimCall('PATCH', `/Groups/${String(group['id'])}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'remove', path: `members[value eq "${String(user['id'])}"]` }] })
    await waitFor('the removal is refused', async () => (await get(setup, `${admin}/`, alice)).status === 403)
    // Still signed in: a route any signed-in user may open still answers.
    assert.equal((await get(setup, `${setup.app}/`, alice)).status, 200)
  })
})

describe('directory: pull sync', () => {
  let setup: SignInSetup
  let fake: FakeDirectory
  let alice: CookieJar
  let admin: string
  let healthPort: number

  before(async () => {
    fake = await startFakeDirectory('okta', {
      users: [
        { id: '00u-alice', email: 'alice@example.com', name: 'Alice Example', active: true },
        { id: '00u-bob', email: 'bob@example.com', name: 'Bob Example', active: true },
      ],
      groups: [{ id: '00g-admins', name: 'admins', members: ['00u-alice'], children: [] }],
    })
    healthPort = await freePort()
    setup = await startSignInSetup({
      settings: {
        // An oidc sign-in in front of an Okta directory: the account names the directory.
        idp_service_account: JSON.stringify({ provider: 'okta', ...fake.account, api_url: fake.url }),
        idp_refresh_directory_interval: '1m',
        health_check_addr: `127.0.0.1:${healthPort}`,
      },
      routes: adminRoutes,
    })
    admin = `https://admin.localhost:${setup.port}`
    alice = (await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')).jar
    await signIn(setup, `${admin}/`, 'alice@example.com', 'x', alice).catch(() => undefined)
  })
  after(async () => {
    await setup.close()
    await fake.close()
  })

  it('a member found by the sync is allowed; removed at the provider, refused after the next sync', async () => {
    assert.equal((await get(setup, `${admin}/`, alice)).status, 200)
    const status = (await (await fetch(`http://127.0.0.1:${healthPort}/status`)).json()) as { directory?: Record<string, unknown> }
    assert.equal(status.directory?.['provider'], 'okta')
    assert.equal(status.directory?.['groups'], 1)
    assert.equal(status.directory?.['stale'], false)
    const admins = fake.model.groups[0]
    assert.ok(admins)
    admins.members = []
    // The next sync: a reload that changes the directory settings starts one at once.
    const file = setup.portcullis.configFile
    const config = YAML.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    writeFileSync(file, YAML.stringify({ ...config, idp_refresh_directory_interval: '2m' }))
    await waitFor('the sync after the reload refuses alice', async () => (await get(setup, `${admin}/`, alice)).status === 403, { timeoutMs: 20_000 })
  })

  it('a provider that fails keeps the last data and says so in /status', async () => {
    fake.failPaths(/.*/)
    const file = setup.portcullis.configFile
    const config = YAML.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    writeFileSync(file, YAML.stringify({ ...config, idp_refresh_directory_interval: '3m' }))
    await waitFor('the status reports the failure', async () => {
      const status = (await (await fetch(`http://127.0.0.1:${healthPort}/status`)).json()) as { directory?: Record<string, unknown> }
      return status.directory?.['stale'] === true && /HTTP 500/.test(String(status.directory['last_error']))
    }, { timeoutMs: 20_000 })
    fake.failPaths(undefined)
  })
})

describe('directory: start-up', () => {
  it('a process whose databroker is not up yet still starts when a directory is configured (it waits a moment, then serves)', async () => {
    const port = await freePort()
    const deadPort = await freePort()
    const proc = await startPortcullis(
      {
        address: `127.0.0.1:${port}`,
        insecure_server: true,
        services: 'proxy',
        databroker_service_url: `http://127.0.0.1:${deadPort}`,
        authorize_service_url: `http://127.0.0.1:${deadPort}`,
        shared_secret: randomBytes(32).toString('base64'),
        cookie_secret: randomBytes(32).toString('base64'),
        authenticate_service_url: 'https://authn.localhost',
        idp_provider: 'okta',
        idp_provider_url: 'https://acme.okta.example',
        idp_client_id: 'c',
        idp_client_secret: 's',
        idp_service_account: JSON.stringify({ api_key: 'k' }),
        routes: [{ from: 'http://app.localhost', to: 'http://127.0.0.1:1', allow_public_unauthenticated_access: true }],
      },
      { timeoutMs: 20_000 },
    )
    try {
      assert.ok(proc.url)
    } finally {
      await proc.stop()
    }
  })
})
