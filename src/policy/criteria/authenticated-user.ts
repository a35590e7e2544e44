/** `authenticated_user`: any signed-in user with a non-empty user id (`user-ok` / `user-unauthorized`). */
import { R } from '../reasons.js'
import { FAIL, OK, binary, checkIgnoredData } from './types.js'
import type { SessionCriterion } from './types.js'

export const authenticatedUser: SessionCriterion = {
  name: 'authenticated_user',
  subPath: 'none',
  session: true,
  outcomes: binary(R.userOk, R.userUnauthorized),
  compile(data, ctx) {
    checkIgnoredData(data, ctx, 'authenticated_user')
    return (session) => (session.userId !== '' ? OK : FAIL)
  },
}
