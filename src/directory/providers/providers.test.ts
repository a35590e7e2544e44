/**
 * Every directory provider, through the sync that production runs (DirectorySync → databroker →
 * DirectoryCopy), against its local API stand-in (test/fixtures/directory-apis.ts), which pages
 * every list: full read, nested groups as the provider defines them, suspended and deleted users,
 * a member removed between syncs, throttling honoured, a failure part-way keeping the last good
 * data, and (Entra ID) delta rounds with a fallback when the delta link expires.
 *
 * node:test's describe/it return promises the runner already tracks.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'

import { startFakeDirectory } from '../../../test/fixtures/directory-apis.js'
import type { FakeDirectory, FakeDirectoryKind, FakeDirectoryModel } from '../../../test/fixtures/directory-apis.js'
import { MemoryRecordStore } from '../../databroker/index.js'
import { DirectoryCopy } from '../../session/directory.js'
import { createLogger } from '../../shared/log.js'
import { DirectorySync } from '../sync.js'
import type { DirectoryProvider } from '../provider.js'
import { createAuth0Directory } from './auth0.js'
import { createAzureDirectory } from './azure.js'
import { createGitHubDirectory } from './github.js'
import { createGitLabDirectory } from './gitlab.js'
import { createGoogleDirectory } from './google.js'
import { createKeycloakDirectory } from './keycloak.js'
import { createOktaDirectory } from './okta.js'
import { createOneLoginDirectory } from './onelogin.js'

const logger = createLogger('disabled')

function model(): FakeDirectoryModel {
  return {
    users: [
      { id: '101', email: 'ada@acme.example', name: 'Ada Lovelace', active: true },
      { id: '102', email: 'bob@acme.example', name: 'Bob Babbage', active: true },
      { id: '103', email: 'cy@acme.example', name: 'Cy Hopper', active: true },
      { id: '104', email: 'dee@acme.example', name: 'Dee Knuth', active: true },
      { id: '105', email: 'eve@acme.example', name: 'Eve Turing', active: true },
      { id: '106', email: 'fay@acme.example', name: 'Fay Liskov', active: true },
      { id: '107', email: 'gus@acme.example', name: 'Gus Dijkstra', active: false },
    ],
    groups: [
      { id: '201', name: 'eng', members: ['101', '102', '103', '104'], children: ['203'] },
      { id: '202', name: 'ops', members: ['105', '107'], children: [] },
      { id: '203', name: 'platform', members: ['106'], children: [] },
    ],
  }
}

function providerFor(fake: FakeDirectory): DirectoryProvider {
  const a = fake.account
  switch (fake.kind) {
    case 'azure':
      return createAzureDirectory(a)
    case 'okta':
      return createOktaDirectory(a, fake.providerUrl ?? '')
    case 'github':
      return createGitHubDirectory(a, undefined)
    case 'google':
      return createGoogleDirectory(a)
    case 'gitlab':
      return createGitLabDirectory(a, undefined)
    case 'auth0':
      return createAuth0Directory(a, fake.providerUrl)
    case 'onelogin':
      return createOneLoginDirectory(a, fake.providerUrl)
    case 'keycloak':
      return createKeycloakDirectory(a, fake.providerUrl)
  }
}

/** How each provider defines a nested group's membership (see each provider module). */
const NESTING: Record<FakeDirectoryKind, 'child-in-parent' | 'parent-in-child' | 'none'> = {
  azure: 'child-in-parent',
  google: 'child-in-parent',
  keycloak: 'child-in-parent',
  github: 'child-in-parent',
  gitlab: 'parent-in-child',
  okta: 'none',
  auth0: 'none',
  onelogin: 'none',
}

/** The group names a user's directory entry carries (names only; ids are the numbers). */
function names(copy: DirectoryCopy, userId: string): string[] {
  const groups = copy.lookup(userId, undefined).groups
  return groups.filter((g) => !/^\d+$/.test(g)).map((g) => g.replace(/^acme\//, '').replace(/^\//, '').replace(/^eng\//, '')).sort()
}

async function settled(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
  assert.ok(check(), 'the directory copy did not catch up')
}

/** Runs the assertions until they pass: the copy receives a sync's records one at a time. */
async function eventually(assertions: () => void): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      assertions()
      return
    } catch (err) {
      if (i >= 500) throw err
      await new Promise((r) => setTimeout(r, 10))
    }
  }
}

