import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLogger } from '../shared/log.js'
import { createAccessLogger } from './access-log.js'
import type { AccessEntry } from './access-log.js'

const entry: AccessEntry = {
  requestId: 'rid',
  method: 'GET',
  authority: 'app.example.com',
  path: '/x',
  query: '?a=1',
  headers: { 'user-agent': 'ua', referer: 'https://r/', cookie: '_pomerium=secret', authorization: 'Bearer tok', 'x-team': 'eng' },
  clientIp: '10.0.0.1',
  forwardedFor: '1.2.3.4',
  startedAt: Date.now() - 5,
  status: 200,
  details: 'via_upstream',
  bytes: 12,
  upstreamCluster: 'route-x',
  clusterStatName: 'x',
}

function run(fields: readonly string[], level = 'info'): Record<string, unknown>[] {
  const out: string[] = []
  const log = createLogger(level, { write: (s: string) => void out.push(s) })
  createAccessLogger(fields, log)(entry)
  return out.map((l) => JSON.parse(l) as Record<string, unknown>)
}

test('the default access log fields are Pomerium\'s, with service envoy', () => {
  const [line] = run([])
  assert.ok(line)
  assert.equal(line['service'], 'envoy')
  assert.equal(line['msg'], 'http-request')
  for (const f of ['upstream-cluster', 'method', 'authority', 'path', 'user-agent', 'referer', 'forwarded-for', 'request-id', 'duration', 'size', 'response-code', 'response-code-details']) {
    assert.ok(f in line, `missing ${f}`)
  }
  assert.equal(line['ip'], undefined, 'ip is not a default field')
  assert.equal(line['response-code'], 200)
})

test('access_log_fields chooses the fields; headers never show cookies or credentials', () => {
  const [line] = run(['ip', 'query', 'headers', 'headers.X-Team', 'headers.Cookie'])
  assert.ok(line)
  assert.equal(line['ip'], '10.0.0.1')
  assert.equal(line['query'], 'a=1')
  assert.equal(line['headers.X-Team'], 'eng')
  const text = JSON.stringify(line)
  assert.ok(!text.includes('secret') && !text.includes('Bearer tok'), text)
  assert.equal(line['method'], undefined)
})

test('nothing is logged below info', () => {
  assert.equal(run([], 'warn').length, 0)
})
