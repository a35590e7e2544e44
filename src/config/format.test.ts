import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatIssue, formatIssues } from './format.js'
import type { ConfigIssue } from './types.js'

const base: ConfigIssue = { severity: 'error', file: '/etc/p/config.yaml', line: 12, column: 7, path: 'routes[3].from', value: 'ftp://x', message: 'expected an https:// URL' }

test('formatIssue renders compiler-style lines', () => {
  assert.equal(formatIssue(base), '/etc/p/config.yaml:12:7: error: routes[3].from (`ftp://x`): expected an https:// URL')
  assert.equal(formatIssue(base, { cwd: '/etc/p' }), 'config.yaml:12:7: error: routes[3].from (`ftp://x`): expected an https:// URL')
  assert.equal(
    formatIssue({ ...base, severity: 'warning', line: undefined, column: undefined, value: undefined, path: 'cookie_nmae', message: 'unknown setting' }),
    '/etc/p/config.yaml: warning: cookie_nmae: unknown setting',
  )
  assert.equal(formatIssue({ ...base, file: undefined, line: undefined, column: undefined, path: 'TIMEOUT_READ', value: 'x' }), 'environment: error: TIMEOUT_READ (`x`): expected an https:// URL')
  assert.equal(formatIssue({ ...base, value: { a: [1, 2] } }).includes('(`{"a":[1,2]}`)'), true)
  assert.equal(formatIssue({ ...base, value: 'x'.repeat(200) }).includes('…'), true)
  assert.equal(formatIssues([base, base]).split('\n').length, 2)
})
