import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compileRegex, unsafeRegexReason } from './routes.js'

test('route regexes with nested repetition, backreferences or lookaround are refused', () => {
  for (const r of ['(a+)+', '(x*)*', '((ab)+c)+', '(a{2,})*', '(a)\\1', '(?=x)', '(?<!x)y']) {
    assert.notEqual(unsafeRegexReason(r), undefined, r)
    assert.equal(typeof compileRegex(r, true), 'string', r)
  }
})

test('ordinary RE2 patterns compile, anchored, with RE2 named groups', () => {
  for (const r of ['/api/(v[0-9]+)/.*', '/r/[0-9]+', '(ab)+', '\\(a+\\)+', '[(a+)]+', '(a?)+']) assert.equal(unsafeRegexReason(r), undefined, r)
  const re = compileRegex('/u/(?P<id>[0-9]+)', true)
  assert.ok(re instanceof RegExp)
  assert.equal(re.exec('/u/42')?.groups?.['id'], '42')
  assert.equal(re.test('/u/42/x'), false)
})
