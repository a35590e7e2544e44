import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Pattern, toRe2jsReplacement } from './pattern.js'

function compile(source: string, anchored: boolean): Pattern {
  const p = Pattern.compile(source, anchored)
  assert.ok(p instanceof Pattern, typeof p === 'string' ? p : '')
  return p
}

test('anchored patterns match the whole path; RE2 named groups are accepted', () => {
  const p = compile('/u/(?P<id>[0-9]+)', true)
  assert.equal(p.test('/u/42'), true)
  assert.equal(p.test('/u/42/x'), false)
  assert.equal(p.test('/x/u/42'), false)
  assert.equal(compile('/a|/b', true).test('/a/c'), false)
})

test('RE2 refuses backreferences and lookaround, as Pomerium does', () => {
  for (const bad of ['(a)\\1', '(?=x)', '(?<!x)y', '(unclosed']) assert.equal(typeof Pattern.compile(bad, true), 'string', bad)
})

test('nested repetition is matched in linear time instead of being refused', () => {
  const p = compile('(a+)+$', true)
  assert.equal(p.test(`${'a'.repeat(5000)}b`), false)
  assert.equal(p.test('aaaa'), true)
})

test('replacements use Envoy\'s \\N syntax and replace every match; $ stays literal', () => {
  assert.equal(compile('^/api/(v[0-9]+)/(.*)$', false).replacer('/\\2/\\1')('/api/v2/items'), '/items/v2')
  assert.equal(compile('/old', false).replacer('/new')('/old/x/old'), '/new/x/new')
  assert.equal(compile('^/p/(.*)$', false).replacer('/cost$5/\\1')('/p/x'), '/cost$5/x')
  assert.equal(toRe2jsReplacement('a\\\\b'), 'a\\b')
  assert.equal(compile('x', false).replacer('\\\\')('axb'), 'a\\b')
})
