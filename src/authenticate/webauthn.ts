/**
 * Device identity on route hosts (Pomerium docs: Device Identity, Enroll a Device; our
 * docs/devices.md):
 *
 * - `GET /.pomerium/webauthn?pomerium_device_type=T&pomerium_redirect_uri=U` (a signed URL made
 *   by the authorizer) shows the page that registers a new device of type T or uses one the user
 *   registered before; `?pomerium_enrollment_token=E` (an enrollment link) registers a device
 *   approved from the start.
 * - `POST /.pomerium/webauthn` (JSON, same origin only) carries the browser's credential and the
 *   sealed ceremony state; the credential is verified with `@simplewebauthn/server`, stored as a
 *   databroker record, and added to the session (`deviceCredentialIds`), and the answer says where
 *   to go next: back to the original URL.
 * - `GET /.pomerium/device-enrolled` confirms an enrollment-link registration.
 * - `POST /.pomerium/devices/remove` (the user page's form) removes one of the user's devices.
 * - `GET|POST /.pomerium/devices`: approvers (`device_approvers`) approve and revoke devices.
 *
 * The ceremony state (challenges, session id, type, where to return, enrollment) is sealed with a
 * key derived from the shared secret, so no server-side state is needed between the page and its
 * POST and any instance can answer either; it is used once, claimed in the databroker.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'
import { generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse } from '@simplewebauthn/server'
import type { AuthenticationResponseJSON, AuthenticatorTransportFuture, RegistrationResponseJSON } from '@simplewebauthn/server'
import { FORMATS_WITH_BUILTIN_ROOTS, requiresAttestation } from '../config/devices.js'
import type { DeviceType } from '../config/devices.js'
import { attestationChainProblem } from './attestation.js'
import { decide } from '../policy/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import { enrollmentIdOf, enrollmentIsFor, enrollmentLinkKey, enrollmentPath } from '../session/devices.js'
import type { DeviceCredential, DeviceStore } from '../session/devices.js'
import { PARAM_DEVICE_TYPE, PARAM_ENROLLMENT_TOKEN, PARAM_REDIRECT_URI } from '../session/flow.js'
import { directoryEntryFor, policySession } from '../session/policy-session.js'
import type { DirectoryLookup } from '../session/directory.js'
import { allowedRedirect } from '../session/redirects.js'
import { open, seal } from '../session/sealed.js'
import type { Session, SessionStore } from '../session/session-store.js'
import type { AuthSettings } from '../session/settings.js'
import { verifySignedUrl } from '../session/signed-url.js'
import { PortcullisError } from '../shared/errors.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import { deviceEnrolledPage, devicesAdminPage, enrollmentLinkPage, webauthnPage } from '../ui/device-pages.js'
import type { UserPageDevice } from '../ui/pages.js'
import { formFields, json, page, redirect, single } from './endpoint.js'
import type { EndpointRequest, EndpointResponse } from './endpoint.js'

export const WEBAUTHN_PATH = '/.pomerium/webauthn'
export const DEVICE_ENROLLED_PATH = '/.pomerium/device-enrolled'
export const DEVICES_PATH = '/.pomerium/devices'
export const DEVICE_REMOVE_PATH = '/.pomerium/devices/remove'

/** A ceremony must finish within this time of the page being shown. */
const CEREMONY_TTL_MS = 5 * 60_000
/** Enrollment links made without a lifetime last a week. */
export const DEFAULT_ENROLLMENT_LIFETIME_MS = 7 * 24 * 3600_000
const RP_NAME = 'Portcullis'

export interface WebAuthnDeps {
  readonly settings: () => AuthSettings
  readonly secrets: Secrets
  readonly sessions: SessionStore
  readonly devices: DeviceStore
  readonly deviceTypes: () => readonly DeviceType[]
  /** The compiled `device_approvers` policy; undefined = nobody approves on a page. */
  readonly approvers: () => CompiledPolicy | undefined
  readonly logger: Logger
  /** Directory groups for `device_approvers` rules (docs/directory.md). */
  readonly directory?: DirectoryLookup
}

