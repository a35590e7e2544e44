import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { createLogger } from './log.js'
import { decodeSecret, resolveSecrets } from './secrets.js'

test('configured secrets are decoded; missing ones are random per process, with a warning', () => {
  const lines: string[] = []
  const log = createLogger('info', { write: (s: string) => void lines.push(s) })
  const shared = randomBytes(32)
  const a = resolveSecrets({ shared_secret: shared.toString('base64') }, log)
  assert.deepEqual(a.sharedSecret, shared)
  assert.equal(a.cookieSecret.length, 32)
  assert.equal(lines.length, 1)
  assert.match(lines[0] ?? '', /cookie_secret is not set/)
  const b = resolveSecrets({ shared_secret: shared.toString('base64') }, log)
  assert.notDeepEqual(b.cookieSecret, a.cookieSecret)
  assert.ok(!lines.join('').includes(shared.toString('base64')), 'secrets are never logged')
})

test('only 32-byte base64 values are secrets', () => {
  assert.equal(decodeSecret(randomBytes(16).toString('base64')), undefined)
  assert.equal(decodeSecret(''), undefined)
  assert.equal(decodeSecret(42), undefined)
  assert.equal(decodeSecret(randomBytes(32).toString('base64url'))?.length, 32)
})
