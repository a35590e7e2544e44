import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLogger, createUnredactedLogger, toPinoLevel } from './log.js'

function capture(): { lines: () => Record<string, unknown>[]; dest: { write: (s: string) => void } } {
  const out: string[] = []
  return { lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>), dest: { write: (s: string) => void out.push(s) } }
}

test('the general logger redacts cookies, authorization values and secrets', () => {
  const c = capture()
  const log = createLogger('info', c.dest)
  log.info({ headers: { cookie: '_pomerium=abc', authorization: 'Bearer t', accept: '*/*' }, shared_secret: 's3cret' }, 'x')
  const text = JSON.stringify(c.lines())
  assert.ok(!text.includes('abc') && !text.includes('Bearer t') && !text.includes('s3cret'), text)
  assert.ok(text.includes('*/*'))
})

test('the unredacted logger writes to the same destination at the same level', () => {
  const c = capture()
  const log = createLogger('warn', c.dest)
  const access = createUnredactedLogger(log, { service: 'envoy' })
  access.info('hidden at warn')
  access.warn({ path: '/x' }, 'shown')
  assert.deepEqual(c.lines().map((l) => [l['service'], l['msg'], l['path']]), [['envoy', 'shown', '/x']])
})

test('Pomerium level names map onto pino levels', () => {
  assert.equal(toPinoLevel('WARNING'), 'warn')
  assert.equal(toPinoLevel('panic'), 'fatal')
  assert.equal(toPinoLevel('disabled'), 'silent')
})
