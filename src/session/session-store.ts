/**
 * Sessions and users in the databroker (Pomerium docs: Databroker model, Session storage summary). The cookie only names a session;
 * everything else — tokens, claims, lifetime — is read from here, so a session deleted here
 * (sign-out, back-channel logout, failed refresh) stops working on every route at once.
 * Record types use Pomerium's names, so tooling that lists databroker records reads the same.
 */
import { hkdfSync, randomBytes } from 'node:crypto'
import { open, seal } from './sealed.js'
import type { Clock, RecordStore } from '../databroker/index.js'

export const SESSION_TYPE = 'type.googleapis.com/session.Session'
const USER_TYPE = 'type.googleapis.com/user.User'

export interface Session {
  readonly id: string
  readonly userId: string
  readonly idpId: string
  /** Unix ms. */
  readonly issuedAt: number
  /** Unix ms: issue time + `cookie_expire`; the session ends then whatever the tokens say. */
  readonly expiresAt: number
  readonly accessToken: string | undefined
  readonly refreshToken: string | undefined
  readonly idToken: string | undefined
  /** Unix ms when the access/ID token expires, if known; drives refresh. */
  readonly tokenExpiresAt: number | undefined
  /** Unix ms when the current tokens were obtained (sign-in or last refresh); absent = `issuedAt`. */
  readonly tokenObtainedAt?: number
  /** ID token and UserInfo claims, merged. */
  readonly claims: Readonly<Record<string, unknown>>
  /** The provider's own session id (`sid` claim), for back-channel logout. */
  readonly idpSessionId?: string
  /** The provider's subject (`sub`), which may differ from `userId` (Azure uses `oid`). */
  readonly idpSubject?: string
  /** Made from a provider bearer token (`bearer_token_format`), not by signing in. */
  readonly fromBearerToken?: boolean
  /** WebAuthn device credentials that authenticated this session (docs/devices.md), as Pomerium's `device_credentials`. */
  readonly deviceCredentialIds?: readonly string[]
  /**
   * Set on the request path's view of a session ({@link SessionStore.getForRequest}): the tokens
   * this session has, which that view leaves out (they stay sealed in the store).
   */
  readonly elidedTokens?: readonly TokenField[]
}

export type TokenField = 'accessToken' | 'refreshToken' | 'idToken'

export interface User {
  readonly id: string
  readonly email: string
  readonly name: string
  readonly claims: Readonly<Record<string, unknown>>
}

export type NewSession = Omit<Session, 'id' | 'issuedAt' | 'expiresAt'>

/** A fresh, unguessable session id (128 bits); a new one at every sign-in (hostile-input case: sessions / cookies / csrf). */
function newSessionId(): string {
  return randomBytes(16).toString('base64url')
}

const TOKEN_FIELDS: readonly TokenField[] = ['accessToken', 'refreshToken', 'idToken']
/** Whole sessions `get` keeps beside the slim copy (token-forwarding routes, sign-out, the identity manager). */
const WHOLE_SESSIONS_KEPT = 2_000

/**
 * The request path's form of a stored session: the record without its sealed tokens, which the
 * request path never reads (they are for refresh, sign-out and token-forwarding routes, which read
 * the whole record). A synced copy keeps this form: about a quarter of the record's size.
 */
export function slimSessionData(data: unknown): unknown {
  if (!isObject(data) || !TOKEN_FIELDS.some((f) => data[f] !== undefined)) return data
  const out: Record<string, unknown> = {}
  const elided: TokenField[] = []
  for (const [k, v] of Object.entries(data)) {
    if ((TOKEN_FIELDS as readonly string[]).includes(k)) {
      if (v !== undefined) elided.push(k as TokenField)
    } else {
      out[k] = v
    }
  }
  out['elidedTokens'] = elided
  return out
}

function isSlim(data: Session): boolean {
  return data.elidedTokens !== undefined
}
/** Marks a token sealed at rest; anything else is read as written (stores made before encryption). */
const SEALED_PREFIX = 'sealed:v1:'

/** The key that seals session tokens at rest, derived from the shared secret. */
export function sessionTokenKey(sharedSecret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), 'portcullis session tokens at rest', 32))
}

/** A local copy of session records (see session-cache.ts); this store tells it about its own writes. */
export interface SessionReadCache {
  /** The copy's data of a session: the slim form ({@link slimSessionData}) or the whole record. */
  get(id: string): unknown
  /** This process wrote `data` for `id` (undefined: deleted): read-your-writes before the sync stream catches up. */
  note(id: string, data: unknown): void
}

