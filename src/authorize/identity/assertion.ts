/**
 * `X-Pomerium-Jwt-Assertion` (Pomerium docs: X-Pomerium-Jwt-Assertion): the signed statement of who made a request,
 * minted for the route host it is sent to.
 *
 * JOSE header `{"alg","kid","typ":"JWT"}`; payload `aud` (route host), `email`, `exp` (= iat +
 * 300), `groups` (always an array, `jwt_groups_filter` applied), `iat`, `iss` (route host, or
 * `https://<host>/` with `jwt_issuer_format: uri`), `jti` (new UUID), `name`, `sid`, `sub` and
 * `user` (user id), plus every claim named in `jwt_claims_headers` that is not one of those,
 * from the session's claims then the user's, joined with `,`. Keys are written sorted, as Go's
 * `json.Marshal` of Pomerium's payload map writes them. An anonymous request (public route, no
 * session) gets empty `sub`, `user`, `email`, `sid` and `name`.
 *
 * Reuse: signing costs tens of microseconds, so an assertion is reused while it has more than
 * half its lifetime (150 s) left, for the same statement: the cache key is the whole payload
 * except `jti`/`iat`/`exp` (issuer, audience, identity, groups after filtering, extra claims),
 * each field length-prefixed (the identity's part computed once per identity object),
 * so any change to the session's identity or to the route host mints a new one. A new
 * signature always has a new `jti`. The cache is an LRU of `cacheEntries` (default 10 000).
 */
import { randomUUID } from 'node:crypto'
import { claimStrings } from '../../config/claim-headers.js'
import type { SigningKey, SigningKeys } from '../../shared/signing-keys.js'

import type { IssuerFormat } from '../../config/identity-settings.js'

export type { IssuerFormat }
export { parseIssuerFormat } from '../../config/identity-settings.js'

/** Lifetime of an assertion, seconds (Pomerium: 5 minutes). */
export const ASSERTION_LIFETIME_S = 300

/** The claims every assertion has; `jwt_claims_headers` cannot replace them. */
export const STANDARD_CLAIMS: ReadonlySet<string> = new Set(['iss', 'aud', 'jti', 'iat', 'exp', 'sub', 'user', 'email', 'groups', 'sid', 'name'])

/** The identity behind a request, as the authorizer knows it (see `identitySession`). */
export interface IdentitySession {
  /** Session id (`sid`). */
  readonly id: string
  /** User id (`sub`, `user`). */
  readonly userId: string
  readonly email: string
  /** Already joined with `,` when the claim is a list. */
  readonly name: string
  /** Group ids/names before `jwt_groups_filter`. */
  readonly groups: readonly string[]
  /** The session's claims (ID token and UserInfo). */
  readonly claims: Readonly<Record<string, unknown>>
  /** The user record's claims, read when a claim is not among the session's. */
  readonly userClaims?: Readonly<Record<string, unknown>> | undefined
  /** For `${pomerium.id_token}` / `${pomerium.access_token}`. */
  readonly idToken?: string | undefined
  readonly accessToken?: string | undefined
}

export interface AssertionInput {
  /** Route host: canonical, lower case, no port. */
  readonly host: string
  /** Absent for an anonymous request. */
  readonly session?: IdentitySession | undefined
  /** Unix ms; default `Date.now()`. */
  readonly now?: number | undefined
}

/** Per-route settings (`jwt_issuer_format`, `jwt_groups_filter` of the route). */
export interface AssertionRouteOptions {
  readonly issuerFormat?: IssuerFormat | undefined
  /** Union with the global filter: a group is kept when either allows it. */
  readonly groupsFilter?: ReadonlySet<string> | readonly string[] | undefined
}

export interface AssertionOptions {
  /** Global `jwt_issuer_format`; a route's own setting wins. */
  readonly issuerFormat: IssuerFormat
  /** Global `jwt_groups_filter`; empty or absent = no filter. */
  readonly groupsFilter?: readonly string[] | undefined
  /** `jwt_claims_headers`, normalised to `Header: claim`. */
  readonly claimHeaders: Readonly<Record<string, string>>
  /** Reuse assertions within half their lifetime (default true). */
  readonly reuse?: boolean | undefined
  /** LRU bound of the reuse cache (default 10 000). */
  readonly cacheEntries?: number | undefined
}

export interface Assertion {
  readonly token: string
  /** The signed payload (frozen). */
  readonly payload: Readonly<Record<string, unknown>>
}

export interface AssertionMinter {
  /** The `X-Pomerium-Jwt-Assertion` value. */
  mint(input: AssertionInput, route?: AssertionRouteOptions): string
  /** The token with its payload (claim headers and `/.pomerium/user` read the payload). */
  issue(input: AssertionInput, route?: AssertionRouteOptions): Assertion
  readonly keys: SigningKeys
  /** Entries in the reuse cache (for tests and metrics). */
  readonly cached: number
}

/** What the statement takes from an identity: its part of the cache key, and its extra claims. */
interface IdentityPart {
  readonly key: string
  readonly extras: readonly (readonly [string, string])[]
}

