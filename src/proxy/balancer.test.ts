import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createBalancer } from './balancer.js'
import type { Balanced } from './balancer.js'

class E implements Balanced {
  active = 0
  up = true
  constructor(
    readonly key: string,
    readonly weight = 1,
  ) {}
  isAvailable(): boolean {
    return this.up
  }
}

/**
 * The balancer re-reads availability at most every 5 ms of the real clock (balancer.ts): after
 * marking an endpoint down, a test lets that window pass. Deliberately a pause, not a wait for a
 * condition: the window is the condition.
 */
const pastAvailabilityWindow = (): Promise<void> => new Promise((r) => setTimeout(r, 10))

function counts(pick: () => E | undefined, n: number): Map<string, number> {
  const m = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const e = pick()
    if (e) m.set(e.key, (m.get(e.key) ?? 0) + 1)
  }
  return m
}

test('ROUND_ROBIN follows the weights exactly and interleaves', () => {
  const a = new E('a', 3)
  const b = new E('b', 1)
  const lb = createBalancer('ROUND_ROBIN', [a, b])
  const seq = Array.from({ length: 8 }, () => lb.pick('')?.key).join('')
  assert.equal(seq.split('').filter((c) => c === 'a').length, 6)
  assert.ok(!seq.includes('bb'))
})

test('unavailable endpoints are skipped until fewer than half remain (panic mode uses all)', async () => {
  const a = new E('a')
  const b = new E('b')
  const c = new E('c')
  const lb = createBalancer('ROUND_ROBIN', [a, b, c])
  b.up = false
  await pastAvailabilityWindow()
  const m = counts(() => lb.pick(''), 30)
  assert.equal(m.get('b'), undefined)
  a.up = false
  await pastAvailabilityWindow()
  const panic = counts(() => lb.pick(''), 30)
  assert.equal(panic.size, 3, 'one of three healthy is below the 50% panic threshold')
})

test('RANDOM spreads over all endpoints by weight', () => {
  const lb = createBalancer('RANDOM', [new E('a', 1), new E('b', 3)])
  const m = counts(() => lb.pick(''), 4000)
  const share = (m.get('b') ?? 0) / 4000
  assert.ok(share > 0.65 && share < 0.85, `b share ${share}`)
})

test('LEAST_REQUEST prefers the endpoint with fewer requests in flight', () => {
  const a = new E('a')
  const b = new E('b')
  a.active = 10
  const lb = createBalancer('LEAST_REQUEST', [a, b])
  const m = counts(() => lb.pick(''), 200)
  assert.ok((m.get('b') ?? 0) > 140, `b picked ${m.get('b')}`)
})

for (const policy of ['RING_HASH', 'MAGLEV'] as const) {
  test(`${policy} is sticky per key, spreads keys, and moves only the keys of a removed endpoint`, async () => {
    const es = [new E('http://a'), new E('http://b'), new E('http://c'), new E('http://d')]
    const lb = createBalancer(policy, es)
    const before = new Map<string, string>()
    for (let i = 0; i < 2000; i++) before.set(`10.0.${i >> 8}.${i & 255}`, lb.pick(`10.0.${i >> 8}.${i & 255}`)?.key ?? '')
    for (const [k, v] of before) assert.equal(lb.pick(k)?.key, v)
    const spread = new Set(before.values())
    assert.equal(spread.size, 4)
    ;(es[3] as E).up = false
    await pastAvailabilityWindow()
    let moved = 0
    for (const [k, v] of before) {
      const now = lb.pick(k)?.key
      assert.notEqual(now, 'http://d')
      if (v !== 'http://d' && now !== v) moved++
    }
    assert.ok(moved < 2000 * 0.1, `${moved} keys of healthy endpoints moved`)
  })
}
