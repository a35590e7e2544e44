import assert from 'node:assert/strict'
import { test } from 'node:test'
import { normaliseTarget, parameterAmbiguity, pathAmbiguity, removeDotSegments, withoutSegmentParameters } from './request-target.js'
import type { TargetOptions } from './request-target.js'

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

/** The path as the proxy matches it, then whether a lenient upstream could read it as another. */
function ambiguity(raw: string, o: TargetOptions = opts): string | undefined {
  const r = normaliseTarget(raw, o)
  assert.equal(r.kind, 'ok', `${raw} should pass normalisation`)
  return r.kind === 'ok' ? pathAmbiguity(r.path) : undefined
}

test('dot segments with ";" parameters are ambiguous (Tomcat and Spring strip the parameters)', () => {
  for (const raw of ['/public/..;/admin', '/.;/admin', '/public/..;x=1/admin', '/public/%2e%2e;/admin', '/public/.%2e;jsessionid=a/admin', '/public/..;', '/;x/admin', '/public/..%3b/admin']) {
    assert.match(ambiguity(raw) ?? '', /dot segment/, raw)
  }
})

test('an encoded "%" that a second decoding makes a dot segment, slash, backslash or NUL is ambiguous', () => {
  for (const raw of ['/public/%252e%252e/admin', '/public/%252E%252E/admin', '/public/%25%32%65%25%32%65/admin', '/%252e/admin', '/public/..%252fadmin', '/public/%255cadmin', '/public%252F..%252Fadmin', '/public/a%2500', '/public/%25252e%25252e/admin', '/public/%252e%252e;x/admin']) {
    assert.ok(ambiguity(raw) !== undefined, raw)
  }
  assert.equal(ambiguity('/public/%2525252525252e'), 'too many levels of percent-encoding')
})

test('overlong UTF-8 sequences are ambiguous, also double-encoded', () => {
  for (const raw of ['/public/%c0%ae%c0%ae/admin', '/public/%C0%AE', '/public/%c1%9c', '/public/%e0%80%ae%e0%80%ae/admin', '/public/%f0%80%80%ae', '/public/%25c0%25ae%25c0%25ae/admin']) {
    assert.equal(ambiguity(raw), 'an overlong UTF-8 sequence', raw)
  }
})

test('ordinary ";", "%25" and UTF-8 in paths are not ambiguous', () => {
  for (const raw of ['/public/x', '/admin;jsessionid=abc', '/public/a;b/c', '/public/;jsessionid=abc', '/public/100%25', '/public/100%25off', '/public/report%252ecsv', '/public/%2541', '/public/caf%c3%a9', '/public/%e2%82%ac', '/public/%f0%9f%98%80', '/public/a%20b', '/public/..%2e;x']) {
    assert.equal(ambiguity(raw), undefined, raw)
  }
  // Kept escaped slashes are the business of path_with_escaped_slashes_action, not of this check.
  assert.equal(ambiguity('/public/a%2Fb%2541', { ...opts, escapedSlashes: 'keep' }), undefined)
  assert.notEqual(ambiguity('/public/a%2Fb%252F', { ...opts, escapedSlashes: 'keep' }), undefined)
})

test('with escaped slashes kept, a dot segment beside one is ambiguous: `../admin` to an upstream that decodes, then resolves', () => {
  const keep = { ...opts, escapedSlashes: 'keep' as const }
  for (const p of ['/public/..%2Fadmin', '/public/x%2F..%2Fadmin', '/public/.%2Fadmin', '/public/..%5cadmin', '/public/%2e%2e%2Fadmin', '/public/x%2F..']) {
    assert.equal(ambiguity(p, keep), 'a dot segment beside an escaped slash', p)
  }
  assert.notEqual(ambiguity('/public/..;x%2Fadmin', keep), undefined)
  assert.equal(ambiguity('/public/a..b%2Fc', keep), undefined)
  assert.equal(ambiguity('/public/v1.2%2F..x', keep), undefined)
})

test('withoutSegmentParameters: each segment loses its ";" parameters, escaped ones too', () => {
  assert.equal(withoutSegmentParameters('/admin/secret'), undefined)
  assert.equal(withoutSegmentParameters('/admin;x/secret'), '/admin/secret')
  assert.equal(withoutSegmentParameters('/admin;x=1;y=2/b;c/d'), '/admin/b/d')
  assert.equal(withoutSegmentParameters('/app;jsessionid=abc'), '/app')
  assert.equal(withoutSegmentParameters(path('/admin%3bx/secret')), '/admin/secret')
})

test('";" parameters on ordinary segments are ambiguous only when stripping them changes the outcome', () => {
  const seen: string[] = []
  const same = (stripped: string): boolean => {
    seen.push(stripped)
    return true
  }
  assert.equal(parameterAmbiguity('/app;jsessionid=abc', same), undefined)
  assert.equal(parameterAmbiguity('/plain/path', same), undefined)
  assert.deepEqual(seen, ['/app'], 'the outcome is only compared for paths with parameters')
  assert.match(parameterAmbiguity('/admin;x/secret', (stripped) => stripped !== '/admin/secret') ?? '', /";" parameters/)
  assert.match(parameterAmbiguity('/admin%3Bx', (stripped) => stripped !== '/admin') ?? '', /";" parameters/)
})
