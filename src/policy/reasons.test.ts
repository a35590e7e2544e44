/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** The reasons of a 403 in words a person reads (the page and `policy explain`). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileRoutePolicy } from './route.js'
import { decide } from './decide.js'
import { describeDenial } from './reasons.js'
import { NO_ACCESS, alice, bob, cert, input, ppl } from './test-helpers.js'
import type { CompiledPolicy, PolicyInput } from './types.js'

function why(policy: CompiledPolicy, i: PolicyInput): string[] {
  const e = policy.evaluate(i, { trace: true })
  return describeDenial(e, decide(e))
}


test('a matching deny rule is named as a deny rule, with what it matched', () => {
  const policy = ppl({ allow: { or: [{ authenticated_user: true }] }, deny: { or: [{ http_path: { starts_with: '/admin' } }, { http_method: 'DELETE' }] } })
  assert.deepEqual(why(policy, input(alice, { path: '/admin/users' })), ['a deny rule of this route matches this request: http_path starts_with "/admin"'])
  const negated = ppl({ allow: { or: [{ authenticated_user: true }] }, deny: { not: [{ source_ip: '10.0.0.0/8' }] } })
  assert.deepEqual(why(negated, input(alice, { clientIp: '192.0.2.1' })), ['a deny rule of this route matches this request: not source_ip "10.0.0.0/8"'])
})

test('a missing group or claim names the requirement', () => {
  const claims = compileRoutePolicy({ ...NO_ACCESS, allowedIdpClaims: { groups: ['admins'] } }, { path: 'routes[0]' }).policy as CompiledPolicy
  assert.deepEqual(why(claims, input(bob)), ['your identity provider does not report an attribute this route requires (the claim groups including "admins")'])
  const groups = ppl({ allow: { and: [{ groups: { has: 'admins' } }, { http_method: 'GET' }] } })
  assert.deepEqual(why(groups, input(bob)), ['you are not in a group this route allows (groups including "admins")'])
  const exact = ppl({ allow: { or: [{ 'claim/roles': { is: 'ops', exclude: 'intern' } }] } })
  assert.deepEqual(why(exact, input(bob)), ['your identity provider does not report an attribute this route requires (the claim roles exactly "ops" and without "intern")'])
})

test('who else is allowed is never shown', () => {
  const users = compileRoutePolicy({ ...NO_ACCESS, allowedUsers: ['alice@example.com'], allowedDomains: [] }, { path: 'routes[0]' }).policy as CompiledPolicy
  const text = why(users, input(bob)).join('\n')
  assert.ok(!text.includes('alice'), text)
  assert.match(text, /your account is not one this route allows/)
})

test('a route without an allow rule says that it admits nobody', () => {
  const empty = compileRoutePolicy(NO_ACCESS, { path: 'routes[0]' }).policy as CompiledPolicy
  assert.deepEqual(why(empty, input(alice)), ['this route has no allow rule, so it admits nobody'])
  assert.deepEqual(why(empty, input(undefined)), ['this route has no allow rule, so it admits nobody'])
  const denyOnly = ppl({ deny: { or: [{ http_method: 'DELETE' }] } })
  assert.deepEqual(why(denyOnly, input(alice)), ['this route has no allow rule, so it admits nobody'])
})

test('without a trace, and for other decisions, the reason codes are described one by one', () => {
  const policy = ppl({ allow: { or: [{ email: { is: 'alice@example.com' } }] } })
  const e = policy.evaluate(input(bob))
  assert.deepEqual(describeDenial(e, decide(e)), ['your email address is not one this route allows'])
  const mtls = compileRoutePolicy({ ...NO_ACCESS, allowAnyAuthenticatedUser: true }, { path: 'routes[0]', mtls: 'policy_with_default_deny' }).policy as CompiledPolicy
  const bad = mtls.evaluate(input(alice, { clientCertificate: cert({ valid: false }) }), { trace: true })
  assert.equal(decide(bad).kind, 'client-certificate')
  assert.deepEqual(describeDenial(bad, decide(bad)), ['your client certificate is not trusted'])
})
