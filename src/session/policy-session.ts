/** The policy's view of a session (the `user`, `email` and `claim` criteria read it). */
import type { PolicySession } from '../policy/index.js'
import type { Session } from './session-store.js'

export function policySession(session: Session): PolicySession {
  const claims = session.claims
  const verified = claims['email_verified']
  return {
    sessionId: session.id,
    userId: session.userId,
    email: typeof claims['email'] === 'string' ? claims['email'] : '',
    emailVerified: typeof verified === 'boolean' ? verified : verified === 'true' ? true : verified === 'false' ? false : undefined,
    claims,
  }
}
