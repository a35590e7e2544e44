import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { isBrowserLoopbackHost, isLoopbackHost } from './loopback.js'

const hostname = (url: string): string => new URL(url).hostname

void describe('isLoopbackHost', () => {
  void it('accepts localhost, 127.0.0.0/8 and ::1, in any case', () => {
    for (const host of ['localhost', 'LOCALHOST', 'LocalHost', '127.0.0.1', '127.0.0.0', '127.255.255.255', '127.1.2.3', '[::1]', '::1']) {
      assert.equal(isLoopbackHost(host), true, host)
    }
  })

  void it('accepts what URL parsing normalises to a loopback address', () => {
    for (const url of ['http://127.1/', 'http://0x7f.1/', 'http://2130706433/', 'http://0177.0.0.1/', 'http://127.0.0.1./', 'http://[0:0:0:0:0:0:0:1]/', 'http://LOCALHOST:8080/']) {
      assert.equal(isLoopbackHost(hostname(url)), true, url)
    }
  })

  void it('refuses localhost with a trailing dot: resolvers may send it to DNS', () => {
    assert.equal(isLoopbackHost('localhost.'), false)
    assert.equal(isLoopbackHost(hostname('http://localhost./')), false)
    assert.equal(isLoopbackHost(hostname('http://127.0.0.1../')), false)
  })

  void it('refuses look-alikes, other networks and names under localhost', () => {
    for (const host of [
      '',
      'localhost.example.com',
      'notlocalhost',
      'app.localhost',
      '127.0.0.1.example.com',
      '127.0.0.1.nip.io',
      '127.256.0.1',
      '127.0.0.1000',
      '127.0.0',
      '128.0.0.1',
      '0.0.0.0',
      '10.0.0.1',
      '[::]',
      '[::2]',
      '[::ffff:7f00:1]',
      '[::1]:80',
      ' localhost',
      'localhost ',
    ]) {
      assert.equal(isLoopbackHost(host), false, JSON.stringify(host))
    }
    assert.equal(isLoopbackHost(hostname('http://[::ffff:127.0.0.1]/')), false, 'IPv4-mapped')
    assert.equal(isLoopbackHost(hostname('http://127.0.0.1.example.com/')), false)
  })
})

void describe('isBrowserLoopbackHost', () => {
  void it('adds names under localhost to isLoopbackHost', () => {
    for (const host of ['localhost', '127.0.0.1', '[::1]', 'app.localhost', 'a.b.localhost', 'APP.LOCALHOST']) {
      assert.equal(isBrowserLoopbackHost(host), true, host)
    }
  })

  void it('refuses empty labels, trailing dots and look-alikes', () => {
    for (const host of ['.localhost', 'a..localhost', 'app.localhost.', 'localhost.', 'applocalhost', 'app.localhost.example.com', 'example.com']) {
      assert.equal(isBrowserLoopbackHost(host), false, host)
    }
  })
})
