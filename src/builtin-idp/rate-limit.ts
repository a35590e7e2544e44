/**
 * Limits on failed sign-ins to the built-in identity provider, per account and per client
 * address, each over a sliding window: by default 5 failures per email and 20 per address in 15
 * minutes. While a limit holds, the password is not even checked, so guessing costs the attacker
 * time and costs the server nothing.
 *
 * The per-email limit counts every email tried, existing or not, so the limit itself does not
 * reveal which accounts exist. A success clears that email's failures (not the address's: one
 * valid account must not reset an address that is guessing others). IPv6 clients are counted per
 * /64, the block one subscriber usually gets, and IPv4-mapped addresses as IPv4.
 *
 * An attempt counts as a failure from the moment it is let through (`reserve`), before its
 * password is checked: the check is asynchronous, so counting only its result would let a
 * concurrent burst through whole. A right password hands its reservation back.
 *
 * Memory is bounded: each table keeps at most `maxEntries` keys, dropping the key that failed
 * least recently, and each key holds at most `max` timestamps.
 *
 * `RequestRateLimiter` limits, per client address, the requests that store something for whoever
 * sends them (an authorization request stores an interaction, an end-session request a
 * session): unlimited, they are a cheap way to fill the provider's memory.
 */
import { isIPv4, isIPv6 } from 'node:net'

import { canonicalEmail } from './users.js'

export interface LimitRule {
  /** Failures allowed within the window; the next attempt is refused. */
  readonly max: number
  readonly windowMs: number
}

interface LoginRateLimiterOptions {
  /** Default 5 failures per 15 minutes. */
  perUser?: LimitRule
  /** Default 20 failures per 15 minutes. */
  perIp?: LimitRule
  /** Keys kept per table (default 10,000). */
  maxEntries?: number
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
}

type LimitDecision =
  | { readonly limited: false }
  | { readonly limited: true; readonly scope: 'user' | 'ip'; readonly retryAfterMs: number }

/** An attempt let through and already counted as a failure, or a refusal. */
type LoginAttempt =
  | {
      readonly limited: false
      /** The credentials were right, or were not checked after all: the attempt stops counting. */
      release(): void
    }
  | { readonly limited: true; readonly scope: 'user' | 'ip'; readonly retryAfterMs: number }

const FIFTEEN_MINUTES = 15 * 60_000

/** One table of failure timestamps, oldest first, with least-recently-failed eviction. */
class SlidingWindow {
  private readonly entries = new Map<string, number[]>()

  constructor(
    private readonly rule: LimitRule,
    private readonly maxEntries: number,
  ) {
    if (!Number.isInteger(rule.max) || rule.max <= 0 || !(rule.windowMs > 0)) {
      throw new TypeError(`built-in IdP: a rate limit needs a positive whole max and a positive windowMs, got ${JSON.stringify(rule)}`)
    }
  }

  /** Milliseconds until another attempt is allowed, or 0 when one is allowed now. */
  retryAfter(key: string, now: number): number {
    const times = this.live(key, now)
    if (!times || times.length < this.rule.max) return 0
    return (times[times.length - this.rule.max] as number) + this.rule.windowMs - now
  }

  add(key: string, now: number): void {
    const times = this.live(key, now) ?? []
    times.push(now)
    if (times.length > this.rule.max) times.splice(0, times.length - this.rule.max)
    this.entries.delete(key) // re-insert: Map order is then least-recently-failed first
    this.entries.set(key, times)
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) break
      this.entries.delete(oldest.value)
    }
  }

  /** Takes back one timestamp added at `time` (a reservation), if it is still held. */
  remove(key: string, time: number): void {
    const times = this.entries.get(key)
    if (!times) return
    const index = times.lastIndexOf(time)
    if (index < 0) return
    times.splice(index, 1)
    if (times.length === 0) this.entries.delete(key)
  }

  clear(key: string): void {
    this.entries.delete(key)
  }

  get size(): number {
    return this.entries.size
  }

  private live(key: string, now: number): number[] | undefined {
    const times = this.entries.get(key)
    if (!times) return undefined
    const firstLive = times.findIndex((t) => t > now - this.rule.windowMs)
    if (firstLive < 0) {
      this.entries.delete(key)
      return undefined
    }
    if (firstLive > 0) times.splice(0, firstLive)
    return times
  }
}

