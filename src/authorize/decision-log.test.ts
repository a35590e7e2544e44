import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import pino from 'pino'
import { routeConfig } from '../../test/fixtures/route-config.js'
import type { Session } from '../session/session-store.js'
import { createDecisionLog } from './decision-log.js'
import type { CheckRequest } from './types.js'

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>)
      cb()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

const request: CheckRequest = {
  requestId: 'r1',
  route: routeConfig({}),
  method: 'GET',
  host: 'app.example.com',
  authority: 'app.example.com',
  path: '/x',
  query: '?a=1',
  headers: { 'user-agent': 'curl', cookie: '_pomerium=secret', authorization: 'Bearer secret' },
  clientIp: '10.0.0.1',
  scheme: 'https',
}
const session = { id: 's1', userId: 'u1', claims: { email: 'a@example.com' }, idToken: 'eyJ.secret.token' } as unknown as Session
const evaluation = { allow: false, deny: false, allowReasons: ['email-unauthorized'], denyReasons: [] }

test('authorize log: the configured fields, the why-lists, and never a credential', async () => {
  const { logger, lines } = capture()
  const log = createDecisionLog(logger, ['request-id', 'query', 'email', 'headers', 'headers.User-Agent', 'headers.Cookie', 'id-token'])
  assert.ok(log)
  log(request, session, evaluation)
  await new Promise((r) => setImmediate(r))
  const line = lines[0] as Record<string, unknown>
  assert.equal(line['msg'], 'authorize check')
  assert.equal(line['service'], 'authorize')
  assert.equal(line['request-id'], 'r1')
  assert.equal(line['query'], 'a=1')
  assert.equal(line['email'], 'a@example.com')
  assert.equal(line['headers.User-Agent'], 'curl')
  assert.equal(line['headers.Cookie'], undefined)
  assert.deepEqual(line['headers'], { 'user-agent': 'curl' })
  assert.equal(line['id-token'], '[present]')
  assert.equal(line['allow'], false)
  assert.deepEqual(line['allow-why-false'], ['email-unauthorized'])
  assert.deepEqual(line['deny-why-false'], [])
  assert.ok(!JSON.stringify(line).includes('secret'))
  assert.equal(line['path'], undefined, 'only the configured fields')
})

test('authorize log: nothing is built when info lines are off', () => {
  const { logger } = capture()
  logger.level = 'error'
  assert.equal(createDecisionLog(logger, ['request-id']), undefined)
})