export class SessionStore {
  readonly #store: RecordStore
  readonly #clock: Clock
  readonly #lifetimeMs: number
  readonly #tokenKey: Buffer | undefined
  /** Opened sessions by the stored data object, so a store that hands out the same object (memory, caches) pays for decryption once. */
  readonly #opened = new WeakMap<object, Session>()
  /**
   * Whole sessions read from the store for callers that need the tokens, by id, each valid while
   * the copy still holds the same slim object (any change to the record replaces it). Bounded.
   */
  readonly #whole = new Map<string, { readonly slim: object; readonly session: Session }>()

  /**
   * `tokenKey` (see {@link sessionTokenKey}) seals access, refresh and ID tokens before they are
   * stored (stricter than Pomerium, which stores them in clear); without it they are stored as is.
   */
  readonly #cache: SessionReadCache | undefined

  constructor(store: RecordStore, options: { lifetimeMs: number; clock?: Clock; tokenKey?: Buffer; cache?: SessionReadCache }) {
    this.#store = store
    this.#lifetimeMs = options.lifetimeMs
    this.#clock = options.clock ?? { now: () => Date.now() }
    this.#tokenKey = options.tokenKey
    this.#cache = options.cache
  }

  /** The session as stored: tokens sealed, bound to the session id. */
  #sealed(session: Session): Session {
    const key = this.#tokenKey
    if (!key) return session
    const out: Record<string, unknown> = { ...session }
    for (const f of TOKEN_FIELDS) {
      const v = session[f]
      if (v !== undefined) out[f] = SEALED_PREFIX + seal(v, key, `${session.id}|${f}`)
    }
    return out as unknown as Session
  }

  /** The session with its tokens opened; undefined when a sealed token does not open (another key). */
  #open(data: Session): Session | undefined {
    // Nothing sealed (the slim form, or a store without encryption): the data is the session.
    if (!TOKEN_FIELDS.some((f) => data[f]?.startsWith(SEALED_PREFIX) === true)) return data
    const cached = this.#opened.get(data)
    if (cached) return cached
    const key = this.#tokenKey
    const out: Record<string, unknown> = { ...data }
    for (const f of TOKEN_FIELDS) {
      const v = data[f]
      if (v === undefined || !v.startsWith(SEALED_PREFIX)) continue
      const opened = key ? open(v.slice(SEALED_PREFIX.length), key, `${data.id}|${f}`) : undefined
      if (opened === undefined) return undefined
      out[f] = opened
    }
    const session = out as unknown as Session
    this.#opened.set(data, session)
    return session
  }

  /** Stores a new session with a new id; returns it with the record version (for read-your-writes). */
  async create(input: NewSession): Promise<{ session: Session; recordVersion: number }> {
    const now = this.#clock.now()
    const session: Session = { ...input, id: newSessionId(), issuedAt: now, expiresAt: now + this.#lifetimeMs }
    const [record] = await this.#store.put([{ type: SESSION_TYPE, id: session.id, data: this.#sealed(session) }])
    if (record) this.#cache?.note(session.id, slimSessionData(record.data))
    // Return what was stored (JSON semantics: absent optional fields are left out), so a later
    // read compares equal to it.
    const stored = record && isSession(record.data) ? this.#open(record.data) : undefined
    return { session: stored ?? session, recordVersion: record?.version ?? 0 }
  }

  /**
   * The live session with its tokens, or undefined when absent, expired or malformed (never an
   * exception for bad data). The synced copy answers when it holds the whole record; when it holds
   * the slim form, the record is read from the store.
   */
  async get(id: string): Promise<Session | undefined> {
    const cached = this.#cache?.get(id)
    if (cached !== undefined && isSession(cached) && isSlim(cached)) {
      const hit = this.#whole.get(id)
      if (hit && hit.slim === cached && this.#clock.now() < hit.session.expiresAt) return hit.session
      const session = await this.#live(id, (await this.#store.get(SESSION_TYPE, id))?.data)
      if (session && this.#cache?.get(id) === cached) {
        if (this.#whole.size >= WHOLE_SESSIONS_KEPT) this.#whole.delete(this.#whole.keys().next().value as string)
        this.#whole.set(id, { slim: cached, session })
      }
      return session
    }
    const data = cached !== undefined ? cached : (await this.#store.get(SESSION_TYPE, id))?.data
    return await this.#live(id, data)
  }

  /**
   * The request path's view of a live session: from the synced copy without I/O, in its slim form
   * (no tokens; `elidedTokens` says which it has). For a route that forwards the provider's tokens
   * upstream, use {@link get}.
   */
  async getForRequest(id: string): Promise<Session | undefined> {
    // Without a copy (a local memory or file store) the stored object is shared: nothing to save.
    if (!this.#cache) return await this.get(id)
    const cached = this.#cache.get(id)
    const data = cached !== undefined ? cached : slimSessionData((await this.#store.get(SESSION_TYPE, id))?.data)
    return await this.#live(id, data)
  }

  async #live(id: string, data: unknown): Promise<Session | undefined> {
    const session = data !== undefined && isSession(data) ? this.#open(data) : undefined
    if (!session || session.id !== id) return undefined
    if (this.#clock.now() >= session.expiresAt) {
      this.#cache?.note(id, undefined)
      await this.#store.delete(SESSION_TYPE, id)
      return undefined
    }
    return session
  }

  /** Replaces a session's tokens and claims (after a refresh); its id and lifetime stay. */
  async update(session: Session): Promise<number> {
    const [record] = await this.#store.put([{ type: SESSION_TYPE, id: session.id, data: this.#sealed(session) }])
    if (record) this.#cache?.note(session.id, slimSessionData(record.data))
    return record?.version ?? 0
  }

  async delete(id: string): Promise<void> {
    this.#whole.delete(id)
    this.#cache?.note(id, undefined)
    await this.#store.delete(SESSION_TYPE, id)
  }

  /** Ends every session of a user (back-channel logout without a session id). */
  async deleteForUser(userId: string): Promise<number> {
    return this.deleteWhere({ userId })
  }

  /** Ends every session whose top-level fields equal `filter` (e.g. `{ idpId, idpSessionId }`); returns how many. */
  async deleteWhere(filter: Readonly<Record<string, string>>): Promise<number> {
    const { records } = await this.#store.query({ type: SESSION_TYPE, filter })
    for (const r of records) {
      this.#cache?.note(r.id, undefined)
      await this.#store.delete(SESSION_TYPE, r.id)
    }
    return records.length
  }

  /** Stores a session made from a provider bearer token under a given id, until the token expires. */
  async putBearerSession(session: Session): Promise<void> {
    const [record] = await this.#store.put([{ type: SESSION_TYPE, id: session.id, data: this.#sealed(session) }])
    if (record) this.#cache?.note(session.id, slimSessionData(record.data))
  }

  async putUser(user: User): Promise<void> {
    await this.#store.put([{ type: USER_TYPE, id: user.id, data: user }])
  }

  async getUser(id: string): Promise<User | undefined> {
    const record = await this.#store.get(USER_TYPE, id)
    return record && isUser(record.data) ? record.data : undefined
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const optionalString = (v: unknown): boolean => v === undefined || typeof v === 'string'

function isSession(v: unknown): v is Session {
  return (
    isObject(v) &&
    typeof v['id'] === 'string' &&
    typeof v['userId'] === 'string' &&
    typeof v['idpId'] === 'string' &&
    typeof v['issuedAt'] === 'number' &&
    typeof v['expiresAt'] === 'number' &&
    optionalString(v['accessToken']) &&
    optionalString(v['refreshToken']) &&
    optionalString(v['idToken']) &&
    (v['tokenExpiresAt'] === undefined || typeof v['tokenExpiresAt'] === 'number') &&
    (v['tokenObtainedAt'] === undefined || typeof v['tokenObtainedAt'] === 'number') &&
    optionalString(v['idpSessionId']) &&
    optionalString(v['idpSubject']) &&
    (v['fromBearerToken'] === undefined || typeof v['fromBearerToken'] === 'boolean') &&
    (v['deviceCredentialIds'] === undefined || (Array.isArray(v['deviceCredentialIds']) && v['deviceCredentialIds'].every((x) => typeof x === 'string'))) &&
    (v['elidedTokens'] === undefined || (Array.isArray(v['elidedTokens']) && v['elidedTokens'].every((x) => (TOKEN_FIELDS as readonly unknown[]).includes(x)))) &&
    isObject(v['claims'])
  )
}

function isUser(v: unknown): v is User {
  return isObject(v) && typeof v['id'] === 'string' && typeof v['email'] === 'string' && typeof v['name'] === 'string' && isObject(v['claims'])
}
