import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Pattern } from '../shared/pattern.js'
import { compileRegex } from './routes.js'

test('route regexes are RE2: backreferences and lookaround are refused with the reason', () => {
  for (const r of ['(a)\\1', '(?=x)', '(?<!x)y']) {
    const compiled = compileRegex(r, true)
    assert.ok(typeof compiled === 'string', r)
    assert.match(compiled, /^invalid regular expression: /)
  }
})

test('RE2 patterns compile, anchored, including named groups and nested repetition', () => {
  for (const r of ['/api/(v[0-9]+)/.*', '/u/(?P<id>[0-9]+)', '(a+)+', '((ab)+c)+']) assert.ok(compileRegex(r, true) instanceof Pattern, r)
  const re = compileRegex('/u/(?P<id>[0-9]+)', true)
  assert.ok(re instanceof Pattern)
  assert.equal(re.test('/u/42'), true)
  assert.equal(re.test('/u/42/x'), false)
})
