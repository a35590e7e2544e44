import assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import { after, describe, it } from 'node:test'
import { setTimeout as pause } from 'node:timers/promises'
import type { Duplex } from 'node:stream'

import { CapsuleParser, decodeDatagram, encodeCapsule, encodeDatagram, encodeVarint } from '../shared/capsule.js'
import type { Capsule } from '../shared/capsule.js'
import { duplexPair, socketPair, startUdpEcho } from '../../test/fixtures/udp.js'
import type { UdpEcho } from '../../test/fixtures/udp.js'
import { waitFor } from '../../test/fixtures/wait.js'
import { parseMasquePath, relayUdp } from './udp-tunnel.js'

void describe('parseMasquePath (RFC 9298 section 3, the default template)', () => {
  void it('reads the target host and port', () => {
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/dns.example.com/53/'), { host: 'dns.example.com', port: 53 })
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/192.0.2.6/443/'), { host: '192.0.2.6', port: 443 })
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/DNS.Example.COM/65535/'), { host: 'dns.example.com', port: 65535 })
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/a/1/'), { host: 'a', port: 1 })
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/dns%2Eexample.com/%35%33/'), { host: 'dns.example.com', port: 53 }, 'percent-encoded')
  })

  void it('returns an IPv6 literal (colons percent-encoded) in brackets', () => {
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/'), { host: '[2001:db8::42]', port: 443 })
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/%3A%3A1/53/'), { host: '[::1]', port: 53 })
    assert.deepEqual(parseMasquePath('/.well-known/masque/udp/%3a%3a1/53/'), { host: '[::1]', port: 53 })
  })

  void it('refuses anything else', () => {
    for (const path of [
      '/',
      '/.well-known/masque/udp/',
      '/.well-known/masque/udp/dns.example.com/53',
      '/.well-known/masque/udp/dns.example.com/53/x',
      '/.well-known/masque/udp/dns.example.com/53//',
      '/.well-known/masque/udp/dns.example.com//',
      '/.well-known/masque/udp//53/',
      '/.well-known/masque/udp/dns.example.com/0/',
      '/.well-known/masque/udp/dns.example.com/65536/',
      '/.well-known/masque/udp/dns.example.com/053/',
      '/.well-known/masque/udp/dns.example.com/+53/',
      '/.well-known/masque/udp/dns.example.com/53a/',
      '/.well-known/masque/udp/dns.example.com/53/?x=1',
      '/.well-known/masque/udp/dns.example.com/53/#x',
      '/.well-known/masque/UDP/dns.example.com/53/',
      '/.well-known/masque/ip/dns.example.com/53/',
      '/x/.well-known/masque/udp/dns.example.com/53/',
      '/.well-known/masque/udp/dns%2Fexample.com/53/',
      '/.well-known/masque/udp/dns example.com/53/',
      '/.well-known/masque/udp/dns%20example.com/53/',
      '/.well-known/masque/udp/%E0%A4%A/53/',
      '/.well-known/masque/udp/-dns.example.com/53/',
      '/.well-known/masque/udp/dns..example.com/53/',
      `/.well-known/masque/udp/${'a'.repeat(64)}.com/53/`,
      '/.well-known/masque/udp/%5B%3A%3A1%5D/53/',
      '/.well-known/masque/udp/fe80%3A%3A1%25eth0/53/',
      '/.well-known/masque/udp/1%3A2%3A3/53/',
      '/.well-known/masque/udp/dns.example.com%3A53/53/',
    ]) {
      assert.equal(parseMasquePath(path), undefined, path)
    }
  })
})

/** Collects the capsules arriving on `stream` (the client's end of the tunnel). */
function capsulesOf(stream: Duplex): { capsules: Capsule[]; payloads: () => Buffer[]; ended: () => boolean } {
  const parser = new CapsuleParser()
  const capsules: Capsule[] = []
  let ended = false
  stream.on('data', (chunk: Buffer) => capsules.push(...parser.push(chunk)))
  stream.on('end', () => (ended = true))
  stream.on('close', () => (ended = true))
  stream.on('error', () => (ended = true))
  return { capsules, payloads: () => capsules.filter((c) => c.type === 0).map((c) => decodeDatagram(c.value).payload), ended: () => ended }
}

const LONG = { idleTimeoutMs: 30_000, maxDurationMs: 0 }

