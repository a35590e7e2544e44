/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/**
 * The conformance cases of Pomerium docs: Conformance cases that concern policy evaluation, as one table: policy
 * (PPL as YAML, or legacy route fields), identity and request, and the expected decision kind
 * and reasons. HTTP details (302 vs 401, JSON bodies, 404 for unknown hosts) belong to the
 * authorize service; here "sign-in" stands for both 2 and 3. Device (37, 38) and MCP (40)
 * criteria are not implemented; 39 (no route) never reaches a policy.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parse } from 'yaml'
import { compileRoutePolicy } from './route.js'
import { decide } from './decide.js'
import { CERT_FINGERPRINT, NO_ACCESS, alice, bob, cert, eve, input, ppl, pplErrors } from './test-helpers.js'
import type { Decision, MtlsEnforcement, PolicyInput, RouteAccess } from './types.js'


interface Case {
  readonly n: number
  readonly policy?: string
  readonly route?: Partial<RouteAccess>
  readonly mtls?: MtlsEnforcement
  readonly input: PolicyInput
  readonly kind: Decision['kind']
  readonly reasons: readonly string[]
  /** What distinguishes the input when the identity and request line do not. */
  readonly note?: string
}

const anon = undefined
const CASES: Case[] = [
  { n: 1, policy: 'allow: {or: [{accept: true}]}', input: input(anon), kind: 'allow', reasons: ['accept'] },
  { n: 2, policy: 'allow: {or: [{authenticated_user: true}]}', input: input(anon, { headers: { accept: 'text/html' } }), kind: 'sign-in', reasons: ['user-unauthenticated'] },
  { n: 3, policy: 'allow: {or: [{authenticated_user: true}]}', input: input(anon, { headers: { accept: 'application/json' } }), kind: 'sign-in', reasons: ['user-unauthenticated'] },
  { n: 4, policy: 'allow: {or: [{authenticated_user: true}]}', input: input(alice), kind: 'allow', reasons: ['user-ok'] },
  { n: 5, policy: 'allow: {or: [{email: {is: alice@example.com}}]}', input: input(bob), kind: 'deny', reasons: ['email-unauthorized'] },
  { n: 6, policy: 'allow: {or: [{email: {is: alice@example.com}}]}', input: input(alice), kind: 'allow', reasons: ['email-ok'] },
  { n: 7, policy: 'allow: {and: [{domain: {is: example.com}}]}', input: input(eve), kind: 'deny', reasons: ['domain-unauthorized'] },
  { n: 8, policy: '{allow: {or: [{authenticated_user: true}]}, deny: {or: [{email: {is: bob@example.com}}]}}', input: input(bob), kind: 'deny', reasons: ['email-ok'] },
  { n: 9, policy: '{allow: {or: [{authenticated_user: true}]}, deny: {or: [{email: {is: bob@example.com}}]}}', input: input(alice), kind: 'allow', reasons: ['user-ok'] },
  { n: 10, policy: 'allow: {and: [{domain: {is: example.com}}, {claim/groups: admins}]}', input: input(bob), kind: 'deny', reasons: ['claim-unauthorized'] },
  { n: 11, policy: 'allow: {and: [{domain: {is: example.com}}, {claim/groups: admins}]}', input: input(alice), kind: 'allow', reasons: ['claim-ok', 'domain-ok'] },
  { n: 12, policy: 'allow: {or: [{claim/groups: admins}]}', input: input(eve), kind: 'deny', reasons: ['claim-unauthorized'] },
  { n: 13, policy: 'allow: {or: [{claim/groups: {is: admins}}]}', input: input(alice), kind: 'deny', reasons: ['claim-unauthorized'] },
  { n: 14, policy: 'allow: {not: [{email: {is: bob@example.com}}]}', input: input(alice), kind: 'allow', reasons: ['email-unauthorized'] },
  { n: 15, policy: 'allow: {not: [{email: {is: bob@example.com}}]}', input: input(anon), kind: 'sign-in', reasons: ['user-unauthenticated'] },
  { n: 16, policy: 'allow: {nor: [{http_method: {is: DELETE}}, {http_path: {starts_with: /admin}}]}', input: input(anon, { method: 'DELETE', path: '/x' }), kind: 'allow', reasons: ['http-path-unauthorized'] },
  { n: 17, policy: 'allow: {nor: [{http_method: {is: DELETE}}, {http_path: {starts_with: /admin}}]}', input: input(anon, { method: 'DELETE', path: '/admin/a' }), kind: 'deny', reasons: ['http-method-ok', 'http-path-ok'] },
  { n: 18, policy: 'allow: {and: [{authenticated_user: true}, {http_method: {in: [GET, HEAD]}}]}', input: input(alice, { method: 'POST' }), kind: 'deny', reasons: ['http-method-unauthorized'] },
  { n: 19, policy: 'allow: {and: [{authenticated_user: true}, {http_method: {in: [GET, HEAD]}}]}', input: input(anon), kind: 'sign-in', reasons: ['user-unauthenticated'] },
  { n: 20, policy: 'allow: {or: [{http_path: {starts_with: /public}}]}', input: input(anon, { path: '/private' }), kind: 'deny', reasons: ['http-path-unauthorized'] },
  { n: 21, policy: 'allow: {or: [{source_ip: [10.0.0.0/8, 192.168.1.5]}]}', input: input(anon, { clientIp: '10.1.2.3' }), note: 'from 10.1.2.3', kind: 'allow', reasons: ['source-ip-ok'] },
  { n: 21, policy: 'allow: {or: [{source_ip: [10.0.0.0/8, 192.168.1.5]}]}', input: input(anon, { clientIp: '8.8.8.8' }), note: 'from 8.8.8.8', kind: 'deny', reasons: ['source-ip-unauthorized'] },
  { n: 22, policy: 'allow: {or: [{user: {is: u-alice}}]}', input: input(alice), kind: 'allow', reasons: ['user-ok'] },
  { n: 22, policy: 'allow: {or: [{user: {is: u-alice}}]}', input: input(bob), kind: 'deny', reasons: ['user-unauthorized'] },
  { n: 23, policy: 'allow: {or: [{email: {ends_with: "@example.com"}}, {email: {in: [x@y.com]}}]}', input: input(bob), kind: 'allow', reasons: ['email-ok'] },
  { n: 23, policy: 'allow: {or: [{email: {ends_with: "@example.com"}}, {email: {in: [x@y.com]}}]}', input: input(eve), kind: 'deny', reasons: ['email-unauthorized'] },
  { n: 24, policy: '[{allow: {or: [{domain: {is: a.com}}]}}, {allow: {or: [{domain: {is: example.com}}]}}]', input: input(alice), kind: 'allow', reasons: ['domain-ok'] },
  { n: 25, policy: 'allow: {and: [{claim/family_name: Smith}], or: [{domain: {is: other.org}}]}', input: input(alice), kind: 'allow', reasons: ['claim-ok'] },
  { n: 25, policy: 'allow: {and: [{claim/family_name: Smith}], or: [{domain: {is: other.org}}]}', input: input(eve), kind: 'allow', reasons: ['domain-ok'] },
  { n: 25, policy: 'allow: {and: [{claim/family_name: Smith}], or: [{domain: {is: other.org}}]}', input: input(bob), kind: 'deny', reasons: ['claim-unauthorized', 'domain-unauthorized'] },
  { n: 26, policy: 'allow: {or: [{reject: true}]}', input: input(alice), kind: 'deny', reasons: ['reject'] },
  { n: 26, policy: 'allow: {or: [{reject: true}]}', input: input(anon), kind: 'deny', reasons: ['reject'] },
  { n: 27, policy: '{allow: {or: [{authenticated_user: true}]}, deny: {not: [{http_method: {is: GET}}]}}', input: input(alice, { method: 'POST' }), kind: 'deny', reasons: ['http-method-unauthorized'] },
  { n: 27, policy: '{allow: {or: [{authenticated_user: true}]}, deny: {not: [{http_method: {is: GET}}]}}', input: input(alice), kind: 'allow', reasons: ['user-ok'] },
  {
    n: 28,
    route: { corsAllowPreflight: true, allowAnyAuthenticatedUser: true },
    input: input(anon, { method: 'OPTIONS', headers: { origin: 'https://other.example', 'access-control-request-method': 'POST' } }),
    kind: 'allow',
    reasons: ['cors-request'],
  },
  {
    n: 29,
    route: { corsAllowPreflight: true, allowAnyAuthenticatedUser: true },
    input: input(anon, { method: 'OPTIONS', headers: { 'access-control-request-method': 'POST' } }),
    kind: 'sign-in',
    reasons: ['non-cors-request', 'user-unauthenticated'],
  },
  { n: 30, route: { allowedUsers: ['alice@example.com'] }, input: input(alice), kind: 'allow', reasons: ['email-ok'] },
  { n: 30, route: { allowedUsers: ['alice@example.com'] }, input: input(bob), kind: 'deny', reasons: ['email-unauthorized', 'user-unauthorized'] },
  { n: 31, route: { allowedIdpClaims: { department: ['engineering'] } }, input: input(alice), kind: 'allow', reasons: ['claim-ok'] },
  { n: 31, route: { allowedIdpClaims: { department: ['engineering'] } }, input: input(bob), kind: 'deny', reasons: ['claim-unauthorized'] },
  { n: 32, route: {}, input: input(anon), kind: 'deny', reasons: [] },
  { n: 32, route: {}, input: input(alice), kind: 'deny', reasons: [] },
  { n: 33, policy: '{allow: {or: [{accept: true}]}, deny: {or: [{email: {is: bob@example.com}}]}}', input: input(anon), kind: 'sign-in', reasons: ['user-unauthenticated'] },
  { n: 34, policy: 'allow: {or: [{accept: true}, {email: {is: x@y}}]}', input: input(anon), kind: 'allow', reasons: ['accept'] },
  { n: 35, route: { allowAnyAuthenticatedUser: true }, mtls: 'policy_with_default_deny', input: input(anon), note: 'no certificate requested', kind: 'client-certificate', reasons: ['client-certificate-required'] },
  {
    n: 35,
    route: { allowAnyAuthenticatedUser: true },
    mtls: 'policy_with_default_deny',
    input: input(anon, { clientCertificate: cert({ presented: false }) }),
    note: 'no certificate presented',
    kind: 'client-certificate',
    reasons: ['client-certificate-required'],
  },
  {
    n: 35,
    route: { allowAnyAuthenticatedUser: true },
    mtls: 'policy_with_default_deny',
    input: input(alice, { clientCertificate: cert({ valid: false }) }),
    note: 'untrusted certificate',
    kind: 'client-certificate',
    reasons: ['invalid-client-certificate'],
  },
  {
    n: 35,
    route: { allowAnyAuthenticatedUser: true },
    mtls: 'policy_with_default_deny',
    input: input(anon, { clientCertificate: cert() }),
    note: 'valid certificate',
    kind: 'sign-in',
    reasons: ['user-unauthenticated'],
  },
  {
    n: 36,
    policy: `allow: {and: [{authenticated_user: true}, {client_certificate: {fingerprint: ${CERT_FINGERPRINT}}}]}`,
    input: input(alice, { clientCertificate: cert() }),
    note: 'with that certificate',
    kind: 'allow',
    reasons: ['client-certificate-ok', 'user-ok'],
  },
  {
    n: 36,
    policy: `allow: {and: [{authenticated_user: true}, {client_certificate: {fingerprint: ${CERT_FINGERPRINT}}}]}`,
    input: input(alice, { clientCertificate: cert({ fingerprintSha256: 'ff'.repeat(32) }) }),
    note: 'with another certificate',
    kind: 'deny',
    reasons: ['client-certificate-unauthorized'],
  },
]

