/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/** `source_ip`: IPv4 and IPv6 ranges, IPv4-mapped addresses, and malformed client addresses (fail closed). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { holds, input, pplErrors } from './test-helpers.js'

const from = (ranges: string | string[], ip: string): boolean => holds({ source_ip: ranges }, input(undefined, { clientIp: ip }))

test('IPv4 addresses and CIDRs', () => {
  assert.equal(from('10.0.0.0/8', '10.255.0.1'), true)
  assert.equal(from('10.0.0.0/8', '11.0.0.1'), false)
  assert.equal(from('192.168.1.5', '192.168.1.5'), true)
  assert.equal(from('192.168.1.5', '192.168.1.6'), false)
  assert.equal(from('0.0.0.0/0', '203.0.113.9'), true)
  assert.equal(from('255.255.255.255/32', '255.255.255.255'), true)
  assert.equal(from('172.16.0.0/12', '172.31.255.255'), true)
  assert.equal(from('172.16.0.0/12', '172.32.0.0'), false)
  // Host bits in the range are masked, as net.ParseCIDR does.
  assert.equal(from('10.1.2.3/8', '10.9.9.9'), true)
  assert.equal(from(['8.8.8.8', '10.0.0.0/8'], '10.0.0.1'), true)
})

test('IPv6 addresses and CIDRs', () => {
  assert.equal(from('2001:db8::/32', '2001:db8:1234::1'), true)
  assert.equal(from('2001:db8::/32', '2001:db9::1'), false)
  assert.equal(from('2001:db8::/32', '2001:DB8::1'), true)
  assert.equal(from('::1', '::1'), true)
  assert.equal(from('::1', '0:0:0:0:0:0:0:1'), true)
  assert.equal(from('fe80::/10', 'fe80::1%eth0'), true)
  assert.equal(from('2001:db8:0:0:8000::/65', '2001:db8::8000:0:0:1'), true)
  assert.equal(from('2001:db8:0:0:8000::/65', '2001:db8::7fff:0:0:1'), false)
  assert.equal(from('2001:db8::1:0:0:1/128', '2001:db8:0:0:1::1'), true)
  assert.equal(from('::/0', '2001:db8::1'), true)
  assert.equal(from('2001:db8:a:b:c:d:e:f/127', '2001:db8:a:b:c:d:e:e'), true)
  assert.equal(from('2001:db8:a:b:c:d:e:f/127', '2001:db8:a:b:c:d:e:10'), false)
})

test('IPv4-mapped IPv6 clients and ranges count as IPv4; families stay apart otherwise', () => {
  assert.equal(from('10.0.0.0/8', '::ffff:10.1.2.3'), true)
  assert.equal(from('10.0.0.0/8', '::FFFF:0a01:0203'), true)
  assert.equal(from('::ffff:10.0.0.0/104', '10.1.2.3'), true)
  assert.equal(from('::ffff:10.0.0.0/104', '11.1.2.3'), false)
  assert.equal(from('::ffff:10.1.2.3', '10.1.2.3'), true)
  assert.equal(from('::/0', '10.1.2.3'), false)
  assert.equal(from('0.0.0.0/0', '2001:db8::1'), false)
})

test('hostile: a malformed client IP is in no range, never an exception', () => {
  for (const bad of ['', 'nope', '10.0.0', '10.0.0.1.2', '10.0.0.256', '010.0.0.1', '10.0.0.1/8', ' 10.0.0.1', '10.0.0.1 ', '[::1]', '::1:', '1:::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '::ffff:10.0.0', 'g::1', '12345::1', '10.0.0.1:443', '1:2:3:4:5:6:7::8', '::%', 'x'.repeat(100)]) {
    assert.equal(from(['0.0.0.0/0', '::/0'], bad), false, JSON.stringify(bad))
  }
})

test('bad ranges are configuration errors at their index', () => {
  assert.deepEqual(pplErrors({ allow: { or: [{ source_ip: ['10.0.0.0/8', '10.0.0.0/33'] }] } }, 'p'), ['p.allow.or[0].source_ip[1]: "10.0.0.0/33" has an invalid prefix length (0-32)'])
  assert.deepEqual(pplErrors({ allow: { or: [{ source_ip: 'example.com' }] } }, 'p'), ['p.allow.or[0].source_ip: "example.com" is not an IP address or CIDR range'])
  assert.deepEqual(pplErrors({ allow: { or: [{ source_ip: '2001:db8::/129' }] } }, 'p'), ['p.allow.or[0].source_ip: "2001:db8::/129" has an invalid prefix length (0-128)'])
  assert.deepEqual(pplErrors({ allow: { or: [{ source_ip: 'fe80::1%eth0' }] } }, 'p'), ['p.allow.or[0].source_ip: "fe80::1%eth0" is not an IP address or CIDR range'])
  assert.deepEqual(pplErrors({ allow: { or: [{ source_ip: [] }] } }, 'p'), ['p.allow.or[0].source_ip: expected an IP address or CIDR range, or a non-empty list of them, got an empty list'])
  assert.deepEqual(pplErrors({ allow: { or: [{ source_ip: [10] }] } }, 'p'), ['p.allow.or[0].source_ip: expected an IP address or CIDR range, or a non-empty list of them, got a list'])
  assert.equal(pplErrors({ allow: { or: [{ source_ip: '10.0.0.0/08' }] } }).length, 1)
})
