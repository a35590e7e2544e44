/**
 * Forwarding integration tests: streaming bodies with backpressure and upstream keep-alive pools.
 *
 * The 1 GiB transfers are made decisive by stalling the receiving side for a moment at the start:
 * a proxy that ignored backpressure would read the sender at full loopback speed during the stall
 * and buffer hundreds of megabytes, which shows up in the child's peak RSS (VmHWM). Each test
 * starts a new peak, so that the download is not charged with the upload's.
 *
 * Whether a backpressure fault shows here depends on timing (how much the client has sent before
 * the proxy's first write upstream); the deterministic check of the upload side is
 * src/proxy/front.test.ts.
 */
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { Upstream } from '../fixtures/upstreams.js'
import { peakRssBytes, resetPeakRss, sleep, startNamedUpstream } from './forwarding-helpers.js'
import type { NamedUpstream } from './forwarding-helpers.js'

const GIB = 1024 * 1024 * 1024
const MAX_PEAK_RSS = 400 * 1024 * 1024
const STALL_MS = 1500

/** A Readable producing `total` bytes from one reused 64 KiB buffer (never allocates the whole). */
function generated(total: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 'u')
  let left = total
  return new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (left <= 0) {
        this.push(null)
        return
      }
      const n = Math.min(left, chunk.length)
      left -= n
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n))
    },
  })
}

void describe('forwarding: streaming and connection pools', () => {
  let px: PortcullisProcess
  let echo: Upstream
  let named: NamedUpstream
  let pooled: NamedUpstream

  before(async () => {
    echo = await startHttpEcho()
    named = await startNamedUpstream('sink')
    pooled = await startNamedUpstream('pooled')
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [
        { from: 'https://echo.localhost', to: echo.url, allow_public_unauthenticated_access: true, timeout: '60s' },
        { from: 'https://sink.localhost', to: named.url, allow_public_unauthenticated_access: true, timeout: '60s' },
        { from: 'https://pooled.localhost', to: pooled.url, allow_public_unauthenticated_access: true },
      ],
    })
  })
  after(async () => {
    await px?.stop()
    await echo?.close()
    await named?.close()
    await pooled?.close()
  })

  void it('streams a 1 GiB upload to a slow-starting upstream in constant memory', { timeout: 30_000 }, async (t) => {
    resetPeakRss(px)
    const target = new URL(px.url)
    const started = Date.now()
    const result = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({
        host: target.hostname,
        port: target.port,
        method: 'PUT',
        path: `/slow-upload?wait=${STALL_MS}`,
        headers: { host: 'sink.localhost', 'content-length': String(GIB), 'content-type': 'application/octet-stream' },
        agent: false,
      })
      req.setTimeout(28_000, () => req.destroy(new Error('upload timed out')))
      req.on('error', reject)
      req.on('response', (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        res.on('error', reject)
      })
      generated(GIB).pipe(req)
    })
    assert.equal(result.status, 200, result.body)
    assert.equal((JSON.parse(result.body) as { bodyLength: number }).bodyLength, GIB)
    assert.ok(Date.now() - started >= STALL_MS, 'the upstream stalled before reading')
    const peak = peakRssBytes(px)
    t.diagnostic(`portcullis peak RSS ${(peak / 1048576).toFixed(0)} MiB`)
    assert.ok(peak < MAX_PEAK_RSS, `portcullis peak RSS ${(peak / 1048576).toFixed(0)} MiB`)
  })

  void it('streams a 1 GiB download to a slow-starting client in constant memory', { timeout: 30_000 }, async (t) => {
    resetPeakRss(px)
    const target = new URL(px.url)
    const received = await new Promise<number>((resolve, reject) => {
      const req = http.request({
        host: target.hostname,
        port: target.port,
        path: `/bytes/${GIB}`,
        headers: { host: 'echo.localhost' },
        agent: false,
      })
      req.setTimeout(28_000, () => req.destroy(new Error('download timed out')))
      req.on('error', reject)
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`status ${res.statusCode}`))
          return
        }
        // Do not read at first: only backpressure keeps the proxy from buffering the upstream.
        res.pause()
        let n = 0
        res.on('data', (c: Buffer) => {
          n += c.length
        })
        res.on('end', () => resolve(n))
        res.on('error', reject)
        void sleep(STALL_MS).then(() => res.resume())
      })
      req.end()
    })
    assert.equal(received, GIB)
    const peak = peakRssBytes(px)
    t.diagnostic(`portcullis peak RSS ${(peak / 1048576).toFixed(0)} MiB`)
    assert.ok(peak < MAX_PEAK_RSS, `portcullis peak RSS ${(peak / 1048576).toFixed(0)} MiB`)
  })

  void it('reuses keep-alive upstream connections across many sequential requests', async () => {
    const before = pooled.connections
    for (let i = 0; i < 40; i++) {
      // Each call opens (and closes) its own client connection: pooling must happen in the proxy.
      const r = await request(`${px.url}/item/${i}`, { host: 'pooled.localhost' })
      assert.equal(r.status, 200)
    }
    assert.equal(pooled.hits, 40)
    const opened = pooled.connections - before
    assert.ok(opened <= 2, `upstream saw ${opened} TCP connections for 40 requests`)
  })
})
