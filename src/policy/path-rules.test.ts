/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** Whether a policy can tell two paths apart: only its http_path criteria read the path. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compilePathComparison } from './path-rules.js'

test('a policy without http_path never tells paths apart', () => {
  assert.equal(compilePathComparison(undefined), undefined)
  assert.equal(compilePathComparison(null), undefined)
  assert.equal(compilePathComparison({ allow: { or: [{ email: { is: 'a@example.com' } }, { http_method: 'GET' }] } }), undefined)
})

test('http_path criteria anywhere (allow or deny, any operator, list form) tell paths apart when one matches and the other does not', () => {
  const differs = compilePathComparison([
    { allow: { or: [{ accept: true }] } },
    { deny: { nor: [{ email: { is: 'x@example.com' } }], or: [{ http_path: { is: '/admin' } }, { http_path: { starts_with: '/admin/' } }] } },
  ])
  assert.ok(differs)
  assert.equal(differs('/admin;x', '/admin'), true)
  assert.equal(differs('/admin;x/y', '/admin/y'), true)
  assert.equal(differs('/app;jsessionid=1', '/app'), false, 'neither matches')
  assert.equal(differs('/admin/a;jsessionid=1', '/admin/a'), false, 'both match')
  const bare = compilePathComparison({ allow: { and: [{ http_path: '/exact' }] } })
  assert.equal(bare?.('/exact;v=1', '/exact'), true)
})

test('a policy that does not compile tells every two paths apart (fail closed)', () => {
  assert.equal(compilePathComparison({ allow: { or: [{ http_path: { bogus: 1 } }] } })?.('/a', '/a'), true)
  assert.equal(compilePathComparison({ allow: 'nonsense' })?.('/a', '/b'), true)
})