/** An anonymous request: empty `sub`, `email`, `sid`, `name` and no extra claims. */
const ANONYMOUS_PART: IdentityPart = { key: field('') + field('') + field('') + field('') + field('0'), extras: [] }

/** One field of a cache key: its length, then its text (so the key reads back unambiguously). */
function field(value: string): string {
  return `${value.length}:${value}`
}

interface CacheEntry {
  readonly iat: number
  readonly assertion: Assertion
}

export function createAssertionMinter(keys: SigningKeys, options: AssertionOptions): AssertionMinter {
  const signer = keys.signer
  const headerB64 = jwsHeader(signer)
  const globalFilter = options.groupsFilter && options.groupsFilter.length > 0 ? new Set(options.groupsFilter) : undefined
  const extraClaims = [...new Set(Object.values(options.claimHeaders))].filter((c) => !STANDARD_CLAIMS.has(c))
  const reuse = options.reuse ?? true
  const maxEntries = Math.max(1, options.cacheEntries ?? 10_000)
  const cache = new Map<string, CacheEntry>()
  const half = ASSERTION_LIFETIME_S / 2

  /**
   * The part of an identity the statement depends on (its key text, and the extra claims), once
   * per identity object: the authorizer hands out the same object for as long as a session is
   * unchanged, so requests of one session do not read its claims again.
   */
  const identities = new WeakMap<IdentitySession, IdentityPart>()
  function identityPart(s: IdentitySession): IdentityPart {
    let part = identities.get(s)
    if (part) return part
    const extras: [string, string][] = []
    for (const claim of extraClaims) {
      const values = claimStrings(s.claims[claim]) ?? claimStrings(s.userClaims?.[claim])
      if (values !== undefined) extras.push([claim, values.join(',')])
    }
    let key = field(s.userId) + field(s.email) + field(s.id) + field(s.name) + field(String(extras.length))
    for (const [claim, value] of extras) key += field(claim) + field(value)
    part = { key, extras }
    identities.set(s, part)
    return part
  }

  function issue(input: AssertionInput, route?: AssertionRouteOptions): Assertion {
    const nowS = Math.floor((input.now ?? Date.now()) / 1000)
    const s = input.session
    const format = route?.issuerFormat ?? options.issuerFormat
    const iss = format === 'uri' ? `https://${input.host}/` : input.host
    const groups = filterGroups(s?.groups ?? [], globalFilter, route?.groupsFilter)
    const identity = s ? identityPart(s) : ANONYMOUS_PART
    const extras = identity.extras
    const statement = {
      aud: input.host,
      email: s?.email ?? '',
      groups,
      iss,
      name: s?.name ?? '',
      sid: s?.id ?? '',
      sub: s?.userId ?? '',
    }

    let key: string | undefined
    if (reuse) {
      // Every field length-prefixed, so that no two statements share a key.
      key = field(iss) + field(statement.aud) + field(String(groups.length))
      for (const g of groups) key += field(g)
      key += identity.key
      const hit = cache.get(key)
      if (hit) {
        const age = nowS - hit.iat
        if (age >= 0 && age < half) {
          cache.delete(key)
          cache.set(key, hit)
          return hit.assertion
        }
        cache.delete(key)
      }
    }

    const fields: Record<string, unknown> = {
      ...statement,
      exp: nowS + ASSERTION_LIFETIME_S,
      iat: nowS,
      jti: randomUUID(),
      user: statement.sub,
    }
    for (const [claim, value] of extras) fields[claim] = value
    // Sorted keys, as Go's json.Marshal writes Pomerium's payload map.
    const payload: Record<string, unknown> = {}
    for (const k of Object.keys(fields).sort()) payload[k] = fields[k]
    Object.freeze(groups)
    Object.freeze(payload)

    const payloadB64 = Buffer.from(JSON.stringify(payload)).toString('base64url')
    const signingInput = `${headerB64}.${payloadB64}`
    const token = `${signingInput}.${signer.sign(Buffer.from(signingInput)).toString('base64url')}`
    const assertion: Assertion = { token, payload }

    if (key !== undefined) {
      cache.set(key, { iat: nowS, assertion })
      if (cache.size > maxEntries) {
        const oldest = cache.keys().next()
        if (!oldest.done) cache.delete(oldest.value)
      }
    }
    return assertion
  }

  return {
    issue,
    mint: (input, route) => issue(input, route).token,
    keys,
    get cached() {
      return cache.size
    },
  }
}

/** base64url of the JOSE header, members sorted as go-jose writes them. */
function jwsHeader(key: SigningKey): string {
  return Buffer.from(JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' })).toString('base64url')
}

function filterGroups(
  groups: readonly string[],
  globalFilter: ReadonlySet<string> | undefined,
  routeFilter: ReadonlySet<string> | readonly string[] | undefined,
): string[] {
  let route: ReadonlySet<string> | undefined
  if (routeFilter !== undefined) {
    route = routeFilter instanceof Set ? routeFilter : new Set(routeFilter as readonly string[])
    if (route.size === 0) route = undefined
  }
  if (!globalFilter && !route) return [...groups]
  return groups.filter((g) => (globalFilter?.has(g) ?? false) || (route?.has(g) ?? false))
}
