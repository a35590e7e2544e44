/**
 * Device credentials and enrollments in the databroker (docs/devices.md). A device credential is
 * a WebAuthn public key a user registered at `/.pomerium/webauthn`; a session lists the
 * credentials that authenticated it (`Session.deviceCredentialIds`), and the `device` criterion
 * reads them through {@link DeviceStore.policyDevices}. An enrollment is a single-use link an
 * administrator made for a person: the device registered through it is approved from the start.
 *
 * Records live in the databroker like sessions, so every instance and every backend sees the same
 * devices, and deleting one ends its grants on every route at the next request.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import type { RecordStore } from '../databroker/index.js'
import type { PolicyDevice } from '../policy/index.js'

/** Record types, named as Pomerium's device records are. */
export const DEVICE_CREDENTIAL_TYPE = 'type.googleapis.com/pomerium.device.Credential'
export const DEVICE_ENROLLMENT_TYPE = 'type.googleapis.com/pomerium.device.Enrollment'
/** Credential ids once registered and removed since, with the user they belonged to. */
const REMOVED_CREDENTIAL_TYPE = 'type.googleapis.com/pomerium.device.RemovedCredential'

export interface DeviceCredential {
  /** The WebAuthn credential id, base64url: what `device: {is: ...}` names. */
  readonly id: string
  readonly typeId: string
  readonly userId: string
  /** The user's email (else id) when it registered, for the approvers' list. */
  readonly userName?: string
  /** COSE public key, base64url. */
  readonly publicKey: string
  /** The authenticator's signature counter at its last use (0 for authenticators that keep none). */
  readonly counter: number
  /** The authenticator model, lower case with dashes (all zeros when the authenticator does not say). */
  readonly aaguid: string
  /** The attestation statement format it registered with (`none`, `packed`, `tpm`, …). */
  readonly format: string
  readonly transports: readonly string[]
  /** What the browser reported: `platform` or `cross-platform`, if it said. */
  readonly attachment?: string
  /** Unix ms. */
  readonly createdAt: number
  readonly lastUsedAt?: number
  readonly approved: boolean
  /** Who approved it and when (Unix ms), or the enrollment link it came through. */
  readonly approvedBy?: string
  readonly approvedAt?: number
  readonly enrollmentId?: string
  /** Set when its signature counter went backwards (a copied key): it counts for nothing until removed. */
  readonly suspendedAt?: number
}

export interface DeviceEnrollment {
  /** Random, unguessable: the link carries it. */
  readonly id: string
  readonly typeId: string
  /** The user the link is for (user id or email): another user signed in cannot use it. */
  readonly userId: string
  /** Who made it (an approver's email, or `cli`). */
  readonly createdBy: string
  readonly createdAt: number
  readonly expiresAt: number
  /** Set once used; a used enrollment is refused. */
  readonly usedAt?: number
  readonly credentialId?: string
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const str = (v: unknown): v is string => typeof v === 'string'
const optNum = (v: unknown): boolean => v === undefined || typeof v === 'number'

export function isDeviceCredential(v: unknown): v is DeviceCredential {
  return (
    isObject(v) &&
    str(v['id']) &&
    str(v['typeId']) &&
    str(v['userId']) &&
    str(v['publicKey']) &&
    typeof v['counter'] === 'number' &&
    str(v['aaguid']) &&
    str(v['format']) &&
    Array.isArray(v['transports']) &&
    v['transports'].every(str) &&
    typeof v['createdAt'] === 'number' &&
    optNum(v['lastUsedAt']) &&
    typeof v['approved'] === 'boolean'
  )
}

function isEnrollment(v: unknown): v is DeviceEnrollment {
  return isObject(v) && str(v['id']) && str(v['typeId']) && str(v['userId']) && str(v['createdBy']) && typeof v['createdAt'] === 'number' && typeof v['expiresAt'] === 'number' && optNum(v['usedAt'])
}

/** Whether `session` is the user an enrollment was made for (its user id, or its email in any case). */
export function enrollmentIsFor(enrollment: DeviceEnrollment, userId: string, email: string | undefined): boolean {
  if (enrollment.userId === userId) return true
  return email !== undefined && email !== '' && enrollment.userId.toLowerCase() === email.toLowerCase()
}

/** The key that signs enrollment links, derived from the shared secret (the server and the CLI both know it). */
export function enrollmentLinkKey(sharedSecret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), 'portcullis device enrollment links', 32))
}

