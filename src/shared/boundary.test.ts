/**
 * The listener boundary (`guardedRequestListener`) on a real `node:http` server: a handler that
 * throws or rejects costs one request a 500 with a request id (also in the log line), a handler
 * that fails after its answer began has the connection cut, and the server goes on serving.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { guardedRequestListener } from './boundary.js'
import type { HandlerOutcome, InternalErrorAnswer } from './boundary.js'
import { createLogger } from './log.js'

function serve(answer?: InternalErrorAnswer): { url: () => string; lines: Record<string, unknown>[]; close: () => Promise<void>; listening: Promise<void> } {
  const lines: Record<string, unknown>[] = []
  const logger = createLogger('error', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
  const handler = (req: IncomingMessage, res: ServerResponse): HandlerOutcome => {
    switch (req.url ?? '/') {
      case '/throw':
        throw new Error('injected fault (thrown)')
      case '/reject':
        return new Promise((_, reject) => setImmediate(() => reject(new Error('injected fault (rejected)'))))
      case '/half?token=secret':
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('partial')
        return Promise.reject(new Error('injected fault (after the answer began)'))
      default:
        res.end('ok')
    }
  }
  const server = createServer(guardedRequestListener(handler, { listener: 'test', logger, ...(answer ? { answer } : {}) }))
  const listening = new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    lines,
    listening,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

void describe('guardedRequestListener', () => {
  const text = serve()
  const own = serve((_req, res, requestId) => {
    res.writeHead(500, { 'content-type': 'application/json', 'x-request-id': requestId })
    res.end(JSON.stringify({ error: 'internal error', request_id: requestId }))
  })
  before(async () => {
    await Promise.all([text.listening, own.listening])
  })
  after(async () => {
    await Promise.all([text.close(), own.close()])
  })

  for (const path of ['/throw', '/reject']) {
    void it(`${path}: a plain-text 500 with the request id, logged, then the next request is served`, async () => {
      const res = await fetch(`${text.url()}${path}`)
      assert.equal(res.status, 500)
      const requestId = res.headers.get('x-request-id') ?? ''
      assert.match(requestId, /^[0-9a-f-]{36}$/)
      assert.equal(await res.text(), `internal error (request id ${requestId})\n`)
      const logged = text.lines.find((l) => l['requestId'] === requestId)
      assert.ok(logged, 'logged with the request id')
      assert.equal(logged['listener'], 'test')
      assert.equal(logged['path'], path)
      assert.equal(await (await fetch(`${text.url()}/`)).text(), 'ok')
    })
  }

  void it('a listener with its own answer (HTML, JSON) gets the request id to show', async () => {
    const res = await fetch(`${own.url()}/reject`)
    assert.equal(res.status, 500)
    const body = (await res.json()) as Record<string, unknown>
    assert.deepEqual(body, { error: 'internal error', request_id: res.headers.get('x-request-id') })
    assert.equal(await (await fetch(`${own.url()}/`)).text(), 'ok')
  })

  void it('a failure after the answer began cuts the connection; the query is not logged', async () => {
    await assert.rejects(async () => {
      const res = await fetch(`${text.url()}/half?token=secret`)
      await res.text()
    })
    const logged = text.lines.find((l) => (l['err'] as { message?: string } | undefined)?.message === 'injected fault (after the answer began)')
    assert.equal(logged?.['path'], '/half')
    assert.doesNotMatch(JSON.stringify(text.lines), /secret/)
    assert.equal(await (await fetch(`${text.url()}/`)).text(), 'ok')
  })
})
