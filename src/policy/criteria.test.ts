/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** Each criterion, matcher operator and logical operator on its own. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CERT_FINGERPRINT, alice, bob, cert, eve, holds, input, ppl, pplErrors, session } from './test-helpers.js'

const anon = undefined

test('operators: and = all true, or = any true, not = all false, nor = at least one false', () => {
  const T = { accept: true }
  const F = { reject: true }
  const table: [string, object[], boolean][] = [
    ['and', [T, T], true],
    ['and', [T, F], false],
    ['or', [F, T], true],
    ['or', [F, F], false],
    ['not', [F, F], true],
    ['not', [F, T], false],
    ['nor', [T, F], true],
    ['nor', [T, T], false],
  ]
  for (const [op, criteria, expected] of table) {
    assert.equal(ppl({ allow: { [op]: criteria } }).evaluate(input(anon)).allow, expected, `${op} ${JSON.stringify(criteria)}`)
  }
})

test('reasons: true operators keep true children, false ones false children; not/nor keep reasons while inverting', () => {
  const p = ppl('allow: {and: [{http_method: GET}, {http_path: /a}, {reject: true}]}')
  assert.deepEqual(p.evaluate(input(anon, { path: '/b' })).allowReasons, ['http-path-unauthorized', 'reject'])
  const n = ppl('allow: {not: [{http_method: POST}, {http_path: /b}]}')
  assert.deepEqual(n.evaluate(input(anon, { path: '/a' })), { allow: true, deny: false, allowReasons: ['http-method-unauthorized', 'http-path-unauthorized'], denyReasons: [] })
  assert.deepEqual(n.evaluate(input(anon, { path: '/b' })).allowReasons, ['http-path-ok'])
  // Several operators in one rule, and several rules, are OR-ed with the same propagation.
  const r = ppl('[{allow: {and: [{http_method: POST}], or: [{http_path: /x}]}}, {allow: {or: [{reject: true}]}}]')
  assert.deepEqual(r.evaluate(input(anon)).allowReasons, ['http-method-unauthorized', 'http-path-unauthorized', 'reject'])
})

test('accept and reject', () => {
  assert.equal(holds({ accept: true }, input(anon)), true)
  assert.equal(holds({ reject: true }, input(alice)), false)
})

test('authenticated_user needs a session with a user id', () => {
  assert.equal(holds({ authenticated_user: true }, input(alice)), true)
  assert.equal(holds({ authenticated_user: true }, input(session('', 'x@example.com'))), false)
  assert.deepEqual(ppl('allow: {or: [{authenticated_user: true}]}').evaluate(input(anon)).allowReasons, ['user-unauthenticated'])
})

test('every session criterion without a session is false with user-unauthenticated', () => {
  for (const c of [{ user: 'x' }, { email: 'x@y.z' }, { domain: 'y.z' }, { 'claim/groups': 'a' }, { groups: 'a' }, { authenticated_user: true }]) {
    const e = ppl({ allow: { or: [c] } }).evaluate(input(anon))
    assert.deepEqual([e.allow, e.allowReasons], [false, ['user-unauthenticated']], JSON.stringify(c))
  }
})

test('string matcher operators, AND-ed', () => {
  const path = (m: unknown, p: string): boolean => holds({ http_path: m }, input(anon, { path: p }))
  assert.equal(path('/a', '/a'), true)
  assert.equal(path({ is: '/a' }, '/A'), false)
  assert.equal(path({ not: '/a' }, '/b'), true)
  assert.equal(path({ not: '/a' }, '/a'), false)
  assert.equal(path({ starts_with: '/api/' }, '/api/x'), true)
  assert.equal(path({ starts_with: '/api/' }, '/apix'), false)
  assert.equal(path({ ends_with: '.json' }, '/x.json'), true)
  assert.equal(path({ contains: 'admin' }, '/x/admin/y'), true)
  assert.equal(path({ contains: 'admin' }, '/x/y'), false)
  assert.equal(path({ in: ['/a', '/b'] }, '/b'), true)
  assert.equal(path({ in: ['/a', '/b'] }, '/c'), false)
  assert.equal(path({ not_in: ['/a', '/b'] }, '/c'), true)
  assert.equal(path({ not_in: ['/a', '/b'] }, '/a'), false)
  assert.equal(path({ starts_with: '/api/', not: '/api/admin' }, '/api/x'), true)
  assert.equal(path({ starts_with: '/api/', not: '/api/admin' }, '/api/admin'), false)
})

