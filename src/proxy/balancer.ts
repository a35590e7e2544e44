/**
 * Load balancing across a route's `to` targets (`load_balancing_policy`), with the availability
 * rules Envoy applies: endpoints failing active health checks or passively ejected are skipped,
 * unless fewer than `healthy_panic_threshold` percent are available, in which case all are used
 * (a half-broken cluster should degrade, not go dark).
 */
import type { LoadBalancingPolicy } from '../config/types.js'

/** What the balancer needs to know about an endpoint. */
export interface Balanced {
  readonly key: string
  readonly weight: number
  /** Requests in flight (for LEAST_REQUEST). */
  readonly active: number
  isAvailable(now: number): boolean
}

export interface Balancer<E extends Balanced> {
  /** Picks an endpoint; `hashKey` is used by RING_HASH and MAGLEV. */
  pick(hashKey: string): E | undefined
}

export const DEFAULT_PANIC_THRESHOLD_PERCENT = 50
const MAGLEV_TABLE_SIZE = 65537
const RING_POINTS_PER_WEIGHT = 128

/** FNV-1a 32-bit: fast and well spread for short keys; not used for anything secret. */
export function hash32(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  // Final avalanche (murmur3 fmix32) so that similar keys land far apart.
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b) >>> 0
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35) >>> 0
  h ^= h >>> 16
  return h >>> 0
}

export function createBalancer<E extends Balanced>(
  policy: LoadBalancingPolicy,
  endpoints: readonly E[],
  panicThresholdPercent = DEFAULT_PANIC_THRESHOLD_PERCENT,
): Balancer<E> {
  const pool = new AvailabilityPool(endpoints, panicThresholdPercent)
  switch (policy) {
    case 'ROUND_ROBIN':
      return new RoundRobin(pool)
    case 'RANDOM':
      return new RandomPick(pool)
    case 'LEAST_REQUEST':
      return new LeastRequest(pool)
    case 'RING_HASH':
      return new HashTableBalancer(pool, buildRing)
    case 'MAGLEV':
      return new HashTableBalancer(pool, buildMaglev)
  }
}

/** Tracks which endpoints are usable now; recomputed at most every few ms, not per request. */
class AvailabilityPool<E extends Balanced> {
  readonly all: readonly E[]
  readonly #panicThreshold: number
  #usable: readonly E[]
  #checkedAt = -Infinity
  /** Bumped whenever the usable set changes, so hash tables know to rebuild. */
  version = 0

  constructor(all: readonly E[], panicThresholdPercent: number) {
    this.all = all
    this.#usable = all
    this.#panicThreshold = panicThresholdPercent
  }

