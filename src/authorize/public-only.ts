/**
 * The authorizer until sign-in and policy exist: routes with
 * `allow_public_unauthenticated_access: true` are let through; every other route is refused
 * (fail closed), because there is no way yet to know who is asking.
 */
import type { Authorizer, CheckRequest, CheckResult } from './types.js'

const ALLOW: CheckResult = { allow: true }

export function createPublicOnlyAuthorizer(): Authorizer {
  return {
    check(request: CheckRequest): CheckResult {
      if (request.route.allowPublicUnauthenticatedAccess) return ALLOW
      return {
        allow: false,
        status: 403,
        reason:
          'This route is not public (allow_public_unauthenticated_access is not set), and sign-in is not available in this version of Portcullis, so access is denied.',
      }
    },
  }
}