/** An enrollment link's token: the enrollment id and its MAC, so a guessed or altered id is refused before any lookup. */
export function enrollmentToken(key: Buffer, enrollmentId: string): string {
  return `${enrollmentId}.${createHmac('sha256', key).update(enrollmentId).digest('base64url')}`
}

/** The enrollment id a token carries, when its MAC is right. */
export function enrollmentIdOf(key: Buffer, token: string): string | undefined {
  const dot = token.lastIndexOf('.')
  if (dot <= 0) return undefined
  const id = token.slice(0, dot)
  const given = Buffer.from(token.slice(dot + 1))
  const expected = Buffer.from(createHmac('sha256', key).update(id).digest('base64url'))
  return given.length === expected.length && timingSafeEqual(given, expected) ? id : undefined
}

/** The path of the device page with an enrollment link's token. */
export function enrollmentPath(key: Buffer, enrollmentId: string): string {
  return `/.pomerium/webauthn?${new URLSearchParams({ pomerium_enrollment_token: enrollmentToken(key, enrollmentId) }).toString()}`
}

/** What the authorizer needs of the configuration's device types. */
export interface DeviceTypeRules {
  /** Whether devices of this type count only once approved. */
  approvalRequired(typeId: string): boolean
}

export class DeviceStore {
  readonly #store: RecordStore
  readonly #now: () => number

  constructor(store: RecordStore, now: () => number = Date.now) {
    this.#store = store
    this.#now = now
  }

  async get(id: string): Promise<DeviceCredential | undefined> {
    const record = await this.#store.get(DEVICE_CREDENTIAL_TYPE, id)
    return record && isDeviceCredential(record.data) && record.data.id === id ? record.data : undefined
  }

  async put(credential: DeviceCredential): Promise<void> {
    await this.#store.put([{ type: DEVICE_CREDENTIAL_TYPE, id: credential.id, data: credential }])
  }

