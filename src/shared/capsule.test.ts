import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import {
  CapsuleError,
  CapsuleParser,
  DEFAULT_MAX_CAPSULE_LENGTH,
  decodeDatagram,
  encodeCapsule,
  encodeDatagram,
  encodeVarint,
  readVarint,
  readVarintBig,
  varintSize,
} from './capsule.js'
import type { Capsule } from './capsule.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex')

void describe('QUIC variable-length integers (RFC 9000 section 16)', () => {
  void it('decodes the samples of RFC 9000 appendix A.1', () => {
    assert.deepEqual(readVarintBig(hex('c2197c5eff14e88c')), { value: 151288809941952652n, next: 8 })
    assert.deepEqual(readVarint(hex('9d7f3e7d')), { value: 494878333, next: 4 })
    assert.deepEqual(readVarint(hex('7bbd')), { value: 15293, next: 2 })
    assert.deepEqual(readVarint(hex('25')), { value: 37, next: 1 })
    assert.deepEqual(readVarint(hex('4025')), { value: 37, next: 2 }, 'a longer form than needed is accepted')
  })

  void it('encodes the samples in their shortest form', () => {
    assert.equal(encodeVarint(151288809941952652n).toString('hex'), 'c2197c5eff14e88c')
    assert.equal(encodeVarint(494878333).toString('hex'), '9d7f3e7d')
    assert.equal(encodeVarint(15293).toString('hex'), '7bbd')
    assert.equal(encodeVarint(37).toString('hex'), '25')
  })

  void it('uses each length up to its limit and round-trips the edges', () => {
    const cases: Array<[number | bigint, number]> = [
      [0, 1], [63, 1], [64, 2], [16_383, 2], [16_384, 4], [1_073_741_823, 4], [1_073_741_824, 8],
      [Number.MAX_SAFE_INTEGER, 8], [(1n << 62n) - 1n, 8],
    ]
    for (const [value, size] of cases) {
      assert.equal(varintSize(value), size, String(value))
      const encoded = encodeVarint(value)
      assert.equal(encoded.length, size, String(value))
      assert.equal(readVarintBig(encoded)?.value, BigInt(value), String(value))
      if (typeof value === 'number') assert.equal(readVarint(encoded)?.value, value, String(value))
    }
  })

  void it('reads at an offset and says undefined for a truncated varint', () => {
    assert.deepEqual(readVarint(hex('ff 7bbd 00'), 1), { value: 15293, next: 3 })
    assert.equal(readVarint(hex('7b')), undefined)
    assert.equal(readVarint(hex('9d7f3e')), undefined)
    assert.equal(readVarintBig(hex('c2197c5eff14e8')), undefined)
    assert.equal(readVarint(Buffer.alloc(0)), undefined)
  })

  void it('refuses as a number a value above Number.MAX_SAFE_INTEGER', () => {
    assert.throws(() => readVarint(hex('c2197c5eff14e88c')), CapsuleError)
    assert.throws(() => readVarint(encodeVarint(BigInt(Number.MAX_SAFE_INTEGER) + 1n)), CapsuleError)
    assert.equal(readVarint(encodeVarint(Number.MAX_SAFE_INTEGER))?.value, Number.MAX_SAFE_INTEGER)
  })

  void it('refuses to encode a negative, fractional, unsafe or too large value', () => {
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, 1n << 62n, -1n]) {
      assert.throws(() => encodeVarint(bad), CapsuleError, String(bad))
    }
  })
})

