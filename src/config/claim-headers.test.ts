import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createAssertionMinter } from '../authorize/identity/assertion.js'
import type { IdentitySession } from '../authorize/identity/assertion.js'
import { claimHeaderProblem, claimHeaderValues, claimStrings, normaliseClaimHeaders, wireValue } from './claim-headers.js'
import { loadSigningKeys } from '../shared/signing-keys.js'

const keys = loadSigningKeys(undefined, Buffer.alloc(32, 1))
const NOW = 1_767_000_000_000
const bob: IdentitySession = {
  id: 's1',
  userId: 'u1',
  email: 'bob@example.com',
  name: 'Bob',
  groups: ['eng', 'ops'],
  claims: { given_name: 'Bob', roles: ['a', 'b'], age: 42 },
}

function headersFor(claimHeaders: Record<string, string>, ...rest: [IdentitySession?]): Record<string, string> {
  const session = rest.length === 0 ? bob : rest[0]
  const { payload } = createAssertionMinter(keys, { issuerFormat: 'hostOnly', claimHeaders }).issue({ host: 'a.example', session, now: NOW })
  return claimHeaderValues(payload, claimHeaders)
}

test('jwt_claims_headers map form: named headers (lower-case) with claim values; arrays joined with ","', () => {
  assert.deepEqual(headersFor({ 'X-Email': 'email', 'X-Groups': 'groups', 'X-Roles': 'roles', 'X-Given': 'given_name', 'X-Age': 'age', 'X-Iat': 'iat' }), {
    'x-email': 'bob@example.com',
    'x-groups': 'eng,ops',
    'x-roles': 'a,b',
    'x-given': 'Bob',
    'x-age': '42',
    'x-iat': String(Math.floor(NOW / 1000)),
  })
})

test('jwt_claims_headers list form: x-pomerium-claim-<claim>, claim name verbatim', () => {
  const map = normaliseClaimHeaders(['email', 'groups', 'given_name'])
  assert.deepEqual(map, { 'x-pomerium-claim-email': 'email', 'x-pomerium-claim-groups': 'groups', 'x-pomerium-claim-given_name': 'given_name' })
  assert.deepEqual(normaliseClaimHeaders('email, groups'), { 'x-pomerium-claim-email': 'email', 'x-pomerium-claim-groups': 'groups' })
  assert.deepEqual(normaliseClaimHeaders({ 'X-Email': 'email' }), { 'X-Email': 'email' })
  assert.deepEqual(normaliseClaimHeaders(undefined), {})
  assert.deepEqual(headersFor(map), { 'x-pomerium-claim-email': 'bob@example.com', 'x-pomerium-claim-groups': 'eng,ops', 'x-pomerium-claim-given_name': 'Bob' })
})

test('missing claim: the header is present with an empty value (also for anonymous requests)', () => {
  assert.deepEqual(headersFor({ 'X-Nope': 'nope' }), { 'x-nope': '' })
  assert.deepEqual(headersFor({ 'X-Email': 'email', 'X-Given': 'given_name' }, undefined), { 'x-email': '', 'x-given': '' })
})

test('hostile: claim values with CR, LF, lone CR, NUL or other control characters are dropped, never sent', () => {
  for (const bad of ['a\r\nSet-Cookie: x=1', 'a\nLocation: https://evil.com', 'a\rb', 'a\0b', 'a\x1bb', 'a\x7fb']) {
    const h = headersFor({ 'X-Email': 'email', 'X-Given': 'given_name', 'X-Roles': 'roles' }, { ...bob, email: bad, claims: { ...bob.claims, given_name: bad, roles: ['ok', bad] } })
    assert.deepEqual(h, {}, JSON.stringify(bad))
  }
  assert.deepEqual(headersFor({ 'X-Given': 'given_name' }, { ...bob, claims: { given_name: 'tab\tok' } }), { 'x-given': 'tab\tok' })
})

test('non-ASCII claim values go on the wire as UTF-8 bytes (as Envoy sends them)', () => {
  const h = headersFor({ 'X-Name': 'name' }, { ...bob, name: 'José 李' })
  assert.equal(Buffer.from(h['x-name'] as string, 'latin1').toString('utf8'), 'José 李')
  assert.equal(wireValue('plain'), 'plain')
})

test('claim header names that would break framing are refused', () => {
  assert.deepEqual(headersFor({ Host: 'email', 'Content-Length': 'email', 'Transfer-Encoding': 'email', 'X-Ok': 'email' }), { 'x-ok': 'bob@example.com' })
  assert.match(claimHeaderProblem('Content-Length', 'email') ?? '', /framing/)
  assert.match(claimHeaderProblem('Bad Name', 'email') ?? '', /token/)
  assert.equal(claimHeaderProblem('X-Email', 'email'), undefined)
})

test('claimStrings reads claims as Pomerium does (scalars are one-element lists; null/objects skipped)', () => {
  assert.deepEqual(claimStrings('a'), ['a'])
  assert.deepEqual(claimStrings(['a', 1, true, null, { x: 1 }, ['n']]), ['a', '1', 'true'])
  assert.deepEqual(claimStrings(null), [])
  assert.equal(claimStrings(undefined), undefined)
})
