import assert from 'node:assert/strict'
import { test } from 'node:test'

import { addressKey, LoginRateLimiter, RequestRateLimiter } from './rate-limit.js'

const MINUTE = 60_000

function limiter(now: { t: number }, maxEntries?: number): LoginRateLimiter {
  return new LoginRateLimiter({
    perUser: { max: 5, windowMs: 15 * MINUTE },
    perIp: { max: 20, windowMs: 15 * MINUTE },
    now: () => now.t,
    ...(maxEntries !== undefined ? { maxEntries } : {}),
  })
}

test('five failures for one email lock that email, whatever the address and spelling', () => {
  const now = { t: 1_000_000 }
  const rl = limiter(now)
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(rl.check('ada@example.com', `192.0.2.${i}`), { limited: false })
    rl.recordFailure(i % 2 === 0 ? 'ada@example.com' : '  ADA@Example.COM ', `192.0.2.${i}`)
    now.t += MINUTE
  }
  const decision = rl.check('Ada@example.com', '198.51.100.7')
  assert.equal(decision.limited, true)
  assert.equal(decision.limited && decision.scope, 'user')
  // The first failure was at t0; the window frees it 15 minutes later, 10 minutes from now.
  assert.equal(decision.limited && decision.retryAfterMs, 10 * MINUTE)
  assert.deepEqual(rl.check('grace@example.com', '198.51.100.7'), { limited: false }, 'other accounts unaffected')
  // NFKC: a full-width "ａ" is the same key as "a".
  assert.equal(rl.check('\uff41da@example.com', '198.51.100.7').limited, true)
})

test('the window slides: each old failure that leaves it frees one attempt', () => {
  const now = { t: 0 }
  const rl = limiter(now)
  for (let i = 0; i < 5; i++) {
    rl.recordFailure('ada@example.com', '192.0.2.1')
    now.t += MINUTE
  }
  now.t = 15 * MINUTE - 1
  assert.equal(rl.check('ada@example.com', '192.0.2.1').limited, true)
  now.t = 15 * MINUTE + 1
  assert.deepEqual(rl.check('ada@example.com', '192.0.2.1'), { limited: false })
  rl.recordFailure('ada@example.com', '192.0.2.1')
  assert.equal(rl.check('ada@example.com', '192.0.2.1').limited, true, 'one freed, one used')
})

test('twenty failures from one address lock the address for every email; a success does not reset it', () => {
  const now = { t: 0 }
  const rl = limiter(now)
  for (let i = 0; i < 20; i++) {
    rl.recordFailure(`user${i}@example.com`, '203.0.113.9')
    rl.recordSuccess(`user${i}@example.com`)
  }
  const decision = rl.check('new@example.com', '203.0.113.9')
  assert.equal(decision.limited && decision.scope, 'ip')
  assert.equal(decision.limited && decision.retryAfterMs, 15 * MINUTE)
  assert.deepEqual(rl.check('new@example.com', '203.0.113.10'), { limited: false })
})

test('a success clears the email\'s failures', () => {
  const now = { t: 0 }
  const rl = limiter(now)
  for (let i = 0; i < 4; i++) rl.recordFailure('ada@example.com', '192.0.2.1')
  rl.recordSuccess('ADA@example.com')
  for (let i = 0; i < 4; i++) rl.recordFailure('ada@example.com', '192.0.2.2')
  assert.deepEqual(rl.check('ada@example.com', '192.0.2.3'), { limited: false })
})

test('IPv6 counts per /64 and IPv4-mapped addresses as IPv4', () => {
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
  assert.equal(addressKey('::ffff:192.0.2.1'), '192.0.2.1')
  assert.equal(addressKey('::ffff:c000:0201'), '192.0.2.1')
  assert.equal(addressKey('192.0.2.1'), '192.0.2.1')
  assert.equal(addressKey('::1'), '0:0:0:0::/64')
  const now = { t: 0 }
  const rl = limiter(now)
  for (let i = 0; i < 20; i++) rl.recordFailure(`u${i}@example.com`, `2001:db8:1:2::${(i + 1).toString(16)}`)
  assert.equal(rl.check('x@example.com', '2001:db8:1:2:ffff::9').limited, true)
  assert.equal(rl.check('x@example.com', '2001:db8:1:3::1').limited, false)
})

test('hostile: memory stays bounded under a spray of emails and addresses', () => {
  const now = { t: 0 }
  const rl = limiter(now, 100)
  for (let i = 0; i < 5000; i++) rl.recordFailure(`spray${i}@example.com`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
  assert.deepEqual(rl.size, { users: 100, ips: 100 })
  // The most recent failures are the ones kept.
  for (let i = 0; i < 4; i++) rl.recordFailure('spray4999@example.com', '192.0.2.1')
  assert.equal(rl.check('spray4999@example.com', '192.0.2.2').limited, true)
})

test('reserve: an attempt counts as soon as it is let through, so concurrent attempts see it', () => {
  const now = { t: 0 }
  const rl = limiter(now)
  // Five attempts in flight at once, none of them checked yet: the sixth is refused.
  const inFlight = Array.from({ length: 5 }, () => rl.reserve('ada@example.com', '192.0.2.1'))
  assert.ok(inFlight.every((a) => !a.limited))
  const sixth = rl.reserve('ada@example.com', '192.0.2.1')
  assert.equal(sixth.limited && sixth.scope, 'user')
  // One of them had the right password: it hands its reservation back, which frees one attempt.
  const first = inFlight[0]
  assert.ok(first && !first.limited)
  first.release()
  first.release() // twice is once
  const next = rl.reserve('ada@example.com', '192.0.2.1')
  assert.equal(next.limited, false)
  assert.equal(rl.reserve('ada@example.com', '192.0.2.1').limited, true)
})

test('reserve counts against the address too, and a release gives it back', () => {
  const now = { t: 0 }
  const rl = limiter(now)
  const held = Array.from({ length: 20 }, (_, i) => rl.reserve(`user${i}@example.com`, '203.0.113.9'))
  const refused = rl.reserve('new@example.com', '203.0.113.9')
  assert.equal(refused.limited && refused.scope, 'ip')
  for (const attempt of held) if (!attempt.limited) attempt.release()
  assert.deepEqual(rl.check('new@example.com', '203.0.113.9'), { limited: false })
  assert.deepEqual(rl.size, { users: 0, ips: 0 }, 'released reservations leave nothing behind')
})

test('RequestRateLimiter: per address (IPv6 per /64), sliding, refused requests do not count', () => {
  const now = { t: 0 }
  const rl = new RequestRateLimiter({ perIp: { max: 3, windowMs: MINUTE }, now: () => now.t })
  for (let i = 0; i < 3; i++) assert.deepEqual(rl.take('2001:db8::1'), { limited: false })
  now.t = 10_000
  assert.deepEqual(rl.take('2001:db8::2'), { limited: true, retryAfterMs: 50_000 }, 'the same /64')
  assert.deepEqual(rl.take('2001:db8:0:1::1'), { limited: false }, 'another /64')
  for (let i = 0; i < 100; i++) rl.take('2001:db8::1')
  now.t = MINUTE
  assert.deepEqual(rl.take('2001:db8::1'), { limited: false }, 'the refused ones did not extend the window')
  assert.throws(() => new RequestRateLimiter({ perIp: { max: 0, windowMs: MINUTE } }), /positive whole max/)
})
