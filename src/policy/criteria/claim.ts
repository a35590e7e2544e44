/**
 * `claim/<path>`: a string-list matcher on a claim of the session (session claims merged with
 * user claims). Claim values are lists: a scalar is a one-element list, a missing claim an empty
 * one. `<path>` is first looked up as one key (claim names such as
 * `https://example.com/roles` contain `/` and `.`), then, with 2 to 5 segments split on `/` or
 * `.`, as a path into nested objects, as Pomerium does.
 */
import { compileListMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { SessionCriterion } from './types.js'

type Claims = Readonly<Record<string, unknown>>

function isRecord(value: unknown): value is Claims {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A getter for a claim path; own properties only, so `claim/constructor` finds nothing. */
export function claimGetter(path: string): (claims: Claims) => unknown {
  const segments = path.split(/[./]/)
  const nested = segments.length >= 2 && segments.length <= 5
  return (claims) => {
    if (Object.hasOwn(claims, path)) return claims[path]
    if (!nested) return undefined
    let value: unknown = claims
    for (const segment of segments) {
      if (!isRecord(value) || !Object.hasOwn(value, segment)) return undefined
      value = value[segment]
    }
    return value
  }
}

export const claim: SessionCriterion = {
  name: 'claim',
  subPath: 'required',
  session: true,
  outcomes: binary(R.claimOk, R.claimUnauthorized),
  compile(data, ctx) {
    const path = ctx.subPath ?? ''
    if (path === '') {
      ctx.error('claim needs a claim name: claim/<name>, such as claim/groups')
      return undefined
    }
    const match = compileListMatcher(data, ctx)
    if (!match) return undefined
    const get = claimGetter(path)
    return (session) => (match(get(session.claims)) ? OK : FAIL)
  },
}
