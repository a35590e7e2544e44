import assert from 'node:assert/strict'
import { createHmac, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { signSessionHandle, verifySessionHandle } from './session-handle.js'
import type { SessionHandle } from './session-handle.js'

const key = randomBytes(32)
const now = 1_800_000_000
const handle: SessionHandle = {
  iss: 'authn.example.com',
  sub: 'user-1',
  aud: ['authn.example.com', 'app.example.com'],
  iat: now,
  exp: now + 14 * 3600,
  jti: 'session-1',
  idp_id: 'idp-1',
  databroker_record_version: 7,
}

test('a handle round-trips', () => {
  assert.deepEqual(verifySessionHandle(signSessionHandle(handle, key), key, now), handle)
})

test('hostile: tampered, truncated, foreign-key, expired and re-algorithmed handles are "no session" (hostile-input case: sessions / cookies / csrf; tokens / jwt)', () => {
  const good = signSessionHandle(handle, key)
  const [h, p, s] = good.split('.') as [string, string, string]
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  const hs = (input: string, k: Buffer): string => createHmac('sha256', k).update(input).digest('base64url')
  const forgedPayload = b64({ ...handle, sub: 'admin' })
  const cases: [string, string][] = [
    ['garbage', 'AAAA'],
    ['empty', ''],
    ['truncated', good.slice(0, -5)],
    ['payload swapped', `${h}.${forgedPayload}.${s}`],
    ['foreign key', signSessionHandle(handle, randomBytes(32))],
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`],
    ['alg none with our signature', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.${s}`],
    ['kid header added', `${b64({ alg: 'HS256', typ: 'JWT', kid: '../../key' })}.${p}.${hs(`${b64({ alg: 'HS256', typ: 'JWT', kid: '../../key' })}.${p}`, key)}`],
    ['expired', signSessionHandle({ ...handle, exp: now - 120 }, key)],
    ['issued in the future', signSessionHandle({ ...handle, iat: now + 3600 }, key)],
    ['missing session id', signSessionHandle({ ...handle, jti: '' }, key)],
    ['payload not JSON', `${h}.${Buffer.from('{nope').toString('base64url')}.${hs(`${h}.${Buffer.from('{nope').toString('base64url')}`, key)}`],
    ['huge', `${h}.${'A'.repeat(20000)}.${s}`],
  ]
  for (const [name, token] of cases) assert.equal(verifySessionHandle(token, key, now), undefined, name)
})