  /** Removes a credential; its id stays taken by its user (see {@link idFreeFor}). */
  async delete(id: string): Promise<boolean> {
    const current = await this.get(id)
    if (current) await this.#store.put([{ type: REMOVED_CREDENTIAL_TYPE, id, data: { userId: current.userId, removedAt: this.#now() } }])
    return (await this.#store.delete(DEVICE_CREDENTIAL_TYPE, id)) !== undefined
  }

  /** Whether `userId` may register a credential with this id: never one another user had. */
  async idFreeFor(id: string, userId: string): Promise<boolean> {
    const removed = await this.#store.get(REMOVED_CREDENTIAL_TYPE, id)
    const owner = removed && typeof removed.data === 'object' && removed.data !== null ? (removed.data as { userId?: unknown }).userId : undefined
    return removed === undefined || owner === userId
  }

  /**
   * Changes the credential as it is now (read just before the write); undefined when it no longer
   * exists. Keeps a concurrent removal removed.
   */
  async update(id: string, change: (current: DeviceCredential) => DeviceCredential): Promise<DeviceCredential | undefined> {
    const current = await this.get(id)
    if (!current) return undefined
    const next = change(current)
    await this.put(next)
    return next
  }

  async listForUser(userId: string): Promise<DeviceCredential[]> {
    const { records } = await this.#store.query({ type: DEVICE_CREDENTIAL_TYPE, filter: { userId } })
    return records.map((r) => r.data).filter(isDeviceCredential).sort((a, b) => a.createdAt - b.createdAt)
  }

  async listAll(): Promise<DeviceCredential[]> {
    const { records } = await this.#store.query({ type: DEVICE_CREDENTIAL_TYPE })
    return records.map((r) => r.data).filter(isDeviceCredential).sort((a, b) => a.createdAt - b.createdAt)
  }

  async setApproved(id: string, approved: boolean, by: string): Promise<DeviceCredential | undefined> {
    return await this.update(id, (current) => ({ ...current, approved, approvedBy: by, approvedAt: this.#now() }))
  }

  /**
   * The session's devices as the policy reads them: only credentials that still exist and belong
   * to the session's user (a credential id copied into another user's session counts for nothing),
   * and are not suspended (a copied key).
   * A device of a type that requires approval and is not approved is marked pending.
   */
  async policyDevices(ids: readonly string[] | undefined, userId: string, rules: DeviceTypeRules): Promise<PolicyDevice[]> {
    if (ids === undefined || ids.length === 0) return []
    const found = await Promise.all(ids.map((id) => this.get(id)))
    const out: PolicyDevice[] = []
    for (const c of found) {
      if (!c || c.userId !== userId || c.suspendedAt !== undefined) continue
      out.push({ id: c.id, typeId: c.typeId, approved: c.approved, ...(rules.approvalRequired(c.typeId) && !c.approved ? { pendingApproval: true } : {}) })
    }
    return out
  }

  async createEnrollment(input: { typeId: string; userId: string; createdBy: string; lifetimeMs: number }): Promise<DeviceEnrollment> {
    const now = this.#now()
    const enrollment: DeviceEnrollment = {
      id: randomBytes(24).toString('base64url'),
      typeId: input.typeId,
      userId: input.userId,
      createdBy: input.createdBy,
      createdAt: now,
      expiresAt: now + input.lifetimeMs,
    }
    await this.#store.put([{ type: DEVICE_ENROLLMENT_TYPE, id: enrollment.id, data: enrollment }])
    return enrollment
  }

  /** The enrollment if it exists, is unused and has not expired. */
  async openEnrollment(id: string): Promise<DeviceEnrollment | undefined> {
    const record = await this.#store.get(DEVICE_ENROLLMENT_TYPE, id)
    const e = record && isEnrollment(record.data) && record.data.id === id ? record.data : undefined
    if (!e || e.usedAt !== undefined || this.#now() >= e.expiresAt) return undefined
    return e
  }

  /** Marks an enrollment used by `credentialId`; false when it was used (or expired) meanwhile. */
  async useEnrollment(id: string, credentialId: string): Promise<boolean> {
    const e = await this.openEnrollment(id)
    if (!e) return false
    // The store has no compare-and-set; a lease is its atomic claim, so of two instances
    // registering through the same link at once only one succeeds.
    const claim = await this.#store.acquireLease(`device-enrollment/${id}`, Math.max(1000, e.expiresAt - this.#now() + 60_000))
    if (claim === undefined) return false
    await this.#store.put([{ type: DEVICE_ENROLLMENT_TYPE, id, data: { ...e, usedAt: this.#now(), credentialId } }])
    return true
  }

  /**
   * True the first time `value` is claimed within `ttlMs`, on every instance sharing the store
   * (a lease is the store's atomic claim): a device page's state answers once, wherever it is posted.
   */
  async claimOnce(scope: string, value: string, ttlMs: number): Promise<boolean> {
    const name = `${scope}/${createHash('sha256').update(value).digest('base64url')}`
    return (await this.#store.acquireLease(name, ttlMs)) !== undefined
  }

  async listEnrollments(): Promise<DeviceEnrollment[]> {
    const { records } = await this.#store.query({ type: DEVICE_ENROLLMENT_TYPE })
    return records.map((r) => r.data).filter(isEnrollment).sort((a, b) => a.createdAt - b.createdAt)
  }
}
