import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { MemoryRecordStore } from '../databroker/memory.js'
import { DEVICE_CREDENTIAL_TYPE, DeviceStore, enrollmentIdOf, enrollmentIsFor, enrollmentLinkKey, enrollmentToken } from './devices.js'
import type { DeviceCredential } from './devices.js'

function credential(id: string, userId: string, extra: Partial<DeviceCredential> = {}): DeviceCredential {
  return { id, typeId: 'any', userId, publicKey: 'pk', counter: 0, aaguid: '00000000-0000-0000-0000-000000000000', format: 'none', transports: ['usb'], createdAt: 1, approved: false, ...extra }
}

const NO_APPROVAL = { approvalRequired: () => false }

describe('device store', () => {
  it("the session's devices are only credentials that exist and belong to the session's user", async () => {
    const devices = new DeviceStore(new MemoryRecordStore())
    await devices.put(credential('mine', 'alice'))
    await devices.put(credential('theirs', 'bob'))
    const seen = await devices.policyDevices(['mine', 'theirs', 'gone'], 'alice', NO_APPROVAL)
    assert.deepEqual(seen, [{ id: 'mine', typeId: 'any', approved: false }])
    assert.deepEqual(await devices.policyDevices(undefined, 'alice', NO_APPROVAL), [])
    await devices.delete('mine')
    assert.deepEqual(await devices.policyDevices(['mine'], 'alice', NO_APPROVAL), [], 'a removed device counts at once')
  })

  it('a device of a type that requires approval is pending until approved', async () => {
    const devices = new DeviceStore(new MemoryRecordStore(), () => 5000)
    await devices.put(credential('k', 'alice', { typeId: 'kiosk' }))
    const rules = { approvalRequired: (t: string) => t === 'kiosk' }
    assert.deepEqual(await devices.policyDevices(['k'], 'alice', rules), [{ id: 'k', typeId: 'kiosk', approved: false, pendingApproval: true }])
    const approved = await devices.setApproved('k', true, 'admin@example.com')
    assert.equal(approved?.approvedBy, 'admin@example.com')
    assert.equal(approved?.approvedAt, 5000)
    assert.deepEqual(await devices.policyDevices(['k'], 'alice', rules), [{ id: 'k', typeId: 'kiosk', approved: true }])
    assert.equal(await devices.setApproved('nope', true, 'x'), undefined)
  })

  it('a removed credential id stays its user’s: nobody else can register it again', async () => {
    const devices = new DeviceStore(new MemoryRecordStore())
    await devices.put(credential('k', 'alice'))
    assert.equal(await devices.idFreeFor('k', 'bob'), true, 'the live record is checked by the caller')
    await devices.delete('k')
    assert.equal(await devices.idFreeFor('k', 'bob'), false)
    assert.equal(await devices.idFreeFor('k', 'alice'), true)
    assert.equal(await devices.idFreeFor('other', 'bob'), true)
  })

  it('a suspended device (a copied key) counts for nothing; updates keep a removal removed', async () => {
    const devices = new DeviceStore(new MemoryRecordStore())
    await devices.put(credential('k', 'alice'))
    await devices.update('k', (c) => ({ ...c, suspendedAt: 5 }))
    assert.deepEqual(await devices.policyDevices(['k'], 'alice', NO_APPROVAL), [])
    await devices.delete('k')
    assert.equal(await devices.update('k', (c) => ({ ...c, counter: 9 })), undefined)
    assert.equal(await devices.get('k'), undefined, 'not brought back')
    assert.equal(await devices.setApproved('k', true, 'admin'), undefined)
    assert.equal(await devices.get('k'), undefined)
  })

  it('malformed records are not devices', async () => {
    const store = new MemoryRecordStore()
    await store.put([{ type: DEVICE_CREDENTIAL_TYPE, id: 'bad', data: { id: 'bad', userId: 'alice' } }])
    await store.put([{ type: DEVICE_CREDENTIAL_TYPE, id: 'other-id', data: credential('not-other-id', 'alice') }])
    const devices = new DeviceStore(store)
    assert.equal(await devices.get('bad'), undefined)
    assert.equal(await devices.get('other-id'), undefined, 'a record whose data names another id')
    assert.deepEqual(await devices.policyDevices(['bad', 'other-id'], 'alice', NO_APPROVAL), [])
  })

  it('lists a user’s devices in registration order', async () => {
    const devices = new DeviceStore(new MemoryRecordStore())
    await devices.put(credential('b', 'alice', { createdAt: 2 }))
    await devices.put(credential('a', 'alice', { createdAt: 3 }))
    await devices.put(credential('c', 'bob', { createdAt: 1 }))
    assert.deepEqual((await devices.listForUser('alice')).map((d) => d.id), ['b', 'a'])
    assert.deepEqual((await devices.listAll()).map((d) => d.id), ['c', 'b', 'a'])
  })
})

