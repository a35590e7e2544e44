/**
 * The identity manager (Pomerium docs: Refresh, Pomerium's `pkg/identity/manager`): refreshes sessions'
 * tokens shortly before they expire, re-reads every user's UserInfo every ten minutes and deletes
 * sessions past their end, without waiting for a request. Refresh-on-use (`SessionRefresher`)
 * stays as the fallback for a request that arrives with already-expired tokens; both write
 * through `SessionStore.update`, and a permanent refusal only ends a session nobody renewed
 * meanwhile.
 *
 * Leadership: every instance runs one, but only the holder of a named lease in the shared store
 * acts. The lease is renewed every third of its duration; a manager that fails to renew it (or
 * whose lease ran out before it could) stops acting at once and tries to take it again later, so
 * with N instances on one PostgreSQL exactly one refreshes, and another takes over within one
 * lease duration when the leader stops or hangs.
 *
 * Sessions are learnt from `syncLatest(SESSION_TYPE)` and then `sync` (new, updated and deleted
 * sessions), so the manager never polls the whole table; the stream restarts from `syncLatest`
 * when the store has pruned the tombstones it needs (`ERR_DATABROKER_SYNC_TOO_OLD`).
 */
import type { IdentityManagerMetrics } from '../observability/metrics.js'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdentityProvider } from '../idp/provider.js'
import { isIdentityProviderError } from '../idp/provider.js'
import { refreshSession } from './refresh.js'
import { REFRESH_COOL_OFF_MS, REFRESH_LEAD_MS } from './refresher.js'
import { SESSION_TYPE } from './session-store.js'
import type { Session, SessionStore } from './session-store.js'
import { userFromClaims } from './users.js'
import type { Logger } from '../shared/log.js'
import { isDataBrokerError } from '../databroker/errors.js'
import type { Clock, DataRecord, RecordStore } from '../databroker/types.js'
import { systemClock } from '../databroker/types.js'

export type { IdentityManagerMetrics }

export interface IdentityManagerOptions {
  readonly store: RecordStore
  readonly sessions: SessionStore
  readonly providerFor: (idpId: string) => IdentityProvider | undefined
  readonly logger: Logger
  /** Time for scheduling and leases (default: the system clock). Timers still run on real time. */
  readonly clock?: Clock
  /** The lease that elects the one acting instance (default `identity-manager`). */
  readonly leaseName?: string
  /** Lease duration (default 30 s, as Pomerium); renewed every third of it. */
  readonly leaseMs?: number
  /** How often each user's UserInfo is read again (default 10 minutes). */
  readonly userInfoIntervalMs?: number
  /** How often, in real milliseconds, the manager looks at its lease and due work (default 1 s, at most a sixth of the lease). */
  readonly tickMs?: number
  /** The most refreshes and UserInfo reads in flight at once (default 16). */
  readonly concurrency?: number
}


export interface IdentityManager {
  /** Stops acting, ends the sync stream and releases the lease. */
  stop(): Promise<void>
  metrics(): IdentityManagerMetrics
  isLeader(): boolean
  /**
   * Runs one round now (lease, then every due refresh, deletion and UserInfo read) and waits for
   * the work it started. The timer does the same every `tickMs`; tests with a manual clock call it.
   */
  tick(): Promise<void>
}

/** Retries after a temporary failure back off up to this. */
const MAX_RETRY_MS = 5 * 60_000
/** A failed UserInfo read is tried again after this (or the UserInfo interval, if shorter). */
const USER_INFO_RETRY_MS = 60_000
/** Waits between attempts to restart a sync stream that failed (not on SYNC_TOO_OLD, which restarts at once). */
const SYNC_RETRY_MS = 1_000
/** How long `stop` waits for refreshes in flight (they write nothing once stopped). */
const STOP_WAIT_MS = 5_000

/** What scheduling needs of a session, read from the stored record (tokens stay sealed). */
interface Entry {
  readonly id: string
  userId: string
  idpId: string
  issuedAt: number
  expiresAt: number
  tokenExpiresAt: number | undefined
  tokenObtainedAt: number | undefined
  hasAccessToken: boolean
  hasRefreshToken: boolean
  bearer: boolean
  /** When this manager last tried to refresh these tokens. */
  lastAttemptAt: number | undefined
  /** Consecutive temporary failures for these tokens, and when to try again. */
  failures: number
  retryAt: number | undefined
}

interface UserState {
  readonly sessionIds: Set<string>
  /** When UserInfo is next due. */
  nextAt: number
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const optionalNumber = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined)

