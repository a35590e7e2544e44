/**
 * Upstream credentials for Kubernetes API routes (`kubernetes_service_account_token[_file]`).
 *
 * Pomerium's behaviour (authorize/evaluator/headers_evaluator_evaluation.go `fillKubernetesHeaders`,
 * internal/httputil/reproxy/reproxy.go, config/envoyconfig/luascripts/remove-impersonate-headers.lua):
 * - `Authorization: Bearer <token>` replaces the client's.
 * - `Impersonate-User: <email>` where email is the directory user's email, else the user record's;
 *   Pomerium omits the header when there is no email.
 * - The JWT `groups` claim (directory group ids and names after `jwt_groups_filter`, else the
 *   session's `groups` claim) is comma-joined into one `Impersonate-Group` by the evaluator; the
 *   control-plane "reproxy" then splits it on `,` and sends one `Impersonate-Group` per group,
 *   because Kubernetes reads every header line as one group (kubernetes/kubernetes#94683).
 * - No `Impersonate-Extra-*` or `Impersonate-Uid` is set.
 * - The client's `Impersonate-User`, `Impersonate-Group` and `Impersonate-Extra-*` are removed.
 *
 * Where this module differs, on purpose:
 * - No email: `Impersonate-User` is the user id (Pomerium would send none, and the request would
 *   run with the service account's own rights). No user at all (anonymous): `system:anonymous`
 *   with group `system:unauthenticated`, for the same reason.
 * - Groups are never split on `,`: a group named `a,b` stays one group (Pomerium would turn an
 *   IdP group named `x,system:masters` into `system:masters`).
 * - Values a header cannot carry unchanged (empty, control characters, leading or trailing
 *   whitespace that HTTP would strip) are dropped rather than altered. Non-ASCII names are sent
 *   as their UTF-8 bytes, as Pomerium (Go) sends them: the returned string holds one character per
 *   byte (`wireValue`), which is what undici writes (headers go out as latin1).
 * - `Impersonate-Uid` from the client is removed too.
 */
import type { RouteConfig } from '../config/types.js'

/** Who the request is for, as the authorizer knows it. */
export interface KubernetesIdentity {
  /** The user id (the assertion's `sub`). */
  readonly userId: string
  /** The directory user's email, else the user record's; '' or absent when there is none. */
  readonly email?: string
  /** The assertion's `groups` claim: directory group ids and names after `jwt_groups_filter`, else the session's `groups`. */
  readonly groups?: readonly string[]
}

/** Header changes for the upstream request. Names are lower case. */
export interface UpstreamHeaderChanges {
  /** One value per name; overrides the client's. */
  readonly set: Readonly<Record<string, string>>
  /**
   * Names sent as several header lines, one per value, in order (never comma-joined): today only
   * `impersonate-group`. Empty when there is nothing to send. See docs/upstream-credentials.md.
   */
  readonly setMulti: Readonly<Record<string, readonly string[]>>
  /** Client headers to drop (lower case, `_` already read as `-` like the proxy does). */
  readonly remove: readonly string[]
}

export const IMPERSONATE_EXTRA_PREFIX = 'impersonate-extra-'

/** The fixed names always removed on Kubernetes routes; `impersonate-extra-*` comes on top. */
export const KUBERNETES_REMOVED_HEADERS: readonly string[] = ['authorization', 'impersonate-user', 'impersonate-group', 'impersonate-uid']

/** The anonymous identity Kubernetes itself gives unauthenticated requests. */
export const KUBERNETES_ANONYMOUS_USER = 'system:anonymous'
export const KUBERNETES_UNAUTHENTICATED_GROUP = 'system:unauthenticated'

/**
 * True for a header name a client must not send to a Kubernetes route: `Impersonate-User`,
 * `-Group`, `-Uid` and every `Impersonate-Extra-*`, in any case, `_` read as `-`.
 * For a proxy that removes by prefix.
 */
export function isImpersonationHeader(name: string): boolean {
  const n = name.toLowerCase().replace(/_/g, '-')
  return n === 'impersonate-user' || n === 'impersonate-group' || n === 'impersonate-uid' || n.startsWith(IMPERSONATE_EXTRA_PREFIX)
}

/**
 * The upstream header changes for a Kubernetes route, or undefined when the route has no service
 * account token. `identity` is undefined for an anonymous request. `requestHeaders` (the check
 * request's headers) lets the exact `impersonate-extra-*` names the client sent be listed in
 * `remove`, since the proxy removes by name; without it only the fixed names are listed.
 */
export function kubernetesHeaders(
  route: RouteConfig,
  identity: KubernetesIdentity | undefined,
  requestHeaders?: Readonly<Record<string, string | string[] | undefined>>,
): UpstreamHeaderChanges | undefined {
  const token = route.kubernetesServiceAccountToken
  if (token === undefined) return undefined

  const remove = [...KUBERNETES_REMOVED_HEADERS]
  for (const name of Object.keys(requestHeaders ?? {})) {
    const n = name.toLowerCase().replace(/_/g, '-')
    if (n.startsWith(IMPERSONATE_EXTRA_PREFIX) && !remove.includes(n)) remove.push(n)
  }

  let user = [identity?.email, identity?.userId].find((v) => v !== undefined && isCarriable(v))
  let groups = dedupe((identity?.groups ?? []).filter(isCarriable))
  if (user === undefined) {
    user = KUBERNETES_ANONYMOUS_USER
    groups = [KUBERNETES_UNAUTHENTICATED_GROUP]
  }

  return {
    set: { authorization: `Bearer ${token}`, 'impersonate-user': wireValue(user) },
    setMulti: groups.length > 0 ? { 'impersonate-group': groups.map(wireValue) } : {},
    remove,
  }
}

/**
 * A header value as the string the proxy writes: the UTF-8 bytes of `value`, one character per
 * byte (undici writes header strings as latin1, so the upstream receives UTF-8). ASCII is unchanged.
 */
export function wireValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(value) ? value : Buffer.from(value, 'utf8').toString('latin1')
}

/**
 * Whether a value reaches Kubernetes exactly as written in one header line: not empty, no control
 * characters other than tab (CR/LF would be refused or split the header), no lone surrogates, and
 * no leading or trailing whitespace (HTTP parsers strip it, which would rename the user or group).
 */
function isCarriable(value: string): boolean {
  if (value === '' || value !== value.trim() || /\p{Cs}/u.test(value)) return false
  // eslint-disable-next-line no-control-regex
  return !/[\x00-\x08\x0a-\x1f\x7f]/.test(value)
}

function dedupe(values: readonly string[]): string[] {
  return [...new Set(values)]
}
