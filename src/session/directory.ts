/**
 * Directory data (docs/directory.md): the users and groups of the organisation's directory, as
 * Pomerium's `DirectoryUser` / `DirectoryGroup` records in the databroker. Two writers fill them:
 * the pull sync of `src/directory` (Google, Entra ID, Okta, GitHub, …) and the SCIM 2.0 endpoint
 * (a provider pushes). The authorize service reads them through {@link DirectoryCopy}, a synced
 * local copy, so a request costs a map lookup and never a store round trip.
 *
 * Membership is kept on the group (`memberIds`: user ids; `nestedGroupIds`: groups nested in
 * it), as directory APIs and SCIM deliver it, typed so a user id can never be taken for a group
 * id; the copy derives each user's groups (transitively) once per burst of changes.
 */
import { isDataBrokerError } from '../databroker/index.js'
import type { DataRecord, RecordStore } from '../databroker/index.js'
import type { Logger } from '../shared/log.js'

export const DIRECTORY_USER_TYPE = 'pomerium.io/DirectoryUser'
export const DIRECTORY_GROUP_TYPE = 'pomerium.io/DirectoryGroup'

/** Who wrote a record: the pull sync replaces only its own; SCIM only its own. */
export type DirectorySource = 'sync' | 'scim' | 'file'

export interface DirectoryUserRecord {
  readonly id: string
  readonly source: DirectorySource
  readonly email?: string | undefined
  /**
   * The directory vouches for the email: an administrator set it, or the provider verified it.
   * Unset: not known to be verified (the `email` and `domain` criteria then refuse it).
   */
  readonly emailVerified?: boolean | undefined
  readonly displayName?: string | undefined
  /** false: the user is in the directory but deactivated (no groups, as if removed). */
  readonly active: boolean
  /** The provider's own id of the user (SCIM `externalId`), matched against the session's user id. */
  readonly externalId?: string | undefined
  /** SCIM `userName` (often the email or UPN). */
  readonly userName?: string | undefined
  /** `userName` lower-cased: SCIM looks users up (and keeps them unique) by it. */
  readonly userNameKey?: string | undefined
  /** The SCIM resource as last written (SCIM only), with its `meta`. */
  readonly scim?: Readonly<Record<string, unknown>> | undefined
}

export interface DirectoryGroupRecord {
  readonly id: string
  readonly source: DirectorySource
  readonly name: string
  readonly email?: string | undefined
  /** Direct members: user ids. */
  readonly memberIds: readonly string[]
  /** Groups nested in this one (their members are members of this group). */
  readonly nestedGroupIds?: readonly string[] | undefined
  readonly externalId?: string | undefined
  /** `name` lower-cased, for SCIM's `displayName eq` lookups. */
  readonly nameKey?: string | undefined
  readonly scim?: Readonly<Record<string, unknown>> | undefined
}

/** What the directory says of one signed-in user. */
export interface DirectoryEntry {
  readonly userId: string
  /** The directory's email, when it has one. */
  readonly email: string | undefined
  /** Whether the directory vouches for that email. */
  readonly emailVerified: boolean
  /** Group ids and names (each group's id, then its name when it differs), transitively. */
  readonly groups: readonly string[]
}

/** How long after a change the index is rebuilt (changes meanwhile are taken in the same rebuild). */
const REBUILD_DELAY_MS = 50

/** The answer for a user the directory does not know, or has deactivated: no groups. */
const NOT_IN_DIRECTORY: DirectoryEntry = Object.freeze({ userId: '', email: undefined, emailVerified: false, groups: Object.freeze([]) })

export function parseDirectoryUser(data: unknown): DirectoryUserRecord | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  const d = data as Record<string, unknown>
  if (typeof d['id'] !== 'string' || d['id'] === '') return undefined
  return data as DirectoryUserRecord
}

export function parseDirectoryGroup(data: unknown): DirectoryGroupRecord | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  const d = data as Record<string, unknown>
  if (typeof d['id'] !== 'string' || d['id'] === '' || typeof d['name'] !== 'string' || !Array.isArray(d['memberIds'])) return undefined
  return data as DirectoryGroupRecord
}

function canonicalEmail(email: string): string {
  return email.trim().toLowerCase()
}

