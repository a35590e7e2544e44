/**
 * `email`: a string matcher on the session's email, compared case-folded after the refusals of
 * identity.ts. False when the IdP says `email_verified: false` (stricter than Pomerium).
 */
import { canonicalEmail, canonicalOperand } from '../identity.js'
import { compileStringMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { SessionCriterion } from './types.js'

export const email: SessionCriterion = {
  name: 'email',
  subPath: 'none',
  session: true,
  outcomes: binary(R.emailOk, R.emailUnauthorized),
  compile(data, ctx) {
    const match = compileStringMatcher(data, ctx, { canon: canonicalOperand, refusePadded: true })
    if (!match) return undefined
    return (session) => {
      if (session.emailVerified === false) return FAIL
      const address = canonicalEmail(session.email)
      return address !== undefined && match(address) ? OK : FAIL
    }
  },
}