describe('enrollment links', () => {
  it('work once, and not after they expire', async () => {
    let now = 1000
    const devices = new DeviceStore(new MemoryRecordStore(), () => now)
    const e = await devices.createEnrollment({ typeId: 'any', userId: 'bob@example.com', createdBy: 'cli', lifetimeMs: 60_000 })
    assert.ok((await devices.openEnrollment(e.id)) !== undefined)
    assert.equal(await devices.useEnrollment(e.id, 'cred-1'), true)
    assert.equal(await devices.openEnrollment(e.id), undefined)
    assert.equal(await devices.useEnrollment(e.id, 'cred-2'), false, 'second use')
    const late = await devices.createEnrollment({ typeId: 'any', userId: 'bob', createdBy: 'cli', lifetimeMs: 60_000 })
    now += 60_000
    assert.equal(await devices.openEnrollment(late.id), undefined, 'expired')
    assert.equal(await devices.useEnrollment(late.id, 'cred-3'), false)
  })

  it('two instances using one link at the same moment: only one succeeds', async () => {
    const store = new MemoryRecordStore()
    const a = new DeviceStore(store)
    const b = new DeviceStore(store)
    const e = await a.createEnrollment({ typeId: 'any', userId: 'bob', createdBy: 'cli', lifetimeMs: 60_000 })
    const results = await Promise.all([a.useEnrollment(e.id, 'x'), b.useEnrollment(e.id, 'y'), a.useEnrollment(e.id, 'z')])
    assert.deepEqual(results.filter(Boolean).length, 1)
  })

  it('a device page state is claimed once across instances sharing the store', async () => {
    const store = new MemoryRecordStore()
    const [a, b] = [new DeviceStore(store), new DeviceStore(store)]
    assert.equal(await a.claimOnce('webauthn-state', 'sealed-1', 60_000), true)
    assert.equal(await b.claimOnce('webauthn-state', 'sealed-1', 60_000), false)
    assert.equal(await b.claimOnce('webauthn-state', 'sealed-2', 60_000), true)
  })

  it('tokens carry a MAC: an altered or foreign token names no enrollment', () => {
    const key = enrollmentLinkKey(randomBytes(32))
    const token = enrollmentToken(key, 'abc')
    assert.equal(enrollmentIdOf(key, token), 'abc')
    assert.equal(enrollmentIdOf(key, `abd${token.slice(3)}`), undefined)
    assert.equal(enrollmentIdOf(key, token.slice(0, -1)), undefined)
    assert.equal(enrollmentIdOf(enrollmentLinkKey(randomBytes(32)), token), undefined)
    assert.equal(enrollmentIdOf(key, 'no-dot'), undefined)
  })

  it('a link is for one user, by id or by email in any case', () => {
    const e = { id: 'e', typeId: 'any', userId: 'Bob@Example.com', createdBy: 'cli', createdAt: 0, expiresAt: 1 }
    assert.equal(enrollmentIsFor(e, 'u-1', 'bob@example.com'), true)
    assert.equal(enrollmentIsFor(e, 'u-1', 'alice@example.com'), false)
    assert.equal(enrollmentIsFor(e, 'u-1', undefined), false)
    assert.equal(enrollmentIsFor({ ...e, userId: 'u-1' }, 'u-1', undefined), true)
  })
})
