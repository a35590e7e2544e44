/**
 * The SCIM 2.0 endpoint over HTTP on loopback (listener + service + a memory databroker): bearer
 * tokens, discovery documents, Users and Groups CRUD, filters, pagination, ETags, PATCH in the
 * RFC's form and in Okta's and Entra ID's dialects (their documented provisioning sequences
 * replayed), refusals that write nothing, and what the directory copy (the authorize side) reads.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'

import { Client } from 'pg'

import { createPostgresRecordStore, MemoryRecordStore } from '../../databroker/index.js'
import type { RecordStore } from '../../databroker/index.js'
import { DIRECTORY_USER_TYPE, DirectoryCopy } from '../../session/directory.js'
import { createLogger } from '../../shared/log.js'
import { startScimListener } from './listener.js'
import type { ScimListener } from './listener.js'
import { ScimService } from './service.js'

const TOKEN = 'scim-token-0123456789abcdefghijklmnop'
const logger = createLogger('disabled')
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group'
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error'

type Json = Record<string, unknown>

let store: RecordStore
let listener: ScimListener
let base: string

const PG_URL = process.env['PORTCULLIS_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'
/** The same suite on the memory store and on PostgreSQL (field filters pushed down to SQL there). */
const BACKENDS = ['memory', 'postgres'] as const

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Json), headers: res.headers }
}

function user(userName: string, extra: Json = {}): Json {
  return { schemas: [USER], userName, name: { givenName: 'Ada', familyName: 'Lovelace' }, emails: [{ value: userName, type: 'work', primary: true }], active: true, ...extra }
}

async function createUser(userName: string, extra: Json = {}): Promise<string> {
  const r = await call('POST', '/Users', user(userName, extra))
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return String(r.body['id'])
}

async function userCount(): Promise<number> {
  return (await store.query({ type: DIRECTORY_USER_TYPE })).totalCount
}

function scimError(r: { status: number; body: Json }, status: number, scimType?: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body))
  assert.deepEqual(r.body['schemas'], [ERROR])
  assert.equal(r.body['status'], String(status))
  if (scimType) assert.equal(r.body['scimType'], scimType)
  assert.equal(typeof r.body['detail'], 'string')
}

