/**
 * The decision order of Pomerium's authorize (Pomerium docs: Result & reason propagation):
 *
 * 1. the deny reasons name a missing or invalid client certificate → 495, no sign-in redirect;
 * 2. the allow or deny reasons contain `user-unauthenticated` → sign in (even when allow is
 *    true: a deny rule that needs a session forces sign-in on a public route, case 33);
 * 3. the allow or deny reasons contain `device-unauthenticated` → enroll or authenticate a
 *    device (of the first type the policy requires that the session has no credential of);
 * 4. deny is true → denied with the deny reasons: 450 when they contain `device-unauthorized`,
 *    else 403;
 * 5. allow is true → allow;
 * 6. otherwise → denied with the allow reasons (default deny), 450 or 403 as in 4.
 */
import { DEFAULT_DEVICE_TYPE } from './criteria/device.js'
import { R } from './reasons.js'
import type { Decision, Evaluation, PolicySession } from './types.js'

/** What step 3 needs: the device types the policy requires, and the session's credentials. */
export interface DeviceContext {
  readonly deviceTypes: readonly string[]
  readonly session: PolicySession | undefined
}

function denied(reasons: readonly string[]): Decision {
  return reasons.includes(R.deviceUnauthorized) ? { kind: 'device-denied', status: 450, reasons } : { kind: 'deny', status: 403, reasons }
}

/** The device type to enroll: the first the policy requires that the session has no credential of. */
function missingDeviceType(context: DeviceContext | undefined): string {
  const types = context?.deviceTypes ?? []
  const have = new Set((context?.session?.devices ?? []).map((d) => d.typeId))
  return types.find((t) => !have.has(t)) ?? types[0] ?? DEFAULT_DEVICE_TYPE
}

export function decide(e: Evaluation, devices?: DeviceContext): Decision {
  if (e.denyReasons.includes(R.clientCertificateRequired) || e.denyReasons.includes(R.invalidClientCertificate)) {
    return { kind: 'client-certificate', status: 495, reasons: e.denyReasons }
  }
  const allowNeedsUser = e.allowReasons.includes(R.userUnauthenticated)
  const denyNeedsUser = e.denyReasons.includes(R.userUnauthenticated)
  if (allowNeedsUser || denyNeedsUser) {
    const reasons = allowNeedsUser && denyNeedsUser ? [...new Set([...e.allowReasons, ...e.denyReasons])].sort() : allowNeedsUser ? e.allowReasons : e.denyReasons
    return { kind: 'sign-in', reasons }
  }
  if (e.allowReasons.includes(R.deviceUnauthenticated) || e.denyReasons.includes(R.deviceUnauthenticated)) {
    const reasons = [...new Set([...e.allowReasons, ...e.denyReasons])].filter((r) => r === R.deviceUnauthenticated)
    return { kind: 'device-enroll', deviceType: missingDeviceType(devices), reasons }
  }
  if (e.deny) return denied(e.denyReasons)
  if (e.allow) return { kind: 'allow', reasons: e.allowReasons }
  return denied(e.allowReasons)
}