/** The scheduling fields of a stored session, or undefined when the data is not a session. */
function entryFields(data: unknown): Omit<Entry, 'lastAttemptAt' | 'failures' | 'retryAt'> | undefined {
  if (!isObject(data)) return undefined
  const { id, userId, idpId, issuedAt, expiresAt } = data
  if (typeof id !== 'string' || typeof userId !== 'string' || typeof idpId !== 'string' || typeof issuedAt !== 'number' || typeof expiresAt !== 'number') return undefined
  return {
    id,
    userId,
    idpId,
    issuedAt,
    expiresAt,
    tokenExpiresAt: optionalNumber(data['tokenExpiresAt']),
    tokenObtainedAt: optionalNumber(data['tokenObtainedAt']),
    hasAccessToken: typeof data['accessToken'] === 'string',
    hasRefreshToken: typeof data['refreshToken'] === 'string',
    bearer: data['fromBearerToken'] === true,
  }
}

/** A quarter of the token lifetime: short-lived tokens scale the refresh lead and cool-off down (as refresher.ts). */
function quarterLifetime(e: Entry): number {
  return e.tokenExpiresAt === undefined ? 0 : Math.max(0, e.tokenExpiresAt - (e.tokenObtainedAt ?? e.issuedAt)) / 4
}

/**
 * When a session next needs the manager: its end, or its refresh time (Pomerium docs: Refresh) = token
 * expiry (the earlier of access and ID token) minus the lead (1 min, or a quarter of the token
 * lifetime if shorter), never sooner than the cool-off (10 s, or that quarter) after the tokens
 * were obtained or last tried, nor before a retry after a temporary failure.
 */
function nextDueAt(e: Entry, refreshable: boolean): number {
  if (!refreshable || e.bearer || e.tokenExpiresAt === undefined) return e.expiresAt
  const quarter = quarterLifetime(e)
  const coolOff = Math.min(REFRESH_COOL_OFF_MS, quarter)
  let at = Math.max(e.tokenExpiresAt - Math.min(REFRESH_LEAD_MS, quarter), (e.tokenObtainedAt ?? e.issuedAt) + coolOff)
  if (e.lastAttemptAt !== undefined) at = Math.max(at, e.lastAttemptAt + coolOff)
  if (e.retryAt !== undefined) at = Math.max(at, e.retryAt)
  return Math.min(at, e.expiresAt)
}

export function startIdentityManager(options: IdentityManagerOptions): IdentityManager {
  const manager = new Manager(options)
  manager.start()
  return manager
}

class Manager implements IdentityManager {
  readonly #store: RecordStore
  readonly #sessions: SessionStore
  readonly #providerFor: (idpId: string) => IdentityProvider | undefined
  readonly #log: Logger
  readonly #clock: Clock
  readonly #leaseName: string
  readonly #leaseMs: number
  readonly #userInfoMs: number
  readonly #tickMs: number
  readonly #concurrency: number

  #stopped = false
  #timer: NodeJS.Timeout | undefined
  #ticking: Promise<void> | undefined
  #leaseId: string | undefined
  /** When the lease was last acquired or renewed (manager clock). */
  #renewedAt = 0
  #syncAbort: AbortController | undefined
  /** Settles once the first snapshot after becoming leader is loaded (or failed). */
  #ready: Promise<void> | undefined
  readonly #entries = new Map<string, Entry>()
  readonly #users = new Map<string, UserState>()
  readonly #inFlight = new Map<string, Promise<void>>()