export class LoginRateLimiter {
  private readonly users: SlidingWindow
  private readonly ips: SlidingWindow
  private readonly now: () => number

  constructor(options: LoginRateLimiterOptions = {}) {
    const maxEntries = options.maxEntries ?? 10_000
    this.users = new SlidingWindow(options.perUser ?? { max: 5, windowMs: FIFTEEN_MINUTES }, maxEntries)
    this.ips = new SlidingWindow(options.perIp ?? { max: 20, windowMs: FIFTEEN_MINUTES }, maxEntries)
    this.now = options.now ?? Date.now
  }

  /** Whether a sign-in attempt for `email` from `ip` may proceed. */
  check(email: string, ip: string): LimitDecision {
    const now = this.now()
    const user = this.users.retryAfter(canonicalEmail(email), now)
    const address = this.ips.retryAfter(addressKey(ip), now)
    if (user === 0 && address === 0) return { limited: false }
    return user >= address ? { limited: true, scope: 'user', retryAfterMs: user } : { limited: true, scope: 'ip', retryAfterMs: address }
  }

  /**
   * Lets an attempt through when no limit holds, counting it as a failure at once: concurrent
   * attempts see it while its password is still being checked. Call `release()` when the
   * credentials turn out right (or were not checked); a failed attempt needs nothing more.
   */
  reserve(email: string, ip: string): LoginAttempt {
    const decision = this.check(email, ip)
    if (decision.limited) return decision
    const now = this.now()
    const user = canonicalEmail(email)
    const address = addressKey(ip)
    this.users.add(user, now)
    this.ips.add(address, now)
    let held = true
    return {
      limited: false,
      release: () => {
        if (!held) return
        held = false
        this.users.remove(user, now)
        this.ips.remove(address, now)
      },
    }
  }

  recordFailure(email: string, ip: string): void {
    const now = this.now()
    this.users.add(canonicalEmail(email), now)
    this.ips.add(addressKey(ip), now)
  }

  /** A complete sign-in clears the account's failures; the address keeps its count. */
  recordSuccess(email: string): void {
    this.users.clear(canonicalEmail(email))
  }

  /** Keys held, for tests of the memory bound. */
  get size(): { users: number; ips: number } {
    return { users: this.users.size, ips: this.ips.size }
  }
}

interface RequestRateLimiterOptions {
  /** Default 60 requests per minute per address. */
  perIp?: LimitRule
  /** Addresses kept (default 10,000), least recently seen dropped first. */
  maxEntries?: number
  now?: () => number
}

/** Requests per client address over a sliding window; refused requests do not count. */
export class RequestRateLimiter {
  private readonly ips: SlidingWindow
  private readonly now: () => number

  constructor(options: RequestRateLimiterOptions = {}) {
    this.ips = new SlidingWindow(options.perIp ?? { max: 60, windowMs: 60_000 }, options.maxEntries ?? 10_000)
    this.now = options.now ?? Date.now
  }

  /** Counts one request from `ip`, or says how long until it may make another. */
  take(ip: string): { readonly limited: false } | { readonly limited: true; readonly retryAfterMs: number } {
    const now = this.now()
    const key = addressKey(ip)
    const retryAfterMs = this.ips.retryAfter(key, now)
    if (retryAfterMs > 0) return { limited: true, retryAfterMs }
    this.ips.add(key, now)
    return { limited: false }
  }

  get size(): number {
    return this.ips.size
  }
}

/** The key an address is counted under: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 per /64. */
export function addressKey(ip: string): string {
  const address = ip.trim()
  if (isIPv4(address)) return address
  if (!isIPv6(address)) return address.toLowerCase()
  const groups = expandIPv6(address.split('%')[0] ?? address)
  if (!groups) return address.toLowerCase()
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6)
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`
}

function expandIPv6(address: string): number[] | undefined {
  let text = address.toLowerCase()
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const octets = (v4[1] as string).split('.').map(Number)
    const [a = 0, b = 0, c = 0, d = 0] = octets
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((g) => parseInt(g, 16)) : [])
  const head = parse(halves[0])
  const tail = parse(halves[1])
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0
  const groups = [...head, ...new Array<number>(fill).fill(0), ...tail]
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined
}
