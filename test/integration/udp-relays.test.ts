/**
 * The two halves of a UDP tunnel together, without the HTTP layer: a local application's socket
 * → the client's relayDatagrams (src/client/udp-relay.ts) → one loopback TCP connection carrying
 * capsules → the server's relayUdp (src/proxy/udp-tunnel.ts) → a real UDP echo server, and back.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, describe, it } from 'node:test'

import { relayDatagrams } from '../../src/client/udp-relay.js'
import { relayUdp } from '../../src/proxy/udp-tunnel.js'
import { boundUdpSocket, nextDatagram, socketPair, startUdpEcho } from '../fixtures/udp.js'

/** The largest UDP payload over IPv4 (65,535 - 20 IP header - 8 UDP header). */
const MAX_IPV4_UDP_PAYLOAD = 65_507

/** Deterministic sizes from 1 B to the largest datagram, the edges included. */
function sizes(count: number): number[] {
  const out = [1, 2, 63, 64, 16_383, 16_384, 60_000, MAX_IPV4_UDP_PAYLOAD]
  let seed = 0x2545f491
  while (out.length < count) {
    seed = (seed * 1_103_515_245 + 12_345) >>> 0
    // Mostly small (as DNS, games and time sync send), some large.
    out.push(out.length % 10 === 0 ? 1 + (seed % MAX_IPV4_UDP_PAYLOAD) : 1 + (seed % 1_500))
  }
  return out
}

/** A payload whose every byte depends on its index, so a mix-up or corruption shows. */
function payload(index: number, size: number): Buffer {
  const out = Buffer.alloc(size)
  for (let i = 0; i < size; i++) out[i] = (index * 31 + i * 7) & 0xff
  return out
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

void describe('the client and server relays together', () => {
  const cleanups: Array<() => unknown> = []
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })

  void it('carry 1000 datagrams of 1 B to 65,507 B to a UDP echo server and back intact', async () => {
    const echo = await startUdpEcho({ keep: false })
    cleanups.push(() => echo.close())
    const local = await boundUdpSocket()
    const app = await boundUdpSocket()
    cleanups.push(() => local.close(), () => app.close())
    const { a, b, close: closePair } = await socketPair()
    cleanups.push(() => closePair())

    const server = relayUdp(b, { host: '127.0.0.1', port: echo.port }, { idleTimeoutMs: 30_000, maxDurationMs: 0 })
    const client = relayDatagrams(a, local)
    const localPort = local.address().port

    // One datagram in flight at a time: loopback UDP drops what overflows a socket's receive
    // buffer, and this test is about the relays, not the kernel's queues.
    const all = sizes(1000)
    let bytes = 0
    for (const [index, size] of all.entries()) {
      const sent = payload(index, size)
      const reply = nextDatagram(app)
      app.send(sent, localPort, '127.0.0.1')
      const { msg, rinfo } = await reply
      assert.equal(rinfo.port, localPort)
      assert.equal(msg.length, size, `datagram ${index}`)
      assert.equal(digest(msg), digest(sent), `datagram ${index} of ${size} B`)
      bytes += size
    }

    client.close()
    assert.equal(await client.closed, 'closed')
    const result = await server.done
    assert.equal(result.reason, 'downstream_closed')
    assert.equal(result.datagramsFromClient, 1000)
    assert.equal(result.datagramsToClient, 1000)
    assert.equal(result.bytesFromClient, bytes)
    assert.equal(result.bytesToClient, bytes)
    assert.equal(result.datagramsDropped, 0)
    assert.equal(result.sendErrors, 0)
    assert.deepEqual(client.stats(), {
      datagramsSent: 1000,
      bytesSent: bytes,
      datagramsReceived: 1000,
      bytesReceived: bytes,
      datagramsDropped: 0,
      datagramsIgnored: 0,
    })
  })
})