/** What the route endpoints hand over for each request. */
export interface WebAuthnContext {
  readonly origin: string
  /** The request's live session, if any. */
  session(): Promise<Session | undefined>
  /** Where a request without a session goes to sign in and come back to `returnTo`. */
  signIn(returnTo: string): EndpointResponse
  error(status: number, title: string, message: string): EndpointResponse
}

/** Sealed between the page and its POST. */
interface CeremonyState {
  readonly sid: string
  readonly uid: string
  readonly type: string
  readonly reg: string
  readonly auth?: string
  readonly redirect?: string
  readonly enrollment?: string
  readonly exp: number
}

/** A device request refused, with words for the person: ERR_DEVICE_REFUSED (400) or ERR_DEVICE_FORBIDDEN (403). */
class Refusal extends PortcullisError {
  constructor(status: 400 | 403, publicMessage: string) {
    super(status === 403 ? 'ERR_DEVICE_FORBIDDEN' : 'ERR_DEVICE_REFUSED', publicMessage)
  }
}

/**
 * The Origin header names this site, or is absent or `null`: our pages send no referrer
 * (`Referrer-Policy: no-referrer`), for which browsers send `Origin: null` on their own posts.
 * Those are then protected by the session-bound token alone, which another site cannot read.
 */
function sameOrigin(req: EndpointRequest, ctx: WebAuthnContext): boolean {
  const origin = single(req.headers['origin'])
  return origin === undefined || origin === 'null' || origin === ctx.origin
}

/** The session's email, unless the provider says it is not verified (then it names nobody). */
function verifiedEmail(session: Session): string | undefined {
  const email = session.claims['email']
  const verified = session.claims['email_verified']
  return typeof email === 'string' && verified !== false && verified !== 'false' ? email : undefined
}

const TRANSPORTS = new Set(['usb', 'nfc', 'ble', 'internal', 'hybrid', 'smart-card', 'cable'])

/** The transports the browser reported, known words only (they are not signed). */
function reportedTransports(response: RegistrationResponseJSON): string[] {
  const t: unknown = response.response.transports
  return Array.isArray(t) ? t.filter((x): x is string => typeof x === 'string' && TRANSPORTS.has(x)) : []
}

function userLabel(session: Session): string {
  const email = session.claims['email']
  return typeof email === 'string' && email !== '' ? email : session.userId
}

export class WebAuthnEndpoints {
  readonly #deps: WebAuthnDeps
  readonly #stateKey: Buffer
  readonly #linkKey: Buffer
  readonly #csrfKey: Buffer

  constructor(deps: WebAuthnDeps) {
    this.#deps = deps
    const derive = (info: string): Buffer => Buffer.from(hkdfSync('sha256', deps.secrets.sharedSecret, Buffer.alloc(0), info, 32))
    this.#stateKey = derive('portcullis webauthn ceremony state')
    this.#linkKey = enrollmentLinkKey(deps.secrets.sharedSecret)
    this.#csrfKey = derive('portcullis device forms')
  }

  static handles(path: string): boolean {
    return path === WEBAUTHN_PATH || path === DEVICE_ENROLLED_PATH || path === DEVICES_PATH || path === DEVICE_REMOVE_PATH
  }

  async handle(req: EndpointRequest, ctx: WebAuthnContext): Promise<EndpointResponse> {
    const get = req.method === 'GET' || req.method === 'HEAD'
    try {
      switch (req.path) {
        case WEBAUTHN_PATH:
          if (get) return await this.#page(req, ctx)
          if (req.method === 'POST') return await this.#finish(req, ctx)
          break
        case DEVICE_ENROLLED_PATH:
          if (get) return await this.#enrolled(req, ctx)
          break
        case DEVICE_REMOVE_PATH:
          if (req.method === 'POST') return await this.#remove(req, ctx)
          break
        case DEVICES_PATH:
          if (get || req.method === 'POST') return await this.#admin(req, ctx, get)
          break
      }
      return ctx.error(405, 'Method Not Allowed', `${req.method} is not allowed here.`)
    } catch (err) {
      if (err instanceof Refusal) {
        return req.method === 'POST' && req.path === WEBAUTHN_PATH
          ? json(err.status, { error: err.publicMessage, request_id: req.requestId })
          : ctx.error(err.status, err.status === 403 ? 'Forbidden' : 'Bad Request', err.publicMessage)
      }
      throw err
    }
  }

