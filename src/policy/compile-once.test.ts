/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/**
 * A policy is parsed and compiled once: evaluating never reads the PPL document again (checked
 * with a Proxy that counts every property read), never changes with later edits to it, and, for
 * repeated inputs, returns the same memoised result objects.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compilePolicy } from './compile.js'
import { compileRoutePolicy } from './route.js'
import { alice, bob, input, ppl } from './test-helpers.js'

/** Wraps a JSON-like document so that every property read anywhere in it increments `reads.count`. */
function watched<T>(value: T, reads: { count: number }): T {
  if (typeof value !== 'object' || value === null) return value
  return new Proxy(value, {
    get(target, key, receiver) {
      reads.count++
      return watched(Reflect.get(target, key, receiver) as unknown, reads)
    },
    ownKeys(target) {
      reads.count++
      return Reflect.ownKeys(target)
    },
  })
}

const DOC = {
  allow: { and: [{ domain: { is: 'example.com' } }, { 'claim/groups': 'admins' }], or: [{ source_ip: ['10.0.0.0/8'] }] },
  deny: { or: [{ time_of_day: { timezone: 'Europe/Berlin', after: '23:00', before: '05:00' } }] },
}

test('evaluate never reads the PPL document: all reading happens in compile', () => {
  const reads = { count: 0 }
  const { policy, errors } = compilePolicy(watched(structuredClone(DOC), reads))
  assert.deepEqual(errors, [])
  assert.ok(policy)
  assert.ok(reads.count > 0)
  reads.count = 0
  for (let i = 0; i < 100; i++) {
    policy.evaluate(input(alice))
    policy.evaluate(input(bob, { clientIp: '10.1.1.1' }))
    policy.evaluate(input(undefined), { trace: true })
  }
  assert.equal(reads.count, 0)
})

test('the same holds for route policies built from legacy fields', () => {
  const reads = { count: 0 }
  const route = watched(
    {
      allowPublicUnauthenticatedAccess: false,
      allowAnyAuthenticatedUser: false,
      corsAllowPreflight: true,
      allowedUsers: ['alice@example.com'],
      allowedDomains: [],
      allowedIdpClaims: { department: ['engineering'] },
      policy: structuredClone(DOC),
    },
    reads,
  )
  const { policy } = compileRoutePolicy(route, { path: 'routes[0]', mtls: 'policy_with_default_deny' })
  assert.ok(policy)
  reads.count = 0
  policy.evaluate(input(alice))
  policy.evaluate(input(bob), { trace: true })
  assert.equal(reads.count, 0)
})

test('later edits to the document change nothing; source is a frozen copy', () => {
  const doc = structuredClone(DOC)
  const policy = ppl(doc)
  const before = policy.evaluate(input(alice))
  doc.allow.and[0] = { domain: { is: 'other.org' } }
  doc.allow.and.length = 0
  assert.deepEqual(policy.evaluate(input(alice)), before)
  assert.deepEqual(policy.source, DOC)
  assert.ok(Object.isFrozen(policy.source))
  assert.ok(Object.isFrozen((policy.source).allow.and[0]))
  assert.throws(() => {
    ;(policy.source as typeof DOC).allow.and.push({ domain: { is: 'x' } })
  })
})

test('repeated inputs give the same memoised, frozen evaluation object', () => {
  const policy = ppl(DOC)
  const a = policy.evaluate(input(alice))
  assert.equal(policy.evaluate(input(alice)), a)
  assert.ok(Object.isFrozen(a))
  assert.ok(Object.isFrozen(a.allowReasons))
})

test('trace: every operator and criterion, criterion values before inversion', () => {
  const policy = ppl({ allow: { and: [{ domain: 'example.com' }, { 'claim/groups': 'admins' }] }, deny: { not: [{ http_method: 'GET' }] } })
  const e = policy.evaluate(input(bob, { method: 'POST' }), { trace: true })
  assert.deepEqual(e, {
    allow: false,
    deny: true,
    allowReasons: ['claim-unauthorized'],
    denyReasons: ['http-method-unauthorized'],
    trace: [
      {
        action: 'allow',
        operator: 'and',
        result: false,
        criteria: [
          { name: 'domain', data: 'example.com', result: true, reasons: ['domain-ok'] },
          { name: 'claim/groups', data: 'admins', result: false, reasons: ['claim-unauthorized'] },
        ],
      },
      { action: 'deny', operator: 'not', result: true, criteria: [{ name: 'http_method', data: 'GET', result: false, reasons: ['http-method-unauthorized'] }] },
    ],
  })
  assert.equal(policy.evaluate(input(bob)).trace, undefined)
})
