/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** Parse and compile errors: every problem reported, each at its key path. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { alice, input, ppl, pplErrors } from './test-helpers.js'

const P = 'routes[2].policy'

test('structure errors name the key path', () => {
  assert.deepEqual(pplErrors('just a string', P), [`${P}: expected a policy object or a list of them, got a string`])
  assert.deepEqual(pplErrors(null as unknown as object, P), [`${P}: expected a policy object or a list of them, got null`])
  assert.deepEqual(pplErrors('[{allow: {or: [{accept: true}]}}, 3]', P), [`${P}[1]: expected a rule object ({allow: ...} or {deny: ...}), got a number`])
  assert.deepEqual(pplErrors('{permit: {or: []}}', P), [`${P}.permit: unknown key "permit": a rule object has only allow and deny`])
  assert.deepEqual(pplErrors('{}', P), [`${P}: expected allow or deny in the rule object`])
  assert.deepEqual(pplErrors('allow: [accept]', P), [`${P}.allow: expected an object of operators (and, or, not, nor), got a list`])
  assert.deepEqual(pplErrors('allow: {or: {accept: true}}', P), [`${P}.allow.or: expected a list of criteria, got an object`])
  assert.deepEqual(pplErrors('allow: {or: }', P), [`${P}.allow.or: expected a list of criteria, got null`])
  assert.deepEqual(pplErrors('allow: {and: [accept]}', P), [`${P}.allow.and[0]: expected a criterion object ({name: data}), got a string`])
  assert.deepEqual(pplErrors('allow: {and: [{accept: true, reject: true}]}', P), [`${P}.allow.and[0]: a criterion object has exactly one key, this one has 2 (accept, reject)`])
  assert.deepEqual(pplErrors('allow: {and: [{}]}', P), [`${P}.allow.and[0]: a criterion object has exactly one key, this one has 0`])
})

test('operators cannot be nested inside criteria', () => {
  assert.deepEqual(pplErrors('allow: {and: [{accept: true}, {or: [{reject: true}]}]}', P), [
    `${P}.allow.and[1].or: operators cannot be nested inside a criterion list; write another rule instead (rules are OR-ed)`,
  ])
})

test('unknown, unsupported and misused criteria', () => {
  assert.deepEqual(pplErrors('allow: {or: [{emails: {is: a@b.c}}]}', P), [`${P}.allow.or[0].emails: unknown criterion "emails"`])
  assert.deepEqual(pplErrors('allow: {or: [{ssh_username: root}]}', P), [`${P}.allow.or[0].ssh_username: criterion "ssh_username" is not supported: SSH routes are not supported`])
  assert.deepEqual(pplErrors('allow: {or: [{email/x: a@b.c}]}', P), [`${P}.allow.or[0].email/x: email takes no sub-path (write "email", not "email/x")`])
  assert.deepEqual(pplErrors('allow: {or: [{claim: admins}]}', P), [`${P}.allow.or[0].claim: claim needs a claim name: claim/<name>, such as claim/groups`])
  assert.deepEqual(pplErrors('allow: {or: [{claim/: admins}]}', P), [`${P}.allow.or[0].claim/: claim needs a claim name: claim/<name>, such as claim/groups`])
  assert.deepEqual(pplErrors({ allow: { or: [{ ['__proto__']: 1 }] } }, P).length, 1)
})

test('matcher errors: unknown operators, wrong types, at the operator key', () => {
  assert.deepEqual(pplErrors('allow: {or: [{email: {equals: a@b.c}}]}', P), [
    `${P}.allow.or[0].email.equals: unknown string matcher operator "equals": expected is, not, starts_with, ends_with, contains, in, not_in`,
  ])
  assert.deepEqual(pplErrors('allow: {or: [{email: {in: a@b.c}}]}', P), [`${P}.allow.or[0].email.in: in expects a list of strings, got a string`])
  assert.deepEqual(pplErrors('allow: {or: [{email: {in: [a@b.c, 5]}}]}', P), [`${P}.allow.or[0].email.in[1]: expected a string, got a number (quote it)`])
  assert.deepEqual(pplErrors('allow: {or: [{user: 12345}]}', P), [
    `${P}.allow.or[0].user: expected a string or a string matcher object (is, not, starts_with, ends_with, contains, in, not_in), got a number`,
  ])
  assert.deepEqual(pplErrors('allow: {or: [{email: [a@b.c]}]}', P), [
    `${P}.allow.or[0].email: expected a string or a string matcher object (is, not, starts_with, ends_with, contains, in, not_in), got a list; for a list of values write {in: [...]}`,
  ])
  assert.deepEqual(pplErrors('allow: {or: [{email: {}}]}', P), [
    `${P}.allow.or[0].email: the matcher has no operators; expected one of is, not, starts_with, ends_with, contains, in, not_in`,
  ])
  assert.deepEqual(pplErrors('allow: {or: [{claim/groups: {contains: adm}}]}', P), [
    `${P}.allow.or[0].claim/groups.contains: unknown list matcher operator "contains": expected has, is, exclude`,
  ])
  assert.deepEqual(pplErrors('allow: {or: [{claim/groups: {has: [a]}}]}', P), [`${P}.allow.or[0].claim/groups.has: expected a string, number or boolean, got a list`])
  assert.deepEqual(pplErrors('allow: {or: [{email: {is: "a@b.c "}}]}', P), [`${P}.allow.or[0].email.is: "a@b.c " has leading or trailing whitespace, so it could never match`])
})

test('criteria that ignore their data refuse false, which would still apply them', () => {
  assert.deepEqual(pplErrors('allow: {or: [{authenticated_user: false}]}', P), [
    `${P}.allow.or[0].authenticated_user: authenticated_user ignores its value, so false would still apply it; write true, or remove the criterion`,
  ])
  for (const ok of ['accept: true', 'accept: 1', 'accept: {}', 'accept: ']) assert.deepEqual(pplErrors(`allow: {or: [{${ok}}]}`), [], ok)
})

test('every error is reported, not just the first', () => {
  const errors = pplErrors('[{allow: {or: [{emails: x}, {user: 5}]}, deny: {xor: []}}, {allow: {and: [{source_ip: nope}]}}]', P)
  assert.deepEqual(
    errors.map((e) => e.slice(0, e.indexOf(':'))),
    [`${P}[0].deny.xor`, `${P}[0].allow.or[0].emails`, `${P}[0].allow.or[1].user`, `${P}[1].allow.and[0].source_ip`],
  )
})

test('"action" is tolerated inside an operator object, as in Pomerium', () => {
  assert.equal(ppl('allow: {action: allow, or: [{accept: true}]}').evaluate(input(undefined)).allow, true)
})

test('an empty operator list contributes nothing (and: [] does not allow everyone)', () => {
  const e = ppl('allow: {and: []}').evaluate(input(alice))
  assert.deepEqual(e, { allow: false, deny: false, allowReasons: [], denyReasons: [] })
  assert.equal(ppl('{allow: {or: [{accept: true}]}, deny: {and: []}}').evaluate(input(alice)).deny, false)
  assert.equal(ppl('[]').evaluate(input(alice)).allow, false)
})

test('the default path is the document root', () => {
  assert.deepEqual(pplErrors('allow: {or: [{nope: 1}]}'), ['allow.or[0].nope: unknown criterion "nope"'])
  assert.deepEqual(pplErrors('[{allow: {or: [{nope: 1}]}}]'), ['[0].allow.or[0].nope: unknown criterion "nope"'])
})
