/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** Legacy route fields → PPL (Pomerium docs: Access-control), embedded policies, and the downstream_mtls default deny. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileRoutePolicy } from './route.js'
import { decide } from './decide.js'
import { NO_ACCESS, alice, bob, cert, input } from './test-helpers.js'
import type { RouteAccess } from './types.js'


const route = (r: Partial<RouteAccess>, mtls?: 'policy_with_default_deny' | 'policy' | 'reject_connection') =>
  compileRoutePolicy({ ...NO_ACCESS, ...r }, { path: 'routes[2]', ...(mtls ? { mtls } : {}) })

test('legacy fields become one allow-or rule, in Pomerium order; claims by sorted key', () => {
  const { policy, errors } = route({
    corsAllowPreflight: true,
    allowedDomains: ['example.com'],
    allowedIdpClaims: { z: ['1'], department: ['engineering', 'ops'] },
    allowedUsers: ['alice@example.com'],
  })
  assert.deepEqual(errors, [])
  assert.deepEqual(policy?.source, [
    {
      allow: {
        or: [
          { cors_preflight: true },
          { domain: { is: 'example.com' } },
          { 'claim/department': 'engineering' },
          { 'claim/department': 'ops' },
          { 'claim/z': '1' },
          { user: { is: 'alice@example.com' } },
          { email: { is: 'alice@example.com' } },
        ],
      },
    },
  ])
  assert.deepEqual(route({ allowPublicUnauthenticatedAccess: true }).policy?.source, [{ allow: { or: [{ accept: true }] } }])
  assert.deepEqual(route({ allowAnyAuthenticatedUser: true }).policy?.source, [{ allow: { or: [{ authenticated_user: true }] } }])
})

test('an embedded policy is appended; the empty legacy allow rule is left out', () => {
  const embedded = { allow: { and: [{ domain: { is: 'example.com' } }] } }
  assert.deepEqual(route({ policy: embedded }).policy?.source, [embedded])
  assert.deepEqual(route({ policy: [embedded, { deny: { or: [{ user: 'u-x' }] } }] }).policy?.source, [embedded, { deny: { or: [{ user: 'u-x' }] } }])
  const both = route({ allowedUsers: ['bob@example.com'], policy: embedded })
  assert.deepEqual(both.policy?.source, [{ allow: { or: [{ user: { is: 'bob@example.com' } }, { email: { is: 'bob@example.com' } }] } }, embedded])
  assert.equal(both.policy?.evaluate(input(alice)).allow, true)
  assert.equal(both.policy?.evaluate(input(bob)).allow, true)
  // A route with nothing: an empty allow rule, so default deny without a sign-in prompt.
  assert.deepEqual(route({}).policy?.source, [{ allow: { or: [] } }])
  assert.deepEqual(decide(route({}).policy?.evaluate(input(undefined)) ?? assert.fail()), { kind: 'deny', status: 403, reasons: [] })
})

test('legacy validation errors (public + other access; any user + users/domains)', () => {
  assert.deepEqual(route({ allowPublicUnauthenticatedAccess: true, allowedDomains: ['example.com'] }).errors, [
    { path: 'routes[2].allow_public_unauthenticated_access', message: 'cannot be combined with allow_any_authenticated_user, allowed_users or allowed_domains' },
  ])
  assert.deepEqual(route({ allowPublicUnauthenticatedAccess: true, allowAnyAuthenticatedUser: true }).errors.map((e) => e.path), [
    'routes[2].allow_public_unauthenticated_access',
  ])
  assert.deepEqual(route({ allowAnyAuthenticatedUser: true, allowedUsers: ['a@b.c'] }).errors, [
    { path: 'routes[2].allow_any_authenticated_user', message: 'cannot be combined with allowed_users or allowed_domains' },
  ])
  assert.equal(route({ allowAnyAuthenticatedUser: true, allowedUsers: ['a@b.c'] }).policy, undefined)
  // Public plus claims or CORS is allowed, as in Pomerium.
  assert.deepEqual(route({ allowPublicUnauthenticatedAccess: true, corsAllowPreflight: true, allowedIdpClaims: { a: ['b'] } }).errors, [])
})

test('errors in translated and embedded criteria point at the key the operator wrote', () => {
  assert.deepEqual(route({ allowedIdpClaims: { team: [{ nope: 1 }] } }).errors, [
    { path: 'routes[2].allowed_idp_claims.team[0]', message: 'unknown list matcher operator "nope": expected has, is, exclude' },
  ])
  assert.deepEqual(route({ allowedDomains: [' example.com'] }).errors, [
    { path: 'routes[2].allowed_domains[0]', message: '" example.com" has leading or trailing whitespace, so it could never match' },
  ])
  assert.deepEqual(route({ policy: { allow: { and: [{ email: { is: 5 } }] } } }).errors, [
    { path: 'routes[2].policy.allow.and[0].email.is', message: 'expected a string, got a number (quote it)' },
  ])
  assert.deepEqual(route({ policy: [{ allow: { or: [] } }, { allow: { xor: [] } }] }).errors, [
    { path: 'routes[2].policy[1].allow.xor', message: 'unknown operator "xor": expected and, or, not or nor' },
  ])
  assert.deepEqual(route({ policy: 'allow everyone' }).errors, [{ path: 'routes[2].policy', message: 'expected a policy object or a list of them, got a string' }])
})

test('downstream_mtls: policy_with_default_deny adds the deny rule; policy and reject_connection add nothing', () => {
  const withDeny = route({ allowAnyAuthenticatedUser: true }, 'policy_with_default_deny')
  assert.deepEqual(withDeny.policy?.source, [{ allow: { or: [{ authenticated_user: true }] } }, { deny: { or: [{ invalid_client_certificate: true }] } }])
  assert.equal(decide(withDeny.policy?.evaluate(input(alice)) ?? assert.fail()).kind, 'client-certificate')
  assert.equal(decide(withDeny.policy?.evaluate(input(alice, { clientCertificate: cert() })) ?? assert.fail()).kind, 'allow')
  // Also with only an embedded policy.
  assert.deepEqual(route({ policy: { allow: { or: [{ accept: true }] } } }, 'policy_with_default_deny').policy?.source, [
    { deny: { or: [{ invalid_client_certificate: true }] } },
    { allow: { or: [{ accept: true }] } },
  ])
  for (const mode of ['policy', 'reject_connection'] as const) {
    const p = route({ allowAnyAuthenticatedUser: true }, mode)
    assert.deepEqual(p.policy?.source, [{ allow: { or: [{ authenticated_user: true }] } }], mode)
    assert.equal(decide(p.policy?.evaluate(input(alice)) ?? assert.fail()).kind, 'allow', mode)
  }
})
