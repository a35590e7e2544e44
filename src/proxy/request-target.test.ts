import assert from 'node:assert/strict'
import { test } from 'node:test'
import { normaliseTarget, removeDotSegments } from './request-target.js'

const opts = { normalizePath: true, mergeSlashes: true, escapedSlashes: 'reject' as const }

function path(raw: string): string {
  const r = normaliseTarget(raw, opts)
  assert.equal(r.kind, 'ok', `${raw} should be accepted`)
  return r.kind === 'ok' ? r.path + r.query : ''
}

function bad(raw: string, o = opts): void {
  assert.equal(normaliseTarget(raw, o).kind, 'bad', `${raw} should be refused`)
}

test('dot segments, encoded dots and repeated slashes are resolved before matching', () => {
  assert.equal(path('/public/../admin'), '/admin')
  assert.equal(path('/public/%2e%2e/admin'), '/admin')
  assert.equal(path('/public/%2E%2E/admin'), '/admin')
  assert.equal(path('//admin'), '/admin')
  assert.equal(path('/./admin'), '/admin')
  assert.equal(path('/admin/.'), '/admin/')
  assert.equal(path('/%61dmin'), '/admin')
  assert.equal(path('/a/b/../../../x'), '/x')
  assert.equal(path('/a\\..\\admin'), '/admin', 'a raw backslash is a separator')
})

test('the query never takes part in normalisation', () => {
  assert.equal(path('/admin?redirect=/public/../x'), '/admin?redirect=/public/../x')
  assert.equal(path('/admin?/public'), '/admin?/public')
})

test('escaped slashes, NUL, bad escapes, fragments, non-ASCII and non-origin targets are refused', () => {
  bad('/public%2F..%2Fadmin')
  bad('/public/..%2fadmin')
  bad('/a%5Cb')
  bad('/admin%00')
  bad('/%zz')
  bad('/abc%')
  bad('/public#/../admin')
  bad('/caf\u00e9')
  bad('http://pub.example.com/')
  bad('*')
  bad('')
})

test('path_with_escaped_slashes_action keep / unescape-and-forward / unescape-and-redirect', () => {
  assert.deepEqual(normaliseTarget('/a%2fb', { ...opts, escapedSlashes: 'keep' }), { kind: 'ok', path: '/a%2Fb', query: '' })
  assert.deepEqual(normaliseTarget('/a%2fb', { ...opts, escapedSlashes: 'unescape-and-forward' }), { kind: 'ok', path: '/a/b', query: '' })
  assert.deepEqual(normaliseTarget('/a%2fb?q', { ...opts, escapedSlashes: 'unescape-and-redirect' }), { kind: 'redirect', location: '/a/b?q' })
})

test('merge_slashes and normalize_path can be turned off', () => {
  assert.deepEqual(normaliseTarget('//a/../b', { ...opts, mergeSlashes: false, normalizePath: false }), { kind: 'ok', path: '//a/../b', query: '' })
  assert.deepEqual(normaliseTarget('/x//y', { ...opts, mergeSlashes: false }), { kind: 'ok', path: '/x//y', query: '' })
})

test('reserved characters other than slashes stay encoded', () => {
  assert.equal(path('/a%3fb'), '/a%3Fb')
  assert.equal(path('/a%20b'), '/a%20b')
})

test('removeDotSegments follows RFC 3986 5.2.4', () => {
  assert.equal(removeDotSegments('/a/b/c/./../../g'), '/a/g')
  assert.equal(removeDotSegments('/..'), '/')
  assert.equal(removeDotSegments('/a/..'), '/')
})

test('a fragment after the query is refused too', () => {
  bad('/pub/x?a#/../admin')
})
