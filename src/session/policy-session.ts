/** The policy's view of a session (the `user`, `email` and `claim` criteria read it). */
import type { PolicySession } from '../policy/index.js'
import type { DirectoryEntry, DirectoryLookup } from './directory.js'
import type { Session } from './session-store.js'

/**
 * `directory`: what the directory says of the user, for providers it manages (docs/directory.md):
 * its groups are what `groups` matches, and its email (when it has one) what `email` matches,
 * as Pomerium does with directory data.
 */
export function policySession(session: Session, directory?: DirectoryEntry): PolicySession {
  const claims = session.claims
  const emailVerified = sessionEmailVerified(session)
  const claimEmail = typeof claims['email'] === 'string' ? claims['email'] : ''
  return {
    sessionId: session.id,
    userId: session.userId,
    email: directory?.email ?? claimEmail,
    // A directory email counts as verified only when the directory vouches for it.
    emailVerified: directory?.email !== undefined ? directory.emailVerified : emailVerified,
    claims,
    ...(directory ? { directoryGroups: directory.groups } : {}),
  }
}

/**
 * The session's `email` claim when the provider says it is verified (`email_verified: true`):
 * matching a directory user by email needs that. A provider that does not say (Entra ID) is
 * matched by user id only.
 */
export function verifiedSessionEmail(session: Session): string | undefined {
  const email = session.claims['email']
  return typeof email === 'string' && email !== '' && sessionEmailVerified(session) === true ? email : undefined
}

function sessionEmailVerified(session: Session): boolean | undefined {
  const verified = session.claims['email_verified']
  return typeof verified === 'boolean' ? verified : verified === 'true' ? true : verified === 'false' ? false : undefined
}

/** The directory's view of a session's user, when the directory manages the session's provider. */
export function directoryEntryFor(session: Session, directory: DirectoryLookup | undefined): DirectoryEntry | undefined {
  return directory?.manages(session.idpId) ? directory.lookup(session.userId, verifiedSessionEmail(session)) : undefined
}