  /** The path of an enrollment link for `enrollmentId` (on any route host). */
  enrollmentPath(enrollmentId: string): string {
    return enrollmentPath(this.#linkKey, enrollmentId)
  }

  #mac(key: Buffer, text: string): string {
    return createHmac('sha256', key).update(text).digest('base64url')
  }

  #equal(a: string, b: string): boolean {
    const x = Buffer.from(a)
    const y = Buffer.from(b)
    return x.length === y.length && timingSafeEqual(x, y)
  }

  /** The CSRF token of the device forms: bound to the session, so another site cannot make one. */
  formToken(sessionId: string): string {
    return this.#mac(this.#csrfKey, `device-forms|${sessionId}`)
  }

  #type(id: string): DeviceType {
    const type = this.#deps.deviceTypes().find((t) => t.id === id)
    if (!type) throw new Refusal(400, `Unknown device type "${id}".`)
    return type
  }

  // GET /.pomerium/webauthn
  async #page(req: EndpointRequest, ctx: WebAuthnContext): Promise<EndpointResponse> {
    const url = new URL(`${ctx.origin}${req.path}${req.query}`)
    const params = url.searchParams
    const token = params.get(PARAM_ENROLLMENT_TOKEN)
    if (token !== null) {
      const enrollmentId = enrollmentIdOf(this.#linkKey, token)
      if (enrollmentId === undefined) throw new Refusal(400, 'This enrollment link is not valid.')
      const session = await ctx.session()
      if (!session) return ctx.signIn(url.href)
      const enrollment = await this.#deps.devices.openEnrollment(enrollmentId)
      if (!enrollment) throw new Refusal(400, 'This enrollment link was already used or has expired. Ask your administrator for a new one.')
      if (!enrollmentIsFor(enrollment, session.userId, verifiedEmail(session))) {
        this.#deps.logger.warn({ requestId: req.requestId, userId: session.userId, enrollmentFor: enrollment.userId }, 'enrollment link used by another user')
        throw new Refusal(403, 'This enrollment link was made for another user.')
      }
      return this.#render(req, session, this.#type(enrollment.typeId), undefined, enrollmentId)
    }
    // The authorizer's signed link: tampering with the type or the return address is refused.
    if (verifySignedUrl(url, this.#deps.secrets.sharedSecret) !== undefined) {
      throw new Refusal(400, 'This device link is invalid or has expired. Open the app again.')
    }
    const typeId = params.get(PARAM_DEVICE_TYPE) ?? ''
    const target = allowedRedirect(params.get(PARAM_REDIRECT_URI) ?? '', this.#deps.settings().redirects)
    if (!target) throw new Refusal(400, 'The address to return to is not one of the configured routes.')
    const session = await ctx.session()
    if (!session) return ctx.signIn(url.href)
    return this.#render(req, session, this.#type(typeId), target.href, undefined)
  }

  async #render(req: EndpointRequest, session: Session, type: DeviceType, returnTo: string | undefined, enrollmentId: string | undefined): Promise<EndpointResponse> {
    const mine = (await this.#deps.devices.listForUser(session.userId)).filter((c) => c.typeId === type.id)
    const transports = (c: DeviceCredential): AuthenticatorTransportFuture[] => c.transports as AuthenticatorTransportFuture[]
    const registration = await generateRegistrationOptions({
      rpName: RP_NAME,
      rpID: req.host,
      userName: userLabel(session),
      // WebAuthn's user handle is at most 64 bytes: a digest fits every user id and names one user.
      userID: new Uint8Array(createHash('sha256').update(session.userId).digest()),
      userDisplayName: typeof session.claims['name'] === 'string' ? session.claims['name'] : userLabel(session),
      attestationType: this.#attestationType(type),
      excludeCredentials: mine.map((c) => ({ id: c.id, transports: transports(c) })),
      authenticatorSelection: {
        residentKey: 'discouraged',
        userVerification: type.userVerification,
        ...(type.attachment ? { authenticatorAttachment: type.attachment } : {}),
      },
      ...(type.attachment === 'platform' ? { preferredAuthenticatorType: 'localDevice' as const } : type.attachment === 'cross-platform' ? { preferredAuthenticatorType: 'securityKey' as const } : {}),
    })
    const authentication =
      mine.length > 0 && enrollmentId === undefined
        ? await generateAuthenticationOptions({ rpID: req.host, userVerification: type.userVerification, allowCredentials: mine.map((c) => ({ id: c.id, transports: transports(c) })) })
        : undefined
    const state: CeremonyState = {
      sid: session.id,
      uid: session.userId,
      type: type.id,
      reg: registration.challenge,
      ...(authentication ? { auth: authentication.challenge } : {}),
      ...(returnTo !== undefined ? { redirect: returnTo } : {}),
      ...(enrollmentId !== undefined ? { enrollment: enrollmentId } : {}),
      exp: Date.now() + CEREMONY_TTL_MS,
    }
    return page(
      200,
      webauthnPage({
        typeName: type.name,
        user: userLabel(session),
        action: WEBAUTHN_PATH,
        state: seal(JSON.stringify(state), this.#stateKey, `webauthn|${req.host}`),
        registration,
        authentication,
        enrollment: enrollmentId !== undefined,
      }),
    )
  }

  /** Direct attestation when the type restricts formats or models (they cannot be checked without it) or is `enclave_only`. */
  #attestationType(type: DeviceType): 'direct' | 'none' {
    return requiresAttestation(type) || type.attachment === 'platform' ? 'direct' : 'none'
  }

  // POST /.pomerium/webauthn
  async #finish(req: EndpointRequest, ctx: WebAuthnContext): Promise<EndpointResponse> {
    // Same origin only: the page's script posts here. Another site's script cannot send JSON
    // without a CORS preflight we never answer, the sealed state is bound to the session, and the
    // browser writes the page's origin into the signed client data (checked below).
    if (!sameOrigin(req, ctx)) throw new Refusal(403, 'This request did not come from this site.')
    if (!(single(req.headers['content-type']) ?? '').toLowerCase().startsWith('application/json')) throw new Refusal(400, 'Expected JSON.')
    let body: unknown
    try {
      body = JSON.parse(req.body.toString('utf8'))
    } catch {
      throw new Refusal(400, 'The request body is not valid JSON.')
    }
    const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
    const { action, state: sealedState, credential } = fields
    if ((action !== 'register' && action !== 'authenticate') || typeof sealedState !== 'string' || typeof credential !== 'object' || credential === null) {
      throw new Refusal(400, 'Expected {action: register|authenticate, state, credential}.')
    }
    const state = this.#openState(sealedState, req.host)
    const session = await ctx.session()
    if (!session || session.id !== state.sid || session.userId !== state.uid) throw new Refusal(403, 'This device page belongs to another session. Open the app again.')
    // Each page's challenges answer once: a replayed POST is refused.
    if (!(await this.#deps.devices.claimOnce('webauthn-state', sealedState, CEREMONY_TTL_MS + 60_000))) throw new Refusal(400, 'This device page was already used. Open the app again.')
    const type = this.#type(state.type)
    const credentialId =
      action === 'register'
        ? await this.#register(req, ctx, session, type, state, credential as RegistrationResponseJSON)
        : await this.#authenticate(req, ctx, session, type, state, credential as AuthenticationResponseJSON)
    // Read again just before writing: the session may have been refreshed (keep its new tokens) or
    // signed out (stay signed out) while the person used their device.
    const current = await this.#deps.sessions.get(session.id)
    if (!current) throw new Refusal(403, 'Your session ended while the device was checked. Sign in again.')
    const ids = [...new Set([...(current.deviceCredentialIds ?? []), credentialId])]
    await this.#deps.sessions.update({ ...current, deviceCredentialIds: ids })
    const next = state.redirect ?? `${ctx.origin}${DEVICE_ENROLLED_PATH}?${new URLSearchParams({ [PARAM_DEVICE_TYPE]: type.id }).toString()}`
    return json(200, { redirect: next, credential_id: credentialId })
  }

  #openState(sealed: string, host: string): CeremonyState {
    const text = open(sealed, this.#stateKey, `webauthn|${host}`)
    let state: unknown
    try {
      state = text === undefined ? undefined : JSON.parse(text)
    } catch {
      state = undefined
    }
    const s = state as Partial<CeremonyState> | undefined
    if (!s || typeof s.sid !== 'string' || typeof s.uid !== 'string' || typeof s.type !== 'string' || typeof s.reg !== 'string' || typeof s.exp !== 'number') {
      throw new Refusal(400, 'This device page is not valid. Open the app again.')
    }
    if (Date.now() > s.exp) throw new Refusal(400, 'This device page has expired. Open the app again.')
    return s as CeremonyState
  }

  async #register(req: EndpointRequest, ctx: WebAuthnContext, session: Session, type: DeviceType, state: CeremonyState, response: RegistrationResponseJSON): Promise<string> {
    let verified
    try {
      verified = await verifyRegistrationResponse({
        response,
        expectedChallenge: state.reg,
        expectedOrigin: ctx.origin,
        expectedRPID: req.host,
        requireUserVerification: type.userVerification === 'required',
      })
    } catch (err) {
      this.#deps.logger.info({ requestId: req.requestId, userId: session.userId, err: err instanceof Error ? err.message : String(err) }, 'device registration refused')
      throw new Refusal(400, `The device's registration could not be verified: ${err instanceof Error ? err.message : 'invalid response'}.`)
    }
    if (!verified.verified) throw new Refusal(400, "The device's registration could not be verified.")
    const info = verified.registrationInfo
    const problem = this.#typeProblem(type, info.fmt, info.aaguid, info.credentialDeviceType, response)
    if (problem !== undefined) {
      this.#deps.logger.info({ requestId: req.requestId, userId: session.userId, deviceType: type.id, fmt: info.fmt, aaguid: info.aaguid }, `device refused for its type: ${problem}`)
      throw new Refusal(400, `This device is not a ${type.name}: ${problem}.`)
    }
    const id = info.credential.id
    if ((await this.#deps.devices.get(id)) || !(await this.#deps.devices.idFreeFor(id, session.userId))) {
      // A credential id is the authenticator's choice: one registered before (even if removed since,
      // by another user) is never taken over, so `device: {is: ID}` keeps naming one device.
      this.#deps.logger.warn({ requestId: req.requestId, userId: session.userId, credentialId: id }, 'device registration refused: the credential id is already taken')
      throw new Refusal(400, 'This credential is already registered.')
    }
    let approved = false
    if (state.enrollment !== undefined) {
      if (!(await this.#deps.devices.useEnrollment(state.enrollment, id))) throw new Refusal(400, 'This enrollment link was already used or has expired. Ask your administrator for a new one.')
      approved = true
    }
    // What the browser reports is stored only as known words (it is not signed).
    const attachment = response.authenticatorAttachment === 'platform' || response.authenticatorAttachment === 'cross-platform' ? response.authenticatorAttachment : undefined
    const now = Date.now()
    await this.#deps.devices.put({
      id,
      typeId: type.id,
      userId: session.userId,
      userName: userLabel(session),
      publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      aaguid: info.aaguid,
      format: info.fmt,
      transports: reportedTransports(response),
      ...(attachment ? { attachment } : {}),
      createdAt: now,
      lastUsedAt: now,
      approved,
      ...(state.enrollment !== undefined ? { enrollmentId: state.enrollment, approvedBy: 'enrollment link', approvedAt: now } : {}),
    })
    this.#deps.logger.info({ requestId: req.requestId, userId: session.userId, credentialId: id, deviceType: type.id, fmt: info.fmt, aaguid: info.aaguid, approved }, 'device registered')
    return id
  }

  /**
   * Why a verified registration is not a device of `type`, or undefined when it is one. What the
   * authenticator signed (format, AAGUID, backup state) and the chain behind it count; what the
   * browser reports (attachment, transports) only narrows further.
   */
  #typeProblem(type: DeviceType, fmt: string, aaguid: string, deviceType: string, response: RegistrationResponseJSON): string | undefined {
    if (type.attestationFormats !== undefined && !type.attestationFormats.includes(fmt)) return `its attestation format ${fmt} is not one this type accepts`
    if (requiresAttestation(type)) {
      if (fmt === 'none') return 'it gave no attestation statement'
      if (!FORMATS_WITH_BUILTIN_ROOTS.includes(fmt)) {
        const chain = attestationChainProblem(response.response.attestationObject, type.attestationRoots ?? [])
        if (chain !== undefined) return chain
      }
    }
    if (type.aaguids !== undefined && !type.aaguids.includes(aaguid.toLowerCase())) return `its model (AAGUID ${aaguid}) is not one this type accepts`
    if (type.attachment === 'platform') {
      const transports = reportedTransports(response)
      if (response.authenticatorAttachment !== 'platform') return 'it is not a platform authenticator (the browser reported a roaming one)'
      if (transports.some((t) => t === 'usb' || t === 'nfc' || t === 'ble')) return `it uses a removable transport (${transports.join(', ')})`
      // A key that may be backed up (a synced passkey) lives in more than one device.
      if (deviceType !== 'singleDevice') return 'its key can be synced to other devices'
      if (type.attestationFormats === undefined && fmt === 'none') return 'it gave no attestation statement'
    }
    if (type.attachment === 'cross-platform' && response.authenticatorAttachment === 'platform') return 'it is a platform authenticator, and this type needs a security key'
    return undefined
  }

  async #authenticate(req: EndpointRequest, ctx: WebAuthnContext, session: Session, type: DeviceType, state: CeremonyState, response: AuthenticationResponseJSON): Promise<string> {
    if (state.auth === undefined) throw new Refusal(400, 'This page did not offer a registered device.')
    const id = typeof response.id === 'string' ? response.id : ''
    const stored = id === '' ? undefined : await this.#deps.devices.get(id)
    if (!stored) throw new Refusal(400, 'This device is not registered (it may have been removed). Register it again.')
    if (stored.userId !== session.userId) {
      this.#deps.logger.warn({ requestId: req.requestId, userId: session.userId, credentialId: id, owner: stored.userId }, 'device refused: the credential belongs to another user')
      throw new Refusal(403, 'This device is registered to another user.')
    }
    if (stored.typeId !== type.id) throw new Refusal(400, `This device is registered as another type (${stored.typeId}).`)
    if (stored.suspendedAt !== undefined) throw new Refusal(403, 'This device is suspended: its signature counter went backwards, which happens when a key was copied. Remove it and register again, or ask your administrator.')
    let verified
    try {
      verified = await verifyAuthenticationResponse({
        response,
        expectedChallenge: state.auth,
        expectedOrigin: ctx.origin,
        expectedRPID: req.host,
        requireUserVerification: type.userVerification === 'required',
        credential: { id: stored.id, publicKey: new Uint8Array(Buffer.from(stored.publicKey, 'base64url')), counter: stored.counter, transports: stored.transports as AuthenticatorTransportFuture[] },
      })
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      // A counter that did not move forward: two authenticators hold the same key (a clone).
      if (/counter/i.test(message)) {
        // Suspended, not just refused: the original and the copy are indistinguishable from here on.
        await this.#deps.devices.update(id, (c) => ({ ...c, suspendedAt: Date.now() }))
        this.#deps.logger.warn({ requestId: req.requestId, userId: session.userId, credentialId: id, storedCounter: stored.counter }, 'device refused and suspended: its signature counter went backwards (a cloned authenticator?)')
        throw new Refusal(403, "This device's signature counter went backwards, which happens when a key was copied. It is refused; ask your administrator.")
      }
      this.#deps.logger.info({ requestId: req.requestId, userId: session.userId, credentialId: id, err: message }, 'device authentication refused')
      throw new Refusal(400, `The device could not be verified: ${message}.`)
    }
    if (!verified.verified) throw new Refusal(400, 'The device could not be verified.')
    // Only the counter and the time change, on the record as it is now: an approval revoked or a
    // removal made while the person used the device is not undone.
    const newCounter = verified.authenticationInfo.newCounter
    const updated = await this.#deps.devices.update(id, (c) => ({ ...c, counter: Math.max(c.counter, newCounter), lastUsedAt: Date.now() }))
    if (!updated) throw new Refusal(400, 'This device was removed meanwhile. Register it again.')
    this.#deps.logger.info({ requestId: req.requestId, userId: session.userId, credentialId: id, deviceType: type.id }, 'device authenticated')
    return id
  }

  // GET /.pomerium/device-enrolled
  async #enrolled(req: EndpointRequest, ctx: WebAuthnContext): Promise<EndpointResponse> {
    const session = await ctx.session()
    if (!session) return ctx.signIn(`${ctx.origin}/.pomerium/`)
    const typeId = new URLSearchParams(req.query.slice(1)).get(PARAM_DEVICE_TYPE) ?? ''
    const type = this.#deps.deviceTypes().find((t) => t.id === typeId)
    const devices = await this.#deps.devices.policyDevices(session.deviceCredentialIds, session.userId, { approvalRequired: () => false })
    const approved = devices.some((d) => d.typeId === typeId && d.approved)
    return page(200, deviceEnrolledPage({ typeName: type?.name ?? typeId, approved, userPageUrl: '/.pomerium/' }))
  }

  /** The user page's device list. */
  async userDevices(session: Session): Promise<{ list: UserPageDevice[]; removeAction: string; csrfToken: string }> {
    const types = this.#deps.deviceTypes()
    const list = (await this.#deps.devices.listForUser(session.userId)).map((c) => {
      const type = types.find((t) => t.id === c.typeId)
      return {
        id: c.id,
        typeName: type?.name ?? c.typeId,
        createdAt: new Date(c.createdAt),
        lastUsedAt: c.lastUsedAt !== undefined ? new Date(c.lastUsedAt) : undefined,
        approved: c.approved,
        pendingApproval: type?.approvalRequired === true && !c.approved,
        suspended: c.suspendedAt !== undefined,
      }
    })
    return { list, removeAction: DEVICE_REMOVE_PATH, csrfToken: this.formToken(session.id) }
  }

  #checkForm(req: EndpointRequest, ctx: WebAuthnContext, session: Session): URLSearchParams {
    if (!sameOrigin(req, ctx)) throw new Refusal(403, 'This request did not come from this site.')
    const form = formFields(req)
    if (!this.#equal(form.get('csrf') ?? '', this.formToken(session.id))) throw new Refusal(403, 'This form has expired or did not come from this site. Reload the page and try again.')
    return form
  }

  // POST /.pomerium/devices/remove
  async #remove(req: EndpointRequest, ctx: WebAuthnContext): Promise<EndpointResponse> {
    const session = await ctx.session()
    if (!session) throw new Refusal(403, 'Sign in first.')
    const form = this.#checkForm(req, ctx, session)
    const id = form.get('id') ?? ''
    const stored = await this.#deps.devices.get(id)
    if (!stored || stored.userId !== session.userId) throw new Refusal(400, 'You have no such device.')
    await this.#deps.devices.delete(id)
    this.#deps.logger.info({ requestId: req.requestId, userId: session.userId, credentialId: id }, 'device removed by its user')
    return redirect('/.pomerium/')
  }

  /** An approver makes an enrollment link for a person: single use, expiring, signed. */
  async #createLink(req: EndpointRequest, ctx: WebAuthnContext, form: URLSearchParams, by: string): Promise<EndpointResponse> {
    const user = (form.get('user') ?? '').trim()
    if (user === '' || user.length > 320) throw new Refusal(400, 'Name the user the link is for (their email or user id).')
    const type = this.#type(form.get('type') ?? '')
    const hours = Number(form.get('hours') ?? '168')
    if (!Number.isFinite(hours) || hours <= 0 || hours > 24 * 90) throw new Refusal(400, 'The link lifetime must be between 1 hour and 90 days.')
    const enrollment = await this.#deps.devices.createEnrollment({ typeId: type.id, userId: user, createdBy: by, lifetimeMs: hours * 3600_000 })
    const link = `${ctx.origin}${this.enrollmentPath(enrollment.id)}`
    this.#deps.logger.info({ requestId: req.requestId, approver: by, enrollmentFor: user, deviceType: type.id, expiresAt: new Date(enrollment.expiresAt).toISOString() }, 'device enrollment link created')
    return page(200, enrollmentLinkPage({ link, user, typeName: type.name, expiresAt: new Date(enrollment.expiresAt), backUrl: DEVICES_PATH }))
  }

  // GET|POST /.pomerium/devices
  async #admin(req: EndpointRequest, ctx: WebAuthnContext, get: boolean): Promise<EndpointResponse> {
    const session = await ctx.session()
    if (!session) {
      if (get) return ctx.signIn(`${ctx.origin}${DEVICES_PATH}`)
      throw new Refusal(403, 'Sign in first.')
    }
    const approvers = this.#deps.approvers()
    const input = { session: policySession(session, directoryEntryFor(session, this.#deps.directory)), method: req.method, path: req.path, headers: req.headers, clientIp: req.clientIp, now: new Date() }
    if (!approvers || decide(approvers.evaluate(input)).kind !== 'allow') {
      throw new Refusal(403, approvers ? 'You are not a device approver (device_approvers).' : 'No device approvers are configured (device_approvers); use the portcullis devices command.')
    }
    const by = userLabel(session)
    if (!get) {
      const form = this.#checkForm(req, ctx, session)
      const op = form.get('op')
      if (op === 'enroll') return await this.#createLink(req, ctx, form, by)
      const id = form.get('id') ?? ''
      if (op !== 'approve' && op !== 'revoke') throw new Refusal(400, 'Expected op approve, revoke or enroll.')
      const updated = await this.#deps.devices.setApproved(id, op === 'approve', by)
      if (!updated) throw new Refusal(400, 'There is no such device.')
      this.#deps.logger.info({ requestId: req.requestId, approver: by, credentialId: id, owner: updated.userId }, op === 'approve' ? 'device approved' : 'device approval revoked')
      return redirect(DEVICES_PATH)
    }
    const types = this.#deps.deviceTypes()
    const all = await this.#deps.devices.listAll()
    return page(
      200,
      devicesAdminPage({
        types: types.map((t) => ({ id: t.id, name: t.name })),
        user: by,
        action: DEVICES_PATH,
        csrfToken: this.formToken(session.id),
        devices: all.map((c) => {
          const type = types.find((t) => t.id === c.typeId)
          return { id: c.id, user: c.userName ?? c.userId, typeName: type?.name ?? c.typeId, createdAt: new Date(c.createdAt), approved: c.approved, approvalRequired: type?.approvalRequired === true, approvedBy: c.approvedBy }
        }),
      }),
    )
  }
}
