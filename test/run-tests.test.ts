/** The test runner's phase summary (scripts/run-tests.ts): one combined line, failing on any failure or crash. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { summary, tapTotals } from '../scripts/run-tests.js'

test('the totals are the last top-level pass and fail lines of the TAP stream', () => {
  const tap = ['    # pass 3', '# pass 1', '# fail 0', 'ok 1 - x', '# pass 58', '# fail 2', ''].join('\n')
  assert.deepEqual(tapTotals(tap), { passed: 58, failed: 2 })
  assert.equal(tapTotals('ok 1 - no summary\n'), undefined)
})

test('the summary adds the phases and fails on a failed test or an abnormal runner exit', () => {
  const unit = { name: 'unit', passed: 10, failed: 0, seconds: 5, code: 0 }
  const int = { name: 'integration', passed: 4, failed: 1, seconds: 7, code: 1 }
  const ok = summary([unit])
  assert.equal(ok.ok, true)
  assert.match(ok.line, /^tests: 10 passed, 0 failed in 5 s \(unit 10\/0 in 5 s; passed\/failed\)$/)
  const failed = summary([unit, int])
  assert.equal(failed.ok, false)
  assert.match(failed.line, /^tests: 14 passed, 1 failed in 12 s /)
  const crashed = summary([{ ...unit, code: 1 }])
  assert.equal(crashed.ok, false)
  assert.match(crashed.line, /runner exit 1/)
})
