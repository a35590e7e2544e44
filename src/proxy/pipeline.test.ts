/**
 * The pipeline driven directly, without a listener or a socket: a request object in, a recorded
 * answer or a recorded forward stage out.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { PassThrough } from 'node:stream'
import type { Authorizer, CheckRequest, CheckResult } from '../authorize/types.js'
import { loadConfig } from '../config/load.js'
import type { Config } from '../config/types.js'
import { createLogger } from '../shared/log.js'
import type { AnyRequest, ForwardRequest } from './forward.js'
import { ProxyPipeline } from './pipeline.js'
import type { AnyResponse } from './respond.js'
import { ProxyState } from './state.js'
import type { UpgradeRequest } from './upgrade.js'
import { TransportRegistry } from './upstreams.js'

const logger = createLogger('disabled')
const registry = new TransportRegistry()
after(() => registry.closeAll())

function config(routes: readonly Record<string, unknown>[]): Config {
  const { config, issues } = loadConfig({ env: { INSECURE_SERVER: 'true', ADDRESS: '127.0.0.1:0', POLICY: Buffer.from(JSON.stringify(routes)).toString('base64') } })
  assert.ok(config, JSON.stringify(issues))
  return config
}

const ROUTES = [
  { from: 'http://app.example.com', to: 'http://127.0.0.1:9', prefix: '/api', prefix_rewrite: '/v1', allow_public_unauthenticated_access: true, allow_websockets: true },
  { from: 'http://plain.example.com', to: 'http://127.0.0.1:9', allow_public_unauthenticated_access: true },
]

function request(method: string, url: string, headers: Record<string, string>): AnyRequest {
  const rawHeaders = Object.entries(headers).flat()
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]))
  return { method, url, headers: lower, rawHeaders, httpVersionMajor: 1, socket: { remoteAddress: '192.0.2.7' } } as unknown as AnyRequest
}

class RecordedResponse {
  statusCode = 200
  headersSent = false
  writableEnded = false
  headers: Record<string, unknown> = {}
  body = ''
  setHeader(name: string, value: unknown): void {
    this.headers[name] = value
  }
  writeHead(status: number, headers: Record<string, unknown>): this {
    this.statusCode = status
    Object.assign(this.headers, headers)
    this.headersSent = true
    return this
  }
  end(body?: Buffer | string): this {
    if (body !== undefined) this.body += body.toString()
    this.writableEnded = true
    return this
  }
  destroy(): void {}
}

interface Harness {
  readonly pipeline: ProxyPipeline
  readonly checks: CheckRequest[]
  readonly forwarded: ForwardRequest[]
  readonly tunnels: UpgradeRequest[]
}

function harness(decide: (check: CheckRequest) => CheckResult | Promise<CheckResult>, routes = ROUTES): Harness {
  const state = new ProxyState(config(routes), registry, logger)
  const checks: CheckRequest[] = []
  const forwarded: ForwardRequest[] = []
  const tunnels: UpgradeRequest[] = []
  const authorizer: Authorizer = {
    check(c) {
      checks.push(c)
      return decide(c)
    },
  }
  const pipeline = new ProxyPipeline({ authorizer, logger, forward: (r) => forwarded.push(r), tunnel: (u) => tunnels.push(u) }, () => state)
  return { pipeline, checks, forwarded, tunnels }
}

/** The value of a header in a flat `[name, value, ...]` list. */
function header(list: readonly string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i]?.toLowerCase() === name) return list[i + 1]
  return undefined
}

test('prepare answers a request for an unknown host itself: no authorize call, nothing forwarded', async () => {
  const h = harness(() => ({ allow: true }))
  const res = new RecordedResponse()
  await h.pipeline.handle(request('GET', '/x', { Host: 'nowhere.example.com', Accept: 'application/json' }), res as unknown as AnyResponse, 'req-1')
  assert.equal(res.statusCode, 404)
  assert.match(res.body, /No route is configured for nowhere\.example\.com\/x/)
  assert.equal(h.checks.length, 0)
  assert.equal(h.forwarded.length, 0)
})