void describe('capsules (RFC 9297 section 3.2)', () => {
  void it('encodes type, length and value', () => {
    assert.equal(encodeCapsule(0x2a, Buffer.from('hi')).toString('hex'), '2a026869')
    assert.equal(encodeCapsule(0x1234, Buffer.alloc(0)).toString('hex'), '523400')
    const long = encodeCapsule(0, Buffer.alloc(300, 7))
    assert.equal(long.subarray(0, 3).toString('hex'), '00412c')
    assert.equal(long.length, 303)
  })

  void it('encodes a DATAGRAM capsule with context id 0 and decodes it back', () => {
    const payload = Buffer.from('hello')
    const capsule = encodeDatagram(payload)
    assert.equal(capsule.toString('hex'), '0006' + '00' + payload.toString('hex'))
    const [parsed] = new CapsuleParser().push(capsule)
    assert.ok(parsed)
    assert.equal(parsed.type, 0)
    const { contextId, payload: out } = decodeDatagram(parsed.value)
    assert.equal(contextId, 0)
    assert.deepEqual(out, payload)
    // An empty UDP payload is a valid datagram.
    assert.deepEqual(decodeDatagram(new CapsuleParser().push(encodeDatagram(Buffer.alloc(0)))[0]?.value ?? Buffer.alloc(1, 0xff)), {
      contextId: 0,
      payload: Buffer.alloc(0),
    })
  })

  void it('decodes other context ids (the relays drop them) and refuses a value without one', () => {
    assert.deepEqual(decodeDatagram(hex('4025 abcd')), { contextId: 37, payload: hex('abcd') })
    assert.equal(decodeDatagram(hex('c2197c5eff14e88c')).contextId, 151288809941952652n)
    assert.throws(() => decodeDatagram(Buffer.alloc(0)), CapsuleError)
    assert.throws(() => decodeDatagram(hex('9d7f')), CapsuleError)
    assert.deepEqual(decodeDatagram(new Uint8Array([0, 1, 2])), { contextId: 0, payload: Buffer.from([1, 2]) })
  })

  void it('parses a stream split at every byte boundary into the same capsules', () => {
    const capsules: Capsule[] = [
      { type: 0, value: Buffer.concat([Buffer.from([0]), Buffer.from('first datagram')]) },
      { type: 0x2a, value: Buffer.from('unknown type: passed through') },
      { type: 0x1234, value: Buffer.alloc(0) },
      { type: 0, value: Buffer.alloc(400, 0x55) },
      { type: 151288809941952652n, value: Buffer.from('grease') },
      { type: 0, value: Buffer.from([0, 9]) },
    ]
    const wire = Buffer.concat(capsules.map((c) => encodeCapsule(c.type, c.value)))
    for (let cut = 0; cut <= wire.length; cut++) {
      const parser = new CapsuleParser()
      const got = [...parser.push(wire.subarray(0, cut)), ...parser.push(wire.subarray(cut))]
      assert.deepEqual(got, capsules, `cut at ${cut}`)
      assert.equal(parser.pendingBytes, 0)
      parser.end()
    }
    // Every byte its own chunk.
    const parser = new CapsuleParser()
    const got: Capsule[] = []
    for (const byte of wire) got.push(...parser.push(Buffer.from([byte])))
    assert.deepEqual(got, capsules)
  })

  void it('accepts a capsule split into many chunks and one of exactly the bound', () => {
    const value = Buffer.alloc(DEFAULT_MAX_CAPSULE_LENGTH, 1)
    const wire = encodeCapsule(0, value)
    const parser = new CapsuleParser()
    const got: Capsule[] = []
    for (let at = 0; at < wire.length; at += 7) got.push(...parser.push(wire.subarray(at, at + 7)))
    assert.equal(got.length, 1)
    assert.deepEqual(got[0]?.value, value)
  })

  void it('refuses a declared length over the bound before the value arrives', () => {
    const parser = new CapsuleParser()
    const header = Buffer.concat([encodeVarint(0), encodeVarint(DEFAULT_MAX_CAPSULE_LENGTH + 1)])
    assert.throws(() => parser.push(header), CapsuleError)
    assert.throws(() => parser.push(Buffer.from([0])), CapsuleError, 'a failed parser stays failed')
    const small = new CapsuleParser({ maxLength: 10 })
    assert.equal(small.push(encodeCapsule(0, Buffer.alloc(10))).length, 1)
    assert.throws(() => small.push(encodeCapsule(0, Buffer.alloc(11))), CapsuleError)
    // An 8-byte length far above any bound (and above the safe integers) is refused too.
    assert.throws(() => new CapsuleParser().push(hex('00 ffffffffffffffff')), CapsuleError)
  })

  void it('holds at most one partial capsule and says so at the end of the stream', () => {
    const parser = new CapsuleParser()
    const wire = Buffer.concat([encodeDatagram(Buffer.from('a')), encodeDatagram(Buffer.from('bcd'))])
    assert.equal(parser.push(wire.subarray(0, wire.length - 1)).length, 1)
    assert.equal(parser.pendingBytes, encodeDatagram(Buffer.from('bcd')).length - 1)
    assert.throws(() => parser.end(), CapsuleError)
    const truncatedHeader = new CapsuleParser()
    assert.deepEqual(truncatedHeader.push(hex('40')), [])
    assert.throws(() => truncatedHeader.end(), CapsuleError, 'a truncated varint at the end of the stream')
  })
})
