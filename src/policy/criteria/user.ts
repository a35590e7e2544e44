/**
 * `user`: a string matcher on the session's user id (the IdP subject). Compared case-folded; ids
 * with surrounding whitespace, control characters or NFKC variants are refused (identity.ts).
 */
import { canonicalOperand, canonicalUserId } from '../identity.js'
import { compileStringMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { SessionCriterion } from './types.js'

export const user: SessionCriterion = {
  name: 'user',
  subPath: 'none',
  session: true,
  outcomes: binary(R.userOk, R.userUnauthorized),
  compile(data, ctx) {
    const match = compileStringMatcher(data, ctx, { canon: canonicalOperand, refusePadded: true })
    if (!match) return undefined
    return (session) => {
      const id = canonicalUserId(session.userId)
      return id !== undefined && match(id) ? OK : FAIL
    }
  },
}