for (const backend of BACKENDS) {
describe(`scim on ${backend}`, () => {
  const schema = `pc_scim_${process.pid}_${randomBytes(3).toString('hex')}`
  before(async () => {
    store = backend === 'memory' ? new MemoryRecordStore() : await createPostgresRecordStore({ connectionString: PG_URL, schema, pool: { max: 4 } })
    const digest = createHash('sha256').update(TOKEN).digest('hex')
    listener = await startScimListener({ address: '127.0.0.1:0', service: new ScimService({ store, logger }), logger, tokenDigests: () => [digest] })
    base = `${listener.url}/scim/v2`
  })
  after(async () => {
    await listener.close()
    await store.close()
    if (backend === 'postgres') {
      const c = new Client({ connectionString: PG_URL })
      await c.connect()
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await c.end()
    }
  })

  describe('scim: authentication and discovery', () => {
    it('refuses requests without the bearer token, or with another one (401, WWW-Authenticate)', async () => {
      for (const auth of [undefined, 'Bearer wrong-token', `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`]) {
        const res = await fetch(`${base}/Users`, { headers: auth ? { authorization: auth } : {} })
        assert.equal(res.status, 401)
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
        assert.deepEqual(((await res.json()) as Json)['schemas'], [ERROR])
      }
    })

    it('ServiceProviderConfig says what is supported', async () => {
      const r = await call('GET', '/ServiceProviderConfig')
      assert.equal(r.status, 200)
      assert.match(r.headers.get('content-type') ?? '', /^application\/scim\+json/)
      assert.deepEqual(r.body['patch'], { supported: true })
      assert.equal((r.body['filter'] as Json)['supported'], true)
      assert.equal((r.body['etag'] as Json)['supported'], true)
      assert.equal((r.body['bulk'] as Json)['supported'], false)
      assert.equal((r.body['sort'] as Json)['supported'], false)
    })

    it('ResourceTypes and Schemas list User, Group and the enterprise extension; unknown ids are 404', async () => {
      const types = await call('GET', '/ResourceTypes')
      assert.deepEqual((types.body['Resources'] as Json[]).map((t) => t['id']), ['User', 'Group'])
      assert.equal((await call('GET', '/ResourceTypes/Group')).body['endpoint'], '/Groups')
      const schemas = await call('GET', '/Schemas')
      assert.deepEqual((schemas.body['Resources'] as Json[]).map((s) => s['id']), [USER, GROUP, ENTERPRISE])
      const userSchema = await call('GET', `/Schemas/${USER}`)
      const userName = (userSchema.body['attributes'] as Json[]).find((a) => a['name'] === 'userName')
      assert.equal(userName?.['uniqueness'], 'server')
      scimError(await call('GET', '/Schemas/urn:nope'), 404)
      scimError(await call('GET', '/Bulk'), 501)
      scimError(await call('GET', '/Widgets'), 404)
    })
  })

  describe('scim: Users', () => {
    it('create: 201 with Location, ETag and meta; get returns the same; userName is unique case-insensitively (409, nothing written)', async () => {
      const r = await call('POST', '/Users', user('Create.Me@acme.example', { externalId: 'ext-1', [ENTERPRISE]: { department: 'R&D' }, schemas: [USER, ENTERPRISE] }))
      assert.equal(r.status, 201)
      const id = String(r.body['id'])
      const meta = r.body['meta'] as Json
      assert.equal(r.headers.get('location'), `${base}/Users/${id}`)
      assert.equal(meta['location'], `${base}/Users/${id}`)
      assert.equal(meta['resourceType'], 'User')
      assert.equal(r.headers.get('etag'), meta['version'])
      assert.equal((r.body[ENTERPRISE] as Json)['department'], 'R&D')
      const got = await call('GET', `/Users/${id}`)
      assert.equal(got.status, 200)
      assert.equal(got.body['userName'], 'Create.Me@acme.example')
      assert.equal(got.body['externalId'], 'ext-1')
      const before = await userCount()
      scimError(await call('POST', '/Users', user('create.me@ACME.example')), 409, 'uniqueness')
      assert.equal(await userCount(), before)
    })

    it('filters: userName eq (any case), externalId eq, and/or/not, co/sw/pr; a bad filter is 400 invalidFilter', async () => {
      const a = await createUser('filter.a@acme.example', { externalId: 'fa', displayName: 'Filter A' })
      const b = await createUser('filter.b@acme.example', { externalId: 'fb', displayName: 'Filter B', active: false })
      const ids = async (filter: string): Promise<string[]> => {
        const r = await call('GET', `/Users?filter=${encodeURIComponent(filter)}`)
        assert.equal(r.status, 200, JSON.stringify(r.body))
        return (r.body['Resources'] as Json[]).map((x) => String(x['id'])).sort()
      }
      assert.deepEqual(await ids('userName eq "FILTER.A@acme.example"'), [a])
      assert.deepEqual(await ids('externalId eq "fb"'), [b])
      assert.deepEqual(await ids('externalId eq "FB"'), [], 'externalId is caseExact')
      assert.deepEqual(await ids('userName sw "filter." and active eq false'), [b])
      assert.deepEqual(await ids('(externalId eq "fa" or externalId eq "fb") and not (displayName co "B")'), [a])
      assert.deepEqual(await ids('emails[type eq "work" and value ew "b@acme.example"]'), [b])
      assert.ok((await ids('externalId pr')).includes(a))
      scimError(await call('GET', `/Users?filter=${encodeURIComponent('userName eq')}`), 400, 'invalidFilter')
      scimError(await call('GET', `/Users?filter=${encodeURIComponent('userName zz "x"')}`), 400, 'invalidFilter')
      scimError(await call('GET', `/Users?filter=${encodeURIComponent(`userName eq "${'x'.repeat(1100)}"`)}`), 400, 'invalidFilter')
      const deep = `${'('.repeat(20)}userName eq "x"${')'.repeat(20)}`
      scimError(await call('GET', `/Users?filter=${encodeURIComponent(deep)}`), 400, 'invalidFilter')
    })

    it('pagination: startIndex is 1-based, count bounds the page, totalResults counts every match', async () => {
      for (const n of [1, 2, 3, 4, 5]) await createUser(`page${n}@pages.example`)
      const all = await call('GET', `/Users?filter=${encodeURIComponent('userName ew "@pages.example"')}`)
      const everyone = (all.body['Resources'] as Json[]).map((x) => x['id'])
      assert.equal(all.body['totalResults'], 5)
      const page = await call('GET', `/Users?filter=${encodeURIComponent('userName ew "@pages.example"')}&startIndex=2&count=2`)
      assert.equal(page.body['totalResults'], 5)
      assert.equal(page.body['startIndex'], 2)
      assert.equal(page.body['itemsPerPage'], 2)
      assert.deepEqual((page.body['Resources'] as Json[]).map((x) => x['id']), everyone.slice(1, 3))
      const none = await call('GET', `/Users?filter=${encodeURIComponent('userName ew "@pages.example"')}&count=0`)
      assert.deepEqual(none.body['Resources'], [])
      assert.equal(none.body['totalResults'], 5)
      scimError(await call('GET', '/Users?count=many'), 400, 'invalidValue')
      const projected = await call('GET', `/Users?filter=${encodeURIComponent('userName eq "page1@pages.example"')}&attributes=userName`)
      assert.deepEqual(Object.keys((projected.body['Resources'] as Json[])[0] ?? {}).sort(), ['id', 'meta', 'schemas', 'userName'])
      const search = await call('POST', '/Users/.search', { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], filter: 'userName ew "@pages.example"', startIndex: 5, count: 10 })
      assert.equal((search.body['Resources'] as Json[]).length, 1)
    })

    it('replace (PUT) and ETags: If-Match with an old version is 412; If-None-Match with the current one is 304', async () => {
      const id = await createUser('etag@acme.example')
      const v1 = (await call('GET', `/Users/${id}`)).headers.get('etag') ?? ''
      const put = await call('PUT', `/Users/${id}`, user('etag@acme.example', { displayName: 'Renamed' }), { 'if-match': v1 })
      assert.equal(put.status, 200, JSON.stringify(put.body))
      assert.equal(put.body['displayName'], 'Renamed')
      const v2 = put.headers.get('etag') ?? ''
      assert.notEqual(v1, v2)
      scimError(await call('PUT', `/Users/${id}`, user('etag@acme.example', { displayName: 'Lost update' }), { 'if-match': v1 }), 412)
      assert.equal((await call('GET', `/Users/${id}`)).body['displayName'], 'Renamed')
      assert.equal((await call('GET', `/Users/${id}`, undefined, { 'if-none-match': v2 })).status, 304)
      scimError(await call('PUT', `/Users/${id}`, user('create.me@acme.example')), 409, 'uniqueness')
      scimError(await call('GET', '/Users/no-such-id'), 404)
    })

    it('bad input is a SCIM error and writes nothing: malformed JSON, unknown schema, no userName, wrong types, 10 MB', async () => {
      const before = await userCount()
      scimError(await call('POST', '/Users', '{"schemas": ['), 400, 'invalidSyntax')
      scimError(await call('POST', '/Users', { ...user('x@acme.example'), schemas: [USER, 'urn:example:unknown'] }), 400, 'invalidValue')
      scimError(await call('POST', '/Users', { schemas: [USER] }), 400, 'invalidValue')
      scimError(await call('POST', '/Users', { ...user('y@acme.example'), active: 'maybe' }), 400, 'invalidValue')
      scimError(await call('POST', '/Users', { ...user('z@acme.example'), emails: 'z@acme.example' }), 400, 'invalidValue')
      scimError(await call('POST', '/Users', { userName: 'noschemas@acme.example' }), 400, 'invalidValue')
      const huge = JSON.stringify({ ...user('huge@acme.example'), displayName: 'x'.repeat(10 * 1024 * 1024) })
      const r = await call('POST', '/Users', huge)
      assert.equal(r.status, 413)
      assert.deepEqual(r.body['schemas'], [ERROR])
      assert.equal(await userCount(), before)
    })

    it('a PATCH whose second operation fails leaves the user as it was', async () => {
      const id = await createUser('atomic@acme.example', { displayName: 'Before' })
      const r = await call('PATCH', `/Users/${id}`, {
        schemas: [PATCH],
        Operations: [
          { op: 'replace', path: 'displayName', value: 'After' },
          { op: 'replace', path: 'emails[type eq "home"]', value: { value: 'x' } },
        ],
      })
      scimError(r, 400, 'noTarget')
      assert.equal((await call('GET', `/Users/${id}`)).body['displayName'], 'Before')
      scimError(await call('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'id', value: 'other' }] }), 400, 'mutability')
      scimError(await call('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'explode', path: 'displayName' }] }), 400, 'invalidSyntax')
      scimError(await call('PATCH', `/Users/${id}`, { Operations: [] }), 400, 'invalidValue')
    })
  })

  describe('scim: Groups and the directory copy', () => {
    it('members are added and removed (RFC, Okta and Entra forms); an unknown member is 400 and changes nothing; deleting a user leaves its groups', async () => {
      const u1 = await createUser('g1@groups.example')
      const u2 = await createUser('g2@groups.example')
      const u3 = await createUser('g3@groups.example')
      const created = await call('POST', '/Groups', { schemas: [GROUP], displayName: 'Engineering', members: [{ value: u1 }] })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const gid = String(created.body['id'])
      const members = async (): Promise<string[]> => ((await call('GET', `/Groups/${gid}`)).body['members'] as Json[]).map((m) => String(m['value'])).sort()
      assert.equal((await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: u2 }, { value: u3 }] }] })).status, 200)
      assert.deepEqual(await members(), [u1, u2, u3].sort())
      // Okta removes one member by a value filter; Entra ID lists the members to remove.
      assert.equal((await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${u1}"]` }] })).status, 200)
      assert.equal((await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'Remove', path: 'members', value: [{ value: u2 }] }] })).status, 200)
      assert.deepEqual(await members(), [u3])
      scimError(await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: u1 }, { value: 'nobody' }] }] }), 400, 'invalidValue')
      assert.deepEqual(await members(), [u3])
      const user3 = await call('GET', `/Users/${u3}`)
      assert.deepEqual((user3.body['groups'] as Json[]).map((g) => g['value']), [gid])
      assert.equal((await call('DELETE', `/Users/${u3}`)).status, 204)
      assert.deepEqual(await members(), [])
      assert.equal((await call('GET', `/Users/${u3}`)).status, 404)
      const list = await call('GET', `/Groups?filter=${encodeURIComponent('displayName eq "engineering"')}&excludedAttributes=members`)
      assert.equal(list.body['totalResults'], 1)
      assert.equal((list.body['Resources'] as Json[])[0]?.['members'], undefined)
      assert.equal((await call('DELETE', `/Groups/${gid}`)).status, 204)
      assert.equal((await call('GET', `/Groups/${gid}`)).status, 404)
    })

    it('what SCIM writes is what authorize reads: groups by id and name, nested groups, email and externalId matching, deactivation', async () => {
      const copy = new DirectoryCopy(store, logger, { manages: () => true })
      copy.start()
      try {
        const alice = await createUser('alice@reads.example', { externalId: '00u-okta-alice' })
        const bob = await createUser('bob@reads.example')
        const inner = await call('POST', '/Groups', { schemas: [GROUP], displayName: 'sre', members: [{ value: alice }] })
        const outer = await call('POST', '/Groups', { schemas: [GROUP], displayName: 'ops', members: [{ value: String(inner.body['id']), type: 'Group' }, { value: bob }] })
        assert.equal(outer.status, 201, JSON.stringify(outer.body))
        await copy.whenReady()
        const groupsOf = (userId: string, email?: string): readonly string[] => copy.lookup(userId, email).groups
        const waitFor = async (check: () => boolean): Promise<void> => {
          for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
          assert.ok(check())
        }
        // The session's user id is the provider's (Okta's) id: matched by externalId.
        await waitFor(() => groupsOf('00u-okta-alice').includes('ops'))
        assert.ok(groupsOf('00u-okta-alice').includes('sre'))
        assert.ok(groupsOf('00u-okta-alice').includes(String(inner.body['id'])))
        // No id in common: matched by the verified email.
        assert.deepEqual(groupsOf('some-sub', 'BOB@reads.example').filter((g) => !g.includes('-')), ['ops'])
        assert.equal(copy.lookup('some-sub', 'bob@reads.example').email, 'bob@reads.example')
        // Okta deactivates with a path-less replace.
        assert.equal((await call('PATCH', `/Users/${alice}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] })).status, 200)
        await waitFor(() => groupsOf('00u-okta-alice').length === 0)
      } finally {
        await copy.stop()
      }
    })
  })

  describe('scim: provider sequences replayed', () => {
    it("Okta's provisioning sequence (its SCIM 2.0 guide): look up, create, read, update, deactivate, push a group", async () => {
      const lookup = await call('GET', `/Users?filter=${encodeURIComponent('userName eq "okta.user@acme.example"')}&startIndex=1&count=100`)
      assert.equal(lookup.status, 200)
      assert.equal(lookup.body['totalResults'], 0)
      assert.deepEqual(lookup.body['schemas'], ['urn:ietf:params:scim:api:messages:2.0:ListResponse'])
      const created = await call('POST', '/Users', {
        schemas: [USER],
        userName: 'okta.user@acme.example',
        name: { givenName: 'Okta', familyName: 'User' },
        emails: [{ primary: true, value: 'okta.user@acme.example', type: 'work' }],
        displayName: 'Okta User',
        locale: 'en-US',
        externalId: '00ujl29u0le5T6Aj10h7',
        groups: [],
        password: 'never-stored-1!',
        active: true,
      })
      assert.equal(created.status, 201)
      assert.equal(created.body['password'], undefined, 'a password is never stored or returned')
      const id = String(created.body['id'])
      assert.equal((await call('GET', `/Users/${id}`)).status, 200)
      const put = await call('PUT', `/Users/${id}`, { ...created.body, name: { givenName: 'Okta', familyName: 'Renamed' } })
      assert.equal(put.status, 200, JSON.stringify(put.body))
      assert.equal((put.body['name'] as Json)['familyName'], 'Renamed')
      const deactivated = await call('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] })
      assert.equal(deactivated.body['active'], false)
      const group = await call('POST', '/Groups', { schemas: [GROUP], displayName: 'Okta Push', members: [] })
      assert.equal(group.status, 201)
      const gid = String(group.body['id'])
      // Okta renames with a path-less replace whose value repeats the id.
      const renamed = await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { id: gid, displayName: 'Okta Pushed' } }] })
      assert.equal(renamed.status, 200, JSON.stringify(renamed.body))
      assert.equal(renamed.body['displayName'], 'Okta Pushed')
      const added = await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: id, display: 'okta.user@acme.example' }] }] })
      assert.deepEqual((added.body['members'] as Json[]).map((m) => m['value']), [id])
      assert.equal((await call('DELETE', `/Groups/${gid}`)).status, 204)
    })

    it("Entra ID's provisioning sequence (its SCIM guide): filter, create with the enterprise extension, PATCH in its dialect, groups, delete", async () => {
      const lookup = await call('GET', `/Users?filter=${encodeURIComponent('userName eq "Test_User_dfeef4c5@contoso.com"')}`)
      assert.equal(lookup.body['totalResults'], 0)
      const created = await call('POST', '/Users', {
        schemas: [USER, ENTERPRISE],
        externalId: '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef',
        userName: 'Test_User_dfeef4c5@contoso.com',
        active: true,
        emails: [{ primary: true, type: 'work', value: 'Test_User_dfeef4c5@contoso.com' }],
        meta: { resourceType: 'User' },
        name: { formatted: 'givenName familyName', familyName: 'familyName', givenName: 'givenName' },
        roles: [],
        [ENTERPRISE]: { department: 'Engineering' },
      })
      assert.equal(created.status, 201, JSON.stringify(created.body))
      const id = String(created.body['id'])
      const patched = await call('PATCH', `/Users/${id}`, {
        schemas: [PATCH],
        Operations: [
          { op: 'Replace', path: 'displayName', value: 'Ryan Leenay' },
          { op: 'Add', path: 'emails[type eq "work"].value', value: 'updatedEmail@contoso.com' },
          { op: 'Add', path: `${ENTERPRISE}:department`, value: 'Research' },
          { op: 'Replace', path: 'name.givenName', value: 'Ryan' },
          { op: 'Replace', path: 'active', value: 'False' },
        ],
      })
      assert.equal(patched.status, 200, JSON.stringify(patched.body))
      assert.equal(patched.body['displayName'], 'Ryan Leenay')
      assert.equal(patched.body['active'], false)
      assert.equal((patched.body['name'] as Json)['givenName'], 'Ryan')
      assert.equal((patched.body[ENTERPRISE] as Json)['department'], 'Research')
      assert.deepEqual((patched.body['emails'] as Json[]).map((e) => e['value']), ['updatedEmail@contoso.com'])
      // Entra asks for groups without their members, then creates and patches them.
      const gl = await call('GET', `/Groups?excludedAttributes=members&filter=${encodeURIComponent('displayName eq "displayName"')}`)
      assert.equal(gl.body['totalResults'], 0)
      const group = await call('POST', '/Groups', { externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159', displayName: 'displayName', meta: { resourceType: 'Group' }, schemas: [GROUP] })
      assert.equal(group.status, 201)
      const gid = String(group.body['id'])
      assert.equal((await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'Add', path: 'members', value: [{ value: id }] }] })).status, 200)
      const replaced = await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'displayName', value: '1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName' }] })
      assert.equal(replaced.body['displayName'], '1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName')
      assert.equal((await call('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'Remove', path: 'members', value: [{ value: id }] }] })).status, 200)
      assert.deepEqual((await call('GET', `/Groups/${gid}`)).body['members'], [])
      assert.equal((await call('DELETE', `/Users/${id}`)).status, 204)
      assert.equal((await call('DELETE', `/Groups/${gid}`)).status, 204)
    })
  })
})
}

describe('scim: two instances on one PostgreSQL database', () => {
  it('concurrent creates of one userName through two instances: exactly one wins, the others are 409', async () => {
    const schema = `pc_scim_race_${process.pid}_${randomBytes(3).toString('hex')}`
    const shared = await createPostgresRecordStore({ connectionString: PG_URL, schema, pool: { max: 4 } })
    const other = await createPostgresRecordStore({ connectionString: PG_URL, schema, pool: { max: 4 } })
    const digest = createHash('sha256').update(TOKEN).digest('hex')
    const a = await startScimListener({ address: '127.0.0.1:0', service: new ScimService({ store: shared, logger }), logger, tokenDigests: () => [digest] })
    const b = await startScimListener({ address: '127.0.0.1:0', service: new ScimService({ store: other, logger }), logger, tokenDigests: () => [digest] })
    try {
      const post = (url: string): Promise<number> =>
        fetch(`${url}/scim/v2/Users`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/scim+json' }, body: JSON.stringify(user('race@acme.example')) }).then((r) => r.status)
      const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => post(i % 2 === 0 ? a.url : b.url)))
      assert.deepEqual(statuses.sort(), [201, 409, 409, 409, 409, 409, 409, 409, 409, 409])
      assert.equal((await shared.query({ type: DIRECTORY_USER_TYPE })).totalCount, 1)
    } finally {
      await a.close()
      await b.close()
      await shared.close()
      await other.close()
      const c = new Client({ connectionString: PG_URL })
      await c.connect()
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await c.end()
    }
  })
})

describe('scim: hostile attribute names', () => {
  it('a PATCH naming __proto__, constructor or prototype is refused and pollutes nothing', async () => {
    const shared = new MemoryRecordStore()
    const service = new ScimService({ store: shared, logger })
    const req = (method: string, path: string, body: unknown) =>
      service.handle({ method, path, query: new URLSearchParams(), headers: {}, body: Buffer.from(JSON.stringify(body)), requestId: 'r', baseUrl: 'http://x/scim/v2' })
    const created = JSON.parse((await req('POST', '/Users', user('proto@acme.example'))).body) as Json
    const id = String(created['id'])
    const bodies = [
      { schemas: [PATCH], Operations: [{ op: 'add', value: JSON.parse('{"__proto__": {"polluted": 1}}') as unknown }] },
      { schemas: [PATCH], Operations: [{ op: 'add', path: '__proto__', value: { polluted: 1 } }] },
      { schemas: [PATCH], Operations: [{ op: 'replace', path: 'name.__proto__', value: { polluted: 1 } }] },
      { schemas: [PATCH], Operations: [{ op: 'add', path: 'constructor', value: { prototype: { polluted: 1 } } }] },
      { schemas: [PATCH], Operations: [{ op: 'add', path: 'name', value: JSON.parse('{"givenName": "x", "__proto__": {"polluted": 1}}') as unknown }] },
    ]
    for (const body of bodies) {
      const r = await req('PATCH', `/Users/${id}`, body)
      assert.equal(r.status, 400, r.body)
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined)
    await shared.close()
  })
})