  usable(): readonly E[] {
    const now = Date.now()
    if (now - this.#checkedAt < 5) return this.#usable
    this.#checkedAt = now
    const available = this.all.filter((e) => e.isAvailable(now))
    const next = available.length * 100 < this.all.length * this.#panicThreshold ? this.all : available
    if (next.length !== this.#usable.length || next.some((e, i) => e !== this.#usable[i])) {
      this.#usable = next
      this.version++
    }
    return this.#usable
  }
}

/** A weighted, interleaved schedule: each endpoint appears `weight` times, spread out. */
function schedule<E extends Balanced>(endpoints: readonly E[]): E[] {
  const out: E[] = []
  const current = endpoints.map(() => 0)
  const total = endpoints.reduce((s, e) => s + e.weight, 0)
  for (let n = 0; n < total; n++) {
    let best = 0
    for (let i = 0; i < endpoints.length; i++) {
      current[i] = (current[i] as number) + (endpoints[i] as E).weight
      if ((current[i] as number) > (current[best] as number)) best = i
    }
    current[best] = (current[best] as number) - total
    out.push(endpoints[best] as E)
  }
  return out
}

/** Keeps the weighted schedule of the usable endpoints, rebuilt when that set changes. */
abstract class ScheduledBalancer<E extends Balanced> implements Balancer<E> {
  readonly #pool: AvailabilityPool<E>
  #schedule: E[] = []
  #version = -1
  constructor(pool: AvailabilityPool<E>) {
    this.#pool = pool
  }
  protected current(): E[] {
    const usable = this.#pool.usable()
    if (this.#version !== this.#pool.version || this.#schedule.length === 0) {
      this.#schedule = schedule(usable)
      this.#version = this.#pool.version
    }
    return this.#schedule
  }
  abstract pick(hashKey: string): E | undefined
}

class RoundRobin<E extends Balanced> extends ScheduledBalancer<E> {
  #next = 0
  pick(): E | undefined {
    const list = this.current()
    if (list.length === 0) return undefined
    this.#next = (this.#next + 1) % list.length
    return list[this.#next]
  }
}

class RandomPick<E extends Balanced> extends ScheduledBalancer<E> {
  pick(): E | undefined {
    const list = this.current()
    return list[Math.floor(Math.random() * list.length)]
  }
}

/** Power of two choices, by requests in flight per unit of weight (Envoy's default). */
class LeastRequest<E extends Balanced> implements Balancer<E> {
  readonly #pool: AvailabilityPool<E>
  constructor(pool: AvailabilityPool<E>) {
    this.#pool = pool
  }
  pick(): E | undefined {
    const usable = this.#pool.usable()
    if (usable.length <= 1) return usable[0]
    const a = usable[Math.floor(Math.random() * usable.length)] as E
    let b = usable[Math.floor(Math.random() * usable.length)] as E
    if (b === a) b = usable[(usable.indexOf(a) + 1) % usable.length] as E
    return a.active / a.weight <= b.active / b.weight ? a : b
  }
}

type TableBuilder = <E extends Balanced>(endpoints: readonly E[]) => (hash: number) => E | undefined

class HashTableBalancer<E extends Balanced> implements Balancer<E> {
  readonly #pool: AvailabilityPool<E>
  readonly #build: TableBuilder
  #lookup: (hash: number) => E | undefined = () => undefined
  #version = -1
  constructor(pool: AvailabilityPool<E>, build: TableBuilder) {
    this.#pool = pool
    this.#build = build
  }
  pick(hashKey: string): E | undefined {
    const usable = this.#pool.usable()
    if (this.#version !== this.#pool.version) {
      this.#lookup = this.#build(usable)
      this.#version = this.#pool.version
    }
    return this.#lookup(hash32(hashKey))
  }
}

/** Consistent hash ring (Ketama-style virtual nodes), searched by binary search. */
const buildRing: TableBuilder = <E extends Balanced>(endpoints: readonly E[]) => {
  const points: { h: number; e: E }[] = []
  for (const e of endpoints) {
    const n = RING_POINTS_PER_WEIGHT * e.weight
    for (let i = 0; i < n; i++) points.push({ h: hash32(`${e.key}#${i}`), e })
  }
  points.sort((x, y) => x.h - y.h)
  const hashes = Uint32Array.from(points.map((p) => p.h))
  return (hash: number) => {
    if (points.length === 0) return undefined
    let lo = 0
    let hi = hashes.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((hashes[mid] as number) < hash) lo = mid + 1
      else hi = mid
    }
    return (points[lo === points.length ? 0 : lo] as { e: E }).e
  }
}

/** Maglev lookup table (Eisenbud et al. 2016), with weights as extra turns per round. */
const buildMaglev: TableBuilder = <E extends Balanced>(endpoints: readonly E[]) => {
  const m = MAGLEV_TABLE_SIZE
  if (endpoints.length === 0) return () => undefined
  const table = new Int32Array(m).fill(-1)
  const offsets = endpoints.map((e) => hash32(e.key, 0x9747b28c) % m)
  const skips = endpoints.map((e) => (hash32(e.key, 0x5bd1e995) % (m - 1)) + 1)
  const next = endpoints.map(() => 0)
  let filled = 0
  while (filled < m) {
    for (let i = 0; i < endpoints.length && filled < m; i++) {
      for (let turn = 0; turn < (endpoints[i] as E).weight && filled < m; turn++) {
        let c = ((offsets[i] as number) + (next[i] as number) * (skips[i] as number)) % m
        while (table[c] !== -1) {
          next[i] = (next[i] as number) + 1
          c = ((offsets[i] as number) + (next[i] as number) * (skips[i] as number)) % m
        }
        table[c] = i
        next[i] = (next[i] as number) + 1
        filled++
      }
    }
  }
  return (hash: number) => endpoints[table[hash % m] as number]
}
