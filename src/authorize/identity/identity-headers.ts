/**
 * What the authorizer adds to an allowed request for its upstream (Pomerium docs: Identity headers):
 *
 * - `pass_identity_headers` on (route, else global): `x-pomerium-jwt-assertion` and the
 *   `jwt_claims_headers` headers are set;
 * - always: every configured claim header name is in `remove`, so a client's copy never reaches
 *   the upstream (when identity headers are on, ours replaces it; when a value is refused for
 *   control characters, none is sent). The proxy already drops every client `x-pomerium-*`
 *   header and moves an incoming assertion to `x-pomerium-jwt-assertion-for`;
 * - the route's `set_request_headers` values that are templates (`isTemplate`), rendered;
 *   plain values stay with the proxy's header plan. A template's header wins over a claim
 *   header of the same name.
 *
 * Per-route work (template compilation, filters) is done once per `RouteConfig` object.
 */
import type { DirectoryEntry } from '../../session/directory.js'
import type { Session, User } from '../../session/session-store.js'
import type { Config, RouteConfig } from '../../config/types.js'
import type { CheckRequest } from '../types.js'
import { createAssertionMinter } from './assertion.js'
import type { Assertion, AssertionMinter, IdentitySession, IssuerFormat } from './assertion.js'
import { claimHeaderValues, claimStrings, isSettableHeaderName } from '../../config/claim-headers.js'
import type { SigningKeys } from '../../shared/signing-keys.js'
import { compileTemplate, isTemplate } from '../../config/header-templates.js'
import type { CompiledTemplate } from '../../config/header-templates.js'

export const ASSERTION_HEADER = 'x-pomerium-jwt-assertion'
export const JWKS_PATH = '/.well-known/pomerium/jwks.json'

export interface IdentityHeadersOptions {
  readonly keys: SigningKeys
  /** Global `jwt_issuer_format` (default host only). */
  readonly issuerFormat?: IssuerFormat | undefined
  /** Global `jwt_groups_filter`. */
  readonly groupsFilter?: readonly string[] | undefined
  /** `jwt_claims_headers` normalised to `Header: claim` (`Config.jwtClaimsHeaders`). */
  readonly claimHeaders: Readonly<Record<string, string>>
  /** Global `pass_identity_headers`, for routes that do not set it. */
  readonly passIdentityHeaders: boolean
  /** Reuse assertions within half their lifetime (default true). */
  readonly reuseAssertions?: boolean | undefined
}

export interface IdentityHeadersInput {
  readonly request: Pick<CheckRequest, 'route' | 'host' | 'headers' | 'clientCertificate'>
  /** Absent for an anonymous request (public route without a session). */
  readonly session?: IdentitySession | undefined
  /** Unix ms; default `Date.now()`. */
  readonly now?: number | undefined
}

export interface IdentityHeadersResult {
  /** Lower-case names → wire values, to set on the upstream request. */
  readonly set: Record<string, string>
  /** Lower-case names whose client copies are removed (shared, do not modify). */
  readonly remove: readonly string[]
}

export interface IdentityHeaders {
  /** Called by the authorizer for each allowed request. */
  identityHeaders(input: IdentityHeadersInput): IdentityHeadersResult
  /** `identityHeaders` for requests of one route, its per-route work looked up once here rather than per request. */
  forRoute(route: RouteConfig): (input: IdentityHeadersInput) => IdentityHeadersResult
  readonly minter: AssertionMinter
  /** The JWKS endpoint's response. */
  readonly jwks: JwksResponse
}

