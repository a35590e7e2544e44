import assert from 'node:assert/strict'
import type * as dgram from 'node:dgram'
import { after, describe, it } from 'node:test'
import type { Duplex } from 'node:stream'

import { CapsuleParser, decodeDatagram, encodeCapsule, encodeDatagram, encodeVarint } from '../shared/capsule.js'
import type { Capsule } from '../shared/capsule.js'
import { boundUdpSocket, duplexPair, nextDatagram, socketPair } from '../../test/fixtures/udp.js'
import { waitFor } from '../../test/fixtures/wait.js'
import { relayDatagrams } from './udp-relay.js'

/** The capsules arriving on `stream` (the server's end of the tunnel, played by the test). */
function capsulesOf(stream: Duplex): { capsules: Capsule[]; payloads: () => Buffer[]; ended: () => boolean } {
  const parser = new CapsuleParser()
  const capsules: Capsule[] = []
  let ended = false
  stream.on('data', (chunk: Buffer) => capsules.push(...parser.push(chunk)))
  stream.on('end', () => (ended = true))
  stream.on('close', () => (ended = true))
  stream.on('error', () => (ended = true))
  return { capsules, payloads: () => capsules.map((c) => decodeDatagram(c.value).payload), ended: () => ended }
}

void describe('relayDatagrams (the client side of a UDP tunnel)', () => {
  const cleanups: Array<() => unknown> = []
  after(() => {
    for (const cleanup of cleanups.reverse()) cleanup()
  })
  const udp = async (): Promise<dgram.Socket> => {
    const socket = await boundUdpSocket()
    cleanups.push(() => {
      try {
        socket.close()
      } catch {
        // closed by the test
      }
    })
    return socket
  }
  const setup = async (): Promise<{ local: dgram.Socket; app: dgram.Socket; server: Duplex; stream: Duplex; localPort: number }> => {
    const local = await udp()
    const app = await udp()
    const pair = await socketPair()
    cleanups.push(() => pair.close())
    return { local, app, server: pair.b, stream: pair.a, localPort: local.address().port }
  }

  void it('carries local datagrams as DATAGRAM capsules and sends replies to the sender', async () => {
    const { local, app, server, stream, localPort } = await setup()
    const relay = relayDatagrams(stream, local)
    const tunnel = capsulesOf(server)
    app.send(Buffer.from('query'), localPort, '127.0.0.1')
    await waitFor('the capsule', () => tunnel.capsules.length === 1)
    assert.equal(tunnel.capsules[0]?.type, 0)
    assert.deepEqual(decodeDatagram(tunnel.capsules[0]?.value ?? Buffer.alloc(0)), { contextId: 0, payload: Buffer.from('query') })
    const reply = nextDatagram(app)
    server.write(encodeDatagram(Buffer.from('answer')))
    const { msg, rinfo } = await reply
    assert.deepEqual(msg, Buffer.from('answer'))
    assert.equal(rinfo.port, localPort, 'the reply comes from the local socket')
    assert.deepEqual(relay.stats(), { datagramsSent: 1, bytesSent: 5, datagramsReceived: 1, bytesReceived: 6, datagramsDropped: 0, datagramsIgnored: 0 })
    relay.close()
  })

  void it('answers the local peer that sent last', async () => {
    const { local, app, server, stream, localPort } = await setup()
    const other = await udp()
    const relay = relayDatagrams(stream, local)
    const tunnel = capsulesOf(server)
    app.send(Buffer.from('first'), localPort, '127.0.0.1')
    await waitFor('one capsule', () => tunnel.capsules.length === 1)
    other.send(Buffer.from('second'), localPort, '127.0.0.1')
    await waitFor('two capsules', () => tunnel.capsules.length === 2)
    const reply = nextDatagram(other)
    let appGot = 0
    app.on('message', () => appGot++)
    server.write(encodeDatagram(Buffer.from('to the last')))
    assert.deepEqual((await reply).msg, Buffer.from('to the last'))
    assert.equal(appGot, 0)
    relay.close()
  })

  void it('drops datagrams from the stream before any local peer sent one', async () => {
    const { local, app, server, stream, localPort } = await setup()
    const relay = relayDatagrams(stream, local)
    const tunnel = capsulesOf(server)
    server.write(encodeDatagram(Buffer.from('nobody to give it to')))
    await waitFor('the drop', () => relay.stats().datagramsDropped === 1)
    app.send(Buffer.from('hello'), localPort, '127.0.0.1')
    await waitFor('the capsule', () => tunnel.capsules.length === 1)
    const reply = nextDatagram(app)
    server.write(encodeDatagram(Buffer.from('now')))
    assert.deepEqual((await reply).msg, Buffer.from('now'))
    relay.close()
  })

  void it('drops other context ids and skips unknown capsule types', async () => {
    const { local, app, server, stream, localPort } = await setup()
    const relay = relayDatagrams(stream, local)
    const tunnel = capsulesOf(server)
    app.send(Buffer.from('hello'), localPort, '127.0.0.1')
    await waitFor('the capsule', () => tunnel.capsules.length === 1)
    const got: Buffer[] = []
    app.on('message', (msg: Buffer) => got.push(msg))
    server.write(encodeCapsule(0, Buffer.concat([encodeVarint(4), Buffer.from('context 4')])))
    server.write(encodeCapsule(0x2a, Buffer.from('unknown type')))
    server.write(encodeDatagram(Buffer.from('context 0')))
    await waitFor('the datagram', () => got.length === 1)
    assert.deepEqual(got, [Buffer.from('context 0')])
    assert.equal(relay.stats().datagramsIgnored, 1)
    relay.close()
  })

  void it('settles stream_ended when the server ends the stream, and leaves the local socket open', async () => {
    const { local, app, server, stream, localPort } = await setup()
    const relay = relayDatagrams(stream, local)
    server.end()
    assert.equal(await relay.closed, 'stream_ended')
    assert.equal(local.listenerCount('message'), 0, 'no longer listening')
    // The local socket still works.
    const got = nextDatagram(local)
    app.send(Buffer.from('still there'), localPort, '127.0.0.1')
    assert.deepEqual((await got).msg, Buffer.from('still there'))
  })

  void it('settles stream_error when the stream fails', async () => {
    const { local, stream } = await setup()
    const relay = relayDatagrams(stream, local)
    stream.destroy(new Error('boom'))
    assert.equal(await relay.closed, 'stream_error: boom')
  })

  void it('settles malformed_capsule on a bad capsule and ends the stream', async () => {
    const { local, server, stream } = await setup()
    const tunnel = capsulesOf(server)
    const relay = relayDatagrams(stream, local)
    server.write(Buffer.concat([encodeVarint(0), encodeVarint(1_000_000)]))
    assert.equal(await relay.closed, 'malformed_capsule')
    await waitFor('the server sees the end', tunnel.ended)
  })

  void it('settles malformed_capsule when the stream ends inside a capsule', async () => {
    const { local, server, stream } = await setup()
    const relay = relayDatagrams(stream, local)
    server.end(encodeDatagram(Buffer.from('cut short')).subarray(0, 5))
    assert.equal(await relay.closed, 'malformed_capsule')
  })

  void it('close() ends the stream, settles closed and keeps the local socket', async () => {
    const { local, server, stream } = await setup()
    const tunnel = capsulesOf(server)
    const relay = relayDatagrams(stream, local)
    relay.close()
    relay.close()
    assert.equal(await relay.closed, 'closed')
    await waitFor('the server sees the end', tunnel.ended)
    assert.doesNotThrow(() => local.address(), 'the local socket is still bound')
  })

  void it('settles local_closed when the caller closes the local socket', async () => {
    const { local, server, stream } = await setup()
    const tunnel = capsulesOf(server)
    const relay = relayDatagrams(stream, local)
    local.close()
    assert.equal(await relay.closed, 'local_closed')
    await waitFor('the server sees the end', tunnel.ended)
  })

  void it('drops and counts local datagrams while the stream is not read', async () => {
    const local = await udp()
    const app = await udp()
    const [stream, server] = duplexPair(8 * 1024)
    cleanups.push(() => stream.destroy())
    const relay = relayDatagrams(stream, local, { maxBufferedBytes: 32 * 1024 })
    let received = 0
    local.on('message', () => received++)
    const localPort = local.address().port
    // 100 datagrams of 4 KB (400 KB); the server end is never read.
    for (let i = 0; i < 100; i++) app.send(Buffer.alloc(4096, i), localPort, '127.0.0.1')
    await waitFor('the local socket got datagrams and the relay dropped some', () => received > 20 && relay.stats().datagramsDropped > 0)
    assert.ok(stream.writableLength <= 32 * 1024 + 4100, `writableLength ${stream.writableLength}`)
    assert.ok(server.readableLength <= 16 * 1024 + 4100)
    relay.close()
  })
})
