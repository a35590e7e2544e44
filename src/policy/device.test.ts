/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** The `device` criterion (WebAuthn device identity) and the decisions it leads to: enroll, 450. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decide } from './decide.js'
import { describeDenial } from './reasons.js'
import { compileRoutePolicy } from './route.js'
import { NO_ACCESS, alice, decision, holds, input, ppl, pplErrors } from './test-helpers.js'
import type { PolicyDevice, PolicySession } from './types.js'

const key = (id: string, approved = true): PolicyDevice => ({ id, typeId: 'any', approved })
const enclave = (id: string, approved = true): PolicyDevice => ({ id, typeId: 'enclave_only', approved })
const withDevices = (...devices: PolicyDevice[]): PolicySession => ({ ...alice, devices })

test('device: a credential of the type satisfying is and approved → device-ok', () => {
  const p = ppl('allow: {or: [{device: {type: any}}]}')
  const e = p.evaluate(input(withDevices(key('ID-1'))))
  assert.equal(e.allow, true)
  assert.deepEqual(e.allowReasons, ['device-ok'])
  assert.equal(holds({ device: {} }, input(withDevices(key('ID-1')))), true, 'type defaults to any')
  assert.equal(holds({ device: { is: 'ID-1' } }, input(withDevices(key('ID-2'), key('ID-1')))), true, 'any of the credentials of the type')
  assert.equal(holds({ device: { approved: true } }, input(withDevices(key('ID-1', true)))), true)
  assert.equal(holds({ device: { approved: false } }, input(withDevices(key('ID-1', false)))), true)
  assert.equal(holds({ device: { type: 'enclave_only', is: 'E-1', approved: true } }, input(withDevices(key('ID-1'), enclave('E-1')))), true)
})

test('device: no credential of the type → device-unauthenticated; one that fails the rule → device-unauthorized', () => {
  const reasons = (criterion: object, devices: PolicyDevice[] | undefined): readonly string[] =>
    ppl({ allow: { or: [criterion] } }).evaluate(input({ ...alice, ...(devices ? { devices } : {}) })).allowReasons
  assert.deepEqual(reasons({ device: { type: 'any' } }, undefined), ['device-unauthenticated'])
  assert.deepEqual(reasons({ device: { type: 'any' } }, []), ['device-unauthenticated'])
  assert.deepEqual(reasons({ device: { type: 'enclave_only' } }, [key('ID-1')]), ['device-unauthenticated'], 'a security key is not an enclave credential')
  assert.deepEqual(reasons({ device: { is: 'ID-1' } }, [key('ID-2')]), ['device-unauthorized'])
  assert.deepEqual(reasons({ device: { approved: true } }, [key('ID-1', false)]), ['device-unauthorized'])
  assert.deepEqual(reasons({ device: { type: 'enclave_only', is: 'E-1' } }, [key('E-1'), enclave('E-2')]), ['device-unauthorized'], 'is matches within the type only')
})

test('device: no session → sign in first (user-unauthenticated)', () => {
  assert.deepEqual(decision('allow: {or: [{device: {type: any}}]}', input(undefined)), { kind: 'sign-in', reasons: ['user-unauthenticated'] })
})

test('decisions: conformance cases 37 and 38 (enroll a device of the required type; another device → 450)', () => {
  // 37: alice without an enrolled device → enrollment of the type the rule names.
  assert.deepEqual(decision('allow: {or: [{device: {type: any}}]}', input(alice)), { kind: 'device-enroll', deviceType: 'any', reasons: ['device-unauthenticated'] })
  // 38: alice with device ID-2 on a route that wants ID-1 → 450 (default deny with the allow reasons).
  assert.deepEqual(decision('allow: {or: [{device: {is: ID-1}}]}', input(withDevices(key('ID-2')))), { kind: 'device-denied', status: 450, reasons: ['device-unauthorized'] })
  // A deny rule that a device fails: 450 with the deny reasons; one the device meets: 403.
  const notApproved = '[{allow: {or: [{accept: true}]}}, {deny: {not: [{device: {approved: true}}]}}]'
  assert.deepEqual(decision(notApproved, input(withDevices(key('ID-1', false)))), { kind: 'device-denied', status: 450, reasons: ['device-unauthorized'] })
  assert.equal(decision(notApproved, input(withDevices(key('ID-1', true)))).kind, 'allow')
  const denyKeys = '[{allow: {or: [{accept: true}]}}, {deny: {or: [{device: {type: any}}]}}]'
  assert.deepEqual(decision(denyKeys, input(withDevices(key('ID-1')))), { kind: 'deny', status: 403, reasons: ['device-ok'] })
})

