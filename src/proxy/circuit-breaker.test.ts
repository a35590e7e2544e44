import { test } from 'node:test'
import assert from 'node:assert/strict'
import { UpstreamLoad } from './circuit-breaker.js'

test('max_requests: at most that many in flight, for pools and h2c alike', () => {
  for (const pooled of [true, false]) {
    const load = new UpstreamLoad({ maxConnections: 100, maxPendingRequests: 100, maxRequests: 2 }, pooled)
    load.inFlight = 1
    assert.equal(load.admits(), true)
    load.inFlight = 2
    assert.equal(load.admits(), false)
  }
})

test('max_pending_requests: a full queue refuses only while every allowed connection is busy', () => {
  const load = new UpstreamLoad({ maxConnections: 2, maxPendingRequests: 2, maxRequests: 1024 }, true)
  // Two requests on connections, two waiting: full.
  load.inFlight = 4
  load.busy = 2
  load.waiting = 2
  assert.equal(load.admits(), false)
  // One waiting: room in the queue.
  load.waiting = 1
  assert.equal(load.admits(), true)
  // Two waiting but only one connection busy: the waiting ones are connecting, one more may join.
  load.waiting = 2
  load.busy = 1
  assert.equal(load.admits(), true)
  // Answered requests (a route timeout) still in the pool's queue keep their places.
  load.inFlight = 2
  load.busy = 2
  load.waiting = 2
  assert.equal(load.admits(), false)
})

test('max_pending_requests 0: no request ever waits for a connection', () => {
  const load = new UpstreamLoad({ maxConnections: 1, maxPendingRequests: 0, maxRequests: 1024 }, true)
  assert.equal(load.admits(), true)
  load.inFlight = 1
  load.busy = 1
  assert.equal(load.admits(), false)
})

test('h2c (one multiplexed connection): no waiting queue to check', () => {
  const load = new UpstreamLoad({ maxConnections: 1, maxPendingRequests: 0, maxRequests: 10 }, false)
  load.inFlight = 5
  assert.equal(load.admits(), true)
})