test('list matcher: has, is (exactly one element), exclude; scalars are one-element lists, missing claims empty ones', () => {
  const claim = (m: unknown, v: unknown): boolean => holds({ 'claim/x': m }, input(session('u', 'u@example.com', v === undefined ? {} : { x: v })))
  assert.equal(claim('a', ['a', 'b']), true)
  assert.equal(claim({ has: 'c' }, ['a', 'b']), false)
  assert.equal(claim({ is: 'a' }, ['a', 'b']), false)
  assert.equal(claim({ is: 'a' }, ['a']), true)
  assert.equal(claim({ is: 'a' }, 'a'), true)
  assert.equal(claim({ exclude: 'a' }, ['b']), true)
  assert.equal(claim({ exclude: 'a' }, ['a', 'b']), false)
  assert.equal(claim({ exclude: 'a' }, undefined), true)
  assert.equal(claim('a', undefined), false)
  assert.equal(claim('a', null), false)
  assert.equal(claim({ has: 'a', exclude: 'banned' }, ['a', 'banned']), false)
  // Exact, typed equality: no substrings, no number/string coercion.
  assert.equal(claim('admin', ['administrators']), false)
  assert.equal(claim(5, [5]), true)
  assert.equal(claim('5', [5]), false)
  assert.equal(claim(true, true), true)
})

test('user: the user id, case-folded; padded or look-alike ids refused', () => {
  assert.equal(holds({ user: 'u-alice' }, input(alice)), true)
  assert.equal(holds({ user: 'U-Alice' }, input(alice)), true)
  assert.equal(holds({ user: 'u-alice' }, input(session('U-ALICE', ''))), true)
  assert.equal(holds({ user: 'u-alice' }, input(session('u-alice ', ''))), false)
  assert.equal(holds({ user: 'u-alice' }, input(session(' u-alice', ''))), false)
  assert.equal(holds({ user: 'u-alice' }, input(session('u-alice\u0000', ''))), false)
  assert.equal(holds({ user: 'u-alice' }, input(session('ｕ-alice', ''))), false)
  assert.equal(holds({ user: { not: 'u-bob' } }, input(session('u-alice ', ''))), false)
  assert.equal(holds({ user: 'josé' }, input(session('José', ''))), true)
  assert.equal(holds({ user: 'u-alice' }, input(bob)), false)
})

test('claim paths: nested with / or ., up to 5 levels; a whole key first; own properties only', () => {
  const s = session('u', 'u@example.com', {
    org: { team: { role: 'lead' } },
    'https://example.com/roles': ['ops'],
    'a.b': 'literal',
    a: { b: 'nested' },
    l1: { l2: { l3: { l4: { l5: 'deep', l6: 'x' } } } },
  })
  assert.equal(holds({ 'claim/org/team/role': 'lead' }, input(s)), true)
  assert.equal(holds({ 'claim/org.team.role': 'lead' }, input(s)), true)
  assert.equal(holds({ 'claim/https://example.com/roles': 'ops' }, input(s)), true)
  assert.equal(holds({ 'claim/a.b': 'literal' }, input(s)), true)
  assert.equal(holds({ 'claim/a/b': 'nested' }, input(s)), true)
  assert.equal(holds({ 'claim/l1/l2/l3/l4/l5': 'deep' }, input(s)), true)
  const six = session('u', 'u@example.com', { l1: { l2: { l3: { l4: { l5: { l6: 'x' } } } } } })
  assert.equal(holds({ 'claim/l1/l2/l3/l4/l5/l6': 'x' }, input(six)), false)
  assert.equal(holds({ 'claim/constructor': { exclude: 'x' } }, input(s)), true)
  assert.equal(holds({ 'claim/org/constructor/name': 'Object' }, input(s)), false)
  assert.equal(holds({ 'claim/toString': { has: 'x' } }, input(s)), false)
})

test('groups: directory groups when given, else the groups claim', () => {
  assert.equal(holds({ groups: 'admins' }, input(alice)), true)
  assert.equal(holds({ groups: 'admins' }, input(eve)), false)
  const directory = session('u', 'u@example.com', { groups: ['admins'] }, { directoryGroups: ['g-1'] })
  assert.equal(holds({ groups: 'admins' }, input(directory)), false)
  assert.equal(holds({ groups: 'g-1' }, input(directory)), true)
  assert.equal(holds({ groups: { exclude: 'x' } }, input(session('u', 'u@example.com'))), true)
})

test('http_method: case-insensitive on both sides', () => {
  assert.equal(holds({ http_method: 'get' }, input(anon)), true)
  assert.equal(holds({ http_method: { in: ['POST', 'put'] } }, input(anon, { method: 'PUT' })), true)
  assert.equal(holds({ http_method: 'DELETE' }, input(anon, { method: 'delete' })), true)
  assert.equal(holds({ http_method: 'GET' }, input(anon, { method: 'POST' })), false)
})

test('cors_preflight: OPTIONS with Origin and Access-Control-Request-Method', () => {
  const headers = { origin: 'https://a.example', 'access-control-request-method': 'PUT' }
  assert.equal(holds({ cors_preflight: true }, input(anon, { method: 'OPTIONS', headers })), true)
  assert.equal(holds({ cors_preflight: true }, input(anon, { method: 'GET', headers })), false)
  assert.equal(holds({ cors_preflight: true }, input(anon, { method: 'OPTIONS', headers: { origin: 'https://a.example' } })), false)
  assert.equal(holds({ cors_preflight: true }, input(anon, { method: 'OPTIONS', headers: { ...headers, origin: '' } })), false)
  assert.equal(holds({ cors_preflight: true }, input(anon, { method: 'OPTIONS', headers: { ...headers, origin: ['https://a.example'] } })), true)
  assert.deepEqual(ppl('allow: {or: [{cors_preflight: true}]}').evaluate(input(anon)).allowReasons, ['non-cors-request'])
})