/** Reads the directory for a session. */
export interface DirectoryLookup {
  /** Changes whenever the directory data does (views built from an older generation are rebuilt). */
  readonly generation: number
  /**
   * Whether sessions of this provider read their groups from the directory. Undefined providers
   * (no sync, no SCIM) keep the token's `groups` claim.
   */
  manages(idpId: string): boolean
  /**
   * The directory's view of a user: matched by id, else `externalId`, else (when the provider
   * says the session's email is verified: `email_verified: true`) a directory user whose email or
   * `userName` is that email and whom the directory vouches for. Unknown or deactivated users get
   * no groups.
   */
  lookup(userId: string, verifiedEmail: string | undefined): DirectoryEntry
}

interface DirectoryCopyOptions {
  /** Which providers' sessions the directory speaks for (by `idp_id`); may change on reload. */
  readonly manages: (idpId: string) => boolean
  readonly retryMs?: number
}

/**
 * The synced local copy of the directory records. Until its first snapshot is in, `lookup` answers
 * "no groups" for managed providers (fail closed: a group rule does not pass on missing data).
 */
export class DirectoryCopy implements DirectoryLookup {
  readonly #store: RecordStore
  readonly #logger: Logger
  readonly #options: DirectoryCopyOptions
  readonly #users = new Map<string, DirectoryUserRecord>()
  readonly #groups = new Map<string, DirectoryGroupRecord>()
  readonly #abort = new AbortController()
  #running: Promise<void>[] = []
  #generation = 0
  #index: Index | undefined
  #rebuild: NodeJS.Timeout | undefined
  #readyTypes = new Set<string>()
  #waiters: Array<() => void> = []

  constructor(store: RecordStore, logger: Logger, options: DirectoryCopyOptions) {
    this.#store = store
    this.#logger = logger
    this.#options = options
  }

  get generation(): number {
    return this.#generation
  }

  get ready(): boolean {
    return this.#readyTypes.size === 2
  }

  manages(idpId: string): boolean {
    return this.#options.manages(idpId)
  }