void describe('relayUdp', () => {
  const cleanups: Array<() => unknown> = []
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })
  const echo = async (options?: Parameters<typeof startUdpEcho>[0]): Promise<UdpEcho> => {
    const server = await startUdpEcho(options)
    cleanups.push(() => server.close())
    return server
  }
  const pair = async (): Promise<Awaited<ReturnType<typeof socketPair>>> => {
    const p = await socketPair()
    cleanups.push(() => p.close())
    return p
  }

  void it('relays datagrams both ways with a real UDP target and counts them', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
    const client = capsulesOf(a)
    a.write(encodeDatagram(Buffer.from('ping')))
    a.write(encodeDatagram(Buffer.alloc(0)))
    a.write(encodeDatagram(Buffer.alloc(30_000, 0xab)))
    await waitFor('three echoes', () => client.capsules.length === 3)
    assert.deepEqual(client.payloads(), [Buffer.from('ping'), Buffer.alloc(0), Buffer.alloc(30_000, 0xab)])
    assert.deepEqual(target.received, [Buffer.from('ping'), Buffer.alloc(0), Buffer.alloc(30_000, 0xab)])
    tunnel.close('test_done')
    const result = await tunnel.done
    assert.equal(result.reason, 'test_done')
    assert.equal(result.bytesFromClient, 30_004)
    assert.equal(result.bytesToClient, 30_004)
    assert.equal(result.datagramsFromClient, 3)
    assert.equal(result.datagramsToClient, 3)
    assert.equal(result.datagramsDropped, 0)
    await waitFor('the client sees the stream end', client.ended)
  })

  void it('relays the capsules that came with the request head first', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const head = Buffer.concat([encodeDatagram(Buffer.from('early')), encodeDatagram(Buffer.from('split')).subarray(0, 3)])
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, { ...LONG, head })
    const client = capsulesOf(a)
    a.write(encodeDatagram(Buffer.from('split')).subarray(3))
    a.write(encodeDatagram(Buffer.from('later')))
    await waitFor('three echoes', () => client.capsules.length === 3)
    assert.deepEqual(target.received, [Buffer.from('early'), Buffer.from('split'), Buffer.from('later')])
    tunnel.close('test_done')
    await tunnel.done
  })

  void it('reaches an IPv6 target given in brackets', async () => {
    const target = await echo({ type: 'udp6' })
    const { a, b } = await pair()
    const tunnel = relayUdp(b, { host: '[::1]', port: target.port }, LONG)
    const client = capsulesOf(a)
    a.write(encodeDatagram(Buffer.from('six')))
    await waitFor('the echo', () => client.capsules.length === 1)
    assert.deepEqual(client.payloads(), [Buffer.from('six')])
    tunnel.close('test_done')
    await tunnel.done
  })

  void it('resolves a name with the lookup it is given', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const asked: string[] = []
    const tunnel = relayUdp(b, { host: 'dns.example.test', port: target.port }, {
      ...LONG,
      lookup: (host) => {
        asked.push(host)
        return Promise.resolve({ address: '127.0.0.1', family: 4 })
      },
    })
    const client = capsulesOf(a)
    a.write(encodeDatagram(Buffer.from('named')))
    await waitFor('the echo', () => client.capsules.length === 1)
    assert.deepEqual(asked, ['dns.example.test'])
    tunnel.close('test_done')
    await tunnel.done
  })

  void it('ends with resolve_failed when the name does not resolve', async () => {
    const { a, b } = await pair()
    const client = capsulesOf(a)
    const tunnel = relayUdp(b, { host: 'nowhere.invalid', port: 53 }, { ...LONG, lookup: () => Promise.reject(new Error('ENOTFOUND')) })
    assert.equal((await tunnel.done).reason, 'resolve_failed')
    await waitFor('the client sees the stream end', client.ended)
  })

  void it('drops DATAGRAM capsules with a context id other than 0', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
    const client = capsulesOf(a)
    a.write(encodeCapsule(0, Buffer.concat([encodeVarint(2), Buffer.from('context 2')])))
    a.write(encodeCapsule(0, Buffer.concat([Buffer.from([0x40, 0x00]), Buffer.from('context 0, two-byte form')])))
    a.write(encodeDatagram(Buffer.from('context 0')))
    await waitFor('two echoes', () => client.capsules.length === 2)
    assert.deepEqual(target.received, [Buffer.from('context 0, two-byte form'), Buffer.from('context 0')])
    assert.equal(tunnel.stats().datagramsIgnored, 1)
    tunnel.close('test_done')
    await tunnel.done
  })

  void it('skips capsules of unknown types and goes on', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
    const client = capsulesOf(a)
    a.write(encodeCapsule(0x2a, Buffer.from('unknown')))
    a.write(encodeCapsule(151288809941952652n, Buffer.alloc(100)))
    a.write(encodeDatagram(Buffer.from('after')))
    await waitFor('the echo', () => client.capsules.length === 1)
    assert.deepEqual(target.received, [Buffer.from('after')])
    tunnel.close('test_done')
    assert.equal((await tunnel.done).reason, 'test_done')
  })

  void it('ends with idle_timeout when no datagram goes either way', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const client = capsulesOf(a)
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, { idleTimeoutMs: 150, maxDurationMs: 0 })
    const result = await tunnel.done
    assert.equal(result.reason, 'idle_timeout')
    await waitFor('the client sees the stream end', client.ended)
  })

  void it('keeps a tunnel with traffic open past the idle timeout', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const client = capsulesOf(a)
    const idleTimeoutMs = 600
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, { idleTimeoutMs, maxDurationMs: 0 })
    let ended: string | undefined
    void tunnel.done.then((r) => (ended = r.reason))
    const started = Date.now()
    let sent = 0
    while (Date.now() - started < idleTimeoutMs * 2) {
      a.write(encodeDatagram(Buffer.from(`ping ${sent++}`)))
      await waitFor('the echo', () => client.capsules.length === sent)
      await pause(50) // pacing: traffic spread over twice the idle timeout
    }
    assert.equal(ended, undefined)
    tunnel.close('test_done')
    assert.equal((await tunnel.done).reason, 'test_done')
  })

  void it('ends with max_duration however busy it is', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const client = capsulesOf(a)
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, { idleTimeoutMs: 0, maxDurationMs: 200 })
    const timer = setInterval(() => a.write(encodeDatagram(Buffer.from('busy'))), 20)
    const result = await tunnel.done
    clearInterval(timer)
    assert.equal(result.reason, 'max_duration')
    await waitFor('the client sees the stream end', client.ended)
  })

  void it('ends with downstream_closed when the client ends the stream', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const client = capsulesOf(a)
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
    a.write(encodeDatagram(Buffer.from('one')))
    await waitFor('the echo', () => client.capsules.length === 1)
    a.end()
    const result = await tunnel.done
    assert.equal(result.reason, 'downstream_closed')
    await waitFor('the server end is closed', () => b.destroyed || b.writableFinished)
  })

  void it('ends with downstream_closed when the client resets the connection', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
    a.resetAndDestroy()
    const { reason } = await tunnel.done
    assert.ok(reason === 'downstream_closed' || reason === 'downstream_error', reason)
  })

  for (const [name, bytes, endAfter] of [
    ['a declared length over the bound', Buffer.concat([encodeVarint(0), encodeVarint(65_535 + 17)]), false],
    ['a DATAGRAM capsule without a context id', encodeCapsule(0, Buffer.alloc(0)), false],
    ['a DATAGRAM capsule with a truncated context id', encodeCapsule(0, Buffer.from([0x40])), false],
    ['a truncated capsule at the end of the stream', encodeDatagram(Buffer.from('cut')).subarray(0, 4), true],
    ['a truncated varint at the end of the stream', Buffer.from([0x80, 0x00]), true],
  ] as const) {
    void it(`ends with malformed_capsule on ${name}`, async () => {
      const target = await echo()
      const { a, b } = await pair()
      const client = capsulesOf(a)
      const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
      a.write(encodeDatagram(Buffer.from('fine')))
      await waitFor('the echo', () => client.capsules.length === 1)
      a.write(bytes)
      if (endAfter) a.end()
      const result = await tunnel.done
      assert.equal(result.reason, 'malformed_capsule')
      await waitFor('the client sees the stream end', client.ended)
    })
  }

  void it('drops and counts datagrams from the target while the client does not read', async () => {
    // The target answers each datagram with 40 datagrams of 4 KB: 160 KB per request.
    const target = await echo({ reply: () => Array.from({ length: 40 }, () => Buffer.alloc(4096, 1)) })
    const [client, server] = duplexPair(8 * 1024)
    const tunnel = relayUdp(server, { host: '127.0.0.1', port: target.port }, { ...LONG, maxBufferedBytes: 32 * 1024 })
    for (let i = 0; i < 5; i++) client.write(encodeDatagram(Buffer.from(`request ${i}`)))
    await waitFor('the target got the requests', () => target.received.length === 5)
    await waitFor('datagrams dropped', () => tunnel.stats().datagramsDropped > 0)
    const { datagramsToClient, datagramsDropped } = tunnel.stats()
    // Written are at most what fits under the bound (plus the one that crossed it).
    assert.ok(datagramsToClient * 4100 <= 32 * 1024 + 8 * 1024 * 2 + 4100, `${datagramsToClient} written`)
    assert.ok(server.writableLength <= 32 * 1024 + 4100, `writableLength ${server.writableLength}`)
    assert.ok(datagramsDropped > 0)
    tunnel.close('test_done')
    assert.equal((await tunnel.done).reason, 'test_done')
  })

  void it('counts an ICMP port unreachable as a send error and goes on', async () => {
    const closed = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => closed.bind(0, '127.0.0.1', resolve))
    const deadPort = closed.address().port
    await new Promise<void>((resolve) => closed.close(() => resolve()))
    const { a, b } = await pair()
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: deadPort }, LONG)
    let ended = false
    void tunnel.done.then(() => (ended = true))
    // Each send may draw one ICMP error; keep sending until one was counted.
    await waitFor('a send error', () => {
      a.write(encodeDatagram(Buffer.from('anyone?')))
      return tunnel.stats().sendErrors > 0
    })
    assert.equal(ended, false)
    tunnel.close('test_done')
    assert.equal((await tunnel.done).reason, 'test_done')
  })

  void it('close() ends the stream for the client', async () => {
    const target = await echo()
    const { a, b } = await pair()
    const client = capsulesOf(a)
    const tunnel = relayUdp(b, { host: '127.0.0.1', port: target.port }, LONG)
    tunnel.close('route_removed')
    tunnel.close('twice')
    assert.equal((await tunnel.done).reason, 'route_removed')
    await waitFor('the client sees the stream end', client.ended)
  })
})
