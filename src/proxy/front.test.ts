/**
 * Connection intake (front.ts) on a cleartext listener: request-body backpressure survives the
 * handover to Node's HTTP/1.1 server after the protocol sniff or a PROXY header.
 *
 * The request handler never reads the body (as when the upstream is slow or not yet connected),
 * so a server with working backpressure stops taking bytes off the connection once its small
 * buffers are full, and the client's writes then stay queued. The test counts the bytes the
 * server has read from the connection; no timing is involved.
 */
import assert from 'node:assert/strict'
import { createServer as createHttpServer } from 'node:http'
import type { IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { test } from 'node:test'
import type { Config } from '../config/types.js'
import { createFront } from './front.js'

const CHUNK = Buffer.alloc(64 * 1024, 'u')
/** Stop pouring after this much: far more than loopback socket buffers hold for a reader that has stopped. */
const POUR_LIMIT = 16 * 1024 * 1024
/** What the server may hold for a body nobody reads: its stream buffers and a read or two. */
const MAX_READ_AHEAD = 1024 * 1024

/** Lets pending I/O (the server's reads of what the client just wrote) run. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

interface Setup {
  readonly codec: Config['codecType']
  readonly proxyProtocol: boolean
  /** Bytes the client sends before the HTTP request. */
  readonly prefix: string
}

/** Starts a front delivering to an HTTP/1.1 server whose handler never reads the body; returns the bytes the server read. */
async function bytesReadForUnreadUpload(setup: Setup): Promise<{ serverRead: number; poured: number }> {
  let serverSocket: Socket | undefined
  let gotRequest: (req: IncomingMessage) => void = () => undefined
  const request = new Promise<IncomingMessage>((resolve) => (gotRequest = resolve))
  const h1 = createHttpServer((req) => gotRequest(req))
  const front = createFront({
    insecure: true,
    codec: setup.codec,
    proxyProtocol: setup.proxyProtocol,
    certificates: () => undefined,
    handshakeTimeoutMs: 10_000,
    track: (socket) => (serverSocket = socket),
    deliver: (socket) => h1.emit('connection', socket),
  })
  await new Promise<void>((resolve) => front.server.listen(0, '127.0.0.1', resolve))
  const port = (front.server.address() as AddressInfo).port
  const client = connect(port, '127.0.0.1')
  client.on('error', () => undefined)
  try {
    await new Promise<void>((resolve) => client.once('connect', resolve))
    // Headers and the first 64 KiB of the body in one write, as a streaming client sends them:
    // the server reads part of the body together with the headers.
    const head = `${setup.prefix}PUT /upload HTTP/1.1\r\nhost: x\r\ncontent-length: ${POUR_LIMIT * 2}\r\n\r\n`
    client.write(Buffer.concat([Buffer.from(head, 'latin1'), CHUNK]))
    await request
    let poured = CHUNK.length
    while (poured < POUR_LIMIT) {
      client.write(CHUNK)
      poured += CHUNK.length
      await turn()
      await turn()
      // The kernel no longer takes the client's bytes: the server has stopped reading.
      if (client.writableLength > 0) break
    }
    assert.ok(serverSocket, 'the front saw the connection')
    return { serverRead: serverSocket.bytesRead, poured }
  } finally {
    client.destroy()
    serverSocket?.destroy()
    h1.close()
    await new Promise<void>((resolve) => front.server.close(() => resolve()))
  }
}

const CASES: ReadonlyArray<[string, Setup]> = [
  ['auto codec (HTTP/1.1 found by a sniff of the first bytes)', { codec: 'auto', proxyProtocol: false, prefix: '' }],
  ['auto codec behind a PROXY header', { codec: 'auto', proxyProtocol: true, prefix: 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n' }],
  ['http1 codec behind a PROXY header', { codec: 'http1', proxyProtocol: true, prefix: 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n' }],
  ['http1 codec', { codec: 'http1', proxyProtocol: false, prefix: '' }],
]

for (const [name, setup] of CASES) {
  void test(`an unread request body is not read ahead into memory: ${name}`, async (t) => {
    const { serverRead, poured } = await bytesReadForUnreadUpload(setup)
    t.diagnostic(`server read ${serverRead} bytes; client poured ${poured}`)
    assert.ok(
      serverRead < MAX_READ_AHEAD,
      `the server read ${(serverRead / 1048576).toFixed(1)} MiB of a body nobody consumed (client poured ${(poured / 1048576).toFixed(1)} MiB)`,
    )
  })
}
