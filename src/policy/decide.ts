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

function denied(reasons: readonly string[]): Decision {
  return reasons.includes(R.deviceUnauthorized) ? { kind: 'device-denied', status: 450, reasons } : { kind: 'deny', status: 403, reasons }
}

/** The device type to enroll: the first the policy requires that the session has no credential of. */
function missingDeviceType(deviceTypes: readonly string[], session: PolicySession | undefined): string {
  const have = new Set((session?.devices ?? []).map((d) => d.typeId))
  return deviceTypes.find((t) => !have.has(t)) ?? deviceTypes[0] ?? DEFAULT_DEVICE_TYPE
}

const NO_DEVICE_TYPES: readonly string[] = []

/**
 * `deviceTypes`: the policy's (CompiledPolicy.deviceTypes); only a policy with device criteria can
 * report device reasons, so the others skip step 3 at no cost. `session`: its credentials.
 */
export function decide(e: Evaluation, deviceTypes = NO_DEVICE_TYPES, session?: PolicySession): Decision {
  if (e.denyReasons.includes(R.clientCertificateRequired) || e.denyReasons.includes(R.invalidClientCertificate)) {
    return { kind: 'client-certificate', status: 495, reasons: e.denyReasons }
  }
  const allowNeedsUser = e.allowReasons.includes(R.userUnauthenticated)
  const denyNeedsUser = e.denyReasons.includes(R.userUnauthenticated)
  if (allowNeedsUser || denyNeedsUser) {
    const reasons = allowNeedsUser && denyNeedsUser ? [...new Set([...e.allowReasons, ...e.denyReasons])].sort() : allowNeedsUser ? e.allowReasons : e.denyReasons
    return { kind: 'sign-in', reasons }
  }
  if (deviceTypes.length > 0 && (e.allowReasons.includes(R.deviceUnauthenticated) || e.denyReasons.includes(R.deviceUnauthenticated))) {
    return { kind: 'device-enroll', deviceType: missingDeviceType(deviceTypes, session), reasons: [R.deviceUnauthenticated] }
  }
  if (e.deny) return denied(e.denyReasons)
  if (e.allow) return { kind: 'allow', reasons: e.allowReasons }
  return denied(e.allowReasons)
}
