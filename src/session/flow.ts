/**
 * The URLs and tokens of the cross-domain sign-in flow (Pomerium docs: Stateful flow), shared by the authorizer
 * (which sends browsers to sign in), the route endpoints and the authenticate service:
 *
 *   route --302 signed--> authenticate /.pomerium/sign_in --(provider login)--> /oauth2/callback
 *         <--302 signed, sealed handle-- /.pomerium/sign_in <--302--
 *   route /.pomerium/callback/ sets the route cookie --302--> the original URL
 */
import { context, propagation } from '@opentelemetry/api'
import { createHash } from 'node:crypto'
import { open, seal } from './sealed.js'
import { signSessionHandle, verifySessionHandle } from './session-handle.js'
import type { SessionHandle } from './session-handle.js'
import type { Session } from './session-store.js'
import { signUrl } from './signed-url.js'
import type { AuthSettings } from './settings.js'

export const PARAM_REDIRECT_URI = 'pomerium_redirect_uri'
export const PARAM_CALLBACK_URI = 'pomerium_callback_uri'
export const PARAM_IDP_ID = 'pomerium_idp_id'
export const PARAM_PROGRAMMATIC = 'pomerium_programmatic'
export const PARAM_SESSION_ENCRYPTED = 'pomerium_session_encrypted'
export const PARAM_JWT = 'pomerium_jwt'
/** `/.pomerium/webauthn` (docs/devices.md): the device type to register or use, and an enrollment link's token. */
export const PARAM_DEVICE_TYPE = 'pomerium_device_type'
export const PARAM_ENROLLMENT_TOKEN = 'pomerium_enrollment_token'
/** Portcullis addition on signed sign-out URLs: the session the route knew, ended even without the authenticate cookie. */
export const PARAM_SESSION_ID = 'pomerium_session_id'
/**
 * Portcullis addition on signed sign-in and callback URLs: the route saw two session cookies
 * (cookie tossing, cookie-conflict.ts), so its callback cleans up or explains instead of looping.
 */
export const PARAM_COOKIE_CONFLICT = 'pomerium_cookie_conflict'

/** Associated data of sealed session handoffs: such a payload cannot be opened as anything else. */
const HANDOFF_PURPOSE = 'session-handoff'

/** The signed authenticate sign-in URL for a browser that wants `redirectUri` through provider `idpId`. */
export function signInUrl(
  settings: AuthSettings,
  sharedSecret: Buffer,
  redirectUri: string,
  idpId: string,
  extra: Readonly<Record<string, string>> = {},
): URL {
  const url = new URL('/.pomerium/sign_in', settings.authenticateUrl)
  url.searchParams.set(PARAM_REDIRECT_URI, redirectUri)
  url.searchParams.set(PARAM_IDP_ID, idpId)
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v)
  addTraceContext(url)
  return signUrl(url, sharedSecret)
}

/**
 * Carries the current trace through a redirect (`pomerium_traceparent`, Pomerium docs: Tracing), so that
 * the next request joins it. A no-op when tracing is off (no propagator is registered).
 */
export function addTraceContext(url: URL): void {
  const carrier: Record<string, string> = {}
  propagation.inject(context.active(), carrier)
  if (carrier['traceparent']) url.searchParams.set('pomerium_traceparent', carrier['traceparent'])
}

/** The signed authenticate sign-out URL. */
export function signOutUrl(settings: AuthSettings, sharedSecret: Buffer, params: Readonly<Record<string, string>>): URL {
  const url = new URL('/.pomerium/sign_out', settings.authenticateUrl)
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
  return signUrl(url, sharedSecret)
}

/** A handle for `session`, good on `audience` hosts until the session ends. */
export function handleFor(session: Session, issuer: string, audience: readonly string[], recordVersion: number | undefined): SessionHandle {
  return {
    iss: issuer,
    sub: session.userId,
    aud: [...new Set(audience)],
    iat: Math.floor(Date.now() / 1000),
    exp: Math.floor(session.expiresAt / 1000),
    jti: session.id,
    idp_id: session.idpId,
    ...(recordVersion !== undefined ? { databroker_record_version: recordVersion } : {}),
  }
}

/** Signs a handle and seals it for the trip through the browser to a route's callback. */
export function sealHandoff(handle: SessionHandle, sharedSecret: Buffer): string {
  return seal(signSessionHandle(handle, sharedSecret), sharedSecret, HANDOFF_PURPOSE)
}

/** The signed handle inside a handoff, or undefined when it does not open or verify. */
export function openHandoff(sealed: string, sharedSecret: Buffer): { token: string; handle: SessionHandle } | undefined {
  const token = open(sealed, sharedSecret, HANDOFF_PURPOSE)
  if (token === undefined) return undefined
  const handle = verifySessionHandle(token, sharedSecret)
  return handle ? { token, handle } : undefined
}

/**
 * Remembers one-time values (session handoffs) until they would expire anyway, so that a
 * callback URL replayed from history, a log or a Referer cannot set a cookie a second time.
 * Per process; the databroker issue moves it into shared storage.
 */
export class UsedOnce {
  readonly #seen = new Map<string, number>()
  readonly #max: number

  constructor(max = 100_000) {
    this.#max = max
  }

  /** True the first time `value` is seen within `ttlMs`; false for a replay. */
  use(value: string, ttlMs: number, nowMs: number = Date.now()): boolean {
    const key = createHash('sha256').update(value).digest('base64url')
    const until = this.#seen.get(key)
    if (until !== undefined && until > nowMs) return false
    if (this.#seen.size >= this.#max) {
      for (const [k, t] of this.#seen) {
        if (t <= nowMs || this.#seen.size >= this.#max) this.#seen.delete(k)
        if (this.#seen.size < this.#max * 0.9) break
      }
    }
    this.#seen.set(key, nowMs + ttlMs)
    return true
  }
}