test('client_certificate: fingerprints (long and short), SPKI hashes, SANs, lists of matchers', () => {
  const long = CERT_FINGERPRINT.toUpperCase().match(/../g)?.join(':') ?? ''
  const c = input(alice, { clientCertificate: cert() })
  assert.equal(holds({ client_certificate: { fingerprint: CERT_FINGERPRINT } }, c), true)
  assert.equal(holds({ client_certificate: { fingerprint: long } }, c), true)
  assert.equal(holds({ client_certificate: { fingerprint: ['ff'.repeat(32), long] } }, c), true)
  assert.equal(holds({ client_certificate: { fingerprint: 'ff'.repeat(32) } }, c), false)
  assert.equal(holds({ client_certificate: { spki_hash: 'q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=' } }, c), true)
  assert.equal(holds({ client_certificate: { san_dns: { ends_with: '.EXAMPLE.com' } } }, c), true)
  assert.equal(holds({ client_certificate: { san_email: 'alice@example.com' } }, c), true)
  assert.equal(holds({ client_certificate: { san_uri: { starts_with: 'spiffe://example.com/' } } }, c), true)
  assert.equal(holds({ client_certificate: { san_uri: { starts_with: 'spiffe://example.com/' }, fingerprint: 'ff'.repeat(32) } }, c), false)
  assert.equal(holds({ client_certificate: [{ fingerprint: 'ff'.repeat(32) }, { san_dns: 'client.example.com' }] }, c), true)
  // No certificate, or not presented: false. SAN conditions need a valid certificate; pins do not.
  assert.equal(holds({ client_certificate: { fingerprint: CERT_FINGERPRINT } }, input(alice)), false)
  assert.equal(holds({ client_certificate: { fingerprint: CERT_FINGERPRINT } }, input(alice, { clientCertificate: cert({ presented: false }) })), false)
  const untrusted = input(alice, { clientCertificate: cert({ valid: false }) })
  assert.equal(holds({ client_certificate: { fingerprint: CERT_FINGERPRINT } }, untrusted), true)
  assert.equal(holds({ client_certificate: { san_dns: 'client.example.com' } }, untrusted), false)
})

test('client_certificate errors', () => {
  const P = 'p'
  assert.deepEqual(pplErrors({ allow: { or: [{ client_certificate: { fingerprint: 'abc' } }] } }, P), [
    'p.allow.or[0].client_certificate.fingerprint: "abc" is not a SHA-256 fingerprint (AB:CD:... or 64 hex digits)',
  ])
  assert.deepEqual(pplErrors({ allow: { or: [{ client_certificate: [{ spki_hash: ['nope'] }] }] } }, P), [
    'p.allow.or[0].client_certificate[0].spki_hash[0]: "nope" is not a base64 SHA-256 SPKI hash',
  ])
  assert.deepEqual(pplErrors({ allow: { or: [{ client_certificate: { san_ip: '10.0.0.1' } }] } }, P), [
    'p.allow.or[0].client_certificate.san_ip: unknown certificate matcher condition "san_ip": expected fingerprint, spki_hash, san_dns, san_email, san_uri',
  ])
  assert.deepEqual(pplErrors({ allow: { or: [{ client_certificate: { san_dns: { starts: 'x' } } }] } }, P), [
    'p.allow.or[0].client_certificate.san_dns.starts: unknown string matcher operator "starts": expected is, not, starts_with, ends_with, contains, in, not_in',
  ])
  assert.equal(pplErrors({ allow: { or: [{ client_certificate: {} }] } }, P).length, 1)
  assert.equal(pplErrors({ allow: { or: [{ client_certificate: [] }] } }, P).length, 1)
})

test('invalid_client_certificate: required / invalid (true) or valid (false)', () => {
  const p = ppl('deny: {or: [{invalid_client_certificate: true}]}')
  assert.deepEqual(p.evaluate(input(anon)).denyReasons, ['client-certificate-required'])
  assert.deepEqual(p.evaluate(input(anon, { clientCertificate: cert({ presented: false }) })).denyReasons, ['client-certificate-required'])
  assert.deepEqual(p.evaluate(input(anon, { clientCertificate: cert({ valid: false }) })), {
    allow: false,
    deny: true,
    allowReasons: [],
    denyReasons: ['invalid-client-certificate'],
  })
  assert.deepEqual(p.evaluate(input(anon, { clientCertificate: cert() })), { allow: false, deny: false, allowReasons: [], denyReasons: ['valid-client-certificate'] })
})
