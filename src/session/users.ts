/**
 * What Portcullis reads from a provider's claims about a person: the user record stored next to
 * sessions, and the identity shown on the user page and in `/.pomerium/user`.
 */
import type { User } from './session-store.js'

function text(v: unknown): string {
  return typeof v === 'string' ? v : ''
}

/** Groups from the `groups` claim (a list, or one string). */
export function groupsOf(claims: Readonly<Record<string, unknown>>): string[] {
  const g = claims['groups']
  if (Array.isArray(g)) return g.filter((x): x is string => typeof x === 'string')
  return typeof g === 'string' ? [g] : []
}

export function userFromClaims(userId: string, claims: Readonly<Record<string, unknown>>): User {
  return { id: userId, email: text(claims['email']), name: text(claims['name']), claims }
}
