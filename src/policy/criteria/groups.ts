/**
 * `groups`: a string-list matcher on the user's groups: the directory's group ids when a
 * directory source provides them, otherwise the session's `groups` claim. (Pomerium reads only
 * directory groups, an Enterprise feature; falling back to the claim makes `groups` useful with
 * any IdP and is documented as a difference.)
 */
import { compileListMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { SessionCriterion } from './types.js'

export const groups: SessionCriterion = {
  name: 'groups',
  subPath: 'none',
  session: true,
  outcomes: binary(R.groupsOk, R.groupsUnauthorized),
  compile(data, ctx) {
    const match = compileListMatcher(data, ctx)
    if (!match) return undefined
    return (session) => {
      const list = session.directoryGroups ?? (Object.hasOwn(session.claims, 'groups') ? session.claims['groups'] : undefined)
      return match(list) ? OK : FAIL
    }
  },
}
