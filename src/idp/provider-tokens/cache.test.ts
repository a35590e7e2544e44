import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { TokenCache } from './cache.js'
import type { VerifiedProviderToken } from './verifier.js'

void describe('TokenCache', () => {
  const value = (subject: string): VerifiedProviderToken => ({ subject, claims: { sub: subject }, expiresAt: 0 })

  void it('keys on the whole token and the context', () => {
    const cache = new TokenCache<VerifiedProviderToken>({ now: () => 0 })
    cache.set('header.payload.sig1', value('t1'), 1000)
    assert.equal(cache.get('header.payload.sig1')?.subject, 't1')
    assert.equal(cache.get('header.payload.sig2'), undefined)
    assert.equal(cache.get('header.payload.sig'), undefined)
    assert.equal(cache.get('header.payload.sig1 '), undefined)
    assert.equal(cache.get('header.payload.sig1', 'id\n["other"]'), undefined)
    assert.notEqual(TokenCache.keyOf('ab', 'c'), TokenCache.keyOf('b', 'ca'))
    assert.notEqual(TokenCache.keyOf('t', ''), TokenCache.keyOf('t', 'x'))
    assert.match(TokenCache.keyOf('t'), /^[A-Za-z0-9_-]{43}$/)
  })

  void it('expires entries and never stores an expired one', () => {
    let clock = 0
    const cache = new TokenCache<VerifiedProviderToken>({ now: () => clock })
    cache.set('t1', value('t1'), 100)
    cache.set('t2', value('t2'), 0)
    assert.equal(cache.size, 1)
    clock = 99
    assert.equal(cache.get('t1')?.subject, 't1')
    clock = 100
    assert.equal(cache.get('t1'), undefined)
    assert.equal(cache.size, 0)
  })

  void it('is bounded, dropping the least recently used entry', () => {
    const cache = new TokenCache<VerifiedProviderToken>({ maxEntries: 3, now: () => 0 })
    for (const t of ['a', 'b', 'c']) cache.set(t, value(t), 1000)
    assert.equal(cache.get('a')?.subject, 'a') // a is now the most recent
    cache.set('d', value('d'), 1000)
    assert.equal(cache.size, 3)
    assert.equal(cache.get('b'), undefined)
    assert.deepEqual(['a', 'c', 'd'].map((t) => cache.get(t)?.subject), ['a', 'c', 'd'])
    for (let i = 0; i < 100; i++) cache.set(`x${i}`, value('x'), 1000)
    assert.equal(cache.size, 3)
    cache.delete('x99')
    assert.equal(cache.size, 2)
    cache.clear()
    assert.equal(cache.size, 0)
    assert.throws(() => new TokenCache({ maxEntries: 0 }), TypeError)
  })
})