test('an allowed request reaches the forward stage with the rewritten path and the authorize headers', async () => {
  const h = harness(() => ({ allow: true, setHeaders: { 'x-pomerium-jwt-assertion': 'signed' }, removeHeaders: ['x-drop'] }))
  const res = new RecordedResponse()
  await h.pipeline.handle(request('GET', '/api/items?q=1', { Host: 'app.example.com', 'X-Drop': 'secret', 'X-Keep': 'kept' }), res as unknown as AnyResponse, 'req-2')
  assert.equal(h.checks.length, 1)
  const check = h.checks[0] as CheckRequest
  assert.equal(check.host, 'app.example.com')
  assert.equal(check.path, '/api/items')
  assert.equal(check.query, '?q=1')
  assert.equal(check.clientIp, '192.0.2.7')
  assert.equal(h.forwarded.length, 1)
  const f = h.forwarded[0] as ForwardRequest
  assert.equal(f.path, '/v1/items?q=1')
  assert.equal(f.requestId, 'req-2')
  assert.equal(header(f.headers, 'x-pomerium-jwt-assertion'), 'signed')
  assert.equal(header(f.headers, 'x-drop'), undefined)
  assert.equal(header(f.headers, 'x-keep'), 'kept')
  assert.equal(header(f.headers, 'x-request-id'), 'req-2')
  assert.equal(res.headersSent, false, 'the forward stage answers, not the pipeline')
})

test('a denial is rendered for the client and never forwarded', async () => {
  const h = harness(() => ({ allow: false, status: 403, code: 'policy-denied', reason: 'Not for you.' }))
  const res = new RecordedResponse()
  await h.pipeline.handle(request('GET', '/api/x', { Host: 'app.example.com', Accept: 'application/json' }), res as unknown as AnyResponse, 'req-3')
  assert.equal(res.statusCode, 403)
  assert.equal((JSON.parse(res.body) as { error: string }).error, 'Not for you.')
  assert.equal(h.forwarded.length, 0)
})

test('an asynchronous decision: handle() returns its promise, and the request is forwarded once it settles', async () => {
  const h = harness(() => Promise.resolve({ allow: true }))
  const outcome = h.pipeline.handle(request('POST', '/api/x', { Host: 'app.example.com' }), new RecordedResponse() as unknown as AnyResponse, 'req-4')
  assert.ok(outcome instanceof Promise)
  await outcome
  assert.equal(h.forwarded.length, 1)
})

test('an authorizer that throws costs the request a 500, not the pipeline', async () => {
  const h = harness(() => {
    throw new Error('broken')
  })
  const res = new RecordedResponse()
  await h.pipeline.handle(request('GET', '/api/x', { Host: 'app.example.com', Accept: 'application/json' }), res as unknown as AnyResponse, 'req-5')
  assert.equal(res.statusCode, 500)
  assert.equal((JSON.parse(res.body) as { error: string }).error, 'Authorization could not be completed.')
})

test('an upgrade runs the same stages: allowed, it becomes a tunnel with the Upgrade header kept', async () => {
  const h = harness(() => ({ allow: true, setHeaders: { 'x-pomerium-jwt-assertion': 'signed' } }))
  const socket = new PassThrough()
  const req = request('GET', '/api/ws', { Host: 'app.example.com', Connection: 'Upgrade', Upgrade: 'websocket' })
  await h.pipeline.handleUpgrade(req, socket, Buffer.alloc(0), 'req-6')
  assert.equal(h.checks[0]?.path, '/api/ws')
  assert.equal(h.tunnels.length, 1)
  const t = h.tunnels[0] as UpgradeRequest
  assert.equal(t.token, 'websocket')
  assert.equal(t.path, '/v1/ws')
  assert.equal(header(t.headers, 'upgrade'), 'websocket')
  assert.equal(header(t.headers, 'x-pomerium-jwt-assertion'), 'signed')
  assert.ok(h.pipeline.tunnelled(socket))
})

test('an upgrade the route does not allow is refused on the socket before authorisation', async () => {
  const h = harness(() => ({ allow: true }))
  const socket = new PassThrough()
  await h.pipeline.handleUpgrade(request('GET', '/', { Host: 'plain.example.com', Connection: 'Upgrade', Upgrade: 'websocket' }), socket, Buffer.alloc(0), 'req-7')
  const answer = (await socket.toArray()).join('')
  assert.match(answer, /^HTTP\/1\.1 403 Forbidden\r\n/)
  assert.match(answer, /Upgrading to "websocket" is not allowed on this route/)
  assert.equal(h.checks.length, 0)
  assert.equal(h.tunnels.length, 0)
})

test('a denied upgrade is answered on the socket with the denial status', async () => {
  const h = harness(() => ({ allow: false, status: 401, code: 'unauthenticated', reason: 'Unauthenticated' }))
  const socket = new PassThrough()
  await h.pipeline.handleUpgrade(request('GET', '/api/ws', { Host: 'app.example.com', Connection: 'Upgrade', Upgrade: 'websocket' }), socket, Buffer.alloc(0), 'req-8')
  const answer = (await socket.toArray()).join('')
  assert.match(answer, /^HTTP\/1\.1 401 Unauthorized\r\n/)
  assert.match(answer, /x-request-id: req-8/)
  assert.equal(h.tunnels.length, 0)
})