  #m = {
    sessionRefreshSuccess: 0,
    sessionRefreshError: 0,
    sessionDeleted: 0,
    userInfoRefreshSuccess: 0,
    userInfoRefreshError: 0,
    lastRefreshAt: undefined as number | undefined,
    sessionRefreshSuccessAt: undefined as number | undefined,
    sessionRefreshErrorAt: undefined as number | undefined,
    userInfoRefreshSuccessAt: undefined as number | undefined,
    userInfoRefreshErrorAt: undefined as number | undefined,
  }

  constructor(o: IdentityManagerOptions) {
    this.#store = o.store
    this.#sessions = o.sessions
    this.#providerFor = o.providerFor
    this.#log = o.logger
    this.#clock = o.clock ?? systemClock
    this.#leaseName = o.leaseName ?? 'identity-manager'
    this.#leaseMs = o.leaseMs ?? 30_000
    this.#userInfoMs = o.userInfoIntervalMs ?? 10 * 60_000
    this.#tickMs = o.tickMs ?? Math.max(1, Math.min(1_000, Math.floor(this.#leaseMs / 6)))
    this.#concurrency = o.concurrency ?? 16
  }

  start(): void {
    this.#timer = setInterval(() => void this.#tickOnce(), this.#tickMs)
    this.#timer.unref()
    void this.#tickOnce()
  }

  isLeader(): boolean {
    return this.#leaseId !== undefined
  }

  metrics(): IdentityManagerMetrics {
    return { ...this.#m, leader: this.isLeader(), sessions: this.#entries.size }
  }

  async tick(): Promise<void> {
    await this.#tickOnce()
    await Promise.allSettled([...this.#inFlight.values()])
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearInterval(this.#timer)
    await this.#ticking?.catch(() => undefined)
    const leaseId = this.#leaseId
    this.#stepDown()
    // Work in flight writes nothing more (`#acting` is false); give it a moment to settle.
    const pending = Promise.allSettled([...this.#inFlight.values()])
    await Promise.race([pending, sleep(STOP_WAIT_MS, undefined, { ref: false })])
    if (leaseId !== undefined) {
      try {
        await this.#store.releaseLease(this.#leaseName, leaseId)
      } catch (err) {
        this.#log.debug({ err: String(err) }, 'identity manager: could not release its lease')
      }
    }
  }

  /** Whether this instance may write: it holds the lease and the lease has not run out by its own clock. */
  #acting(): boolean {
    return !this.#stopped && this.#leaseId !== undefined && this.#clock.now() < this.#renewedAt + this.#leaseMs
  }

  #tickOnce(): Promise<void> {
    // Rounds never overlap; a timer firing during one is skipped.
    this.#ticking ??= this.#round().finally(() => {
      this.#ticking = undefined
    })
    return this.#ticking
  }

  async #round(): Promise<void> {
    if (this.#stopped) return
    await this.#keepLease()
    if (!this.#acting()) return
    await this.#ready
    if (!this.#acting()) return
    this.#launchDueWork()
  }

  async #keepLease(): Promise<void> {
    const now = this.#clock.now()
    try {
      if (this.#leaseId === undefined) {
        const id = await this.#store.acquireLease(this.#leaseName, this.#leaseMs)
        if (id === undefined || this.#stopped) {
          if (id !== undefined) await this.#store.releaseLease(this.#leaseName, id)
          return
        }
        this.#leaseId = id
        this.#renewedAt = now
        this.#log.info({ lease: this.#leaseName }, 'identity manager: this instance now refreshes sessions')
        this.#startSync()
      } else if (now - this.#renewedAt >= this.#leaseMs / 3 || now >= this.#renewedAt + this.#leaseMs) {
        const renewed = now < this.#renewedAt + this.#leaseMs && (await this.#store.renewLease(this.#leaseName, this.#leaseId, this.#leaseMs))
        if (renewed) this.#renewedAt = now
        else {
          this.#log.warn({ lease: this.#leaseName }, 'identity manager: lost its lease; another instance refreshes sessions')
          this.#stepDown()
        }
      }
    } catch (err) {
      // The store cannot tell whether we still hold the lease: stop acting; the lease runs out.
      if (this.#leaseId !== undefined) {
        this.#log.warn({ err: String(err) }, 'identity manager: could not renew its lease; stopping until it can')
        this.#stepDown()
      } else this.#log.debug({ err: String(err) }, 'identity manager: could not acquire its lease')
    }
  }

  #stepDown(): void {
    this.#leaseId = undefined
    this.#syncAbort?.abort()
    this.#syncAbort = undefined
    this.#ready = undefined
    this.#entries.clear()
    this.#users.clear()
  }

  // ---- learning about sessions ----

  #startSync(): void {
    const abort = new AbortController()
    this.#syncAbort = abort
    let markReady: () => void = () => undefined
    this.#ready = new Promise<void>((resolve) => {
      markReady = resolve
    })
    void this.#syncLoop(abort.signal, markReady)
  }

  async #syncLoop(signal: AbortSignal, markReady: () => void): Promise<void> {
    try {
      while (!signal.aborted) {
        try {
          const latest = await this.#store.syncLatest(SESSION_TYPE)
          if (signal.aborted) return
          const seen = new Set<string>()
          for (const r of latest.records) {
            seen.add(r.id)
            this.#track(r)
          }
          for (const id of [...this.#entries.keys()]) if (!seen.has(id)) this.#untrack(id)
          markReady()
          for await (const r of this.#store.sync(latest.latestRecordVersion, { type: SESSION_TYPE, signal })) this.#track(r)
          if (signal.aborted) return
        } catch (err) {
          if (signal.aborted) return
          if (isDataBrokerError(err, 'ERR_DATABROKER_SYNC_TOO_OLD')) {
            this.#log.info('identity manager: session changes were pruned before it read them; starting over from a snapshot')
            continue
          }
          if (isDataBrokerError(err, 'ERR_DATABROKER_CLOSED')) return
          this.#log.warn({ err: String(err) }, 'identity manager: the session change stream failed; restarting')
          markReady()
          await sleep(SYNC_RETRY_MS, undefined, { signal, ref: false }).catch(() => undefined)
        }
      }
    } finally {
      markReady()
    }
  }

  #track(record: DataRecord): void {
    const fields = record.deletedAt === undefined ? entryFields(record.data) : undefined
    if (!fields || fields.id !== record.id) {
      this.#untrack(record.id)
      return
    }
    const old = this.#entries.get(record.id)
    if (old && old.userId !== fields.userId) this.#untrack(record.id)
    const current = this.#entries.get(record.id)
    if (current) {
      const newTokens = current.tokenObtainedAt !== fields.tokenObtainedAt || current.tokenExpiresAt !== fields.tokenExpiresAt
      Object.assign(current, fields)
      if (newTokens) {
        current.failures = 0
        current.retryAt = undefined
      }
      return
    }
    this.#entries.set(record.id, { ...fields, lastAttemptAt: undefined, failures: 0, retryAt: undefined })
    if (fields.bearer) return
    const user = this.#users.get(fields.userId)
    // A session just signed in (or refreshed) carries fresh UserInfo claims.
    const freshAt = (fields.tokenObtainedAt ?? fields.issuedAt) + this.#userInfoMs
    if (user) user.sessionIds.add(record.id)
    else this.#users.set(fields.userId, { sessionIds: new Set([record.id]), nextAt: Math.min(freshAt, this.#clock.now() + this.#userInfoMs) })
  }

  #untrack(id: string): void {
    const e = this.#entries.get(id)
    if (!e) return
    this.#entries.delete(id)
    const user = this.#users.get(e.userId)
    if (!user) return
    user.sessionIds.delete(id)
    if (user.sessionIds.size === 0) this.#users.delete(e.userId)
  }

  // ---- due work ----

  #refreshable(e: Entry): boolean {
    if (e.bearer) return false
    const provider = this.#providerFor(e.idpId)
    if (!provider) return false
    return provider.refreshWith === 'access_token' ? e.hasAccessToken : e.hasRefreshToken
  }

  #launchDueWork(): void {
    const now = this.#clock.now()
    for (const e of this.#entries.values()) {
      if (this.#inFlight.size >= this.#concurrency) return
      if (this.#inFlight.has(`s:${e.id}`)) continue
      if (nextDueAt(e, this.#refreshable(e)) <= now) this.#launch(`s:${e.id}`, () => this.#processSession(e))
    }
    for (const [userId, user] of this.#users) {
      if (this.#inFlight.size >= this.#concurrency) return
      if (user.nextAt <= now && !this.#inFlight.has(`u:${userId}`)) this.#launch(`u:${userId}`, () => this.#processUser(userId, user))
    }
  }

  #launch(key: string, work: () => Promise<void>): void {
    const p = work()
      .catch((err: unknown) => {
        // Store failures (unavailable, closed): the work is due again next round.
        this.#log.warn({ err: String(err) }, 'identity manager: could not complete its work; will retry')
      })
      .finally(() => this.#inFlight.delete(key))
    this.#inFlight.set(key, p)
  }

  #count(kind: 'sessionRefreshSuccess' | 'sessionRefreshError' | 'userInfoRefreshSuccess' | 'userInfoRefreshError'): void {
    const now = this.#clock.now()
    this.#m[kind]++
    const at = `${kind}At` as const
    this.#m[at] = now
    if (kind === 'sessionRefreshSuccess' || kind === 'userInfoRefreshSuccess') this.#m.lastRefreshAt = now
  }

  async #deleteSession(id: string): Promise<void> {
    if (!this.#acting()) return
    await this.#sessions.delete(id)
    this.#m.sessionDeleted++
    this.#untrack(id)
  }

  async #processSession(e: Entry): Promise<void> {
    if (!this.#acting()) return
    const now = this.#clock.now()
    if (now >= e.expiresAt) {
      this.#log.debug({ sessionId: e.id }, 'identity manager: session has expired; deleting it')
      await this.#deleteSession(e.id)
      return
    }
    const session = await this.#sessions.get(e.id)
    if (!session) {
      this.#untrack(e.id)
      return
    }
    // Refresh-on-use (or another leader) may have renewed it since the stream told us.
    if (session.tokenObtainedAt !== e.tokenObtainedAt || session.tokenExpiresAt !== e.tokenExpiresAt) {
      e.tokenObtainedAt = session.tokenObtainedAt
      e.tokenExpiresAt = session.tokenExpiresAt
      e.failures = 0
      e.retryAt = undefined
      if (nextDueAt(e, this.#refreshable(e)) > now) return
    }
    const outcome = await refreshSession(session, {
      sessions: this.#sessions,
      provider: this.#providerFor(session.idpId),
      nowMs: () => this.#clock.now(),
      onAttempt: () => (e.lastAttemptAt = now),
      proceed: () => this.#acting(),
    })
    switch (outcome.kind) {
      case 'unrefreshable':
      case 'abandoned':
        return
      case 'gone':
        if (outcome.refused) this.#count('sessionRefreshError')
        this.#untrack(session.id)
        return
      case 'renewed-elsewhere':
        this.#count('sessionRefreshError')
        return
      case 'refused':
        this.#count('sessionRefreshError')
        this.#log.info({ sessionId: session.id, userId: session.userId, reason: outcome.reason }, 'the identity provider refused to refresh the session; it has ended')
        await this.#deleteSession(session.id)
        return
      case 'failed': {
        this.#count('sessionRefreshError')
        e.failures++
        const base = Math.max(250, Math.min(REFRESH_COOL_OFF_MS, quarterLifetime(e)))
        e.retryAt = this.#clock.now() + Math.min(MAX_RETRY_MS, base * 2 ** Math.min(e.failures - 1, 20))
        this.#log.warn({ sessionId: session.id, failures: e.failures, err: outcome.error }, 'identity manager: session refresh failed; will retry')
        return
      }
      case 'refreshed':
        break
    }
    const refreshed = outcome.session
    Object.assign(e, { tokenExpiresAt: refreshed.tokenExpiresAt, tokenObtainedAt: refreshed.tokenObtainedAt, failures: 0, retryAt: undefined, hasRefreshToken: refreshed.refreshToken !== undefined, hasAccessToken: true })
    // The refresh re-read UserInfo.
    const user = this.#users.get(session.userId)
    if (user) user.nextAt = Math.max(user.nextAt, this.#clock.now() + this.#userInfoMs)
    this.#count('sessionRefreshSuccess')
    this.#log.debug({ sessionId: session.id }, 'identity manager: session refreshed')
  }

  async #processUser(userId: string, user: UserState): Promise<void> {
    if (!this.#acting()) return
    const now = this.#clock.now()
    user.nextAt = now + this.#userInfoMs
    // Any live session of the user with an access token can read UserInfo.
    let reader: Session | undefined
    for (const id of user.sessionIds) {
      const e = this.#entries.get(id)
      if (!e || e.bearer || !e.hasAccessToken || now >= e.expiresAt) continue
      const s = await this.#sessions.get(id)
      if (s?.accessToken !== undefined && this.#providerFor(s.idpId)) {
        reader = s
        break
      }
    }
    if (!reader?.accessToken) return
    const provider = this.#providerFor(reader.idpId)
    if (!provider) return
    const subject = reader.idpSubject ?? (typeof reader.claims['sub'] === 'string' ? reader.claims['sub'] : reader.userId)
    let info: Readonly<Record<string, unknown>>
    try {
      info = await provider.userInfo(reader.accessToken, subject)
    } catch (err) {
      if (!this.#acting()) return
      this.#count('userInfoRefreshError')
      user.nextAt = this.#clock.now() + Math.min(this.#userInfoMs, USER_INFO_RETRY_MS)
      this.#log.warn({ userId, err: isIdentityProviderError(err) ? err.message : String(err) }, 'identity manager: UserInfo read failed; will retry')
      return
    }
    if (!this.#acting()) return
    let userClaims: Readonly<Record<string, unknown>> | undefined
    for (const id of [...user.sessionIds]) {
      const s = await this.#sessions.get(id)
      if (!s || s.fromBearerToken === true || s.idpId !== reader.idpId) continue
      // UserInfo wins over the ID token's claims, except `sub` (reference: mergeClaims).
      const claims = { ...s.claims, ...info, sub: s.claims['sub'] ?? info['sub'] }
      if (id === reader.id) userClaims = claims
      if (JSON.stringify(claims) === JSON.stringify(s.claims)) continue
      if (!this.#acting()) return
      await this.#sessions.update({ ...s, claims })
    }
    if (!this.#acting()) return
    await this.#sessions.putUser(userFromClaims(userId, userClaims ?? { ...reader.claims, ...info, sub: reader.claims['sub'] ?? info['sub'] }))
    this.#count('userInfoRefreshSuccess')
  }
}