  lookup(userId: string, verifiedEmail: string | undefined): DirectoryEntry {
    const index = (this.#index ??= this.#build())
    const user =
      index.usersById.get(userId) ?? index.usersByExternalId.get(userId) ?? (verifiedEmail ? index.usersByEmail.get(canonicalEmail(verifiedEmail)) : undefined)
    if (!user || !user.active) return NOT_IN_DIRECTORY
    return index.entries.get(user.id) ?? NOT_IN_DIRECTORY
  }

  /** Every directory user and group, as the copy has them (the `portcullis directory` command, tests). */
  snapshot(): { users: DirectoryUserRecord[]; groups: DirectoryGroupRecord[] } {
    return { users: [...this.#users.values()], groups: [...this.#groups.values()] }
  }

  /** Resolves once the first snapshot of both record types is in. */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  start(): void {
    if (this.#running.length > 0) return
    this.#running = [
      this.#follow(DIRECTORY_USER_TYPE, (r) => this.#apply(this.#users, r, parseDirectoryUser)),
      this.#follow(DIRECTORY_GROUP_TYPE, (r) => this.#apply(this.#groups, r, parseDirectoryGroup)),
    ]
  }

  async stop(): Promise<void> {
    clearTimeout(this.#rebuild)
    this.#abort.abort()
    await Promise.all(this.#running.map((p) => p.catch(() => undefined)))
  }

  #apply<T>(map: Map<string, T>, r: DataRecord, parse: (d: unknown) => T | undefined): void {
    const value = r.deletedAt === undefined ? parse(r.data) : undefined
    if (value) map.set(r.id, value)
    else map.delete(r.id)
    this.#changed()
  }

  /**
   * A change arrived. The index is rebuilt once for a burst of changes (a sync's batch, SCIM
   * provisioning one user at a time), REBUILD_DELAY_MS after the first, off the request path;
   * until then lookups read the previous index. Views built from it are rebuilt when the
   * generation moves, which happens when the new index is in.
   */
  #changed(): void {
    if (this.#index === undefined) return
    this.#rebuild ??= setTimeout(() => {
      this.#rebuild = undefined
      this.#index = this.#build()
    }, REBUILD_DELAY_MS).unref()
  }

  #build(): Index {
    this.#generation++
    return buildIndex(this.#users, this.#groups)
  }

  async #follow(type: string, apply: (r: DataRecord) => void): Promise<void> {
    const signal = this.#abort.signal
    const map = type === DIRECTORY_USER_TYPE ? this.#users : this.#groups
    while (!signal.aborted) {
      try {
        const latest = await this.#store.syncLatest(type)
        map.clear()
        for (const r of latest.records) apply(r)
        this.#changed()
        if (!this.#readyTypes.has(type)) {
          this.#readyTypes.add(type)
          if (this.ready) for (const w of this.#waiters.splice(0)) w()
        }
        for await (const r of this.#store.sync(latest.latestRecordVersion, { type, signal })) apply(r)
      } catch (err) {
        if (signal.aborted || (isDataBrokerError(err) && err.code === 'ERR_DATABROKER_CLOSED')) return
        if (!(isDataBrokerError(err) && err.code === 'ERR_DATABROKER_SYNC_TOO_OLD')) {
          this.#logger.warn({ err: err instanceof Error ? err.message : String(err), type }, 'directory copy sync interrupted; retrying')
          await new Promise((r) => setTimeout(r, this.#options.retryMs ?? 1000).unref())
        }
      }
    }
  }
}

interface Index {
  readonly usersById: ReadonlyMap<string, DirectoryUserRecord>
  readonly usersByExternalId: ReadonlyMap<string, DirectoryUserRecord>
  readonly usersByEmail: ReadonlyMap<string, DirectoryUserRecord>
  readonly entries: ReadonlyMap<string, DirectoryEntry>
}

/** Each user's groups, with nested groups resolved (a member of a member group is a member). */
export function buildIndex(users: ReadonlyMap<string, DirectoryUserRecord>, groups: ReadonlyMap<string, DirectoryGroupRecord>): Index {
  const usersByExternalId = new Map<string, DirectoryUserRecord>()
  const usersByEmail = new Map<string, DirectoryUserRecord>()
  for (const u of users.values()) {
    if (u.externalId) usersByExternalId.set(u.externalId, u)
    // Only emails the directory vouches for can match a session by email: an unverified directory
    // email must not hand its groups to whoever signs in with that address.
    if (u.emailVerified !== true) continue
    for (const e of [u.email, u.userName]) {
      if (e && e.includes('@') && !usersByEmail.has(canonicalEmail(e))) usersByEmail.set(canonicalEmail(e), u)
    }
  }
  // Which groups each group is directly a member of (nested groups), then each user's direct groups.
  const parents = new Map<string, string[]>()
  const direct = new Map<string, string[]>()
  const add = (map: Map<string, string[]>, key: string, groupId: string): void => {
    const list = map.get(key)
    if (list) list.push(groupId)
    else map.set(key, [groupId])
  }
  for (const g of groups.values()) {
    for (const m of g.memberIds) add(direct, m, g.id)
    for (const n of g.nestedGroupIds ?? []) add(parents, n, g.id)
  }
  const closure = new Map<string, readonly string[]>()
  const ancestorsOf = (groupId: string): readonly string[] => {
    const known = closure.get(groupId)
    if (known) return known
    const seen = new Set<string>([groupId])
    const stack = [groupId]
    while (stack.length > 0) {
      const g = stack.pop() as string
      for (const p of parents.get(g) ?? []) {
        if (!seen.has(p)) {
          seen.add(p)
          stack.push(p)
        }
      }
    }
    const all = [...seen]
    closure.set(groupId, all)
    return all
  }
  const entries = new Map<string, DirectoryEntry>()
  for (const u of users.values()) {
    const ids = new Set<string>()
    for (const g of direct.get(u.id) ?? []) for (const a of ancestorsOf(g)) ids.add(a)
    const out: string[] = []
    const seen = new Set<string>()
    for (const id of [...ids].sort()) {
      const name = groups.get(id)?.name
      for (const v of [id, name]) {
        if (v && !seen.has(v)) {
          seen.add(v)
          out.push(v)
        }
      }
    }
    entries.set(u.id, Object.freeze({ userId: u.id, email: u.email || undefined, emailVerified: u.emailVerified === true, groups: Object.freeze(out) }))
  }
  return { usersById: users, usersByExternalId, usersByEmail, entries }
}