for (const kind of Object.keys(NESTING) as FakeDirectoryKind[]) {
  describe(`directory provider ${kind}`, () => {
    let fake: FakeDirectory
    let store: MemoryRecordStore
    let copy: DirectoryCopy
    let sync: DirectorySync

    before(async () => {
      fake = await startFakeDirectory(kind, model())
      store = new MemoryRecordStore()
      copy = new DirectoryCopy(store, logger, { manages: () => true })
      copy.start()
      sync = new DirectorySync({ store, provider: providerFor(fake), logger, intervalMs: 3_600_000, timeoutMs: 20_000, backoffMs: 20, retryMs: 10 })
    })
    after(async () => {
      await sync.stop()
      await copy.stop()
      await store.close()
      await fake.close()
    })

    it('reads every page: users, groups and members; nested groups as the provider defines them', async () => {
      await sync.runOnce()
      const status = sync.status()
      assert.equal(status.lastError, undefined)
      assert.equal(status.successes, 1)
      assert.equal(status.groups, 3)
      const nesting = NESTING[kind]
      await eventually(() => {
        assert.deepEqual(names(copy, '102'), nesting === 'parent-in-child' ? ['eng', 'platform'] : ['eng'])
        assert.deepEqual(names(copy, '106'), nesting === 'child-in-parent' ? ['eng', 'platform'] : ['platform'])
        assert.deepEqual(names(copy, '105'), ['ops'])
        // Ids come along with the names.
        assert.ok(copy.lookup('105', undefined).groups.includes('202'))
      })
      // The list pages were followed (three items a page), each provider's way.
      assert.ok(fake.requests.some((r) => /skiptoken|[?&]page=2|after=|cursor=|pageToken=|from=|first=3/.test(r)), fake.requests.join('\n'))
    })

    // Auth0's role members carry no blocked flag (a blocked user cannot sign in anyway).
    if (kind !== 'auth0') {
      it('a suspended user has no groups', async () => {
        await settled(() => names(copy, '105').length > 0)
        assert.equal(copy.snapshot().users.some((u) => u.id === '107'), false)
        assert.deepEqual(copy.lookup('107', undefined).groups, [])
      })
    }

    it('a member removed and a user deleted lose their groups at the next sync', async () => {
      const eng = fake.model.groups.find((g) => g.id === '201')
      assert.ok(eng)
      eng.members = eng.members.filter((m) => m !== '102')
      fake.model.users = fake.model.users.filter((u) => u.id !== '105')
      const ops = fake.model.groups.find((g) => g.id === '202')
      assert.ok(ops)
      ops.members = ops.members.filter((m) => m !== '105')
      await sync.runOnce()
      assert.equal(sync.status().lastError, undefined)
      await eventually(() => {
        assert.ok(!names(copy, '102').includes('eng'))
        assert.deepEqual(copy.lookup('105', undefined).groups, [])
        assert.ok(names(copy, '101').includes('eng'))
      })
    })

    it('throttled answers are waited out and retried; the sync still succeeds', async () => {
      fake.throttle(2)
      const before = sync.status().throttled
      await sync.runOnce()
      assert.equal(sync.status().lastError, undefined)
      assert.equal(sync.status().throttled - before, 2)
    })

    it('a failure part-way changes nothing: the last complete read stays, and the status says so', async () => {
      fake.model.groups.push({ id: '204', name: 'sales', members: ['101'], children: [] })
      fake.failPaths(/members|users$|\/children$|groups\/delta$/)
      await sync.runOnce()
      fake.failPaths(undefined)
      const status = sync.status()
      assert.equal(status.stale, true)
      assert.match(status.lastError ?? '', /HTTP 500/)
      assert.ok(!names(copy, '101').includes('sales'))
      assert.ok(names(copy, '101').includes('eng'))
      await sync.runOnce()
      assert.equal(sync.status().stale, false)
      await settled(() => names(copy, '101').includes('sales'))
    })

    if (kind === 'azure') {
      it('Entra ID: later syncs read changes from the delta link; an expired link starts over', async () => {
        const n = fake.requests.length
        fake.model.groups.push({ id: '205', name: 'design', members: ['103'], children: [] })
        await sync.runOnce()
        assert.ok(fake.requests.slice(n).some((r) => r.includes('%24deltatoken=') || r.includes('$deltatoken=')), fake.requests.slice(n).join('\n'))
        await settled(() => names(copy, '103').includes('design'))
        fake.expireDeltaTokens()
        fake.model.groups = fake.model.groups.filter((g) => g.id !== '205')
        const successes = sync.status().successes
        await sync.runOnce()
        assert.equal(sync.status().stale, false)
        assert.equal(sync.status().successes, successes + 1)
        await settled(() => !names(copy, '103').includes('design'))
      })
    }
  })
}

describe('directory providers: a group of 50,000 members', () => {
  const users = Array.from({ length: 50_000 }, (_, i) => ({ id: String(100_000 + i), email: `u${i}@acme.example`, name: `User ${i}`, active: true }))
  for (const kind of Object.keys(NESTING) as FakeDirectoryKind[]) {
    it(`${kind}: every member is read and matched`, async () => {
      const fake = await startFakeDirectory(kind, { users, groups: [{ id: '900', name: 'everyone', members: users.map((u) => u.id), children: [] }] }, { pageSize: 1000 })
      const store = new MemoryRecordStore()
      const copy = new DirectoryCopy(store, logger, { manages: () => true })
      copy.start()
      const sync = new DirectorySync({ store, provider: providerFor(fake), logger, intervalMs: 3_600_000, timeoutMs: 60_000 })
      try {
        await sync.runOnce()
        assert.equal(sync.status().lastError, undefined)
        assert.equal(sync.status().users, 50_000)
        const record = await store.get('pomerium.io/DirectoryGroup', '900')
        assert.equal((record?.data as { memberIds: string[] }).memberIds.length, 50_000)
        await settled(() => copy.lookup('149999', undefined).groups.some((g) => g.endsWith('everyone')))
      } finally {
        await sync.stop()
        await copy.stop()
        await store.close()
        await fake.close()
      }
    })
  }
})
