/**
 * The internal API server's error boundary (src/shared/boundary.ts): whatever escapes a call's
 * handling, synchronously or as a rejection, costs that call a 500 with a request id that the
 * log line carries too, and the server goes on serving.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import http2 from 'node:http2'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { createLogger } from '../shared/log.js'
import { startInternalServer } from './server.js'
import type { InternalRoute, InternalServer } from './server.js'
import { deriveInternalKey, mintInternalToken } from './token.js'
import { InternalApiError } from './wire.js'

const sharedSecret = randomBytes(32)

/** A route table whose lookup itself throws for one path: a fault before any answer began. */
class FaultyRoutes extends Map<string, InternalRoute> {
  override get(path: string): InternalRoute | undefined {
    if (path === '/fault/lookup') throw new Error('injected fault (thrown)')
    return super.get(path)
  }
}

async function post(url: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const session = http2.connect(url)
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': path,
        authorization: `Bearer ${mintInternalToken(deriveInternalKey(sharedSecret))}`,
        'content-type': 'application/json',
      })
      let status = 0
      let text = ''
      stream.on('response', (h) => (status = Number(h[':status'])))
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => (text += chunk))
      stream.on('end', () => resolve({ status, body: JSON.parse(text) as Record<string, unknown> }))
      stream.on('error', reject)
      stream.end('{}')
    })
  } finally {
    session.close()
  }
}

void describe('internal API server: error boundary', () => {
  const lines: Record<string, unknown>[] = []
  let server: InternalServer
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
        done()
      },
    })
    const routes = new FaultyRoutes([
      ['/ok', { kind: 'unary', handle: () => Promise.resolve({ ok: true }) }],
      ['/fault/mapping', { kind: 'unary', handle: () => Promise.reject(new Error('route failed')) }],
    ])
    server = await startInternalServer({
      address: '127.0.0.1:0',
      sharedSecret,
      logger: createLogger('error', sink),
      routes,
      // The error mapping fails as well: the rejection escapes the call's own handling.
      mapError: (err) => {
        if (err instanceof Error && err.message === 'route failed') throw new Error('injected fault (rejected)')
        return new InternalApiError(500, 'ERR_INTERNAL', 'internal error')
      },
    })
  })
  after(async () => {
    await server.close()
  })

  const cases = [
    ['a synchronous throw', '/fault/lookup', 'injected fault (thrown)'],
    ['a rejected promise', '/fault/mapping', 'injected fault (rejected)'],
  ] as const
  for (const [what, path, message] of cases) {
    void it(`${what}: 500 ERR_INTERNAL with a request id, logged, then the next call is served`, async () => {
      const failed = await post(server.url, path)
      assert.equal(failed.status, 500)
      assert.equal(failed.body['code'], 'ERR_INTERNAL')
      assert.match(String(failed.body['requestId']), /^[0-9a-f-]{36}$/)
      const logged = lines.find((l) => l['requestId'] === failed.body['requestId'])
      assert.ok(logged, 'the log line carries the request id')
      assert.equal((logged['err'] as { message?: string }).message, message)
      assert.deepEqual(await post(server.url, '/ok'), { status: 200, body: { ok: true } })
    })
  }
})
