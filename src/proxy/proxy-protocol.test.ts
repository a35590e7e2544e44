import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseProxyHeader } from './proxy-protocol.js'

test('PROXY v1 TCP4/TCP6/UNKNOWN headers give the client address and the header length', () => {
  const v4 = parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n'))
  assert.deepEqual(v4, { kind: 'ok', proxied: { address: '203.0.113.7', port: 51234 }, consumed: 43 })
  const v6 = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n'))
  assert.equal(v6.kind === 'ok' && v6.proxied.address, '2001:db8::1')
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { kind: 'ok', proxied: { address: undefined, port: undefined }, consumed: 15 })
})

test('PROXY v1: partial headers wait, garbage and over-long headers are refused', () => {
  assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 1.2')).kind, 'incomplete')
  assert.equal(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'invalid')
  assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n')).kind, 'invalid')
  assert.equal(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(200)}`)).kind, 'invalid')
})

test('PROXY v2 PROXY/LOCAL commands over IPv4 and IPv6', () => {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
  const v4body = Buffer.from([198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb])
  const v4 = Buffer.concat([sig, Buffer.from([0x21, 0x11, 0, 12]), v4body, Buffer.from('GET')])
  assert.deepEqual(parseProxyHeader(v4), { kind: 'ok', proxied: { address: '198.51.100.9', port: 8080 }, consumed: 28 })
  const local = Buffer.concat([sig, Buffer.from([0x20, 0x00, 0, 0])])
  assert.deepEqual(parseProxyHeader(local), { kind: 'ok', proxied: { address: undefined, port: undefined }, consumed: 16 })
  const v6body = Buffer.alloc(36)
  v6body.writeUInt16BE(0x2001, 0)
  v6body.writeUInt16BE(0x0db8, 2)
  v6body.writeUInt16BE(7, 14)
  v6body.writeUInt16BE(443, 32)
  const v6 = parseProxyHeader(Buffer.concat([sig, Buffer.from([0x21, 0x21, 0, 36]), v6body]))
  assert.equal(v6.kind === 'ok' && v6.proxied.address, '2001:db8::7')
  assert.equal(parseProxyHeader(sig.subarray(0, 8)).kind, 'incomplete')
  assert.equal(parseProxyHeader(Buffer.concat([sig, Buffer.from([0x11, 0x11, 0, 0])])).kind, 'invalid')
})