export interface JwksResponse {
  readonly status: 200
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

interface RoutePlan {
  readonly pass: boolean
  readonly issuerFormat: IssuerFormat | undefined
  readonly groupsFilter: ReadonlySet<string> | undefined
  readonly templates: readonly (readonly [string, CompiledTemplate])[]
  /** Claim header names and template header names. */
  readonly remove: readonly string[]
}

export function createIdentityHeaders(options: IdentityHeadersOptions): IdentityHeaders {
  const minter = createAssertionMinter(options.keys, {
    issuerFormat: options.issuerFormat ?? 'hostOnly',
    groupsFilter: options.groupsFilter,
    claimHeaders: options.claimHeaders,
    reuse: options.reuseAssertions,
  })
  const claimNames = [...new Set(Object.keys(options.claimHeaders).map((h) => h.toLowerCase()))].filter(isSettableHeaderName)
  const plans = new WeakMap<RouteConfig, RoutePlan>()
  // Claim header values depend only on the (frozen, reused) payload.
  const claimValues = new WeakMap<object, Readonly<Record<string, string>>>()

  function planFor(route: RouteConfig): RoutePlan {
    let plan = plans.get(route)
    if (plan) return plan
    const templates: [string, CompiledTemplate][] = []
    for (const [name, value] of Object.entries(route.setRequestHeaders)) {
      const lower = name.toLowerCase()
      if (!isTemplate(value) || !isSettableHeaderName(lower)) continue
      const compiled = compileTemplate(value)
      // Errors are reported at load (identityConfigIssues); such a header is not sent.
      if ('error' in compiled) continue
      templates.push([lower, compiled])
    }
    const filter = route.jwtGroupsFilter
    plan = {
      pass: route.passIdentityHeaders ?? options.passIdentityHeaders,
      issuerFormat: route.jwtIssuerFormat,
      groupsFilter: filter.length > 0 ? new Set(filter) : undefined,
      templates,
      remove: Object.freeze([...new Set([...claimNames, ...templates.map(([n]) => n)])]),
    }
    plans.set(route, plan)
    return plan
  }

  function identityHeaders(input: IdentityHeadersInput): IdentityHeadersResult {
    return headersWith(planFor(input.request.route), input)
  }

  function headersWith(plan: RoutePlan, input: IdentityHeadersInput): IdentityHeadersResult {
    const { request, session } = input
    const set: Record<string, string> = {}
    let assertion: Assertion | undefined
    const issue = (): Assertion =>
      (assertion ??= minter.issue({ host: request.host, session, now: input.now }, { issuerFormat: plan.issuerFormat, groupsFilter: plan.groupsFilter }))
    if (plan.pass) {
      const a = issue()
      set[ASSERTION_HEADER] = a.token
      let values = claimValues.get(a.payload)
      if (!values) {
        values = claimHeaderValues(a.payload, options.claimHeaders)
        claimValues.set(a.payload, values)
      }
      Object.assign(set, values)
    }
    if (plan.templates.length > 0) {
      const ctx = {
        jwt: () => issue().token,
        idToken: session?.idToken,
        accessToken: session?.accessToken,
        clientCertificate: request.clientCertificate,
        headers: request.headers,
      }
      for (const [name, template] of plan.templates) {
        const value = template.render(ctx)
        if (value === undefined) delete set[name]
        else set[name] = value
      }
    }
    return { set, remove: plan.remove }
  }

  function forRoute(route: RouteConfig): (input: IdentityHeadersInput) => IdentityHeadersResult {
    const plan = planFor(route)
    return (input) => headersWith(plan, input)
  }

  return { identityHeaders, forRoute, minter, jwks: jwksResponse(options.keys) }
}

/** `/.well-known/pomerium/jwks.json`: every key's public part; cached 60 s (Pomerium docs: Signing / JWKS). */
export function jwksResponse(keys: SigningKeys): JwksResponse {
  return {
    status: 200,
    headers: Object.freeze({ 'content-type': 'application/json', 'cache-control': 'max-age=60' }),
    body: JSON.stringify({ keys: keys.jwks.keys }),
  }
}

/** Settings of `config` the identity headers need (`signing_key` is loaded separately). */
export function identityOptionsFromConfig(config: Config, keys: SigningKeys): IdentityHeadersOptions {
  return {
    keys,
    issuerFormat: config.jwtIssuerFormat,
    groupsFilter: config.jwtGroupsFilter,
    claimHeaders: config.jwtClaimsHeaders,
    passIdentityHeaders: config.passIdentityHeaders,
  }
}

/**
 * The assertion's view of a session and its user, as Pomerium fills the payload: email of the
 * user record (else the session's `email` claim), `name` claim of the session else of the user
 * record (else the user's name), `groups` claim of the session. With directory data
 * (docs/directory.md) the directory's email and its group ids and names win, as in Pomerium.
 */
export function identitySession(session: Session, user: User | undefined, directory?: DirectoryEntry): IdentitySession {
  const name = claimStrings(session.claims['name']) ?? claimStrings(user?.claims['name'])
  return {
    id: session.id,
    userId: session.userId,
    email: directory?.email || user?.email || (claimStrings(session.claims['email'])?.[0] ?? ''),
    name: name ? name.join(',') : (user?.name ?? ''),
    groups: directory ? directory.groups : (claimStrings(session.claims['groups']) ?? []),
    claims: session.claims,
    userClaims: user?.claims,
    idToken: session.idToken,
    accessToken: session.accessToken,
  }
}

export type { IdentityConfigIssue } from '../../config/identity-settings.js'

export { identityConfigIssues } from '../../config/identity-settings.js'
