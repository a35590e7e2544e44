/**
 * `device`: the WebAuthn device credential that authenticated this session (Pomerium docs:
 * Device identity; PPL `device` criterion). Data: `{type, is, approved}`, every key optional:
 *
 * - `type`: the device type whose credential is required, `any` (the default), `enclave_only`
 *   or a type named in the configuration;
 * - `is`: the credential's id must be this one;
 * - `approved`: `true` requires an approved device, `false` an unapproved one.
 *
 * No session → `user-unauthenticated` (sign in first, as every session criterion). A session with
 * no credential of the type → `device-unauthenticated`, which sends the person to enroll or
 * authenticate a device of that type. A credential of the type that fails `is` or `approved` →
 * `device-unauthorized` (status 450); so is a device whose type requires approval and that has
 * none yet, unless the rule asks for `approved: false`. One credential of the type satisfying all conditions →
 * `device-ok`.
 */
import { isPlainObject, typeName } from '../parse.js'
import { R } from '../reasons.js'
import type { PolicyDevice } from '../types.js'
import type { CriterionOutcome, SessionCriterion } from './types.js'

/** The device type a rule without `type` requires. */
export const DEFAULT_DEVICE_TYPE = 'any'

const KEYS = new Set(['type', 'is', 'approved'])
/** Device type names: as configured (`device_types[].id`), lower-case words. */
const DEVICE_TYPE = /^[a-z0-9][a-z0-9_-]{0,63}$/

const DEVICE_OK = 0
const DEVICE_UNAUTHORIZED = 1
const DEVICE_UNAUTHENTICATED = 2

const OUTCOMES: readonly CriterionOutcome[] = [
  { value: true, reasons: [R.deviceOk] },
  { value: false, reasons: [R.deviceUnauthorized] },
  { value: false, reasons: [R.deviceUnauthenticated] },
]

/** The device type a `device` criterion's data asks for (its `type`, or the default). */
export function deviceTypeOf(data: unknown): string {
  return isPlainObject(data) && typeof data['type'] === 'string' ? data['type'] : DEFAULT_DEVICE_TYPE
}

export const device: SessionCriterion = {
  name: 'device',
  subPath: 'none',
  session: true,
  outcomes: OUTCOMES,
  compile(data, ctx) {
    if (!isPlainObject(data)) {
      ctx.error(`expected an object with type, is and/or approved, got ${typeName(data)}`)
      return undefined
    }
    let ok = true
    for (const key of Object.keys(data)) {
      if (!KEYS.has(key)) {
        ctx.error(`unknown key "${key}" (expected type, is, approved)`, key)
        ok = false
      }
    }
    const type = data['type'] ?? DEFAULT_DEVICE_TYPE
    if (typeof type !== 'string' || !DEVICE_TYPE.test(type)) {
      ctx.error(`expected a device type name (any, enclave_only or a configured type), got ${typeof type === 'string' ? `"${type}"` : typeName(type)}`, 'type')
      ok = false
    }
    const is = data['is']
    if (is !== undefined && (typeof is !== 'string' || is === '')) {
      ctx.error(`expected a device credential id, got ${typeName(is)}`, 'is')
      ok = false
    }
    const approved = data['approved']
    if (approved !== undefined && typeof approved !== 'boolean') {
      ctx.error(`expected true or false, got ${typeName(approved)}`, 'approved')
      ok = false
    }
    if (!ok || typeof type !== 'string') return undefined
    const satisfies = (d: PolicyDevice): boolean =>
      (is === undefined || d.id === is) && (approved === undefined ? d.pendingApproval !== true : d.approved === approved)
    return (session) => {
      const devices = session.devices
      if (devices === undefined) return DEVICE_UNAUTHENTICATED
      let ofType = false
      for (let i = 0; i < devices.length; i++) {
        const d = devices[i] as PolicyDevice
        if (d.typeId !== type) continue
        ofType = true
        if (satisfies(d)) return DEVICE_OK
      }
      return ofType ? DEVICE_UNAUTHORIZED : DEVICE_UNAUTHENTICATED
    }
  },
}