test('decisions: the device type to enroll is the first the policy names that the session has no credential of', () => {
  const both = ppl('allow: {and: [{device: {type: any}}, {device: {type: enclave_only}}]}')
  assert.deepEqual(both.deviceTypes, ['any', 'enclave_only'])
  assert.deepEqual(decision(both, input(alice)), { kind: 'device-enroll', deviceType: 'any', reasons: ['device-unauthenticated'] })
  assert.deepEqual(decision(both, input(withDevices(key('ID-1')))), { kind: 'device-enroll', deviceType: 'enclave_only', reasons: ['device-unauthenticated'] })
  assert.equal(decision(both, input(withDevices(key('ID-1'), enclave('E-1')))).kind, 'allow')
  assert.deepEqual(ppl('allow: {or: [{email: {is: a@b.c}}]}').deviceTypes, [])
})

test('device: data errors name the key', () => {
  assert.deepEqual(pplErrors('allow: {or: [{device: true}]}'), ['allow.or[0].device: expected an object with type, is and/or approved, got a boolean'])
  assert.deepEqual(pplErrors('allow: {or: [{device: {kind: any}}]}'), ['allow.or[0].device.kind: unknown key "kind" (expected type, is, approved)'])
  assert.deepEqual(pplErrors('allow: {or: [{device: {type: "Any Key"}}]}'), ['allow.or[0].device.type: expected a device type name (any, enclave_only or a configured type), got "Any Key"'])
  assert.deepEqual(pplErrors('allow: {or: [{device: {is: 5}}]}'), ['allow.or[0].device.is: expected a device credential id, got a number'])
  assert.deepEqual(pplErrors('allow: {or: [{device: {approved: "yes"}}]}'), ['allow.or[0].device.approved: expected true or false, got a string'])
  assert.deepEqual(pplErrors('allow: {or: [{device/x: {}}]}'), ['allow.or[0].device/x: device takes no sub-path (write "device", not "device/x")'])
})

test('routes: a device rule naming a type the configuration does not know is refused with its key path', () => {
  const route = { ...NO_ACCESS, policy: { allow: { or: [{ device: { type: 'laptop' } }, { device: {} }] } } }
  const refused = compileRoutePolicy(route, { path: 'routes[0]', deviceTypes: ['any', 'enclave_only'] })
  assert.equal(refused.policy, undefined)
  assert.deepEqual(
    refused.errors.map((e) => `${e.path}: ${e.message}`),
    ['routes[0].policy.allow.or[0].device.type: unknown device type "laptop" (expected any, enclave_only; configure more in device_types)'],
  )
  const accepted = compileRoutePolicy(route, { path: 'routes[0]', deviceTypes: ['any', 'enclave_only', 'laptop'] })
  assert.deepEqual(accepted.errors, [])
  assert.deepEqual(accepted.policy?.deviceTypes, ['laptop', 'any'])
})

test('the 450 page names the device rule that failed; a policy without device rules never enrolls', () => {
  const p = ppl('allow: {and: [{email: {is: alice@example.com}}, {device: {is: ID-1}}]}')
  const e = p.evaluate(input(withDevices(key('ID-2'))), { trace: true })
  const d = decide(e, p.deviceTypes, withDevices(key('ID-2')))
  assert.equal(d.kind, 'device-denied')
  assert.deepEqual(describeDenial(e, d), ['your device is not one this route allows (device is "ID-1")'])
  // Without the policy's device types (a policy with no device rule) step 3 is skipped.
  assert.equal(decide({ allow: false, deny: false, allowReasons: ['device-unauthenticated'], denyReasons: [] }).kind, 'deny')
})

test('device: a device awaiting approval satisfies no rule but approved: false, and is refused with 450', () => {
  const pending: PolicyDevice = { id: 'K-1', typeId: 'any', approved: false, pendingApproval: true }
  assert.equal(holds({ device: {} }, input(withDevices(pending))), false)
  assert.equal(holds({ device: { is: 'K-1' } }, input(withDevices(pending))), false)
  assert.equal(holds({ device: { approved: true } }, input(withDevices(pending))), false)
  assert.equal(holds({ device: { approved: false } }, input(withDevices(pending))), true, 'a rule may ask for unapproved devices on purpose')
  assert.equal(holds({ device: {} }, input(withDevices(pending, key('ID-2', false)))), true, 'another device of the type that needs no approval')
  const p = ppl('allow: {or: [{device: {type: any}}]}')
  assert.equal(decide(p.evaluate(input(withDevices(pending))), p.deviceTypes, withDevices(pending)).kind, 'device-denied')
})
