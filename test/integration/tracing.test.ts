/**
 * OpenTelemetry tracing through the real process (issue 6, part 2): spans exported over OTLP
 * (HTTP/protobuf, HTTP/JSON and gRPC) to a receiver on loopback; the request span continues an
 * incoming `traceparent`; authorize, databroker, upstream and provider spans are its children;
 * the upstream receives the upstream span's `traceparent`; the sign-in redirect carries the trace
 * (`pomerium_traceparent`); with tracing off nothing is exported and the client's header passes.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createServer as createNetServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { request } from 'undici'
import { WebSocket } from 'ws'
import { startOtlpGrpcReceiver, startOtlpHttpReceiver } from '../fixtures/otlp-receiver.js'
import type { OtlpReceiver, ReceivedSpan } from '../fixtures/otlp-receiver.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { startWebSocketEcho } from '../fixtures/upstreams.js'

const SERVER = 2
const CLIENT = 3
/** How long spans that must not be exported are given to (wrongly) arrive: five export delays. */
const NO_EXPORT_WINDOW_MS = 500

function newTraceparent(): { header: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString('hex')
  const spanId = randomBytes(8).toString('hex')
  return { header: `00-${traceId}-${spanId}-01`, traceId, spanId }
}

const children = (spans: readonly ReceivedSpan[], parent: ReceivedSpan): ReceivedSpan[] => spans.filter((s) => s.parentSpanId === parent.spanId && s.traceId === parent.traceId)

describe('OTLP over HTTP (protobuf)', () => {
  let receiver: OtlpReceiver
  let setup: SignInSetup
  after(async () => {
    await setup?.close()
    await receiver?.close()
  })

  test('request, authorize, databroker, upstream and provider spans with their parent links; trace context upstream and through sign-in', async () => {
    receiver = await startOtlpHttpReceiver()
    setup = await startSignInSetup({
      settings: { otel_traces_exporter: 'otlp', otel_exporter_otlp_endpoint: receiver.url, otel_bsp_schedule_delay: 100, otel_resource_attributes: ['deployment.environment=test'] },
    })

    // The sign-in redirect carries the trace of the request that needed it.
    const first = newTraceparent()
    const redirect = await request(`${setup.app}/start`, { dispatcher: setup.dispatcher, headers: { traceparent: first.header, accept: 'text/html' } })
    await redirect.body.dump()
    assert.equal(redirect.statusCode, 302)
    const carried = new URL(String(redirect.headers['location'])).searchParams.get('pomerium_traceparent') ?? ''
    assert.match(carried, new RegExp(`^00-${first.traceId}-[0-9a-f]{16}-01$`), 'pomerium_traceparent continues the trace')
    // Following it (as a browser would), the authenticate host's span joins that trace.
    const atAuthn = await request(String(redirect.headers['location']), { dispatcher: setup.dispatcher, headers: { accept: 'text/html' } })
    await atAuthn.body.dump()
    assert.equal(atAuthn.statusCode, 302)

    const { jar } = await signIn(setup, `${setup.app}/start`, 'alice@example.com', 'alice-password')
    const cookie = `_pomerium=${jar.forHost(new URL(setup.app).host)['_pomerium']}`
    const incoming = newTraceparent()
    const res = await request(`${setup.app}/traced`, { dispatcher: setup.dispatcher, headers: { cookie, traceparent: incoming.header, accept: 'text/html' } })
    const echoed = (await res.body.json()) as { headers: Record<string, string> }
    assert.equal(res.statusCode, 200)

    await receiver.waitFor((spans) => spans.some((s) => s.traceId === incoming.traceId && s.name === 'upstream request'))
    const spans = receiver.spans
    const server = spans.find((s) => s.traceId === incoming.traceId && s.kind === SERVER)
    assert.ok(server, 'a server span for the request')
    assert.equal(server.name, 'GET app.localhost')
    assert.equal(server.parentSpanId, incoming.spanId, 'continues the caller’s trace')
    assert.equal(server.attributes['http.response.status_code'], 200)
    assert.equal(server.service, 'portcullis')
    const direct = children(spans, server)
    const authorize = direct.find((s) => s.name === 'authorize check')
    const upstream = direct.find((s) => s.name === 'upstream request')
    assert.ok(authorize, `authorize span under the request; got ${direct.map((s) => s.name).join(', ')}`)
    assert.equal(authorize.attributes['portcullis.allow'], true)
    assert.ok(upstream)
    assert.equal(upstream.kind, CLIENT)
    assert.equal(echoed.headers['traceparent'], `00-${incoming.traceId}-${upstream.spanId}-01`, 'the upstream receives the upstream span as its parent')

    // Databroker calls made for the sign-in are children of the request that made them; the
    // provider's token endpoint call is a child of the OAuth callback request.
    const callback = spans.find((s) => s.kind === SERVER && s.attributes['url.path'] === '/oauth2/callback')
    assert.ok(callback, 'a span for the OAuth callback')
    const underCallback = children(spans, callback)
    assert.ok(underCallback.some((s) => s.kind === CLIENT && s.name.startsWith('idp POST') && s.name.includes('/token')), `provider span; got ${underCallback.map((s) => s.name).join(', ')}`)
    assert.ok(underCallback.some((s) => s.name === 'databroker put'), 'the new session is stored under the callback span')
    // The redirect's trace went on at the authenticate host.
    const signInSpan = spans.find((s) => s.kind === SERVER && s.traceId === first.traceId && s.attributes['url.path'] === '/.pomerium/sign_in')
    assert.ok(signInSpan, 'the sign-in request joined the first trace')
    assert.equal(signInSpan.parentSpanId, carried.split('-')[2], 'as a child of the span that redirected')
    assert.ok(receiver.contentTypes.every((t) => t.startsWith('application/x-protobuf')))
  })
})

