import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { open, seal } from './sealed.js'

const key = randomBytes(32)

test('sealed values open with the same key and purpose, and are different every time', () => {
  const a = seal('{"session":"s1"}', key, 'callback')
  assert.equal(open(a, key, 'callback'), '{"session":"s1"}')
  assert.notEqual(seal('{"session":"s1"}', key, 'callback'), a)
})

test('hostile: another key, another purpose, a flipped bit, truncation or junk open to nothing', () => {
  const a = seal('secret', key, 'callback')
  const raw = Buffer.from(a, 'base64url')
  raw[30] = (raw[30] ?? 0) ^ 1
  for (const [name, value, k, ad] of [
    ['other key', a, randomBytes(32), 'callback'],
    ['other purpose', a, key, 'state'],
    ['bit flipped', raw.toString('base64url'), key, 'callback'],
    ['truncated', a.slice(0, 20), key, 'callback'],
    ['not base64url', 'a+b/c==', key, 'callback'],
    ['huge', 'A'.repeat(20000), key, 'callback'],
  ] as const) {
    assert.equal(open(value, k, ad), undefined, name)
  }
})
