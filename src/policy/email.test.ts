/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/**
 * Email, domain and user canonicalisation (hostile-input cases: identity and claims): case-folded comparison, and
 * refusal of anything that could be a look-alike of an allowed identity.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileRoutePolicy } from './route.js'
import { NO_ACCESS, holds, input, session } from './test-helpers.js'
import type { PolicySession } from './types.js'

const as = (email: string, extra: Partial<PolicySession> = {}): PolicySession => session('u-1', email, {}, extra)

test('hostile: email-domain policy refuses smuggled, look-alike and quoted addresses (hostile-input case: identity / claims / policy inputs)', () => {
  const hostile = [
    'a@evil.com@company.com',
    'a@company.com.evil.com',
    'a@evilcompany.com',
    'a@cоmpany.com', // Cyrillic о
    'a＠company.com', // full-width @
    '"a@company.com"@evil.com',
    'a@company.com ',
    ' a@company.com',
    'a@company.com.',
    'a@ｃompany.com', // full-width c
    'a@company.com\n',
    'a@company.com,b@evil.com',
    'a b@company.com',
    'a@@company.com',
    '@company.com',
    'a@',
    'a@.company.com',
    'a..b@company.com',
    'a@company..com',
    'a@company.com>',
    'a@comp\\any.com',
  ]
  for (const email of hostile) {
    assert.equal(holds({ domain: 'company.com' }, input(as(email))), false, `domain: ${JSON.stringify(email)}`)
    // ends_with is a plain suffix, so evilcompany.com ends with company.com (docs/policy.md says
    // to write `is`, or ends_with: .company.com for subdomains); nothing else gets through.
    assert.equal(holds({ domain: { ends_with: 'company.com' } }, input(as(email))), email === 'a@evilcompany.com', `domain ends_with: ${JSON.stringify(email)}`)
    assert.equal(holds({ email: 'a@company.com' }, input(as(email))), false, `email: ${JSON.stringify(email)}`)
    assert.equal(holds({ email: { ends_with: '@company.com' } }, input(as(email))), false, `email ends_with: ${JSON.stringify(email)}`)
  }
})

test('email and domain compare case-folded (A@COMPANY.COM is a@company.com)', () => {
  assert.equal(holds({ domain: 'company.com' }, input(as('A@COMPANY.COM'))), true)
  assert.equal(holds({ email: 'a@company.com' }, input(as('A@COMPANY.COM'))), true)
  assert.equal(holds({ email: 'A@Company.Com' }, input(as('a@company.com'))), true)
  assert.equal(holds({ domain: { in: ['Other.org', 'COMPANY.com'] } }, input(as('x@company.com'))), true)
  // Operands are NFKC-normalised too: a full-width operand means its ASCII form.
  assert.equal(holds({ email: 'a＠company.com' }, input(as('a@company.com'))), true)
  assert.equal(holds({ email: 'a@company.com' }, input(as('a+tag@company.com'))), false)
  assert.equal(holds({ domain: 'company.com' }, input(as('a+tag@sub.company.com'))), false)
  assert.equal(holds({ domain: 'company.com' }, input(as(''))), false)
})

test('hostile: email_verified false fails email and domain (hostile-input case: identity / claims / policy inputs); undefined is accepted', () => {
  assert.equal(holds({ email: 'a@company.com' }, input(as('a@company.com', { emailVerified: false }))), false)
  assert.equal(holds({ domain: 'company.com' }, input(as('a@company.com', { emailVerified: false }))), false)
  assert.equal(holds({ email: 'a@company.com' }, input(as('a@company.com', { emailVerified: undefined }))), true)
  assert.equal(holds({ domain: 'company.com' }, input(as('a@company.com', { emailVerified: true }))), true)
  // Other criteria are unaffected.
  assert.equal(holds({ authenticated_user: true }, input(as('a@company.com', { emailVerified: false }))), true)
})


test('hostile: allowed_users canonicalisation is consistent (hostile-input case: identity / claims / policy inputs)', () => {
  const { policy } = compileRoutePolicy({ ...NO_ACCESS, allowedUsers: ['alice@corp.example'] }, { path: 'routes[0]' })
  assert.ok(policy)
  const allowed = (userId: string, email: string): boolean => policy.evaluate(input(session(userId, email))).allow
  // Same person, any case: allowed, whether the IdP puts the name in sub or in email.
  assert.equal(allowed('x', 'alice@corp.example'), true)
  assert.equal(allowed('x', 'Alice@Corp.Example'), true)
  assert.equal(allowed('Alice@Corp.Example', ''), true)
  // Padded and compatibility variants: refused, in user id and email alike.
  for (const variant of ['alice@corp.example ', ' alice@corp.example', 'ａlice@corp.example', 'alice＠corp.example', 'alice@corp.example\t']) {
    assert.equal(allowed('x', variant), false, `email ${JSON.stringify(variant)}`)
    assert.equal(allowed(variant, ''), false, `user ${JSON.stringify(variant)}`)
  }
  // An operator's typo with surrounding spaces is a configuration error, not a silent never-match.
  assert.deepEqual(compileRoutePolicy({ ...NO_ACCESS, allowedUsers: ['bob@corp.example '] }, { path: 'routes[0]' }).errors, [
    { path: 'routes[0].allowed_users[0]', message: '"bob@corp.example " has leading or trailing whitespace, so it could never match' },
  ])
})

test('the one-entry memo does not leak between different addresses', () => {
  assert.equal(holds({ email: 'a@company.com' }, input(as('a@company.com'))), true)
  assert.equal(holds({ email: 'a@company.com' }, input(as('a@company.com@x'))), false)
  assert.equal(holds({ domain: 'company.com' }, input(as('b@company.com'))), true)
  assert.equal(holds({ domain: 'company.com' }, input(as('b@other.com'))), false)
})
