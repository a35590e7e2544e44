import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { MemoryRecordStore } from '../databroker/memory.js'
import type { RecordStore } from '../databroker/index.js'
import { DeviceStore, enrollmentIdOf, enrollmentLinkKey } from '../session/devices.js'
import { devicesCommand } from './devices.js'

const secret = randomBytes(32)

function configFile(storage = ''): string {
  const file = join(mkdtempSync(join(tmpdir(), 'devices-')), 'config.yaml')
  writeFileSync(file, `shared_secret: ${secret.toString('base64')}\ndevice_types:\n  - id: kiosk\n    approval_required: true\n${storage}routes: []\n`)
  return file
}

/** A store the command opens (and closes): a memory store whose close does nothing, so the test reads it after. */
function sharedStore(): { store: RecordStore; devices: DeviceStore } {
  const store = new MemoryRecordStore()
  const kept = new Proxy(store, {
    get(target, name) {
      if (name === 'close') return () => Promise.resolve()
      const value: unknown = Reflect.get(target, name, target)
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
  return { store: kept, devices: new DeviceStore(store) }
}

async function run(argv: string[], store?: RecordStore): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const code = await devicesCommand(argv, { out: (t) => (out += t), err: (t) => (err += t), ...(store ? { openStore: () => Promise.resolve(store) } : {}) })
  return { code, out, err }
}

describe('portcullis devices', () => {
  it('lists, approves and revokes', async () => {
    const { store, devices } = sharedStore()
    await devices.put({ id: 'k1', typeId: 'kiosk', userId: 'u1', userName: 'alice@example.com', publicKey: 'secret-public-key', counter: 3, aaguid: '', format: 'none', transports: [], createdAt: 1, approved: false })
    const file = configFile()
    const listed = await run(['list', '--config', file], store)
    assert.equal(listed.code, 0)
    assert.match(listed.out, /^k1 {2}alice@example\.com {2}kiosk {2}not approved/)
    assert.equal((await run(['approve', '--config', file, 'k1'], store)).code, 0)
    assert.equal((await devices.get('k1'))?.approved, true)
    const json = await run(['list', '--config', file, '--user', 'ALICE@example.com', '--json'], store)
    const parsed = JSON.parse(json.out) as Record<string, unknown>[]
    assert.equal(parsed[0]?.['approved'], true)
    assert.equal(parsed[0]?.['approved_by'], 'portcullis devices')
    assert.doesNotMatch(json.out, /secret-public-key/, 'never prints the key')
    assert.equal((await run(['revoke', '--config', file, 'k1'], store)).code, 0)
    assert.equal((await devices.get('k1'))?.approved, false)
    assert.equal((await run(['approve', '--config', file, 'nope'], store)).code, 1)
    await devices.put({ id: '-dash', typeId: 'any', userId: 'u1', publicKey: 'pk', counter: 0, aaguid: '', format: 'none', transports: [], createdAt: 2, approved: false })
    assert.equal((await run(['approve', '--config', file, '--id=-dash'], store)).code, 0, 'ids that start with a dash')
    assert.equal((await run(['revoke', '--config', file, '--', '-dash'], store)).code, 0)
    assert.equal((await devices.get('-dash'))?.approved, false)
    assert.equal((await run(['approve', '--config', file], store)).code, 2)
  })

  it('makes an enrollment link the server accepts', async () => {
    const { store, devices } = sharedStore()
    const made = await run(['enroll', '--config', configFile(), '--user', 'bob@example.com', '--type', 'kiosk', '--url', 'https://app.example.com/some/page', '--lifetime', '2h'], store)
    assert.equal(made.code, 0, made.err)
    const link = new URL(made.out.trim())
    assert.equal(link.origin, 'https://app.example.com')
    assert.equal(link.pathname, '/.pomerium/webauthn')
    const id = enrollmentIdOf(enrollmentLinkKey(secret), link.searchParams.get('pomerium_enrollment_token') ?? '')
    assert.ok(id)
    const enrollment = await devices.openEnrollment(id)
    assert.equal(enrollment?.userId, 'bob@example.com')
    assert.equal(enrollment?.typeId, 'kiosk')
    assert.equal((enrollment?.expiresAt ?? 0) - (enrollment?.createdAt ?? 0), 2 * 3600_000)
    assert.equal((await run(['enroll', '--config', configFile(), '--user', 'b', '--type', 'laptop', '--url', 'https://a.example.com'], store)).code, 2)
    assert.equal((await run(['enroll', '--config', configFile(), '--user', 'b', '--type', 'kiosk', '--url', 'ftp://a'], store)).code, 2)
  })

  it('memory storage is refused with where to go instead; usage errors exit 2', async () => {
    const memory = await run(['list', '--config', configFile()])
    assert.equal(memory.code, 1)
    assert.match(memory.err, /approvers' page \/\.pomerium\/devices/)
    assert.equal((await run([])).code, 2)
    assert.equal((await run(['frobnicate'])).code, 2)
    assert.equal((await run(['list', '--bogus'])).code, 2)
    assert.equal((await run(['--help'])).code, 0)
  })
})
