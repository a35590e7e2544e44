/**
 * A route's policy: the legacy access fields translated to PPL (Pomerium docs: Access-control), the `downstream_mtls`
 * default deny, and the route's embedded `policy`, compiled together.
 *
 * ```
 * allow: or: [accept               if allow_public_unauthenticated_access
 *             cors_preflight       if cors_allow_preflight
 *             authenticated_user   if allow_any_authenticated_user
 *             domain: {is: d}      per allowed_domains entry
 *             claim/k: v           per allowed_idp_claims key (sorted) and value
 *             user: {is: u}, email: {is: u}   per allowed_users entry]
 * deny:  or: [invalid_client_certificate]      if mtls is policy_with_default_deny
 * ...the embedded policy's rules
 * ```
 * The legacy allow rule is left out when it is empty and an embedded policy exists. A route with
 * neither allows no one (an empty allow is false, with no reasons: 403, not a sign-in prompt).
 * Errors in translated criteria point at the legacy key (`routes[2].allowed_users[0]`).
 */
import { buildPolicy, frozenCopy } from './compile.js'
import { deviceTypeOf } from './criteria/device.js'
import { joinPath, parseCriterion, parseDocument } from './parse.js'
import type { ClauseNode, CriterionNode } from './parse.js'
import type { CompileResult, MtlsEnforcement, PolicyError, RouteAccess } from './types.js'

interface LegacyEntry {
  /** The PPL criterion the field stands for. */
  readonly criterion: Record<string, unknown>
  /** The legacy key, where errors in the criterion are reported. */
  readonly path: string
}

/** Builds the route's policy and compiles it. Errors carry key paths under `options.path` (`routes[2]`). */
export function compileRoutePolicy(
  route: RouteAccess,
  options: {
    readonly path: string
    readonly mtls?: MtlsEnforcement | undefined
    /**
     * The device types the configuration knows (`any`, `enclave_only`, `device_types[].id`): a
     * `device` criterion naming another type is an error. Undefined: not checked.
     */
    readonly deviceTypes?: readonly string[]
  },
): CompileResult {
  const errors: PolicyError[] = []
  const at = (key: string): string => joinPath(options.path, key)

  if (route.allowPublicUnauthenticatedAccess && (route.allowAnyAuthenticatedUser || route.allowedUsers.length > 0 || route.allowedDomains.length > 0)) {
    errors.push({ path: at('allow_public_unauthenticated_access'), message: 'cannot be combined with allow_any_authenticated_user, allowed_users or allowed_domains' })
  }
  if (route.allowAnyAuthenticatedUser && (route.allowedUsers.length > 0 || route.allowedDomains.length > 0)) {
    errors.push({ path: at('allow_any_authenticated_user'), message: 'cannot be combined with allowed_users or allowed_domains' })
  }

  const legacy: LegacyEntry[] = []
  if (route.allowPublicUnauthenticatedAccess) legacy.push({ criterion: { accept: true }, path: at('allow_public_unauthenticated_access') })
  if (route.corsAllowPreflight) legacy.push({ criterion: { cors_preflight: true }, path: at('cors_allow_preflight') })
  if (route.allowAnyAuthenticatedUser) legacy.push({ criterion: { authenticated_user: true }, path: at('allow_any_authenticated_user') })
  route.allowedDomains.forEach((d, i) => legacy.push({ criterion: { domain: { is: d } }, path: at(`allowed_domains[${i}]`) }))
  for (const key of Object.keys(route.allowedIdpClaims).sort()) {
    const values = route.allowedIdpClaims[key] ?? []
    values.forEach((v, i) => legacy.push({ criterion: { [`claim/${key}`]: v }, path: at(`allowed_idp_claims.${key}[${i}]`) }))
  }
  route.allowedUsers.forEach((u, i) => {
    legacy.push({ criterion: { user: { is: u } }, path: at(`allowed_users[${i}]`) })
    legacy.push({ criterion: { email: { is: u } }, path: at(`allowed_users[${i}]`) })
  })

  const embedded = route.policy === undefined || route.policy === null ? undefined : frozenCopy(route.policy)
  const mtlsDeny = options.mtls === 'policy_with_default_deny'
  const allowItems = legacy.map((l) => frozenCopy(l.criterion))
  const denyItem = frozenCopy({ invalid_client_certificate: true })

  const rules: unknown[] = []
  const clauses: ClauseNode[] = []
  if (legacy.length > 0 || embedded === undefined) {
    rules.push(frozenCopy({ allow: { or: allowItems } }))
    const criteria = allowItems.map((item, i) => legacyNode(item, legacy[i]?.path ?? options.path, errors)).filter((n) => n !== undefined)
    if (criteria.length > 0) clauses.push({ action: 'allow', operator: 'or', criteria, path: options.path })
  }
  if (mtlsDeny) {
    rules.push(frozenCopy({ deny: { or: [denyItem] } }))
    const criterion = legacyNode(denyItem, options.path, errors)
    if (criterion) clauses.push({ action: 'deny', operator: 'or', criteria: [criterion], path: options.path })
  }
  if (embedded !== undefined) {
    rules.push(...(Array.isArray(embedded) ? (embedded as unknown[]) : [embedded]))
    clauses.push(...parseDocument(embedded, at('policy'), errors))
  }
  const known = options.deviceTypes
  if (known !== undefined) {
    for (const node of clauses.flatMap((c) => c.criteria).filter((n) => n.name === 'device')) {
      const type = deviceTypeOf(node.data)
      if (!known.includes(type)) errors.push({ path: joinPath(node.path, 'type'), message: `unknown device type "${type}" (expected ${known.join(', ')}; configure more in device_types)` })
    }
  }
  return buildPolicy(clauses, Object.freeze(rules), errors)
}

function legacyNode(item: unknown, path: string, errors: PolicyError[]): CriterionNode | undefined {
  const node = parseCriterion(item, path, errors)
  return node === undefined ? undefined : { ...node, fixedPath: path }
}
