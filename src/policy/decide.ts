/**
 * The decision order of Pomerium's authorize (Pomerium docs: Result & reason propagation), reduced to the outcomes Portcullis
 * has (no device criteria):
 *
 * 1. the deny reasons name a missing or invalid client certificate → 495, no sign-in redirect;
 * 2. the allow or deny reasons contain `user-unauthenticated` → sign in (even when allow is
 *    true: a deny rule that needs a session forces sign-in on a public route, case 33);
 * 3. deny is true → 403 with the deny reasons;
 * 4. allow is true → allow;
 * 5. otherwise → 403 with the allow reasons (default deny).
 */
import { R } from './reasons.js'
import type { Decision, Evaluation } from './types.js'

export function decide(e: Evaluation): Decision {
  if (e.denyReasons.includes(R.clientCertificateRequired) || e.denyReasons.includes(R.invalidClientCertificate)) {
    return { kind: 'client-certificate', status: 495, reasons: e.denyReasons }
  }
  const allowNeedsUser = e.allowReasons.includes(R.userUnauthenticated)
  const denyNeedsUser = e.denyReasons.includes(R.userUnauthenticated)
  if (allowNeedsUser || denyNeedsUser) {
    const reasons = allowNeedsUser && denyNeedsUser ? [...new Set([...e.allowReasons, ...e.denyReasons])].sort() : allowNeedsUser ? e.allowReasons : e.denyReasons
    return { kind: 'sign-in', reasons }
  }
  if (e.deny) return { kind: 'deny', status: 403, reasons: e.denyReasons }
  if (e.allow) return { kind: 'allow', reasons: e.allowReasons }
  return { kind: 'deny', status: 403, reasons: e.allowReasons }
}