for (const c of CASES) {
  const who = c.input.session?.userId ?? 'anon'
  const what = c.policy ?? `route ${JSON.stringify(c.route)}${c.mtls ? ` + ${c.mtls}` : ''}`
  test(`conformance ${c.n}: ${what} — ${who} ${c.input.method} ${c.input.path}${c.note ? ` (${c.note})` : ''} → ${c.kind} [${c.reasons.join(', ')}]`, () => {
    let policy
    if (c.policy !== undefined) {
      policy = ppl(c.policy)
    } else {
      const result = compileRoutePolicy({ ...NO_ACCESS, ...c.route }, { path: 'routes[0]', ...(c.mtls ? { mtls: c.mtls } : {}) })
      assert.deepEqual(result.errors, [])
      policy = result.policy
    }
    assert.ok(policy)
    const evaluation = policy.evaluate(c.input)
    const d = decide(evaluation)
    assert.equal(d.kind, c.kind)
    assert.deepEqual(d.reasons, c.reasons)
    // The traced evaluation reaches the same result by the same merge rules.
    const traced = policy.evaluate(c.input, { trace: true })
    assert.deepEqual({ ...traced, trace: undefined }, { ...evaluation, trace: undefined })
  })
}

test('conformance 41: an unknown operator (allow: {xor: [...]}) is a configuration error', () => {
  assert.deepEqual(pplErrors(parse('allow: {xor: [{accept: true}]}') as object, 'routes[0].policy'), [
    'routes[0].policy.allow.xor: unknown operator "xor": expected and, or, not or nor',
  ])
})

test('conformance 8 in detail: deny overrides allow, and allow stays true in the evaluation', () => {
  const e = ppl('{allow: {or: [{authenticated_user: true}]}, deny: {or: [{email: {is: bob@example.com}}]}}').evaluate(input(bob))
  assert.deepEqual(e, { allow: true, deny: true, allowReasons: ['user-ok'], denyReasons: ['email-ok'] })
})

test('decision statuses: 403 for deny, 495 for certificates', () => {
  const d = decide({ allow: false, deny: false, allowReasons: [], denyReasons: [] })
  assert.deepEqual(d, { kind: 'deny', status: 403, reasons: [] })
  const c = decide({ allow: true, deny: true, allowReasons: ['accept'], denyReasons: ['invalid-client-certificate'] })
  assert.deepEqual(c, { kind: 'client-certificate', status: 495, reasons: ['invalid-client-certificate'] })
})
