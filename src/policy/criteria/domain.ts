/**
 * `domain`: a string matcher on the part after `@` of the session's email (after the refusals of
 * identity.ts, so `a@evil.com@company.com` has no domain at all). False when `email_verified` is false.
 */
import { canonicalEmailDomain, canonicalOperand } from '../identity.js'
import { compileStringMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { SessionCriterion } from './types.js'

export const domain: SessionCriterion = {
  name: 'domain',
  subPath: 'none',
  session: true,
  outcomes: binary(R.domainOk, R.domainUnauthorized),
  compile(data, ctx) {
    const match = compileStringMatcher(data, ctx, { canon: canonicalOperand, refusePadded: true })
    if (!match) return undefined
    return (session) => {
      if (session.emailVerified === false) return FAIL
      const name = canonicalEmailDomain(session.email)
      return name !== undefined && match(name) ? OK : FAIL
    }
  },
}
