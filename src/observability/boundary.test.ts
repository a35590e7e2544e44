/**
 * The health and metrics listeners run their handlers inside the boundary
 * (src/shared/boundary.ts): a failing callback costs one request a 500, never the process.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createLogger } from '../shared/log.js'
import { startHealthServer } from './health.js'
import type { HealthServer } from './health.js'
import { startMetricsServer } from './metrics-server.js'
import type { MetricsServer } from './metrics-server.js'

const lines: Record<string, unknown>[] = []
const logger = createLogger('error', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })

async function expectInternalError(url: string): Promise<void> {
  const res = await fetch(url)
  assert.equal(res.status, 500)
  const requestId = res.headers.get('x-request-id') ?? ''
  assert.match(await res.text(), new RegExp(`request id ${requestId}`))
  assert.ok(lines.some((l) => l['requestId'] === requestId), 'logged with the request id')
}

void describe('health and metrics listeners: error boundary', () => {
  let health: HealthServer
  let metrics: MetricsServer
  let statusFails = false
  let exposition: () => Promise<string> = () => Promise.resolve('up 1\n')
  before(async () => {
    health = await startHealthServer({
      address: '127.0.0.1:0',
      logger,
      checks: () => [],
      status: () => {
        if (statusFails) throw new Error('injected fault (status)')
        return {}
      },
    })
    health.markStarted()
    metrics = await startMetricsServer({ address: '127.0.0.1:0', logger, exposition: () => exposition() })
  })
  after(async () => {
    await health.close()
    await metrics.close()
  })

  void it('health: a status callback that throws (in the answer to an asynchronous check) is a 500; the next request is served', async () => {
    statusFails = true
    await expectInternalError(`${health.url}/status`)
    statusFails = false
    assert.equal((await fetch(`${health.url}/status`)).status, 200)
    assert.equal((await fetch(`${health.url}/healthz`)).status, 200)
  })

  void it('metrics: an exposition that throws synchronously is a 500; the next request is served', async () => {
    exposition = () => {
      throw new Error('injected fault (thrown)')
    }
    await expectInternalError(`${metrics.url}/metrics`)
    exposition = () => Promise.resolve('up 1\n')
    const res = await fetch(`${metrics.url}/metrics`)
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'up 1\n')
  })

  void it('metrics: an exposition that rejects keeps its own answer', async () => {
    exposition = () => Promise.reject(new Error('collect failed'))
    const res = await fetch(`${metrics.url}/metrics`)
    assert.equal(res.status, 500)
    assert.equal(await res.text(), 'metrics could not be collected\n')
    exposition = () => Promise.resolve('up 1\n')
    assert.equal((await fetch(`${metrics.url}/metrics`)).status, 200)
  })
})