describe('other protocols and tracing off', () => {
  const cleanup: (() => Promise<void>)[] = []
  after(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  for (const protocol of ['grpc', 'http/json'] as const) {
    test(`OTLP ${protocol}`, async () => {
      const receiver = protocol === 'grpc' ? await startOtlpGrpcReceiver() : await startOtlpHttpReceiver()
      cleanup.push(() => receiver.close())
      // gRPC is configured through the standard OTEL_* environment variables, HTTP/JSON through the file.
      const setup =
        protocol === 'grpc'
          ? await startSignInSetup({
              env: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
            })
          : await startSignInSetup({
              settings: { otel_traces_exporter: 'otlp', otel_exporter_otlp_protocol: protocol, otel_exporter_otlp_endpoint: receiver.url, otel_bsp_schedule_delay: 100 },
            })
      cleanup.push(() => setup.close())
      const incoming = newTraceparent()
      const res = await request(`${setup.pub}/x`, { dispatcher: setup.dispatcher, headers: { traceparent: incoming.header } })
      await res.body.dump()
      await receiver.waitFor((spans) => spans.some((s) => s.traceId === incoming.traceId && s.name === 'upstream request'))
      const server = receiver.spans.find((s) => s.traceId === incoming.traceId && s.kind === SERVER)
      assert.equal(server?.parentSpanId, incoming.spanId)
      if (protocol === 'http/json') assert.ok(receiver.contentTypes.every((t) => t.startsWith('application/json')))
    })
  }

  test('a WebSocket upgrade: request, authorize and tunnel spans; the upstream gets the tunnel span as parent', async () => {
    const receiver = await startOtlpHttpReceiver()
    cleanup.push(() => receiver.close())
    const ws = await startWebSocketEcho()
    cleanup.push(() => ws.close())
    const setup = await startSignInSetup({
      settings: { otel_traces_exporter: 'otlp', otel_exporter_otlp_endpoint: receiver.url, otel_bsp_schedule_delay: 100 },
      routes: () => [{ from: 'https://api.localhost', to: ws.url, allow_public_unauthenticated_access: true, allow_websockets: true }],
    })
    cleanup.push(() => setup.close())
    const incoming = newTraceparent()
    const client = new WebSocket(`wss://api.localhost:${setup.port}/socket`, {
      ca: setup.caPem,
      headers: { traceparent: incoming.header },
      lookup: ((_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) =>
        options.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as never,
    })
    const echoed = await new Promise<string>((resolve, reject) => {
      client.once('open', () => client.send('ping'))
      client.once('message', (data: Buffer) => resolve(data.toString()))
      client.once('error', reject)
    })
    assert.equal(echoed, 'ping')
    client.close()
    await receiver.waitFor((spans) => spans.some((s) => s.traceId === incoming.traceId && s.name === 'upstream request'))
    const server = receiver.spans.find((s) => s.traceId === incoming.traceId && s.kind === SERVER)
    assert.ok(server)
    assert.equal(server.parentSpanId, incoming.spanId)
    const tunnel = children(receiver.spans, server).find((s) => s.name === 'upstream request')
    assert.equal(tunnel?.attributes['portcullis.upgrade'], 'websocket')
    assert.ok(children(receiver.spans, server).some((s) => s.name === 'authorize check'))
    assert.equal(ws.upgrades.at(-1)?.headers['traceparent'], `00-${incoming.traceId}-${tunnel?.spanId}-01`)
  })

  test('a TCP tunnel: request and authorize spans, and a tunnel span that lasts until it closes, with its bytes and close reason', async () => {
    const receiver = await startOtlpHttpReceiver()
    cleanup.push(() => receiver.close())
    const echo = createNetServer((socket) => socket.pipe(socket))
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => new Promise<void>((resolve) => echo.close(() => resolve())))
    const setup = await startSignInSetup({
      settings: { otel_traces_exporter: 'otlp', otel_exporter_otlp_endpoint: receiver.url, otel_bsp_schedule_delay: 100 },
      routes: () => [{ from: 'tcp+https://db.localhost:5432', to: `tcp://127.0.0.1:${(echo.address() as AddressInfo).port}`, allow_public_unauthenticated_access: true }],
    })
    cleanup.push(() => setup.close())
    const incoming = newTraceparent()
    const socket = tlsConnect({ host: '127.0.0.1', port: setup.port, ca: setup.caPem, ALPNProtocols: ['http/1.1'] })
    socket.write(`CONNECT db.localhost:5432 HTTP/1.1\r\nHost: db.localhost:5432\r\ntraceparent: ${incoming.header}\r\n\r\n`)
    let received = ''
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => {
      received += c
      if (received.endsWith('\r\n\r\n')) socket.write('ping')
      if (received.endsWith('ping')) socket.end()
    })
    await new Promise((resolve) => socket.once('close', resolve))
    assert.match(received, /^HTTP\/1\.1 200 /)
    await receiver.waitFor((spans) => spans.some((s) => s.traceId === incoming.traceId && s.name === 'tunnel'))
    const server = receiver.spans.find((s) => s.traceId === incoming.traceId && s.kind === SERVER)
    assert.ok(server)
    assert.equal(server.parentSpanId, incoming.spanId)
    const tunnel = children(receiver.spans, server).find((s) => s.name === 'tunnel')
    assert.ok(tunnel)
    assert.equal(tunnel.attributes['portcullis.tunnel'], 'tcp')
    assert.equal(tunnel.attributes['portcullis.bytes_from_client'], 4)
    assert.equal(tunnel.attributes['portcullis.bytes_to_client'], 4)
    assert.ok(typeof tunnel.attributes['portcullis.close_reason'] === 'string')
    assert.ok(children(receiver.spans, server).some((s) => s.name === 'authorize check'))
  })

  test('off by default: nothing is exported and the client’s traceparent reaches the upstream unchanged', async () => {
    const receiver = await startOtlpHttpReceiver()
    cleanup.push(() => receiver.close())
    const setup = await startSignInSetup({ settings: { otel_exporter_otlp_endpoint: receiver.url, otel_bsp_schedule_delay: 100 } })
    cleanup.push(() => setup.close())
    const incoming = newTraceparent()
    const res = await request(`${setup.pub}/x`, { dispatcher: setup.dispatcher, headers: { traceparent: incoming.header } })
    const echoed = (await res.body.json()) as { headers: Record<string, string> }
    assert.equal(echoed.headers['traceparent'], incoming.header)
    const redirect = await request(`${setup.app}/`, { dispatcher: setup.dispatcher, headers: { traceparent: incoming.header, accept: 'text/html' } })
    await redirect.body.dump()
    assert.equal(new URL(String(redirect.headers['location'])).searchParams.get('pomerium_traceparent'), null)
    // Proving that nothing is exported: with a 100 ms export delay, spans would have arrived by now.
    await sleep(NO_EXPORT_WINDOW_MS)
    assert.equal(receiver.spans.length, 0)
    assert.ok(!setup.portcullis.logs.some((l) => l.includes('tracing: OpenTelemetry')))
  })
})
